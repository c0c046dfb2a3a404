//! The wire format as plain Rust, written independently of the programs: what a well-formed
//! packet is, where its label lives, and what marking and clearing do to its bytes. The VM's
//! results are checked against this.

use crate::programs::Family;

/// The family of a well-formed IP packet (`ip` starts at the IP header): IPv4 with version 4,
/// IHL at least 5 and all of its header present; IPv6 with version 6 and 40 bytes of header.
pub fn family(ip: &[u8]) -> Option<Family> {
    let first = *ip.first()?;
    match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f);
            (ihl >= 5 && ip.len() >= 4 * ihl).then_some(Family::V4)
        }
        6 => (ip.len() >= 40).then_some(Family::V6),
        _ => None,
    }
}

/// The family an EtherType names.
pub fn ethertype_family(frame: &[u8]) -> Option<Family> {
    match frame.get(12..14)? {
        [0x08, 0x00] => Some(Family::V4),
        [0x86, 0xdd] => Some(Family::V6),
        _ => None,
    }
}

/// The traffic class (DSCP << 2 | ECN) of a well-formed packet.
pub fn traffic_class(family: Family, ip: &[u8]) -> u8 {
    match family {
        Family::V4 => ip[1],
        Family::V6 => (ip[0] << 4) | (ip[1] >> 4),
    }
}

/// The label: the low `bits` of DSCP.
pub fn label(family: Family, ip: &[u8], bits: u8) -> u8 {
    (traffic_class(family, ip) >> 2) & ((1 << bits) - 1)
}

/// A copy of `ip` with the label bits set to `label`; the IPv4 checksum recomputed from scratch
/// when it was valid, and otherwise off by exactly what it was off before.
pub fn with_label(family: Family, ip: &[u8], bits: u8, label: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(ip.len());
    with_label_into(family, ip, bits, label, &mut out);
    out
}

/// Like [`with_label`], appending the copy to `out`.
pub fn with_label_into(family: Family, ip: &[u8], bits: u8, label: u8, out: &mut Vec<u8>) {
    label_head_into(family, ip, bits, label, out);
    out.extend_from_slice(&ip[label_span(family)..]);
}

/// How many bytes at the start of a well-formed packet setting its label may change: up to
/// the IPv4 header checksum, or the IPv6 traffic class.
pub fn label_span(family: Family) -> usize {
    match family {
        Family::V4 => 12,
        Family::V6 => 2,
    }
}

/// The first [`label_span`] bytes of [`with_label`]'s copy, appended to `out`: the rest of the
/// copy is `ip`'s own.
pub fn label_head_into(family: Family, ip: &[u8], bits: u8, label: u8, out: &mut Vec<u8>) {
    let mask = ((1u8 << bits) - 1) << 2;
    let tc = (traffic_class(family, ip) & !mask) | (label << 2);
    match family {
        Family::V4 => {
            let error = ipv4_checksum_error(ip);
            let mut header = [0u8; 60];
            let header = &mut header[..ipv4_header_len(ip)];
            header.copy_from_slice(&ip[..header.len()]);
            header[1] = tc;
            header[10..12].fill(0);
            let sum = ones_complement_sum(header);
            // A header that was off by `error` stays off by it (incremental updates keep it).
            let fixed = !ones_complement_add(sum, error);
            header[10..12].copy_from_slice(&fixed.to_be_bytes());
            out.extend_from_slice(&header[..label_span(family)]);
        }
        Family::V6 => {
            out.extend_from_slice(&[(ip[0] & 0xf0) | (tc >> 4), (ip[1] & 0x0f) | (tc << 4)])
        }
    }
}

/// The word of a far end's probe, if the well-formed packet `ip` is one: IPv6 whose payload
/// length is 24 and whose next header is UDP, to port 19507, with 16 bytes of payload (there
/// in the packet) starting `l3mprobe`; the word is the 8 payload bytes after that.
pub fn probe(family: Family, ip: &[u8]) -> Option<[u8; 8]> {
    const UDP: usize = 40;
    let payload = ip.get(UDP + 8..UDP + 8 + 16)?;
    let is_probe = family == Family::V6
        && ip[4..6] == 24u16.to_be_bytes()
        && ip[6] == 17
        && ip[UDP + 2..UDP + 4] == 19507u16.to_be_bytes()
        && payload[..8] == *b"l3mprobe";
    is_probe.then(|| payload[8..].try_into().expect("8 bytes"))
}

