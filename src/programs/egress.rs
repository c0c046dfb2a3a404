//! Egress, on the user end of each managed link (TC; a veth, so the program sees an Ethernet
//! frame): write the link's label into DSCP and redirect the packet out of ext.

use l3mp_asm::{call, exit, jump_if, load, mov, store, Cond, Helper, Program, Reg, Size};

use super::classify::{branch_on_family, check_header, family_blocks, Classify};
use super::config::{Config, ExtKind, Link};
use super::counters::count;
use super::dscp::{store_mac, write_label};
use super::hook::Hook;
use super::layout::*;

/// The egress program's name for a label (`l3mp_eg_<label>`, at most 15 bytes).
pub fn name(label: u8) -> String {
    format!("l3mp_eg_{label}")
}

/// Builds the egress program of `link`.
pub fn egress(cfg: &Config, link: &Link) -> Program {
    let hook = Hook::Tc;
    let mut p = Program::new(&name(link.label));

    hook.prologue(&mut p);

    p.comment(&format!(
        "Longer than ext's MTU {} allows and not GSO (cut later into segments that fit): \
         drop, count too big",
        cfg.ext.mtu
    ));
    let longest = cfg
        .ext
        .mtu
        .saturating_add(ETH_HLEN as u32)
        .min(i32::MAX as u32) as i32;
    p.extend([
        jump_if(Cond::Le, LEN, longest, "fits"),
        load(Size::W, Reg::R1, CTX, SKB_GSO_SIZE),
        jump_if(Cond::Ne, Reg::R1, 0, "fits"),
    ]);
    count(&mut p, TOO_BIG);
    p.extend([mov(Reg::R0, hook.drop()), exit()]);
    p.label("fits");

    p.comment("Ethernet frame from the link's stack: IPv4 and IPv6 go on, the rest is dropped");
    let how = Classify::EtherType;
    branch_on_family(&mut p, how, hook, "drop");

    family_blocks(&mut p, "out", |p, family| {
        p.comment(&format!(
            "{family:?}: header whole and well-formed, then label {} into DSCP",
            link.label
        ));
        check_header(p, family, how, "drop");
        write_label(p, family, ETH_HLEN, cfg.label_bits, link.label);
    });

    if let ExtKind::Ethernet { mac, peer_mac } = cfg.ext.kind {
        p.comment(
            "Ethernet ext: from ext's MAC to the remote l3mp host's MAC, whatever the destination",
        );
        store_mac(&mut p, 0, peer_mac);
        store_mac(&mut p, 6, mac);
    }
    p.comment("Count, tell the guard on ext it came from a link, and transmit on ext");
    count(&mut p, EGRESS + u32::from(link.label));
    p.extend([
        mov(Reg::R1, FROM_LINK),
        store(Size::W, CTX, SKB_TC_INDEX, Reg::R1),
    ]);
    p.extend([
        mov(Reg::R1, cfg.ext.ifindex as i32),
        mov(Reg::R2, 0),
        call(Helper::Redirect),
        exit(),
    ]);

    p.label("drop");
    p.comment("Not IP, malformed or truncated: drop and count");
    count(&mut p, EGRESS_DROP);
    p.extend([mov(Reg::R0, hook.drop()), exit()]);
    p
}
