//! The frames the bench's per-program figures run on (and the replay tests capture): UDP over
//! IPv4 or IPv6 in an Ethernet frame of an exact length, as a link's stack hands it to egress.

use etherparse::PacketBuilder;

use crate::programs::Family;

/// The frame lengths measured, Ethernet header included.
pub const SIZES: [usize; 2] = [64, 1400];

/// Source and destination MACs of the frames (egress rewrites both on an Ethernet ext).
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];

/// A UDP frame of `family` and exactly `len` bytes (at least the headers' length).
pub fn udp_frame(family: Family, len: usize) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
    let builder = match family {
        Family::V4 => builder.ipv4([10, 1, 1, 1], [10, 1, 1, 2], 64),
        Family::V6 => {
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src[..4].copy_from_slice(&[0xfd, 0, 0, 1]);
            dst[..4].copy_from_slice(&[0xfd, 0, 0, 1]);
            src[15] = 1;
            dst[15] = 2;
            builder.ipv6(src, dst, 64)
        }
    }
    .udp(4000, 5000);
    let headers = builder.size(0);
    let payload: Vec<u8> = (0..len.saturating_sub(headers)).map(|i| i as u8).collect();
    let mut frame = Vec::with_capacity(len);
    builder
        .write(&mut frame, &payload)
        .expect("writing to a Vec cannot fail");
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_exact_length_and_ethertype() {
        for family in Family::ALL {
            for len in SIZES {
                let frame = udp_frame(family, len);
                assert_eq!(frame.len(), len);
                let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
                let expected = match family {
                    Family::V4 => 0x0800,
                    Family::V6 => 0x86dd,
                };
                assert_eq!(ethertype, expected);
            }
        }
    }
}
