//! What l3mp can tell at start about whom ext leads to: a labelled packet from any host behind
//! a layer-3 ext enters the link of its label, so ext must lead to exactly one l3mp host.
//! Userspace WireGuard answers how many peers it has; other tunnels cannot be asked.

use crate::sys::wireguard;

/// Logs a warning when ext is a WireGuard interface with more than one peer, and why it cannot
/// tell when it cannot.
pub fn check_peers(ext: &str) {
    match wireguard::peers(ext) {
        None => {}
        Some(Ok(peers)) if peers > 1 => log::warn!(
            "{ext} has {peers} WireGuard peers: a labelled packet from any of them enters the \
             link of its label; ext must lead to exactly one l3mp host (see Security in the \
             README)"
        ),
        Some(Ok(peers)) => log::debug!("{ext} has {peers} WireGuard peer(s)"),
        Some(Err(why)) => log::info!("{ext}: cannot count its WireGuard peers: {why}"),
    }
}
