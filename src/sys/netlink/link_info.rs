//! What the product needs to know about a network interface.

use std::fmt;

use netlink_packet_route::link::{
    LinkAttribute, LinkFlag, LinkInfo as InfoAttribute, LinkLayerType, LinkMessage,
};

/// A network interface as seen through rtnetlink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index (`ifindex`) in its network namespace.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// The hardware address, when the link has one of 6 bytes (Ethernet-like).
    pub mac: Option<[u8; 6]>,
    /// MTU in bytes.
    pub mtu: u32,
    /// The rtnetlink kind (`IFLA_INFO_KIND`), e.g. `"veth"`, `"tun"`, `"vxlan"`;
    /// `None` for devices without one, such as `lo` or most physical NICs.
    pub kind: Option<String>,
    /// Whether the link layer is Ethernet (`ARPHRD_ETHER`).
    pub is_ethernet: bool,
    /// The interface alias (`IFLA_IFALIAS`), if set and not empty.
    pub alias: Option<String>,
    /// Whether the interface is administratively up (`IFF_UP`).
    pub up: bool,
    /// Whether it is operationally up (`IFF_RUNNING`): it has carrier (a veth whose peer is
    /// up, a NIC with link) and the kernel has acted on it, so what is sent leaves. (The
    /// carrier flag alone comes up to a second earlier, while sends are still dropped.)
    pub running: bool,
    /// Whether ARP / neighbour discovery is disabled (`IFF_NOARP`).
    pub noarp: bool,
}

impl LinkInfo {
    /// Reads the fields out of an `RTM_NEWLINK` message.
    pub(super) fn from_message(message: &LinkMessage) -> Self {
        let flags = &message.header.flags;
        let mut info = LinkInfo {
            index: message.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            kind: None,
            is_ethernet: message.header.link_layer_type == LinkLayerType::Ether,
            alias: None,
            up: flags.contains(&LinkFlag::Up),
            running: flags.contains(&LinkFlag::Running),
            noarp: flags.contains(&LinkFlag::Noarp),
        };
        for attribute in &message.attributes {
            info.absorb(attribute);
        }
        info
    }

    fn absorb(&mut self, attribute: &LinkAttribute) {
        match attribute {
            LinkAttribute::IfName(name) => self.name = name.clone(),
            LinkAttribute::Address(bytes) => self.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            LinkAttribute::Mtu(mtu) => self.mtu = *mtu,
            LinkAttribute::IfAlias(alias) if !alias.is_empty() => self.alias = Some(alias.clone()),
            LinkAttribute::LinkInfo(infos) => self.kind = kind_of(infos),
            _ => {}
        }
    }
}

fn kind_of(infos: &[InfoAttribute]) -> Option<String> {
    infos.iter().find_map(|info| match info {
        InfoAttribute::Kind(kind) => Some(kind.to_string()),
        _ => None,
    })
}

/// A way to name an interface: by index or by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkRef<'a> {
    /// By interface index.
    Index(u32),
    /// By interface name.
    Name(&'a str),
}

impl From<u32> for LinkRef<'_> {
    fn from(index: u32) -> Self {
        LinkRef::Index(index)
    }
}

impl<'a> From<&'a str> for LinkRef<'a> {
    fn from(name: &'a str) -> Self {
        LinkRef::Name(name)
    }
}

impl fmt::Display for LinkRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkRef::Index(index) => write!(f, "link {index}"),
            LinkRef::Name(name) => write!(f, "link {name:?}"),
        }
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::InfoKind;

    use super::*;

    #[test]
    fn link_message_fields_are_read() {
        let mut message = LinkMessage::default();
        message.header.index = 7;
        message.header.link_layer_type = LinkLayerType::Ether;
        message.header.flags = vec![LinkFlag::Up, LinkFlag::Noarp, LinkFlag::Running];
        message.attributes = vec![
            LinkAttribute::IfName("v0".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9]),
            LinkAttribute::Mtu(1400),
            LinkAttribute::IfAlias("uplink".into()),
            LinkAttribute::LinkInfo(vec![InfoAttribute::Kind(InfoKind::Veth)]),
        ];
        let info = LinkInfo::from_message(&message);
        assert_eq!(info.index, 7);
        assert_eq!(info.name, "v0");
        assert_eq!(info.mac, Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(info.mtu, 1400);
        assert_eq!(info.kind.as_deref(), Some("veth"));
        assert_eq!(info.alias.as_deref(), Some("uplink"));
        assert!(info.is_ethernet && info.up && info.noarp && info.running);
    }

    #[test]
    fn l3_link_has_no_mac_kind_or_alias() {
        let mut message = LinkMessage::default();
        message.header.link_layer_type = LinkLayerType::None;
        message.attributes = vec![
            LinkAttribute::Address(vec![]),
            LinkAttribute::IfAlias(String::new()),
        ];
        let info = LinkInfo::from_message(&message);
        assert_eq!((info.mac, info.kind, info.alias), (None, None, None));
        assert!(!info.is_ethernet && !info.up && !info.noarp && !info.running);
    }

    #[test]
    fn link_refs_and_macs_display_readably() {
        assert_eq!(LinkRef::from(3).to_string(), "link 3");
        assert_eq!(LinkRef::from("eth0").to_string(), "link \"eth0\"");
        assert_eq!(
            format_mac(&[0xde, 0xad, 0, 1, 0x0a, 0xff]),
            "de:ad:00:01:0a:ff"
        );
    }
}
