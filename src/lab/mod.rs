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
//! host B in 2. The links' link-local addresses are not planned: they are the ones the kernel
//! generates from the MACs l3mp gives the links ([`Host::link_address`] finds them), as an
//! operator's would be.
//!
//! | where          | IPv4           | IPv6            | IPv6 link-local   |
//! |----------------|----------------|-----------------|-------------------|
//! | ext            | 10.99.0.n/24   | fd00:99::n/64   | fe80::n/64        |
//! | second ext     | 10.98.0.n/24   | fd00:98::n/64   | fe80::n/64        |
//! | link label L   | 10.1.L.n/24    | fd00:1:L::n/64  | the kernel's      |
//!
//! The ext is either a TUN device in each namespace carried by a userspace relay (an L3
//! tunnel, as wg0 would be) or a veth pair with one end in each namespace (an Ethernet
//! segment). A lab may get a second ext of the same kind ([`Lab::add_second_ext`], named
//! [`EXT2`]), and its ext may be taken away and brought back ([`Lab::remove_ext`],
//! [`Lab::restore_ext`]), as `wg-quick down` and `up` would. Dropping a [`Lab`] stops the
//! relays and deletes both namespaces, which deletes every device in them; it does so on a
//! panic too.

mod addresses;
mod host;
mod icmp;
mod offload;
mod routes;
mod socket;
mod tcp;
mod udp;

pub use addresses::{
    ext2_addresses, ext_address, ext_addresses, link_address, link_addresses, AddressKind, Side,
};
pub use host::{End, Host};
pub use icmp::echo;
pub use tcp::transfer;
pub use udp::{payload, send, SendOptions, UdpReceiver};

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::sys::netlink::Netlink;
use crate::sys::tun::{RelayStats, Tun, TunRelay};
use crate::sys::SysError;

crate::error::line_error!(
    /// A lab that could not be built or driven, as one line.
);

/// The name of the ext device on both hosts.
pub const EXT: &str = "ext0";

/// The name of the second ext, which [`Lab::add_second_ext`] adds.
pub const EXT2: &str = "ext1";

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

/// Two hosts joined by an ext. Fields drop in order: the relays stop before the namespaces
/// (and with them the TUN devices) go.
pub struct Lab {
    /// The relay of each TUN ext, by the ext's name.
    relays: Vec<(&'static str, TunRelay)>,
    a: Host,
    b: Host,
    kind: ExtKind,
}

/// Where a lab ext's addresses come from.
type Plan = fn(Side) -> Vec<(IpAddr, u8)>;

impl Lab {
    /// Creates two namespaces named `<prefix>-<pid>-<n>-a` and `...-b` with `lo` up, joins them
    /// by an ext of `kind` called [`EXT`] on both, and gives it its addresses.
    pub fn new(prefix: &str, kind: ExtKind) -> Result<Lab, Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{prefix}-{}-{serial}", std::process::id());
        let mut lab = Lab {
            relays: Vec::new(),
            a: Host::create(&stem, Side::A)?,
            b: Host::create(&stem, Side::B)?,
            kind,
        };
        lab.join(EXT, ext_addresses)?;
        Ok(lab)
    }

    /// Joins the hosts by a second ext of the lab's kind, [`EXT2`], with its own addresses.
    pub fn add_second_ext(&mut self) -> Result<(), Error> {
        self.join(EXT2, ext2_addresses)
    }

    /// Takes [`EXT`] away on both hosts: a TUN ext's relay stops, which deletes both devices;
    /// a veth ext is deleted (both ends go).
    pub fn remove_ext(&mut self) -> Result<(), Error> {
        match self.kind {
            ExtKind::Tun => {
                let (relays, rest) = self.relays.drain(..).partition(|(name, _)| *name == EXT);
                self.relays = rest;
                for (_, relay) in relays {
                    relay.stop().map_err(sys_error)?;
                }
                Ok(())
            }
            ExtKind::Veth => self
                .a
                .run(|| Netlink::new()?.delete_link(EXT))?
                .map_err(sys_error),
        }
    }

    /// Joins the hosts by [`EXT`] again, after [`Lab::remove_ext`]: new devices (new
    /// ifindexes, new MACs), with the same addresses.
    pub fn restore_ext(&mut self) -> Result<(), Error> {
        self.join(EXT, ext_addresses)
    }

    /// Creates the ext `name` of the lab's kind on both hosts, with `plan`'s addresses, and
    /// for a TUN ext starts its relay.
    fn join(&mut self, name: &'static str, plan: Plan) -> Result<(), Error> {
        let tuns = match self.kind {
            ExtKind::Tun => Some((tun(&self.a, name)?, tun(&self.b, name)?)),
            ExtKind::Veth => {
                veth_ext(&self.a, &self.b, name)?;
                None
            }
        };
        for host in [&self.a, &self.b] {
            host.configure_link(name, &plan(host.side()), LINK_TIMEOUT)?;
        }
        // Started once both ends are up, so that it has nowhere to drop a packet.
        if let Some((ta, tb)) = tuns {
            let relay = TunRelay::start(ta, tb).map_err(sys_error)?;
            self.relays.push((name, relay));
        }
        Ok(())
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

    /// The packet counts of [`EXT`]'s relay (a TUN ext only).
    pub fn relay_stats(&self) -> Option<RelayStats> {
        self.relays
            .iter()
            .find(|(name, _)| *name == EXT)
            .map(|(_, relay)| relay.stats())
    }
}

/// A TUN device named `name` on `host`.
fn tun(host: &Host, name: &str) -> Result<Tun, Error> {
    host.run(|| Tun::create(name))?.map_err(sys_error)
}

/// A veth pair with the end named `name` on each host.
fn veth_ext(a: &Host, b: &Host, name: &str) -> Result<(), Error> {
    a.run(|| Netlink::new()?.create_veth_across(name, name, 1500, b.netns()))?
        .map_err(sys_error)
}

/// A system error as the lab reports it.
fn sys_error(e: SysError) -> Error {
    Error::new(e.to_string())
}