/// IPv4 header length from IHL.
pub fn ipv4_header_len(ip: &[u8]) -> usize {
    4 * usize::from(ip[0] & 0x0f)
}

/// Whether the IPv4 header checksum is valid.
pub fn ipv4_checksum_ok(ip: &[u8]) -> bool {
    ipv4_checksum_error(ip) == 0
}

/// How far the header's ones'-complement sum is from 0xffff (0 when the checksum is valid;
/// 0xffff and 0 are the same number in ones' complement).
fn ipv4_checksum_error(ip: &[u8]) -> u16 {
    let sum = ones_complement_sum(&ip[..ipv4_header_len(ip)]);
    if sum == 0xffff {
        0
    } else {
        !sum
    }
}

fn ones_complement_add(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

fn ones_complement_sum(bytes: &[u8]) -> u16 {
    bytes
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))
        .fold(0, ones_complement_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header with a valid checksum, built by etherparse (an independent implementation).
    fn ipv4(tos: u8) -> Vec<u8> {
        let mut h = etherparse::Ipv4Header::new(
            8,
            64,
            etherparse::IpNumber::UDP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
        )
        .expect("valid header");
        h.dscp = etherparse::Ipv4Dscp::try_new(tos >> 2).expect("6 bits");
        h.ecn = etherparse::Ipv4Ecn::try_new(tos & 3).expect("2 bits");
        h.header_checksum = h.calc_header_checksum();
        h.to_bytes().to_vec()
    }

    #[test]
    fn checksum_agrees_with_etherparse() {
        for tos in [0u8, 0x03, 0xc0, 0xff, 0x5d] {
            let ip = ipv4(tos);
            assert!(ipv4_checksum_ok(&ip));
            for label in 0..16 {
                let marked = with_label(Family::V4, &ip, 4, label);
                let (h, _) = etherparse::Ipv4Header::from_slice(&marked).expect("parses");
                assert_eq!(
                    h.header_checksum,
                    h.calc_header_checksum(),
                    "tos {tos:#x} label {label}"
                );
                assert_eq!(label_of(&marked), label);
                assert_eq!(marked[1] & 3, tos & 3, "ECN kept");
            }
        }
    }

    fn label_of(ip: &[u8]) -> u8 {
        label(Family::V4, ip, 4)
    }

    #[test]
    fn an_invalid_checksum_stays_equally_invalid() {
        let mut ip = ipv4(0);
        ip[10] ^= 0x10;
        let marked = with_label(Family::V4, &ip, 4, 5);
        assert!(!ipv4_checksum_ok(&marked));
        let back = with_label(Family::V4, &marked, 4, 0);
        assert_eq!(back, ip);
    }

    #[test]
    fn ipv6_label_sits_in_the_traffic_class() {
        let mut ip = vec![0u8; 40];
        ip[0] = 0x6f; // version 6, TC high nibble f
        ip[1] = 0xa5; // TC low nibble a, flow label bits 5
        assert_eq!(traffic_class(Family::V6, &ip), 0xfa);
        let marked = with_label(Family::V6, &ip, 4, 3);
        assert_eq!(
            traffic_class(Family::V6, &marked),
            (0xfa & !0x3c) | (3 << 2)
        );
        assert_eq!(marked[1] & 0x0f, 0x05, "flow label kept");
        assert_eq!(marked[0] >> 4, 6);
    }

    #[test]
    fn family_needs_a_whole_header() {
        assert_eq!(family(&ipv4(0)), Some(Family::V4));
        assert_eq!(family(&ipv4(0)[..19]), None);
        let mut opts = ipv4(0);
        opts[0] = 0x46;
        assert_eq!(family(&opts), None, "IHL 6 needs 24 bytes");
        opts.extend([1, 1, 1, 0]);
        assert_eq!(family(&opts), Some(Family::V4));
        assert_eq!(family(&[0x44; 40]), None, "IHL 4");
        assert_eq!(family(&[0x60; 40]), Some(Family::V6));
        assert_eq!(family(&[0x60; 39]), None);
        assert_eq!(family(&[0x50; 40]), None);
        assert_eq!(family(&[]), None);
    }
}
