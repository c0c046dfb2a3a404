//! The guard, on ext's TC egress: a packet leaving ext that did not come from a managed link
//! (ext's own traffic, or traffic routed out of it) has its label bits cleared, so that the far
//! end can never deliver it into a managed link. Packets egress redirected keep their label.

use l3mp_asm::{exit, jump_if, load, mov, store, Cond, Program, Reg, Size};

use super::classify::{branch_on_family, check_header, family_blocks, Classify};
use super::config::Config;
use super::counters::count;
use super::dscp::{clear_label, read_label};
use super::hook::Hook;
use super::layout::*;

/// The guard's name.
pub const NAME: &str = "l3mp_guard";

/// Builds the guard.
pub fn guard(cfg: &Config) -> Program {
    let hook = Hook::Tc;
    let mut p = Program::new(NAME);
    let how = Classify::at(hook, cfg.ext.kind.framing());
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
    family_blocks(&mut p, "guarded", |p, family| {
        p.comment(&format!("{family:?}: label bits set? clear them"));
        check_header(p, family, how, "not_ip");
        read_label(p, family, ip, cfg.label_bits, Reg::R5);
        p.push(jump_if(Cond::Eq, Reg::R5, 0, "pass"));
        clear_label(p, family, ip, cfg.label_bits, Reg::R5);
    });
    count(&mut p, GUARDED);

    p.label("pass");
    p.comment("Leaves ext as it is");
    p.extend([mov(Reg::R0, hook.pass()), exit()]);

    p.label("not_ip");
    p.comment("Not IPv4 or IPv6 (MPLS, ARP, a VLAN's traffic) or malformed: no label to clear");
    count(&mut p, GUARD_NOT_IP);
    p.extend([mov(Reg::R0, hook.pass()), exit()]);
    p
}
