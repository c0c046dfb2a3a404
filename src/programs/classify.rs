//! How a program tells what a packet is before it touches it: IPv4, IPv6 or neither, and on an
//! Ethernet ext whether the frame is the peer's. Where the kernel already knows better than the
//! bytes (the protocol a tunnel driver gave the packet, a VLAN tag it took off), the programs
//! ask the kernel.

use l3mp_asm::{
    alu64, jump, jump32_if, jump_if, load, load_imm64, mov, AluOp, Cond, Program, Reg, Size,
};

use super::config::Framing;
use super::dscp::Family;
use super::hook::Hook;
use super::layout::*;

/// Where a program learns a packet's family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classify {
    /// An Ethernet frame: its EtherType. At TC the kernel may hold a VLAN tag outside the frame
    /// (`vlan_present`): such a frame is never IP to l3mp.
    EtherType,
    /// TC on a layer-3 ext: `skb->protocol`, as the tunnel driver set it. The first byte alone
    /// would take MPLS (or anything else a tunnel carries) for IP when it happens to start
    /// with 4 or 6.
    SkbProtocol,
    /// XDP on a layer-3 ext, where the context has no protocol: the version nibble. l3mp never
    /// attaches this one (layer-3 devices have no native XDP).
    Version,
}

impl Classify {
    /// How a program at `hook` on a device whose packets have `framing` learns the family.
    pub fn at(hook: Hook, framing: Framing) -> Classify {
        match (framing, hook) {
            (Framing::Ethernet, _) => Classify::EtherType,
            (Framing::Ip, Hook::Tc) => Classify::SkbProtocol,
            (Framing::Ip, Hook::Xdp) => Classify::Version,
        }
    }

    /// Offset of the IP header from the start of the packet.
    pub fn ip_offset(self) -> i16 {
        match self {
            Classify::EtherType => ETH_HLEN,
            Classify::SkbProtocol | Classify::Version => 0,
        }
    }
}

/// Jumps to the family's block (`ipv4`, `ipv6`), or to `other` for anything else: another
/// EtherType or protocol, a VLAN-tagged frame, a packet too short to tell. Uses r2.
pub fn branch_on_family(p: &mut Program, how: Classify, hook: Hook, other: &str) {
    match how {
        Classify::EtherType => {
            if hook == Hook::Tc {
                p.comment("A VLAN tag the kernel took off (or will insert): not ours");
                p.extend([
                    load(Size::W, Reg::R2, CTX, SKB_VLAN_PRESENT),
                    jump_if(Cond::Ne, Reg::R2, 0, other),
                ]);
            }
            p.comment("The EtherType chooses the family (a tag still in the frame is neither)");
            p.extend([
                mov(Reg::R2, DATA),
                alu64(AluOp::Add, Reg::R2, i32::from(ETH_HLEN)),
                jump_if(Cond::Gt, Reg::R2, DATA_END, other),
                load(Size::H, Reg::R2, DATA, ETH_PROTO),
            ]);
            to_family_blocks(p, Family::ethertype);
        }
        Classify::SkbProtocol => {
            p.comment("The protocol the tunnel driver gave the packet chooses the family");
            p.push(load(Size::W, Reg::R2, CTX, SKB_PROTOCOL));
            to_family_blocks(p, Family::ethertype);
        }
        Classify::Version => {
            p.comment("No protocol in the XDP context: the version nibble chooses the family");
            p.extend([
                mov(Reg::R2, DATA),
                alu64(AluOp::Add, Reg::R2, 1),
                jump_if(Cond::Gt, Reg::R2, DATA_END, other),
                load(Size::B, Reg::R2, DATA, 0),
                alu64(AluOp::Rsh, Reg::R2, 4),
            ]);
            to_family_blocks(p, Family::version);
        }
    }
    p.push(jump(other));
}

/// Lays out one block per family, labelled for [`branch_on_family`] and written by `block`,
/// then places `join`: every block but the last jumps there, the last falls through. Which
/// family comes last is the layout's business, not the caller's.
pub fn family_blocks(p: &mut Program, join: &str, mut block: impl FnMut(&mut Program, Family)) {
    let mut families = Family::ALL.into_iter().peekable();
    while let Some(family) = families.next() {
        p.label(family.block());
        block(p, family);
        if families.peek().is_some() {
            p.push(jump(join));
        }
    }
    p.label(join);
}

/// Jumps to the block of the family whose `value` (EtherType or version) r2 holds.
fn to_family_blocks(p: &mut Program, value: fn(Family) -> i32) {
    for family in Family::ALL {
        p.push(jump_if(Cond::Eq, Reg::R2, value(family), family.block()));
    }
}

/// Checks the `family` header at `how.ip_offset()` from r7 is whole and well-formed, its version
/// included where something other than the version chose the family; otherwise jumps to `fail`.
/// Uses r2..r4.
pub fn check_header(p: &mut Program, family: Family, how: Classify, fail: &str) {
    let ip = how.ip_offset();
    let hlen = match family {
        Family::V4 => IPV4_HLEN,
        Family::V6 => IPV6_HLEN,
    };
    p.extend([
        mov(Reg::R2, DATA),
        alu64(AluOp::Add, Reg::R2, i32::from(ip + hlen)),
        jump_if(Cond::Gt, Reg::R2, DATA_END, fail),
        load(Size::B, Reg::R3, DATA, ip),
    ]);
    if how != Classify::Version {
        p.extend([
            mov(Reg::R4, Reg::R3),
            alu64(AluOp::Rsh, Reg::R4, 4),
            jump_if(Cond::Ne, Reg::R4, family.version(), fail),
        ]);
    }
    if family == Family::V4 {
        // IHL counts 32-bit words: at least 5, and the options must be in the packet.
        p.extend([
            alu64(AluOp::And, Reg::R3, 15),
            jump_if(Cond::Lt, Reg::R3, 5, fail),
            alu64(AluOp::Lsh, Reg::R3, 2),
            mov(Reg::R2, DATA),
            alu64(AluOp::Add, Reg::R2, Reg::R3),
        ]);
        if ip != 0 {
            p.push(alu64(AluOp::Add, Reg::R2, i32::from(ip)));
        }
        p.push(jump_if(Cond::Gt, Reg::R2, DATA_END, fail));
    }
}

/// Jumps to `fail` unless the Ethernet frame at r7 (whose header is known to be whole) is from
/// `peer_mac` to `mac`: the only frames the far l3mp sends. The twelve bytes in two loads: the
/// destination and the source's first two bytes, then the source's last four. Uses r2, r3.
pub fn check_from_peer(p: &mut Program, mac: [u8; 6], peer_mac: [u8; 6], fail: &str) {
    let [d0, d1, d2, d3, d4, d5] = mac;
    let [s0, s1, s2, s3, s4, s5] = peer_mac;
    p.extend([
        load(Size::DW, Reg::R2, DATA, 0),
        load_imm64(
            Reg::R3,
            i64::from_ne_bytes([d0, d1, d2, d3, d4, d5, s0, s1]),
        ),
        jump_if(Cond::Ne, Reg::R2, Reg::R3, fail),
        load(Size::W, Reg::R2, DATA, 8),
        jump32_if(
            Cond::Ne,
            Reg::R2,
            i32::from_ne_bytes([s2, s3, s4, s5]),
            fail,
        ),
    ]);
}
