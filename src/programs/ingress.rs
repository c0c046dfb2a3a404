//! Ingress demux on ext, in a TC and an XDP flavour generated from this one source: a packet
//! with a configured label has the label cleared, gets the managed link's Ethernet header and is
//! redirected into the hidden end of that link's veth pair, so that it is received on the link.
//! Everything else passes untouched (or, for unknown labels by configuration, is dropped).

use l3mp_asm::{
    alu64, exit, jump, jump_if, load, load_imm64, mov, store, AluOp, Cond, Program, Reg, Size,
};

use super::config::{Config, ExtKind, Link, Unknown};
use super::counters::count;
use super::dscp::{branch_on_family, check_header, read_label, store_mac, write_label, Family};
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
    let ethernet = matches!(cfg.ext.kind, ExtKind::Ethernet { .. });
    // Offset of the IP header from the start of the packet.
    let ip = if ethernet { ETH_HLEN } else { 0 };

    hook.prologue(&mut p);

    branch_on_family(&mut p, ethernet, "pass");

    let known: u64 = cfg.links.iter().map(|l| 1u64 << l.label).sum();
    for family in Family::ALL {
        p.label(family.block());
        p.comment(&format!(
            "{family:?}: header whole and well-formed, r5 = label"
        ));
        check_header(&mut p, family, ip, ethernet, "pass");
        read_label(&mut p, family, ip, cfg.label_bits, Reg::R5);
        p.comment("Label 0 is not multiplexed; a label no link uses is unknown");
        p.extend([
            jump_if(Cond::Eq, Reg::R5, 0, "pass"),
            known_mask(Reg::R4, known),
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
        write_label(&mut p, family, ip, cfg.label_bits, 0);
        if family != Family::V6 {
            p.push(jump("deliver"));
        }
    }

    p.label("deliver");
    p.comment("Count on the link's ingress slot");
    p.extend([
        load(Size::W, Reg::R5, Reg::R10, STACK_LABEL),
        alu64(AluOp::Add, Reg::R5, INGRESS as i32),
    ]);
    count(&mut p, Reg::R5, "counted");
    if !ethernet {
        p.comment("L3 ext: make room for an Ethernet header and write its EtherType");
        hook.push_ethernet(&mut p);
        p.push(jump_if(Cond::Ne, Reg::R0, 0, "drop"));
        hook.load_bounds(&mut p);
        p.extend([
            mov(Reg::R2, Reg::R7),
            alu64(AluOp::Add, Reg::R2, i32::from(ETH_HLEN)),
            jump_if(Cond::Gt, Reg::R2, Reg::R8, "drop"),
            load(Size::H, Reg::R2, Reg::R10, STACK_ETHERTYPE),
            store(Size::H, Reg::R7, ETH_PROTO, Reg::R2),
        ]);
    }
    p.comment("Find the link by label (a binary search over the baked-in labels)");
    p.push(load(Size::W, Reg::R3, Reg::R10, STACK_LABEL));
    let mut links: Vec<&Link> = cfg.links.iter().collect();
    links.sort_by_key(|l| l.label);
    dispatch(&mut p, hook, &links, true);

    p.label("redirect");
    p.comment("Hand the frame to the hidden end: it is received on the link");
    hook.redirect(&mut p);

    p.label("unknown");
    p.comment("A label no link uses");
    count(&mut p, UNKNOWN as i32, "unknown_counted");
    let verdict = match cfg.unknown {
        Unknown::Pass => hook.pass(),
        Unknown::Drop => hook.drop(),
    };
    p.extend([mov(Reg::R0, verdict), exit()]);

    p.label("pass");
    p.comment("Not ours: untouched, to ext's own stack");
    count(&mut p, PASS as i32, "pass_counted");
    p.extend([mov(Reg::R0, hook.pass()), exit()]);

    if !ethernet {
        p.label("drop");
        p.comment("No room for the Ethernet header");
        p.extend([mov(Reg::R0, hook.drop()), exit()]);
    }
    p
}

/// `dst = mask`: a one-slot move while the mask fits a positive 32-bit immediate.
fn known_mask(dst: Reg, mask: u64) -> l3mp_asm::Insn {
    match i32::try_from(mask) {
        Ok(small) => mov(dst, small),
        Err(_) => load_imm64(dst, mask as i64),
    }
}

/// Descends on the label in r3 to the link's leaf. Every label reaching here is configured.
/// The `last` leaf falls through to the redirect that follows the tree.
fn dispatch(p: &mut Program, hook: Hook, links: &[&Link], last: bool) {
    if let [link] = links {
        p.comment(&format!(
            "label {} -> {}: to the link's MAC from its hidden peer",
            link.label, link.name
        ));
        store_mac(p, 0, link.mac);
        store_mac(p, 6, link.peer_mac);
        match hook {
            Hook::Tc => p.push(mov(Reg::R1, link.peer_ifindex as i32)),
            Hook::Xdp => p.push(mov(Reg::R2, i32::from(link.label))),
        };
        if !last {
            p.push(jump("redirect"));
        }
        return;
    }
    let (low, high) = links.split_at(links.len() / 2);
    let upper = format!("label_ge_{}", high[0].label);
    p.push(jump_if(
        Cond::Ge,
        Reg::R3,
        i32::from(high[0].label),
        upper.as_str(),
    ));
    dispatch(p, hook, low, false);
    p.label(&upper);
    dispatch(p, hook, high, last);
}
