//! The offline VM: runs the exact bytes of a generated program in rbpf's interpreter, with the
//! kernel helpers and maps mocked, and reports what the kernel would have done with the packet.
//!
//! Map loads are the only bytes that differ from what the kernel gets: where the kernel's loader
//! writes a map fd, the VM writes a small id its mocked helpers recognise. The interpreter checks
//! every packet, context and stack access against its bounds.

mod helpers;
mod memory;
mod skb;

pub use helpers::Redirect;
pub use skb::Skb;

use std::cell::RefCell;

use l3mp_asm::{Assembled, Section};

use crate::programs::layout::*;
use crate::programs::{self, Bundle, Config, Hook};
use helpers::{RunState, COUNTERS_ID, LINKS_ID, PEERS_ID, STATE};
use memory::*;

/// What a program did with one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The program's return value.
    pub verdict: i32,
    /// The redirect it asked for, if any.
    pub redirect: Option<Redirect>,
    /// The packet after the run, from `data` to `data_end`.
    pub packet: Vec<u8>,
    /// `{packets, bytes}` added to each counter slot.
    pub counters: Vec<[u64; 2]>,
    /// `skb->tc_index` after the run (TC; always 0 for XDP).
    pub tc_index: u32,
}

impl Outcome {
    /// The `{packets, bytes}` of one counter slot.
    pub fn counter(&self, slot: u32) -> [u64; 2] {
        self.counters[slot as usize]
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

thread_local! {
    static ARENA: RefCell<Option<Arena>> = const { RefCell::new(None) };
}

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
            other => return Err(VmError(format!("no mock for map '{other}'"))),
        };
        slots[reloc.slot].imm = id as i32;
        slots[reloc.slot + 1].imm = (id >> 32) as i32;
    }
    Ok(l3mp_asm::to_bytes(&slots))
}

/// Runs the program `name` of `bundle` (generated from `cfg`) on `packet`, with the `__sk_buff`
/// fields a TC program reads as the kernel sets them for it ([`Skb::of`]).
pub fn run(bundle: &Bundle, cfg: &Config, name: &str, packet: &[u8]) -> Result<Outcome, VmError> {
    let skb = Skb::of(packet, programs::sees_frames(cfg, name));
    run_skb(bundle, cfg, name, packet, skb)
}

/// Like [`run`], for a TC program on a packet whose `__sk_buff` holds `skb` (ignored for XDP).
pub fn run_skb(
    bundle: &Bundle,
    cfg: &Config,
    name: &str,
    packet: &[u8],
    skb: Skb,
) -> Result<Outcome, VmError> {
    let (section, prog) = bundle
        .programs
        .iter()
        .find(|(_, p)| p.name == name)
        .ok_or_else(|| VmError(format!("no program '{name}'")))?;
    let hook = hook_of(*section);
    let bytes = patched_bytes(prog)?;
    if packet.len() > MAX_PACKET {
        return Err(VmError(format!(
            "packet of {} bytes is too long",
            packet.len()
        )));
    }
    ARENA.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(Arena::new().map_err(|e| VmError(format!("mmap: {e}")))?);
        }
        let arena = cell.as_mut().expect("arena just made");
        execute(arena, hook, cfg, &bytes, packet, skb)
    })
}

