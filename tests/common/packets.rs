//! Test packets, built and checked with etherparse (an independent parser).
//!
//! Nothing here knows how the programs work: a packet is described by its header fields, and an
//! expected packet is the same description with other field values, serialized from scratch
//! (lengths and the IPv4 header checksum included).

use etherparse::checksum::Sum16BitWords;
use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Dscp, Ipv4Ecn, Ipv4Header,
    Ipv4HeaderSlice, Ipv4Options, Ipv6FlowLabel, Ipv6Header, Ipv6HeaderSlice, Ipv6RawExtHeader,
};

/// Length of an Ethernet II header.
pub const ETH_LEN: usize = Ethernet2Header::LEN;
/// EtherTypes.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;

/// Where a link's stack sends its frames (its gateway's MAC, as far as it knows).
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x99, 0, 0, 0, 1];
/// ff02::1 and the multicast MAC it maps to.
pub const ALL_NODES_V6: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const ALL_NODES_V6_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
/// 224.0.0.1 and the multicast MAC it maps to.
pub const ALL_HOSTS_V4: [u8; 4] = [224, 0, 0, 1];
pub const ALL_HOSTS_V4_MAC: [u8; 6] = [0x01, 0, 0x5e, 0, 0, 1];
/// The DSCP of CS6 (network control).
pub const CS6: u8 = 48;

/// DSCP with its low `bits` replaced by `label` (0 clears them).
pub fn dscp_with_label(dscp: u8, bits: u8, label: u8) -> u8 {
    let mask = (1u8 << bits) - 1;
    assert!(
        label <= mask && dscp < 64,
        "label {label} / DSCP {dscp} out of range"
    );
    (dscp & !mask) | label
}

/// An IPv4 packet by its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V4 {
    pub dscp: u8,
    pub ecn: u8,
    pub identification: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    pub fragment_offset: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub source: [u8; 4],
    pub destination: [u8; 4],
    /// Raw options, a multiple of 4 bytes, at most 40 (IHL = 5 + len / 4).
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Default for V4 {
    fn default() -> V4 {
        V4 {
            dscp: 0,
            ecn: 0,
            identification: 0x1c46,
            dont_fragment: true,
            more_fragments: false,
            fragment_offset: 0,
            ttl: 64,
            protocol: 17,
            source: [10, 77, 0, 1],
            destination: [10, 77, 0, 2],
            options: Vec::new(),
            payload: b"\x30\x39\x00\x35\x00\x0c\x00\x00l3mp".to_vec(),
        }
    }
}

impl V4 {
    /// The etherparse header, its checksum computed from scratch.
    pub fn header(&self) -> Ipv4Header {
        let mut h = Ipv4Header {
            dscp: Ipv4Dscp::try_new(self.dscp).expect("DSCP fits 6 bits"),
            ecn: Ipv4Ecn::try_new(self.ecn).expect("ECN fits 2 bits"),
            total_len: (Ipv4Header::MIN_LEN + self.options.len() + self.payload.len()) as u16,
            identification: self.identification,
            dont_fragment: self.dont_fragment,
            more_fragments: self.more_fragments,
            fragment_offset: IpFragOffset::try_new(self.fragment_offset).expect("13 bits"),
            time_to_live: self.ttl,
            protocol: IpNumber(self.protocol),
            header_checksum: 0,
            source: self.source,
            destination: self.destination,
            options: Ipv4Options::try_from(&self.options[..]).expect("options length"),
        };
        h.header_checksum = h.calc_header_checksum();
        h
    }

    /// The packet on the wire.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.header().to_bytes().to_vec();
        out.extend_from_slice(&self.payload);
        out
    }

    /// Length of the header with its options.
    pub fn header_len(&self) -> usize {
        Ipv4Header::MIN_LEN + self.options.len()
    }
}

/// An IPv6 packet by its fields, optionally with a hop-by-hop extension header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V6 {
    pub traffic_class: u8,
    pub flow_label: u32,
    pub hop_limit: u8,
    /// Protocol of the payload.
    pub protocol: u8,
    pub source: [u8; 16],
    pub destination: [u8; 16],
    /// Data of a hop-by-hop options header ((len + 2) % 8 == 0, at least 6 bytes).
    pub hop_by_hop: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl Default for V6 {
    fn default() -> V6 {
        let mut source = [0u8; 16];
        source[..2].copy_from_slice(&[0xfd, 0x6c]);
        source[15] = 1;
        let mut destination = source;
        destination[15] = 2;
        V6 {
            traffic_class: 0,
            flow_label: 0x5_1a2b,
            hop_limit: 64,
            protocol: 17,
            source,
            destination,
            hop_by_hop: None,
            payload: b"\x30\x39\x00\x35\x00\x0c\x00\x00l3mp".to_vec(),
        }
    }
}

/// A hop-by-hop header's data: one PadN option filling it.
pub const HOP_BY_HOP_PADN: [u8; 6] = [1, 4, 0, 0, 0, 0];

impl V6 {
    /// The packet on the wire.
    pub fn bytes(&self) -> Vec<u8> {
        let ext = self.hop_by_hop.as_ref().map(|data| {
            Ipv6RawExtHeader::new_raw(IpNumber(self.protocol), data).expect("valid ext data")
        });
        let ext_bytes = ext.map(|e| e.to_bytes().to_vec()).unwrap_or_default();
        let header = Ipv6Header {
            traffic_class: self.traffic_class,
            flow_label: Ipv6FlowLabel::try_new(self.flow_label).expect("20 bits"),
            payload_length: (ext_bytes.len() + self.payload.len()) as u16,
            next_header: if self.hop_by_hop.is_some() {
                IpNumber::IPV6_HEADER_HOP_BY_HOP
            } else {
                IpNumber(self.protocol)
            },
            hop_limit: self.hop_limit,
            source: self.source,
            destination: self.destination,
        };
        let mut out = header.to_bytes().to_vec();
        out.extend_from_slice(&ext_bytes);
        out.extend_from_slice(&self.payload);
        out
    }

