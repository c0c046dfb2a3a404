//! The wire format, shared by every program: the label is the low N bits of DSCP.
//!
//! IPv4: DSCP is the upper six bits of the TOS byte, so label bits are TOS bits 2..2+N; the two
//! ECN bits are never touched, and the header checksum is updated incrementally (RFC 1624,
//! eqn. 3) on every write. IPv6: the traffic class straddles the first two bytes, DSCP being
//! bits 6..12 of the first big-endian 16-bit word; there is no header checksum.

use l3mp_asm::{alu64, load, mov, store, swap, AluOp, Endian, Program, Reg, Size};

use super::layout::*;

/// The IP version of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Both families, in the order the programs lay them out.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The listing label of the family's block.
    pub fn block(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    /// The EtherType as a native-endian load reads it.
    pub fn ethertype(self) -> i32 {
        match self {
            Family::V4 => ETH_P_IP,
            Family::V6 => ETH_P_IPV6,
        }
    }

    /// The version nibble.
    pub fn version(self) -> i32 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }
}

/// The label bits of the first 16-bit word of an IPv6 header, as a native-endian load of that
/// word holds them (`mask << 6` of the big-endian value).
fn ipv6_word(bits: u16) -> i32 {
    i32::from(u16::from_ne_bytes((bits << 6).to_be_bytes()))
}

/// The bits of the TOS byte a label of `mask` leaves alone (ECN and the rest of DSCP).
fn tos_kept(mask: u16) -> i32 {
    !(i32::from(mask) << 2) & 0xff
}

/// Where the TOS byte lands inside a native-endian load of the IPv4 header's first 16-bit word.
const TOS_SHIFT: i32 = if cfg!(target_endian = "little") { 8 } else { 0 };

/// `dst = label` of the checked header at `ip`.
pub fn read_label(p: &mut Program, family: Family, ip: i16, bits: u8, dst: Reg) {
    let mask = (1i32 << bits) - 1;
    match family {
        Family::V4 => p.extend([
            load(Size::B, dst, DATA, ip + IPV4_TOS),
            alu64(AluOp::Rsh, dst, 2),
            alu64(AluOp::And, dst, mask),
        ]),
        Family::V6 => p.extend([
            load(Size::H, dst, DATA, ip),
            swap(Endian::Be, 16, dst),
            alu64(AluOp::Rsh, dst, 6),
            alu64(AluOp::And, dst, mask),
        ]),
    };
}

/// Sets the label bits of the checked header at `ip` to `label`, whatever they held, keeping
/// ECN and the rest of DSCP, and fixes the IPv4 checksum. Uses r2..r4.
pub fn write_label(p: &mut Program, family: Family, ip: i16, bits: u8, label: u8) {
    let mask = (1u16 << bits) - 1;
    match family {
        Family::V4 => {
            p.extend([
                load(Size::B, Reg::R3, DATA, ip + IPV4_TOS),
                mov(Reg::R4, Reg::R3),
                alu64(AluOp::And, Reg::R4, tos_kept(mask)),
                alu64(AluOp::Or, Reg::R4, i32::from(label) << 2),
                store(Size::B, DATA, ip + IPV4_TOS, Reg::R4),
            ]);
            p.comment("RFC 1624: HC' = ~(~HC + ~m + m'), m = the 16-bit word holding TOS");
            p.extend([
                alu64(AluOp::Lsh, Reg::R3, TOS_SHIFT),
                alu64(AluOp::Xor, Reg::R3, 0xffff),
                alu64(AluOp::Lsh, Reg::R4, TOS_SHIFT),
                load(Size::H, Reg::R2, DATA, ip + IPV4_CSUM),
                alu64(AluOp::Xor, Reg::R2, 0xffff),
                alu64(AluOp::Add, Reg::R2, Reg::R3),
                alu64(AluOp::Add, Reg::R2, Reg::R4),
            ]);
            // Three 16-bit terms: two folds.
            store_checksum(p, ip, 2);
        }
        Family::V6 => {
            p.extend([
                load(Size::H, Reg::R3, DATA, ip),
                alu64(AluOp::And, Reg::R3, !ipv6_word(mask) & 0xffff),
                alu64(AluOp::Or, Reg::R3, ipv6_word(u16::from(label))),
                store(Size::H, DATA, ip, Reg::R3),
            ]);
        }
    }
}

