//! Ingress demux on ext, in a TC and an XDP flavour generated from this one source: a packet
//! with a configured label has the label cleared, gets the managed link's Ethernet header and is
//! redirected into the hidden end of that link's veth pair, so that it is received on the link.
//! Everything else passes untouched (or, for unknown labels by configuration, is dropped).
//! The far end's probe on a configured label is recorded and dropped, never delivered.
//!
//! What it delivers, it does not count: the link's own counters do (the hidden end's transmit
//! counters, which `l3mp status` reads), so the hot path updates no counter.

use l3mp_asm::{
    alu64, call, exit, jump_if, load, load_imm64, load_map, mov, store, AluOp, Cond, Helper,
    Program, Reg, Size,
};

use super::classify::{branch_on_family, check_from_peer, check_header, family_blocks, Classify};
use super::config::{Config, ExtKind, Framing, Unknown};
use super::counters::count;
use super::dscp::{clear_label, read_label, store_link_mac, Family};
use super::hook::Hook;
use super::layout::*;

/// The ingress program's name for a hook.
pub fn name(hook: Hook) -> &'static str {
    match hook {
        Hook::Tc => "l3mp_in_tc",
        Hook::Xdp => "l3mp_in_xdp",
    }
}

/// Builds the ingress demux for `hook`.
pub fn ingress(cfg: &Config, hook: Hook) -> Program {
    let mut p = Program::new(name(hook));
    let framing = cfg.ext.kind.framing();
    let ethernet = framing == Framing::Ethernet;
    let how = Classify::at(hook, framing);
    let ip = how.ip_offset();

    hook.prologue(&mut p);

    branch_on_family(&mut p, how, hook, "pass");

    let known: u64 = cfg.links.iter().map(|l| 1u64 << l.label).sum();
    family_blocks(&mut p, "deliver", |p, family| {
        p.comment(&format!(
            "{family:?}: header whole and well-formed, r5 = label"
        ));
        check_header(p, family, how, "pass");
        read_label(p, family, ip, cfg.label_bits, Reg::R5);
        p.comment("Label 0 is not multiplexed");
        p.push(jump_if(Cond::Eq, Reg::R5, 0, "pass"));
        if let ExtKind::Ethernet { mac, peer_mac } = cfg.ext.kind {
            p.comment("Labelled, but only the peer's frames to ext's MAC are the far l3mp's");
            check_from_peer(p, mac, peer_mac, "foreign");
        }
        p.comment("A label not in the mask of links' labels is unknown");
        p.extend([
            load_imm64(Reg::R4, known as i64),
            alu64(AluOp::Rsh, Reg::R4, Reg::R5),
            alu64(AluOp::And, Reg::R4, 1),
            jump_if(Cond::Eq, Reg::R4, 0, "unknown"),
            store(Size::W, Reg::R10, STACK_LABEL, Reg::R5),
        ]);
        if !ethernet {
            p.push(store(
                Size::H,
                Reg::R10,
                STACK_ETHERTYPE,
                family.ethertype(),
            ));
        }
        p.comment("Ours: clear the label bits");
        clear_label(p, family, ip, cfg.label_bits, Reg::R5);
        if family == Family::V6 {
            is_probe(p, ip);
        }
    });

    if !ethernet {
        p.comment("L3 ext: make room for an Ethernet header and write its EtherType");
        hook.push_ethernet(&mut p);
        p.push(jump_if(Cond::Ne, Reg::R0, 0, "drop"));
        hook.load_bounds(&mut p);
        p.extend([
            mov(Reg::R2, DATA),
            alu64(AluOp::Add, Reg::R2, i32::from(ETH_HLEN)),
            jump_if(Cond::Gt, Reg::R2, DATA_END, "drop"),
            load(Size::H, Reg::R2, Reg::R10, STACK_ETHERTYPE),
            store(Size::H, DATA, ETH_PROTO, Reg::R2),
        ]);
    }
    p.comment("The link's MACs, from the label: to its user end, from its hidden end");
    p.push(load(Size::W, Reg::R3, Reg::R10, STACK_LABEL));
    store_link_mac(&mut p, 0, cfg.macs.user, Reg::R3);
    store_link_mac(&mut p, 6, cfg.macs.hidden, Reg::R3);

    p.comment("Hand the frame to the hidden end: it is received on the link");
    hook.redirect_to_hidden_end(&mut p);

    p.label("unknown");
    p.comment("A label no link uses");
    count(&mut p, UNKNOWN);
    let verdict = match cfg.unknown {
        Unknown::Pass => hook.pass(),
        Unknown::Drop => hook.drop(),
    };
    p.extend([mov(Reg::R0, verdict), exit()]);

    if ethernet {
        p.label("foreign");
        p.comment("Labelled by a host that is not the peer: untouched, to ext's own stack");
        count(&mut p, FOREIGN);
        p.extend([mov(Reg::R0, hook.pass()), exit()]);
    }

    p.label("pass");
    p.comment("Not ours: untouched, to ext's own stack");
    count(&mut p, PASS);
    p.extend([mov(Reg::R0, hook.pass()), exit()]);

    if !ethernet {
        p.label("drop");
        p.comment("No room for the Ethernet header (the kernel is out of memory): dropped");
        p.extend([mov(Reg::R0, hook.drop()), exit()]);
    }

    p.label("probe");
    record_probe(&mut p, ip);
    p.comment("Never delivered");
    p.extend([mov(Reg::R0, hook.drop()), exit()]);
    p
}

