//! What the kernel knows of a packet beyond its bytes, in the `__sk_buff` fields the TC
//! programs read: its protocol, a VLAN tag held outside the data, and `tc_index`.

/// The `__sk_buff` fields of one TC run besides the packet's bounds and length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skb {
    /// `skb->protocol`: an EtherType, as its two bytes on the wire.
    pub protocol: [u8; 2],
    /// The VLAN TCI the kernel holds outside the data (`vlan_present`), if any.
    pub vlan_tci: Option<u16>,
    /// `skb->tc_index`.
    pub tc_index: u32,
    /// `skb->gso_size`: non-zero for a GSO packet.
    pub gso_size: u32,
}

/// EtherTypes of the VLAN tags the kernel takes off on receive (802.1Q, 802.1ad).
const VLAN_TAGS: [[u8; 2]; 2] = [[0x81, 0x00], [0x88, 0xa8]];

impl Skb {
    /// What the kernel sets for `packet`: on an Ethernet device (`framed`) the EtherType, as
    /// `eth_type_trans` does; on a layer-3 tunnel the family of the version nibble, as tun
    /// without packet information and WireGuard do (zero for anything else).
    pub fn of(packet: &[u8], framed: bool) -> Skb {
        let protocol = if framed {
            packet
                .get(12..14)
                .map_or([0, 0], |t| t.try_into().expect("2 bytes"))
        } else {
            match packet.first().map(|b| b >> 4) {
                Some(4) => [0x08, 0x00],
                Some(6) => [0x86, 0xdd],
                _ => [0, 0],
            }
        };
        Skb {
            protocol,
            ..Skb::default()
        }
    }

    /// A frame received on an Ethernet device as TC ingress sees it: the kernel takes the
    /// outer VLAN tag off into `vlan_tci` (`skb_vlan_untag`) and the protocol becomes the
    /// EtherType behind it. Returns the data TC sees and the skb.
    pub fn received(frame: &[u8]) -> (Vec<u8>, Skb) {
        let mut untagged = Vec::new();
        let (data, skb) = Skb::received_in(frame, &mut untagged);
        (data.to_vec(), skb)
    }

    /// Like [`Skb::received`], without a copy of an untagged frame: the data TC sees is
    /// `frame` itself, or, when a tag was taken off, the rest of it written into `untagged`.
    pub fn received_in<'a>(frame: &'a [u8], untagged: &'a mut Vec<u8>) -> (&'a [u8], Skb) {
        match frame.get(12..18) {
            Some([t0, t1, c0, c1, ..]) if VLAN_TAGS.contains(&[*t0, *t1]) => {
                untagged.clear();
                untagged.extend_from_slice(&frame[..12]);
                untagged.extend_from_slice(&frame[16..]);
                let skb = Skb {
                    vlan_tci: Some(u16::from_be_bytes([*c0, *c1])),
                    ..Skb::of(untagged, true)
                };
                (untagged, skb)
            }
            _ => (frame, Skb::of(frame, true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_is_the_ethertype_or_the_version() {
        let mut frame = [0u8; 20];
        frame[12..14].copy_from_slice(&[0x88, 0x47]);
        assert_eq!(Skb::of(&frame, true).protocol, [0x88, 0x47]);
        assert_eq!(Skb::of(&[0x45, 0], false).protocol, [0x08, 0x00]);
        assert_eq!(Skb::of(&[0x60], false).protocol, [0x86, 0xdd]);
        assert_eq!(Skb::of(&[0x50], false).protocol, [0, 0]);
        assert_eq!(Skb::of(&[], false).protocol, [0, 0]);
    }

    #[test]
    fn receiving_takes_the_outer_tag_off() {
        let mut frame = vec![1u8; 12];
        frame.extend([0x81, 0x00, 0x20, 0x64, 0x08, 0x00, 0x45]);
        let (data, skb) = Skb::received(&frame);
        assert_eq!(data, [&[1u8; 12][..], &[0x08, 0x00, 0x45]].concat());
        assert_eq!(skb.vlan_tci, Some(0x2064));
        assert_eq!(skb.protocol, [0x08, 0x00]);
        let untagged = data.clone();
        assert_eq!(Skb::received(&untagged), (untagged, Skb::of(&data, true)));
    }
}
