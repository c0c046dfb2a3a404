//! On an Ethernet ext, the peer's MAC is baked into the demux: only its frames enter the links.
//! When the peer's MAC changes (a new NIC, a VM moved, `ip link set e0 address …` over there),
//! the neighbour table learns the new one, from the peer's own ARP or NDP or because l3mp asks
//! the kernel to confirm a stale entry, and the programs are generated again for it, the same
//! way as when ext itself comes back.

use std::time::{Duration, Instant};

use crate::programs::ExtKind;
use crate::sys::netlink::{format_mac, NeighbourEntry};

use super::Instance;

/// How often the peer's neighbour entry is read.
pub(in crate::run) const PEER_CHECK: Duration = Duration::from_secs(1);
/// The least time between two requests to the kernel to confirm the peer's entry.
const CONFIRM_EVERY: Duration = Duration::from_secs(5);

/// What the peer's neighbour entry asks of programs that let in frames from `baked`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerStep {
    /// The entry holds `baked` and the kernel confirmed it lately.
    Nothing,
    /// The entry holds `baked` but is stale, or is being resolved, or failed: have the kernel
    /// check it (a peer whose MAC changed answers a broadcast, not the old unicast probe).
    Confirm,
    /// The entry holds another MAC: the peer's is now that.
    Regenerate([u8; 6]),
}

/// The step for programs baked with the peer's MAC `baked`, the table now holding `entry`.
pub fn peer_step(baked: [u8; 6], entry: NeighbourEntry) -> PeerStep {
    match entry.mac {
        Some(mac) if mac != baked => PeerStep::Regenerate(mac),
        _ if !entry.confirmed => PeerStep::Confirm,
        _ => PeerStep::Nothing,
    }
}

impl Instance {
    /// Follows the peer's MAC on an Ethernet ext the programs are on (see [`peer_step`]).
    pub(in crate::run) fn check_peer(&mut self) {
        let (ExtKind::Ethernet { mac, peer_mac }, Some(peer), true) =
            (self.kind, self.opts.peer, self.ext_present)
        else {
            return;
        };
        let entry = match self.netlink.neighbour_entry(self.ext.index, peer) {
            Ok(entry) => entry,
            Err(e) => return log::debug!("--peer {peer}: {e}"),
        };
        match peer_step(peer_mac, entry) {
            PeerStep::Nothing => {}
            PeerStep::Confirm => {
                if self
                    .peer_confirmed
                    .is_some_and(|at| at.elapsed() < CONFIRM_EVERY)
                {
                    return;
                }
                self.peer_confirmed = Some(Instant::now());
                let (ext, index) = (&self.ext.name, self.ext.index);
                if let Err(e) = self.netlink.confirm_neighbour(index, ext, peer) {
                    log::debug!("--peer {peer}: {e}");
                }
            }
            PeerStep::Regenerate(now) => {
                log::warn!(
                    "--peer {peer} on {} is now {} (was {}): programs generated again, only its \
                     frames to {} enter the links",
                    self.ext.name,
                    format_mac(&now),
                    format_mac(&peer_mac),
                    format_mac(&mac)
                );
                self.kind = ExtKind::Ethernet { mac, peer_mac: now };
                self.attach_again();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAKED: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const NEW: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn entry(mac: Option<[u8; 6]>, confirmed: bool) -> NeighbourEntry {
        NeighbourEntry { mac, confirmed }
    }

    #[test]
    fn a_new_mac_regenerates_whatever_the_state() {
        for confirmed in [true, false] {
            assert_eq!(
                peer_step(BAKED, entry(Some(NEW), confirmed)),
                PeerStep::Regenerate(NEW)
            );
        }
    }

    #[test]
    fn the_same_mac_is_confirmed_only_when_stale() {
        assert_eq!(
            peer_step(BAKED, entry(Some(BAKED), true)),
            PeerStep::Nothing
        );
        assert_eq!(
            peer_step(BAKED, entry(Some(BAKED), false)),
            PeerStep::Confirm
        );
    }

    #[test]
    fn a_failed_or_missing_entry_is_resolved_again_and_the_programs_kept() {
        assert_eq!(peer_step(BAKED, entry(None, false)), PeerStep::Confirm);
    }
}
