//! The test and demo topology: two hosts, each a network namespace, joined by an ext, with
//! traffic generators built from the lab's own sockets. `l3mp demo` and the end-to-end tests
//! both build on it.
//!
//! ```text
//!   host A (netns)                               host B (netns)
//!   links a, b (l3mp's)                          links a, b (l3mp's)
//!   ext0 10.99.0.1 fd00:99::1 fe80::1  <=====>  ext0 10.99.0.2 fd00:99::2 fe80::2
//! ```
//!
//! The address plan ([`ext_address`], [`link_address`]); host A ends its addresses in 1,
//! host B in 2, and link-local addresses are the same on every link (the link is their scope):
//!
//! | where          | IPv4           | IPv6            | IPv6 link-local |
//! |----------------|----------------|-----------------|-----------------|
//! | ext            | 10.99.0.n/24   | fd00:99::n/64   | fe80::n/64      |
//! | link label L   | 10.1.L.n/24    | fd00:1:L::n/64  | fe80::n/64      |
//!
//! The ext is either a TUN device in each namespace carried by a userspace relay (an L3
//! tunnel, as wg0 would be) or a veth pair with one end in each namespace (an Ethernet
//! segment). Dropping a [`Lab`] stops the relay and deletes both namespaces, which deletes
//! every device in them; it does so on a panic too.

mod addresses;
mod host;
mod icmp;
mod offload;
mod routes;
mod socket;
mod tcp;
mod udp;

pub use addresses::{ext_address, ext_addresses, link_address, link_addresses, AddressKind, Side};
pub use host::{End, Host};
pub use icmp::echo;
pub use tcp::transfer;
pub use udp::{payload, send, SendOptions, UdpReceiver};

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::run::Error;
use crate::sys::netlink::Netlink;
use crate::sys::tun::{RelayStats, Tun, TunRelay};
use crate::sys::SysError;

/// The name of the ext device on both hosts.
pub const EXT: &str = "ext0";

/// How long a link may take to appear.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(5);

/// How the two hosts are joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtKind {
    /// A TUN device on each host and a userspace relay between them: a layer-3 tunnel.
    Tun,
    /// A veth pair, one end on each host: an Ethernet segment.
    Veth,
}

impl std::fmt::Display for ExtKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExtKind::Tun => "TUN + relay (layer 3)",
            ExtKind::Veth => "veth (Ethernet)",
        })
    }
}

/// Two hosts joined by an ext. Fields drop in order: the relay stops before the namespaces
/// (and with them the TUN devices) go.
pub struct Lab {
    relay: Option<TunRelay>,
    a: Host,
    b: Host,
    kind: ExtKind,
}

impl Lab {
    /// Creates two namespaces named `<prefix>-<pid>-<n>-a` and `...-b` with `lo` up, joins them
    /// by an ext of `kind` called [`EXT`] on both, and gives it its addresses.
    pub fn new(prefix: &str, kind: ExtKind) -> Result<Lab, Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{prefix}-{}-{serial}", std::process::id());
        let a = Host::create(&stem, Side::A)?;
        let b = Host::create(&stem, Side::B)?;
        let tuns = match kind {
            ExtKind::Tun => Some((tun(&a)?, tun(&b)?)),
            ExtKind::Veth => {
                veth_ext(&a, &b)?;
                None
            }
        };
        for host in [&a, &b] {
            host.configure_link(EXT, &ext_addresses(host.side()), LINK_TIMEOUT)?;
        }
        // Started once both ends are up, so that it has nowhere to drop a packet.
        let relay = tuns
            .map(|(ta, tb)| TunRelay::start(ta, tb))
            .transpose()
            .map_err(sys_error)?;
        Ok(Lab { relay, a, b, kind })
    }

    /// The host on `side`.
    pub fn host(&self, side: Side) -> &Host {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// How the hosts are joined.
    pub fn kind(&self) -> ExtKind {
        self.kind
    }

    /// The relay's packet counts (a TUN ext only).
    pub fn relay_stats(&self) -> Option<RelayStats> {
        self.relay.as_ref().map(TunRelay::stats)
    }
}

/// A TUN device named [`EXT`] on `host`.
fn tun(host: &Host) -> Result<Tun, Error> {
    host.run(|| Tun::create(EXT))?.map_err(sys_error)
}

/// A veth pair with the end named [`EXT`] on each host.
fn veth_ext(a: &Host, b: &Host) -> Result<(), Error> {
    a.run(|| Netlink::new()?.create_veth_across(EXT, EXT, 1500, b.netns()))?
        .map_err(sys_error)
}

/// A system error as the lab reports it.
fn sys_error(e: SysError) -> Error {
    Error::new(e.to_string())
}