/// The end of the IPv6 block: a datagram to the probe port with the probe's magic goes to
/// `probe`; anything else goes on to `deliver`, after two instructions unless its payload is
/// exactly a probe's length.
fn is_probe(p: &mut Program, ip: i16) {
    let udp = ip + IPV6_HLEN;
    p.comment("Not a probe's length: delivered (the hot path's only cost of the probe)");
    p.extend([
        load(Size::H, Reg::R2, DATA, ip + IPV6_PAYLOAD_LEN),
        jump_if(Cond::Ne, Reg::R2, PROBE_IPV6_PAYLOAD_LEN_NE, "deliver"),
    ]);
    p.comment("UDP to the probe port with the probe's magic: the far end's probe");
    p.extend([
        load(Size::B, Reg::R2, DATA, ip + IPV6_NEXT_HEADER),
        jump_if(Cond::Ne, Reg::R2, IPPROTO_UDP, "deliver"),
        mov(Reg::R2, DATA),
        alu64(
            AluOp::Add,
            Reg::R2,
            i32::from(udp + UDP_HLEN + PROBE_PAYLOAD),
        ),
        jump_if(Cond::Gt, Reg::R2, DATA_END, "deliver"),
        load(Size::H, Reg::R2, DATA, udp + UDP_DEST),
        jump_if(Cond::Ne, Reg::R2, PROBE_PORT_NE, "deliver"),
        load(Size::DW, Reg::R2, DATA, udp + UDP_HLEN),
        load_imm64(Reg::R3, i64::from_ne_bytes(PROBE_MAGIC)),
        jump_if(Cond::Eq, Reg::R2, Reg::R3, "probe"),
    ]);
}

/// Writes the probe's word (after its magic) and the time it arrived into the `probes` entry
/// of the label in `STACK_LABEL`, for `l3mp run` and `l3mp status` to compare with this end.
fn record_probe(p: &mut Program, ip: i16) {
    let word = ip + IPV6_HLEN + UDP_HLEN + 8;
    let recorded = p.local("probe_recorded");
    p.comment("Its word and when it arrived, in the label's entry of the probes map");
    p.extend([
        call(Helper::KtimeGetNs),
        store(Size::DW, Reg::R10, STACK_PROBE_AT, Reg::R0),
        mov(Reg::R2, Reg::R10),
        alu64(AluOp::Add, Reg::R2, i32::from(STACK_LABEL)),
        load_map(Reg::R1, PROBES_MAP),
        call(Helper::MapLookupElem),
        jump_if(Cond::Eq, Reg::R0, 0, &recorded),
        load(Size::DW, Reg::R1, DATA, word),
        store(Size::DW, Reg::R0, 0, Reg::R1),
        load(Size::DW, Reg::R1, Reg::R10, STACK_PROBE_AT),
        store(Size::DW, Reg::R0, 8, Reg::R1),
    ]);
    p.label(&recorded);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demux assembled for `labels` (label width 6, so up to 63 links).
    fn demux(framing: Framing, hook: Hook, labels: &[u8]) -> l3mp_asm::Assembled {
        let links: Vec<(String, u8)> = labels.iter().map(|&l| (format!("l{l}"), l)).collect();
        let cfg = Config::offline(6, framing, &links, Unknown::Pass);
        ingress(&cfg, hook).assemble().expect("assembles")
    }

    /// Nothing in the demux depends on the number of links but the immediate of the mask of
    /// their labels: the same instructions run for one link as for 63.
    #[test]
    fn the_demux_is_the_same_program_for_one_link_and_for_63() {
        let all: Vec<u8> = (1..=63).collect();
        for framing in [Framing::Ip, Framing::Ethernet] {
            for hook in [Hook::Tc, Hook::Xdp] {
                let one = demux(framing, hook, &[1]);
                let many = demux(framing, hook, &all);
                assert_eq!(one.slots.len(), many.slots.len(), "{hook:?}");
                let differing: Vec<usize> = (0..one.slots.len())
                    .filter(|&i| one.slots[i] != many.slots[i])
                    .collect();
                // The mask is an `ld_imm64 r4`: its low half in the first slot's imm, its high
                // half in the second's.
                assert!(!differing.is_empty(), "the masks differ");
                for i in differing {
                    let mask_at = if one.slots[i].code == 0x18 { i } else { i - 1 };
                    let first = one.slots[mask_at];
                    assert_eq!((first.code, first.dst), (0x18, 4), "{hook:?} slot {i}");
                    let mask = |p: &l3mp_asm::Assembled| {
                        let half = |at: usize| u64::from(p.slots[at].imm as u32);
                        half(mask_at) | half(mask_at + 1) << 32
                    };
                    assert_eq!((mask(&one), mask(&many)), (0b10, !1), "{hook:?} slot {i}");
                }
            }
        }
    }
}
