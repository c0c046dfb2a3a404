//! Neighbour (ARP / NDP) table lookups and resolution.

use std::{
    ffi::OsString,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use netlink_packet_route::{
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    AddressFamily, RouteNetlinkMessage,
};
use nix::sys::socket::{setsockopt, sockopt::BindToDevice};

use super::{format_mac, Netlink};
use crate::sys::{
    error::{IoContext, NixContext},
    SysError,
};

/// The UDP "discard" port: the probe datagram should not be answered.
const PROBE_PORT: u16 = 9;
/// How often the neighbour table is read while waiting for a resolution.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

impl Netlink {
    /// The MAC address the neighbour table holds for `address` on link
    /// `ifindex`. Entries that are REACHABLE, STALE, DELAY, PROBE or
    /// PERMANENT count; INCOMPLETE, FAILED (and absent) ones give `None`.
    pub fn neighbour(&self, ifindex: u32, address: IpAddr) -> Result<Option<[u8; 6]>, SysError> {
        Ok(self.neighbour_entry(ifindex, address)?.mac)
    }

    /// What the neighbour table holds for `address` on link `ifindex`: its MAC (if usable, as
    /// [`Netlink::neighbour`] counts it) and whether the kernel has confirmed it lately.
    pub fn neighbour_entry(
        &self,
        ifindex: u32,
        address: IpAddr,
    ) -> Result<NeighbourEntry, SysError> {
        let request = RouteNetlinkMessage::GetNeighbour(neighbour_query(ifindex, address));
        let replies = self.execute_lookup(request, libc::ENOENT, || {
            format!(
                "looking up neighbour {address} on {}",
                self.describe(ifindex)
            )
        })?;
        let reply = replies.as_deref().and_then(|replies| replies.first());
        Ok(NeighbourEntry {
            mac: reply.and_then(usable_mac),
            confirmed: reply.is_some_and(confirmed),
        })
    }

    /// Makes the kernel confirm, or resolve again, its entry for `address` on link `ifindex`
    /// (named `ifname`): one UDP datagram to the address's discard port, sent from a socket
    /// bound to the device. A stale entry is then checked by a unicast probe, and one that
    /// fails is resolved afresh by broadcast. The socket is created in the calling thread's
    /// network namespace, which must be the one this handle acts on.
    pub fn confirm_neighbour(
        &self,
        ifindex: u32,
        ifname: &str,
        address: IpAddr,
    ) -> Result<(), SysError> {
        send_probe(ifindex, ifname, address)
    }

    /// The MAC address of `address` on link `ifindex` (named `ifname`),
    /// resolving it if needed: when the table has no usable entry, one UDP
    /// datagram is sent to the address (discard port) from a socket bound to
    /// the device, which makes the kernel resolve it; the table is then read
    /// every 20 ms until `timeout`.
    ///
    /// The probe socket is created in the calling thread's network
    /// namespace, which must be the one this handle acts on.
    pub fn resolve_neighbour(
        &self,
        ifindex: u32,
        ifname: &str,
        address: IpAddr,
        timeout: Duration,
    ) -> Result<[u8; 6], SysError> {
        if let Some(mac) = self.neighbour(ifindex, address)? {
            return Ok(mac);
        }
        send_probe(ifindex, ifname, address)?;
        let deadline = Instant::now() + timeout;
        while let Some(remaining) = deadline.checked_duration_since(Instant::now()) {
            thread::sleep(POLL_INTERVAL.min(remaining));
            if let Some(mac) = self.neighbour(ifindex, address)? {
                log::debug!("resolved {address} on {ifname} to {}", format_mac(&mac));
                return Ok(mac);
            }
        }
        Err(SysError::other(
            format!("resolving the MAC address of {address} on {ifname}"),
            format!(
                "no usable neighbour entry appeared within {timeout:?}; \
                 check that the peer is up and has this address"
            ),
        ))
    }
}

/// An `RTM_GETNEIGH` for one address on one link.
fn neighbour_query(ifindex: u32, address: IpAddr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.ifindex = ifindex;
    let destination = match address {
        IpAddr::V4(ip) => {
            message.header.family = AddressFamily::Inet;
            NeighbourAddress::Inet(ip)
        }
        IpAddr::V6(ip) => {
            message.header.family = AddressFamily::Inet6;
            NeighbourAddress::Inet6(ip)
        }
    };
    message
        .attributes
        .push(NeighbourAttribute::Destination(destination));
    message
}

/// A neighbour table entry, as far as l3mp cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourEntry {
    /// The MAC, if the entry is usable (see [`Netlink::neighbour`]).
    pub mac: Option<[u8; 6]>,
    /// Whether the kernel confirmed it lately or is confirming it now (REACHABLE, DELAY,
    /// PROBE) or it is never to be confirmed (PERMANENT, NOARP): nothing need make it do so.
    pub confirmed: bool,
}