fn execute(
    arena: &mut Arena,
    hook: Hook,
    cfg: &Config,
    bytes: &[u8],
    packet: &[u8],
    skb: Skb,
) -> Result<Outcome, VmError> {
    let start = PACKET_AT + HEADROOM;
    let end = start + packet.len();
    let mem = arena.bytes();
    mem[..start].fill(0);
    mem[start..end].copy_from_slice(packet);
    let (data, data_end) = (arena.addr(start) as u32, arena.addr(end) as u32);
    let ctx_field = |off: i16| CTX_AT + off as usize;
    let mem = arena.bytes();
    let mut put = |off: i16, v: u32| {
        mem[ctx_field(off)..ctx_field(off) + 4].copy_from_slice(&v.to_ne_bytes());
    };
    match hook {
        Hook::Tc => {
            put(SKB_LEN, packet.len() as u32);
            put(SKB_DATA, data);
            put(SKB_DATA_END, data_end);
            put(SKB_TC_INDEX, skb.tc_index);
            put(SKB_PROTOCOL, u32::from(u16::from_ne_bytes(skb.protocol)));
            put(SKB_VLAN_PRESENT, u32::from(skb.vlan_tci.is_some()));
        }
        Hook::Xdp => {
            put(XDP_DATA, data);
            put(XDP_DATA_END, data_end);
        }
    }

    let mut vm = rbpf::EbpfVmMbuff::new(Some(bytes)).map_err(|e| VmError(e.to_string()))?;
    let helpers: [(l3mp_asm::Helper, rbpf::ebpf::Helper); 5] = [
        (l3mp_asm::Helper::MapLookupElem, helpers::map_lookup_elem),
        (l3mp_asm::Helper::Redirect, helpers::redirect),
        (l3mp_asm::Helper::RedirectMap, helpers::redirect_map),
        (l3mp_asm::Helper::SkbChangeHead, helpers::skb_change_head),
        (l3mp_asm::Helper::XdpAdjustHead, helpers::xdp_adjust_head),
    ];
    for (h, f) in helpers {
        vm.register_helper(h.id() as u32, f)
            .map_err(|e| VmError(e.to_string()))?;
    }
    let counters = arena.addr(COUNTERS_AT);
    vm.register_allowed_memory(counters..counters + u64::from(COUNTER_SLOTS * COUNTER_SIZE));

    let devmap = cfg
        .links
        .iter()
        .map(|l| (u32::from(l.label), l.peer_ifindex))
        .collect();
    // The `peers` array: one entry per label, the unused ones 0.
    let peers = u32::from(cfg.max_label()) + 1;
    let mem = arena.bytes();
    mem[PEERS_AT..PEERS_AT + 4 * peers as usize].fill(0);
    for link in &cfg.links {
        let at = PEERS_AT + 4 * usize::from(link.label);
        mem[at..at + 4].copy_from_slice(&link.peer_ifindex.to_ne_bytes());
    }
    let peers_addr = arena.addr(PEERS_AT);
    vm.register_allowed_memory(peers_addr..peers_addr + u64::from(4 * peers));
    STATE.with(|s| {
        *s.borrow_mut() = Some(RunState {
            hook,
            arena: arena.addr(0),
            devmap,
            peers,
            redirect: None,
        })
    });
    // Only a program that grows the packet at its head may reach in front of it, and only by
    // an Ethernet header; every other access outside the packet is an error.
    let mem_start = if grows_head(bytes) {
        start - ETH_HLEN as usize
    } else {
        start
    };
    let all = arena.bytes();
    let (ctx, rest) = all.split_at_mut(CTX_AT + CTX_LEN);
    let result = vm.execute_program(&rest[mem_start - CTX_LEN..end - CTX_LEN], ctx);
    let state = STATE
        .with(|s| s.borrow_mut().take())
        .expect("state set above");
    let verdict = result.map_err(|e| VmError(e.to_string()))? as i32;
    Ok(Outcome {
        verdict,
        redirect: state.redirect,
        packet: read_packet(arena, hook),
        counters: read_counters(arena),
        tc_index: match hook {
            Hook::Tc => ctx_u32(arena, SKB_TC_INDEX),
            Hook::Xdp => 0,
        },
    })
}

/// Whether the program calls a helper that grows the packet at its head.
fn grows_head(bytes: &[u8]) -> bool {
    use l3mp_asm::{Helper, Insn};
    let Ok(slots) = l3mp_asm::from_bytes(bytes) else {
        return false;
    };
    l3mp_asm::disassemble(&slots).is_ok_and(|insns| {
        insns.iter().any(|(_, i)| {
            matches!(
                i,
                Insn::Call(Helper::SkbChangeHead) | Insn::Call(Helper::XdpAdjustHead)
            )
        })
    })
}

/// A 32-bit field of the context.
fn ctx_u32(arena: &mut Arena, off: i16) -> u32 {
    let at = CTX_AT + off as usize;
    u32::from_ne_bytes(arena.bytes()[at..at + 4].try_into().expect("4 bytes"))
}

fn read_packet(arena: &mut Arena, hook: Hook) -> Vec<u8> {
    let (data_off, end_off) = match hook {
        Hook::Tc => (SKB_DATA, SKB_DATA_END),
        Hook::Xdp => (XDP_DATA, XDP_DATA_END),
    };
    let (data, end) = (ctx_u32(arena, data_off), ctx_u32(arena, end_off));
    let base = arena.addr(0);
    arena.bytes()[(u64::from(data) - base) as usize..(u64::from(end) - base) as usize].to_vec()
}

fn read_counters(arena: &mut Arena) -> Vec<[u64; 2]> {
    let mem = arena.bytes();
    (0..COUNTER_SLOTS as usize)
        .map(|slot| {
            let at = COUNTERS_AT + slot * COUNTER_SIZE as usize;
            let word =
                |i: usize| u64::from_ne_bytes(mem[at + i..at + i + 8].try_into().expect("8"));
            [word(0), word(8)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::{Ext, ExtKind, LinkMacs, Unknown};
    use l3mp_asm::{exit, load, mov, Program, Reg, Size};

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
}