    /// Length of the fixed header and the extension header.
    pub fn header_len(&self) -> usize {
        Ipv6Header::LEN + self.hop_by_hop.as_ref().map_or(0, |d| d.len() + 2)
    }
}

/// An IP packet of either family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ip {
    V4(V4),
    V6(V6),
}

impl Ip {
    pub fn v4() -> Ip {
        Ip::V4(V4::default())
    }

    pub fn v6() -> Ip {
        Ip::V6(V6::default())
    }

    /// Short name for case names.
    pub fn family(&self) -> &'static str {
        match self {
            Ip::V4(_) => "v4",
            Ip::V6(_) => "v6",
        }
    }

    pub fn ethertype(&self) -> u16 {
        match self {
            Ip::V4(_) => ETHERTYPE_IPV4,
            Ip::V6(_) => ETHERTYPE_IPV6,
        }
    }

    pub fn dscp(&self) -> u8 {
        match self {
            Ip::V4(p) => p.dscp,
            Ip::V6(p) => p.traffic_class >> 2,
        }
    }

    pub fn ecn(&self) -> u8 {
        match self {
            Ip::V4(p) => p.ecn,
            Ip::V6(p) => p.traffic_class & 3,
        }
    }

    /// The same packet with another DSCP.
    pub fn with_dscp(&self, dscp: u8) -> Ip {
        assert!(dscp < 64);
        match self.clone() {
            Ip::V4(p) => Ip::V4(V4 { dscp, ..p }),
            Ip::V6(p) => Ip::V6(V6 {
                traffic_class: dscp << 2 | (p.traffic_class & 3),
                ..p
            }),
        }
    }

    /// The same packet with another ECN.
    pub fn with_ecn(&self, ecn: u8) -> Ip {
        assert!(ecn < 4);
        match self.clone() {
            Ip::V4(p) => Ip::V4(V4 { ecn, ..p }),
            Ip::V6(p) => Ip::V6(V6 {
                traffic_class: (p.traffic_class & !3) | ecn,
                ..p
            }),
        }
    }

    /// The same packet with the low `bits` of DSCP replaced by `label`.
    pub fn with_label(&self, bits: u8, label: u8) -> Ip {
        self.with_dscp(dscp_with_label(self.dscp(), bits, label))
    }

    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Ip::V4(p) => p.bytes(),
            Ip::V6(p) => p.bytes(),
        }
    }

    /// Length of the IP headers (options and extension headers included).
    pub fn header_len(&self) -> usize {
        match self {
            Ip::V4(p) => p.header_len(),
            Ip::V6(p) => p.header_len(),
        }
    }
}

/// An Ethernet II frame.
pub fn ether(destination: [u8; 6], source: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Ethernet2Header {
        source,
        destination,
        ether_type: EtherType(ethertype),
    }
    .to_bytes()
    .to_vec();
    out.extend_from_slice(payload);
    out
}

/// An ARP request ("who has 10.77.0.2, tell 10.77.0.1"), without the Ethernet header.
pub fn arp_request(sender_mac: [u8; 6]) -> Vec<u8> {
    let mut out = vec![0, 1, 0x08, 0, 6, 4, 0, 1];
    out.extend_from_slice(&sender_mac);
    out.extend_from_slice(&[10, 77, 0, 1]);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&[10, 77, 0, 2]);
    out
}

/// The IPv4 header at the start of `ip` (with its options), when etherparse accepts one.
pub fn ipv4_header(ip: &[u8]) -> Option<&[u8]> {
    Ipv4HeaderSlice::from_slice(ip).ok().map(|h| h.slice())
}

/// The one's complement sum of the IPv4 header at the start of `ip`, checksum included, as
/// etherparse computes it: 0 when the checksum is valid.
pub fn ipv4_header_sum(ip: &[u8]) -> u16 {
    let header = ipv4_header(ip).expect("an IPv4 header etherparse accepts");
    Sum16BitWords::new().add_slice(header).ones_complement()
}

/// Whether the IPv4 header at the start of `ip` has a valid checksum.
pub fn ipv4_checksum_valid(ip: &[u8]) -> bool {
    ipv4_header_sum(ip) == 0
}

/// `(DSCP, ECN)` of the IP packet at the start of `ip`, read by etherparse.
pub fn dscp_ecn(ip: &[u8]) -> Option<(u8, u8)> {
    match ip.first()? >> 4 {
        4 => Ipv4HeaderSlice::from_slice(ip)
            .ok()
            .map(|h| (h.dcp().value(), h.ecn().value())),
        6 => Ipv6HeaderSlice::from_slice(ip)
            .ok()
            .map(|h| (h.traffic_class() >> 2, h.traffic_class() & 3)),
        _ => None,
    }
}

/// Offsets at which `a` and `b` differ (a length difference counts from the shorter's end).
pub fn differing_bytes(a: &[u8], b: &[u8]) -> Vec<usize> {
    let common = a.len().min(b.len());
    (0..common)
        .filter(|&i| a[i] != b[i])
        .chain(common..a.len().max(b.len()))
        .collect()
}

/// A compact hex rendering for failure messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(2)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}
