//! The guard, on ext's TC egress: a packet leaving ext that did not come from a managed link
//! (ext's own traffic, or traffic routed out of it) has its label bits cleared, so that the far
//! end can never deliver it into a managed link. Packets egress redirected keep their label.

use l3mp_asm::{exit, jump_if, load, mov, store, Cond, Program, Reg, Size};

use super::classify::{branch_on_family, check_header, Classify};
use super::config::{Config, ExtKind};
use super::counters::count;
use super::dscp::{read_label, write_label, Family};
use super::hook::Hook;
use super::layout::*;

/// The guard's name.
pub const NAME: &str = "l3mp_guard";

/// Builds the guard.
pub fn guard(cfg: &Config) -> Program {
    let hook = Hook::Tc;
    let mut p = Program::new(NAME);
    let how = Classify::at(hook, matches!(cfg.ext.kind, ExtKind::Ethernet { .. }));
    let ip = how.ip_offset();

    hook.prologue(&mut p);

    p.comment("From a managed link: keeps its label; the marker is spent");
    p.extend([
        load(Size::W, Reg::R2, CTX, SKB_TC_INDEX),
        jump_if(Cond::Ne, Reg::R2, FROM_LINK, "not_from_link"),
        mov(Reg::R2, 0),
        store(Size::W, CTX, SKB_TC_INDEX, Reg::R2),
        mov(Reg::R0, hook.pass()),
        exit(),
    ]);

    p.label("not_from_link");
    branch_on_family(&mut p, how, hook, "not_ip");
    for family in Family::ALL {
        p.label(family.block());
        p.comment(&format!("{family:?}: label bits set? clear them"));
        check_header(&mut p, family, how, "not_ip");
        read_label(&mut p, family, ip, cfg.label_bits, Reg::R5);
        p.push(jump_if(Cond::Eq, Reg::R5, 0, "pass"));
        write_label(&mut p, family, ip, cfg.label_bits, 0);
        if family != Family::V6 {
            p.push(l3mp_asm::jump("guarded"));
        }
    }
    p.label("guarded");
    count(&mut p, GUARDED as i32, "guarded_counted");

    p.label("pass");
    p.comment("Leaves ext as it is");
    p.extend([mov(Reg::R0, hook.pass()), exit()]);

    p.label("not_ip");
    p.comment("Not IPv4 or IPv6 (MPLS, ARP, a VLAN's traffic) or malformed: no label to clear");
    count(&mut p, GUARD_NOT_IP as i32, "not_ip_counted");
    p.extend([mov(Reg::R0, hook.pass()), exit()]);
    p
}
