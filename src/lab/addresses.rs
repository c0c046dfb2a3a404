//! The lab's address plan (the table is in the module above).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One of the two hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    /// Both hosts, A first.
    pub const BOTH: [Side; 2] = [Side::A, Side::B];

    /// The host at the other end of ext.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// The host's number in its addresses: 1 for A, 2 for B.
    fn number(self) -> u8 {
        match self {
            Side::A => 1,
            Side::B => 2,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// The kinds of address every interface of the plan gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressKind {
    Ipv4,
    Ipv6,
    Ipv6LinkLocal,
}

impl AddressKind {
    /// Every kind, in the order the plan lists them.
    pub const ALL: [AddressKind; 3] = [
        AddressKind::Ipv4,
        AddressKind::Ipv6,
        AddressKind::Ipv6LinkLocal,
    ];

    /// The prefix length the plan gives addresses of this kind.
    pub fn prefix_len(self) -> u8 {
        match self {
            AddressKind::Ipv4 => 24,
            AddressKind::Ipv6 | AddressKind::Ipv6LinkLocal => 64,
        }
    }
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressKind::Ipv4 => "IPv4",
            AddressKind::Ipv6 => "IPv6",
            AddressKind::Ipv6LinkLocal => "IPv6 link-local",
        })
    }
}

/// ext's address of `kind` on `side`.
pub fn ext_address(kind: AddressKind, side: Side) -> IpAddr {
    let n = side.number();
    match kind {
        AddressKind::Ipv4 => Ipv4Addr::new(10, 99, 0, n).into(),
        AddressKind::Ipv6 => Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, n.into()).into(),
        AddressKind::Ipv6LinkLocal => link_local(side),
    }
}

/// The second ext's address of `kind` on `side`.
pub fn ext2_address(kind: AddressKind, side: Side) -> IpAddr {
    let n = side.number();
    match kind {
        AddressKind::Ipv4 => Ipv4Addr::new(10, 98, 0, n).into(),
        AddressKind::Ipv6 => Ipv6Addr::new(0xfd00, 0x98, 0, 0, 0, 0, 0, n.into()).into(),
        AddressKind::Ipv6LinkLocal => link_local(side),
    }
}

/// The planned address of `kind` on `side` of the link with `label`; `None` for a link-local
/// one, which is the kernel's (see [`super::Host::link_address`]).
pub fn link_address(label: u8, kind: AddressKind, side: Side) -> Option<IpAddr> {
    let n = side.number();
    match kind {
        AddressKind::Ipv4 => Some(Ipv4Addr::new(10, 1, label, n).into()),
        AddressKind::Ipv6 => {
            Some(Ipv6Addr::new(0xfd00, 1, label.into(), 0, 0, 0, 0, n.into()).into())
        }
        AddressKind::Ipv6LinkLocal => None,
    }
}

/// Every address of the plan for ext on `side`, with its prefix length.
pub fn ext_addresses(side: Side) -> Vec<(IpAddr, u8)> {
    AddressKind::ALL
        .iter()
        .map(|&kind| (ext_address(kind, side), kind.prefix_len()))
        .collect()
}

/// Every address of the plan for the second ext on `side`, with its prefix length.
pub fn ext2_addresses(side: Side) -> Vec<(IpAddr, u8)> {
    AddressKind::ALL
        .iter()
        .map(|&kind| (ext2_address(kind, side), kind.prefix_len()))
        .collect()
}

/// Every address of the plan for the link with `label` on `side`, with its prefix length:
/// IPv4 and IPv6, and no link-local one (the kernel generates that from l3mp's MAC).
pub fn link_addresses(label: u8, side: Side) -> Vec<(IpAddr, u8)> {
    AddressKind::ALL
        .iter()
        .filter_map(|&kind| Some((link_address(label, kind, side)?, kind.prefix_len())))
        .collect()
}

fn link_local(side: Side) -> IpAddr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, side.number().into()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_gives_each_side_its_own_address() {
        let ip = |text: &str| -> IpAddr { text.parse().expect("literal") };
        assert_eq!(ext_address(AddressKind::Ipv4, Side::A), ip("10.99.0.1"));
        assert_eq!(ext_address(AddressKind::Ipv6, Side::B), ip("fd00:99::2"));
        assert_eq!(ext2_address(AddressKind::Ipv4, Side::A), ip("10.98.0.1"));
        assert_eq!(ext2_addresses(Side::B)[1].0, ip("fd00:98::2"));
        assert_eq!(
            link_address(2, AddressKind::Ipv4, Side::B),
            Some(ip("10.1.2.2"))
        );
        assert_eq!(
            link_address(1, AddressKind::Ipv6, Side::A),
            Some(ip("fd00:1:1::1"))
        );
        assert_eq!(link_address(7, AddressKind::Ipv6LinkLocal, Side::B), None);
        assert_eq!(Side::A.other(), Side::B);
        let planned: Vec<IpAddr> = link_addresses(1, Side::A).iter().map(|a| a.0).collect();
        assert_eq!(planned, [ip("10.1.1.1"), ip("fd00:1:1::1")]);
    }
}
