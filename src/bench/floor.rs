//! The floor programs: the least a program can do at each hook and still deliver a packet
//! somewhere, built with the same assembler. Every hot-path program is judged against the
//! floor of its hook, measured the same way in the same run.

use l3mp_asm::{
    call, exit, load_map, mov, write_elf, Assembled, Helper, MapDef, Program, Reg, Section,
};

use super::Error;
use crate::programs::layout::BPF_MAP_TYPE_DEVMAP;
use crate::programs::Hook;
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