/// Clears the label bits of the checked header at `ip`, which hold the label in `label` (as
/// [`read_label`] left it, not 0), keeping ECN and the rest of DSCP, and fixes the IPv4
/// checksum. Uses r2, r3.
pub fn clear_label(p: &mut Program, family: Family, ip: i16, bits: u8, label: Reg) {
    let mask = (1u16 << bits) - 1;
    match family {
        Family::V4 => {
            p.extend([
                load(Size::B, Reg::R3, DATA, ip + IPV4_TOS),
                alu64(AluOp::And, Reg::R3, tos_kept(mask)),
                store(Size::B, DATA, ip + IPV4_TOS, Reg::R3),
            ]);
            // The word holding TOS loses exactly the label's bits, m' = m - (label << 2), so
            // ~m + m' is ~(label << 2) within 16 bits: two 16-bit terms, whose sum one fold
            // brings back within 16 bits (the same sum, hence the same result, as eqn. 3's).
            p.comment("RFC 1624: HC' = ~(~HC + ~m + m') = ~(~HC + ~(label << 2 in the word))");
            p.extend([
                load(Size::H, Reg::R2, DATA, ip + IPV4_CSUM),
                alu64(AluOp::Xor, Reg::R2, 0xffff),
                mov(Reg::R3, label),
                alu64(AluOp::Lsh, Reg::R3, 2 + TOS_SHIFT),
                alu64(AluOp::Xor, Reg::R3, 0xffff),
                alu64(AluOp::Add, Reg::R2, Reg::R3),
            ]);
            store_checksum(p, ip, 1);
        }
        Family::V6 => {
            p.extend([
                load(Size::H, Reg::R3, DATA, ip),
                alu64(AluOp::And, Reg::R3, !ipv6_word(mask) & 0xffff),
                store(Size::H, DATA, ip, Reg::R3),
            ]);
        }
    }
}

/// Folds the ones'-complement sum in r2 into 16 bits, `folds` times (a sum of n 16-bit terms
/// needs at most n - 1), and stores its complement as the IPv4 header checksum. Uses r3.
fn store_checksum(p: &mut Program, ip: i16, folds: usize) {
    for _ in 0..folds {
        p.extend([
            mov(Reg::R3, Reg::R2),
            alu64(AluOp::Rsh, Reg::R3, 16),
            alu64(AluOp::And, Reg::R2, 0xffff),
            alu64(AluOp::Add, Reg::R2, Reg::R3),
        ]);
    }
    p.extend([
        alu64(AluOp::Xor, Reg::R2, 0xffff),
        store(Size::H, DATA, ip + IPV4_CSUM, Reg::R2),
    ]);
}

/// Writes a 6-byte MAC address at `off` from r7 with two immediate stores.
pub fn store_mac(p: &mut Program, off: i16, mac: [u8; 6]) {
    p.extend([
        store(
            Size::W,
            DATA,
            off,
            i32::from_ne_bytes([mac[0], mac[1], mac[2], mac[3]]),
        ),
        store(
            Size::H,
            DATA,
            off + 4,
            i32::from(u16::from_ne_bytes([mac[4], mac[5]])),
        ),
    ]);
}

/// Writes the MAC `prefix` followed by the label in `label` at `off` from the packet start
/// (r7): the MAC of a link's veth end (see `LinkMacs`).
pub fn store_link_mac(p: &mut Program, off: i16, prefix: [u8; 5], label: Reg) {
    p.extend([
        store(
            Size::W,
            DATA,
            off,
            i32::from_ne_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]),
        ),
        store(Size::B, DATA, off + 4, i32::from(prefix[4])),
        store(Size::B, DATA, off + 5, label),
    ]);
}
