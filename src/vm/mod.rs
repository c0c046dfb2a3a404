//! The offline VM: runs the exact bytes of a generated program in rbpf's interpreter (or its
//! JIT, see [`Engine`]), with the kernel helpers and maps mocked, and reports what the kernel
//! would have done with the packet.
//!
//! Map loads are the only bytes that differ from what the kernel gets: where the kernel's loader
//! writes a map fd, the VM writes a small id its mocked helpers recognise. The interpreter checks
//! every packet, context and stack access against its bounds.

mod helpers;
#[cfg(target_arch = "x86_64")]
mod jit;
mod machine;
mod memory;
mod skb;

pub use helpers::Redirect;
pub use machine::{Engine, Machine};
pub use skb::Skb;

use l3mp_asm::{Assembled, Section};

use crate::programs::layout::*;
use crate::programs::{Bundle, Config, Hook};
pub use helpers::VM_NOW_NS;
use helpers::{COUNTERS_ID, LINKS_ID, PEERS_ID, PROBES_ID};

/// What a program did with one packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The program's return value.
    pub verdict: i32,
    /// The redirect it asked for, if any.
    pub redirect: Option<Redirect>,
    /// The packet after the run, from `data` to `data_end`.
    pub packet: Vec<u8>,
    /// `{packets, bytes}` added to each counter slot the run changed, by slot.
    pub counted: Vec<(u32, [u64; 2])>,
    /// `skb->tc_index` after the run (TC; always 0 for XDP).
    pub tc_index: u32,
    /// The `probes` entries the run wrote, by label: the probe's word and when it arrived
    /// ([`VM_NOW_NS`]).
    pub probes: Vec<(u32, [u8; 8], u64)>,
}

impl Outcome {
    /// The `{packets, bytes}` of one counter slot.
    pub fn counter(&self, slot: u32) -> [u64; 2] {
        self.counted
            .iter()
            .find(|(s, _)| *s == slot)
            .map_or([0, 0], |(_, c)| *c)
    }

    /// `{packets, bytes}` added to every counter slot, in slot order.
    pub fn counters(&self) -> Vec<[u64; 2]> {
        (0..COUNTER_SLOTS).map(|slot| self.counter(slot)).collect()
    }
}

/// Why a run failed.
#[derive(Debug)]
pub struct VmError(pub String);

impl std::fmt::Display for VmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for VmError {}

/// The hook a program runs at, from its section.
pub fn hook_of(section: Section) -> Hook {
    match section {
        Section::Classifier => Hook::Tc,
        Section::Xdp => Hook::Xdp,
    }
}

/// The program's bytes with each map load pointing at the mocked map.
pub fn patched_bytes(prog: &Assembled) -> Result<Vec<u8>, VmError> {
    let mut slots = prog.slots.clone();
    for reloc in &prog.relocs {
        let id = match reloc.map.as_str() {
            COUNTERS_MAP => COUNTERS_ID,
            LINKS_MAP => LINKS_ID,
            PEERS_MAP => PEERS_ID,
            PROBES_MAP => PROBES_ID,
            other => return Err(VmError(format!("no mock for map '{other}'"))),
        };
        slots[reloc.slot].imm = id as i32;
        slots[reloc.slot + 1].imm = (id >> 32) as i32;
    }
    Ok(l3mp_asm::to_bytes(&slots))
}

/// Runs the program `name` of `bundle` (generated from `cfg`) on `packet` in the interpreter,
/// with the `__sk_buff` fields a TC program reads as the kernel sets them for it ([`Skb::of`]).
/// For many packets, make a [`Machine`] once.
pub fn run(bundle: &Bundle, cfg: &Config, name: &str, packet: &[u8]) -> Result<Outcome, VmError> {
    Machine::new(bundle, cfg, Engine::Interp)?.run(name, packet)
}

/// Like [`run`], for a TC program on a packet whose `__sk_buff` holds `skb` (ignored for XDP).
pub fn run_skb(
    bundle: &Bundle,
    cfg: &Config,
    name: &str,
    packet: &[u8],
    skb: Skb,
) -> Result<Outcome, VmError> {
    Machine::new(bundle, cfg, Engine::Interp)?.run_skb(name, packet, skb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::{Ext, ExtKind, LinkMacs, Unknown};
    use l3mp_asm::{
        alu64, call, exit, load, load_map, mov, store, AluOp, Helper, Program, Reg, Size,
    };

    fn bundle_of(insns: Vec<l3mp_asm::Insn>) -> (Bundle, Config) {
        let mut p = Program::new("probe");
        p.extend(insns);
        let bundle = Bundle {
            programs: vec![(Section::Classifier, p.assemble().expect("assembles"))],
            maps: Vec::new(),
        };
        let cfg = Config {
            label_bits: 4,
            ext: Ext {
                ifindex: 1,
                kind: ExtKind::L3,
                mtu: 1500,
            },
            links: Vec::new(),
            macs: LinkMacs {
                user: [2, 0, 0, 0, 0],
                hidden: [2, 0, 0, 0, 1],
            },
            unknown: Unknown::Pass,
        };
        (bundle, cfg)
    }

    /// `r0 = *(u8 *)(data + off)`, unchecked: only the VM's own bounds stand in the way.
    fn read_at(off: i16) -> Result<Outcome, VmError> {
        let (bundle, cfg) = bundle_of(vec![
            load(Size::W, Reg::R2, Reg::R1, SKB_DATA),
            load(Size::B, Reg::R0, Reg::R2, off),
            exit(),
        ]);
        run(&bundle, &cfg, "probe", &[7u8; 20])
    }

    #[test]
    fn reads_inside_the_packet_work() {
        assert_eq!(read_at(19).expect("in bounds").verdict, 7);
    }

    #[test]
    fn reads_outside_the_packet_are_errors() {
        assert!(read_at(20).is_err(), "one past the end");
        assert!(read_at(-1).is_err(), "one before the start");
        assert!(read_at(-14).is_err(), "where a pushed header would go");
    }

    #[test]
    fn the_verdict_is_the_return_value() {
        let (bundle, cfg) = bundle_of(vec![mov(Reg::R0, -1), exit()]);
        assert_eq!(
            run(&bundle, &cfg, "probe", &[0; 14]).expect("runs").verdict,
            -1
        );
    }

    /// A program that looks up counter slot 0 and writes both it and, through the same
    /// pointer, slot 1 (inside the counters map, so the interpreter allows it): both writes
    /// are reported, in slot order, and the slots are zero again for the next run.
    #[test]
    fn every_counter_slot_written_is_reported_not_only_those_looked_up() {
        let (bundle, cfg) = bundle_of(vec![
            store(Size::W, Reg::R10, -4, 0),
            mov(Reg::R2, Reg::R10),
            alu64(AluOp::Add, Reg::R2, -4),
            load_map(Reg::R1, COUNTERS_MAP),
            call(Helper::MapLookupElem),
            store(Size::DW, Reg::R0, COUNTER_SIZE as i16 + 8, 9),
            store(Size::DW, Reg::R0, 0, 1),
            mov(Reg::R0, 0),
            exit(),
        ]);
        let machine = Machine::new(&bundle, &cfg, Engine::Interp).expect("loads");
        for _ in 0..2 {
            let out = machine.run("probe", &[0; 14]).expect("runs");
            assert_eq!(out.counted, vec![(0, [1, 0]), (1, [0, 9])]);
        }
    }
}