/// Whether a neighbour reply's state needs no confirming (see [`NeighbourEntry::confirmed`]).
fn confirmed(message: &RouteNetlinkMessage) -> bool {
    let RouteNetlinkMessage::NewNeighbour(neighbour) = message else {
        return false;
    };
    matches!(
        neighbour.header.state,
        NeighbourState::Reachable
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    )
}

/// The MAC of a neighbour reply whose state makes it usable.
fn usable_mac(message: &RouteNetlinkMessage) -> Option<[u8; 6]> {
    let RouteNetlinkMessage::NewNeighbour(neighbour) = message else {
        return None;
    };
    let usable = matches!(
        neighbour.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
    );
    if !usable {
        return None;
    }
    neighbour
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::LinkLocalAddress(bytes) => {
                <[u8; 6]>::try_from(bytes.as_slice()).ok()
            }
            _ => None,
        })
}

/// Sends one small UDP datagram to `address` out of `ifname`, so that the
/// kernel starts resolving the address.
fn send_probe(ifindex: u32, ifname: &str, address: IpAddr) -> Result<(), SysError> {
    let context = || format!("sending a probe datagram to {address} on {ifname}");
    let (local, target) = match address {
        IpAddr::V4(ip) => (
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::from((ip, PROBE_PORT)),
        ),
        IpAddr::V6(ip) => (
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(SocketAddrV6::new(ip, PROBE_PORT, 0, scope_id(ip, ifindex))),
        ),
    };
    let socket = UdpSocket::bind(local).context_with(context)?;
    setsockopt(&socket, BindToDevice, &OsString::from(ifname)).context_with(context)?;
    socket.send_to(&[0], target).context_with(context)?;
    Ok(())
}

/// Link-local IPv6 addresses need the interface as scope id.
fn scope_id(ip: Ipv6Addr, ifindex: u32) -> u32 {
    if ip.is_unicast_link_local() {
        ifindex
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(state: NeighbourState, mac: &[u8]) -> RouteNetlinkMessage {
        let mut message = NeighbourMessage::default();
        message.header.state = state;
        message
            .attributes
            .push(NeighbourAttribute::LinkLocalAddress(mac.to_vec()));
        RouteNetlinkMessage::NewNeighbour(message)
    }

    #[test]
    fn only_resolved_states_give_a_mac() {
        let mac = [2, 0, 0, 0, 0, 1];
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
        ] {
            assert_eq!(usable_mac(&reply(state, &mac)), Some(mac), "{state:?}");
        }
        for state in [
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            NeighbourState::Noarp,
        ] {
            assert_eq!(usable_mac(&reply(state, &mac)), None, "{state:?}");
        }
        assert_eq!(
            usable_mac(&reply(NeighbourState::Reachable, &[1, 2, 3])),
            None
        );
    }

    #[test]
    fn only_stale_failed_and_incomplete_entries_need_confirming() {
        let mac = [2, 0, 0, 0, 0, 1];
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
            NeighbourState::Noarp,
        ] {
            assert!(confirmed(&reply(state, &mac)), "{state:?}");
        }
        for state in [
            NeighbourState::Stale,
            NeighbourState::Failed,
            NeighbourState::Incomplete,
        ] {
            assert!(!confirmed(&reply(state, &mac)), "{state:?}");
        }
    }

    #[test]
    fn query_names_family_link_and_destination() {
        let address: IpAddr = "fe80::2".parse().expect("literal");
        let query = neighbour_query(5, address);
        assert_eq!(query.header.family, AddressFamily::Inet6);
        assert_eq!(query.header.ifindex, 5);
        let destination = NeighbourAddress::Inet6("fe80::2".parse().expect("literal"));
        assert_eq!(
            query.attributes,
            vec![NeighbourAttribute::Destination(destination)]
        );
    }

    #[test]
    fn only_link_local_ipv6_gets_a_scope_id() {
        assert_eq!(scope_id("fe80::1".parse().expect("literal"), 3), 3);
        assert_eq!(scope_id("fd00::1".parse().expect("literal"), 3), 0);
    }
}
