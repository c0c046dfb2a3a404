//! The floor programs: the least a program can do at each hook and still deliver a packet
//! somewhere, built with the same assembler. Every hot-path program is judged against the
//! floor of its hook, measured the same way in the same run.
//!
//! Beside them, for information, a *counting* floor of each hook: the floor plus what every
//! l3mp program does to a packet it delivers and the floor does not, count it in the per-CPU
//! `counters` slot of its label (read from the frame as the demux reads it). Timed in single
//! runs against the floor, it shows how much of a demux's excess that one update is.

use l3mp_asm::{
    alu64, call, exit, jump_if, load_map, mov, write_elf, AluOp, Assembled, Cond, Helper, MapDef,
    Program, Reg, Section,
};

use super::Error;
use crate::programs::layout::{BPF_MAP_TYPE_DEVMAP, DATA, DATA_END, ETH_HLEN, INGRESS, IPV4_HLEN};
use crate::programs::{count, read_label, Family, Hook};
use crate::run::set_devmap;

/// The TC floor: `return bpf_redirect(ifindex, 0)`.
pub const TC: &str = "floor_tc";
/// The XDP floor: `return bpf_redirect_map(&floor_devmap, 0, 0)`.
pub const XDP: &str = "floor_xdp";
/// The floor's DEVMAP; key 0 is the redirect target.
pub const DEVMAP: &str = "floor_devmap";

/// The floors' DEVMAP (one entry: key 0).
pub fn devmap() -> MapDef {
    MapDef {
        name: DEVMAP.into(),
        map_type: BPF_MAP_TYPE_DEVMAP,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        flags: 0,
    }
}

/// The counting floor of each hook: [`COUNTING_TC`], [`COUNTING_XDP`].
pub fn counting_name(hook: Hook) -> &'static str {
    match hook {
        Hook::Tc => COUNTING_TC,
        Hook::Xdp => COUNTING_XDP,
    }
}

/// The TC counting floor (see the module's comment).
pub const COUNTING_TC: &str = "floor_tc_count";
/// The XDP counting floor.
pub const COUNTING_XDP: &str = "floor_xdp_count";

/// The floor of `hook`; the TC floor redirects to `ifindex`, the XDP floor to DEVMAP key 0.
pub fn program(hook: Hook, ifindex: u32) -> Result<Assembled, Error> {
    let mut p = Program::new(match hook {
        Hook::Tc => TC,
        Hook::Xdp => XDP,
    });
    redirect(&mut p, hook, ifindex);
    p.assemble()
        .map_err(|e| Error::new(format!("floor programs: {e}")))
}

/// The counting floor of `hook` (see the module's comment), for IPv4 frames with an Ethernet
/// header and 4 label bits; it needs the `counters` map of l3mp's programs beside [`DEVMAP`].
pub fn counting(hook: Hook, ifindex: u32) -> Result<Assembled, Error> {
    let mut p = Program::new(counting_name(hook));
    hook.prologue(&mut p);
    p.comment("The label of an IPv4 frame, as the demux reads it, to its ingress slot");
    p.extend([
        mov(Reg::R2, DATA),
        alu64(AluOp::Add, Reg::R2, i32::from(ETH_HLEN + IPV4_HLEN)),
        jump_if(Cond::Gt, Reg::R2, DATA_END, "short"),
    ]);
    read_label(&mut p, Family::V4, ETH_HLEN, 4, Reg::R5);
    p.push(alu64(AluOp::Add, Reg::R5, INGRESS as i32));
    count(&mut p, Reg::R5);
    redirect(&mut p, hook, ifindex);
    p.label("short");
    p.extend([mov(Reg::R0, hook.pass()), exit()]);
    p.assemble()
        .map_err(|e| Error::new(format!("counting floors: {e}")))
}

/// `return bpf_redirect(ifindex, 0)` (TC), `return bpf_redirect_map(&DEVMAP, 0, 0)` (XDP).
fn redirect(p: &mut Program, hook: Hook, ifindex: u32) {
    match hook {
        Hook::Tc => p.extend([
            mov(Reg::R1, ifindex as i32),
            mov(Reg::R2, 0),
            call(Helper::Redirect),
            exit(),
        ]),
        Hook::Xdp => p.extend([
            load_map(Reg::R1, DEVMAP),
            mov(Reg::R2, 0),
            mov(Reg::R3, 0),
            call(Helper::RedirectMap),
            exit(),
        ]),
    };
}

/// Points the floors' DEVMAP key 0 at `ifindex`.
pub fn point(ebpf: &mut aya::Ebpf, ifindex: u32) -> Result<(), Error> {
    Ok(set_devmap(ebpf, DEVMAP, 0, ifindex)?)
}

/// Both floors in one ELF object (DEVMAP key 0 must be pointed at a device, by [`point`]).
pub fn elf(ifindex: u32) -> Result<Vec<u8>, Error> {
    let tc = program(Hook::Tc, ifindex)?;
    let xdp = program(Hook::Xdp, ifindex)?;
    write_elf(
        &[(Section::Classifier, &tc), (Section::Xdp, &xdp)],
        &[devmap()],
        "GPL",
    )
    .map_err(|e| Error::new(format!("floor programs: {e}")))
}
