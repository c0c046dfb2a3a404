//! A bundle made ready to run many packets: each program's patched bytes, checked by rbpf's
//! loader (and, for the JIT, compiled) once, for the arena of the thread that made it, whose maps stay where the
//! programs were told they are. Per packet only the context, the counters and the packet are
//! written.

use std::cell::{Cell, OnceCell};
use std::rc::Rc;

use l3mp_asm::{Assembled, Helper as AsmHelper, Insn};

use super::helpers::{self, Devmap, RunState, STATE};
use super::memory::*;
use super::{hook_of, patched_bytes, Outcome, Skb, VmError};
use crate::programs::layout::*;
use crate::programs::{self, Bundle, Config, Hook};

/// Which rbpf engine runs the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The interpreter: every packet, context, stack and map access is checked against its
    /// bounds, and one outside them is an error. The reference engine.
    Interp,
    /// rbpf's x86_64 JIT: native code, many times faster, which checks no memory access. A
    /// program that reads or writes outside the packet reads whatever lies there or corrupts
    /// this process, where the interpreter (and the kernel's verifier) would refuse it.
    Jit,
}

/// A program ready to run.
struct Loaded {
    name: String,
    hook: Hook,
    /// Whether it calls a helper that grows the packet at its head (then it may reach an
    /// Ethernet header in front of the packet).
    grows_head: bool,
    /// Whether `vm` holds JIT-compiled code to run instead of interpreting.
    jit: bool,
    /// Borrows `bytes` (see [`Loaded::new`]); declared first, so dropped first.
    vm: rbpf::EbpfVmMbuff<'static>,
    /// The bytes `vm` runs, owned here; only read through `vm`.
    _bytes: Box<[u8]>,
}

impl Loaded {
    fn new(
        prog: &Assembled,
        hook: Hook,
        engine: Engine,
        arena: &Arena,
        peers: u32,
    ) -> Result<Loaded, VmError> {
        let bytes: Box<[u8]> = patched_bytes(prog)?.into_boxed_slice();
        // SAFETY: the VM borrows the boxed bytes, which never move (moving the Box moves only
        // its pointer) and are dropped after it (field order); the VM never leaves `Loaded`.
        let code: &'static [u8] = unsafe { &*std::ptr::from_ref::<[u8]>(&bytes) };
        let err = |e: std::io::Error| VmError(format!("{}: {e}", prog.name));
        let mut vm = rbpf::EbpfVmMbuff::new(Some(code)).map_err(err)?;
        #[cfg(target_arch = "x86_64")]
        let functions = match engine {
            Engine::Jit => super::jit::trampolines(),
            Engine::Interp => helpers::ALL.map(|(_, f)| f),
        };
        #[cfg(not(target_arch = "x86_64"))]
        let functions = helpers::ALL.map(|(_, f)| f);
        for ((h, _), f) in helpers::ALL.iter().zip(functions) {
            vm.register_helper(h.id() as u32, f).map_err(err)?;
        }
        let counters = arena.addr(COUNTERS_AT);
        vm.register_allowed_memory(counters..counters + u64::from(COUNTER_SLOTS * COUNTER_SIZE));
        let peers_addr = arena.addr(PEERS_AT);
        vm.register_allowed_memory(peers_addr..peers_addr + u64::from(4 * peers));
        let probes = arena.addr(PROBES_AT);
        vm.register_allowed_memory(probes..probes + u64::from(PROBE_SLOTS * PROBE_SIZE));
        if engine == Engine::Jit {
            vm.jit_compile().map_err(err)?;
        }
        Ok(Loaded {
            name: prog.name.clone(),
            hook,
            grows_head: grows_head(prog),
            jit: engine == Engine::Jit,
            vm,
            _bytes: bytes,
        })
    }
}

/// The programs of one bundle and configuration, prepared on first use, and the memory they
/// run in.
pub struct Machine {
    cfg: Config,
    engine: Engine,
    programs: Vec<(Hook, Assembled)>,
    loaded: Vec<OnceCell<Loaded>>,
    /// The `peers` array as it sits in memory: one entry per label, the unused ones 0.
    peers: Vec<u8>,
    devmap: Rc<Devmap>,
    /// The address of the arena of the thread that made the machine, which the programs'
    /// maps were registered in (rbpf's VM is not `Send`, so neither is a machine).
    arena: u64,
    /// How many [`Machine::batched`] calls are under way.
    batches: Cell<u32>,
}

/// What runs wrote in the counters and `probes` maps outside the slots and entries they
/// looked up, found by [`Machine::batched`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Strays {
    /// `{packets, bytes}` found in each counter slot, by slot.
    pub counters: Vec<(u32, [u64; 2])>,
    /// The word and time found in each `probes` entry, by label.
    pub probes: Vec<(u32, [u8; 8], u64)>,
}

impl std::fmt::Display for Strays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "counter slots {:?} and probes entries {:?}",
            self.counters, self.probes
        )
    }
}

impl Machine {
    /// A machine for `bundle`, generated from `cfg`, on `engine`.
    pub fn new(bundle: &Bundle, cfg: &Config, engine: Engine) -> Result<Machine, VmError> {
        if engine == Engine::Jit && !cfg!(target_arch = "x86_64") {
            return Err(VmError("rbpf's JIT compiles for x86_64 only".into()));
        }
        let mut peers = vec![0u8; 4 * (usize::from(cfg.max_label()) + 1)];
        let mut devmap = Devmap::default();
        for link in &cfg.links {
            let at = 4 * usize::from(link.label);
            peers[at..at + 4].copy_from_slice(&link.peer_ifindex.to_ne_bytes());
            devmap.insert(u32::from(link.label), link.peer_ifindex);
        }
        Ok(Machine {
            cfg: cfg.clone(),
            engine,
            programs: bundle
                .programs
                .iter()
                .map(|(section, prog)| {
                    // What loading needs, without the listing's notes (most of a program's
                    // memory; a fuzzer keeps thousands of machines).
                    let prog = Assembled {
                        name: prog.name.clone(),
                        slots: prog.slots.clone(),
                        relocs: prog.relocs.clone(),
                        notes: Vec::new(),
                    };
                    (hook_of(*section), prog)
                })
                .collect(),
            loaded: bundle.programs.iter().map(|_| OnceCell::new()).collect(),
            peers,
            devmap: Rc::new(devmap),
            arena: with_arena(|arena| Ok(arena.addr(0)))?,
            batches: Cell::new(0),
        })
    }

    /// Runs `f`, in whose runs each run takes only the counter slots and `probes` entries it
    /// looked up; then looks once for anything written elsewhere in those maps, which every
    /// run otherwise looks for itself (that scan costs as much as a run on the JIT). Returns
    /// what `f` returned, or the strays (taken, so the maps are clean again). Nested calls
    /// leave the scan to the outermost.
    pub fn batched<R>(&self, f: impl FnOnce() -> R) -> Result<R, Strays> {
        self.batches.set(self.batches.get() + 1);
        let result = f();
        self.batches.set(self.batches.get() - 1);
        if self.batches.get() > 0 {
            return Ok(result);
        }
        let strays = with_arena(|arena| {
            let mut strays = Strays::default();
            take_other_counters(arena, &mut strays.counters);
            take_other_probes(arena, &mut strays.probes);
            Ok(strays)
        })
        .expect("the arena was made with the machine");
        if strays == Strays::default() {
            Ok(result)
        } else {
            Err(strays)
        }
    }

    /// The configuration the programs were generated from.
    pub fn cfg(&self) -> &Config {
        &self.cfg
    }

    /// The engine the programs run on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Runs the program `name` on `packet` with the `__sk_buff` fields a TC program reads as
    /// the kernel sets them for it ([`Skb::of`]).
    pub fn run(&self, name: &str, packet: &[u8]) -> Result<Outcome, VmError> {
        let skb = Skb::of(packet, programs::sees_frames(&self.cfg, name));
        self.run_skb(name, packet, skb)
    }

    /// Runs the program `name` on `packet`, whose `__sk_buff` holds `skb` (ignored for XDP).
    pub fn run_skb(&self, name: &str, packet: &[u8], skb: Skb) -> Result<Outcome, VmError> {
        let mut out = Outcome::default();
        self.run_into(name, packet, skb, &mut out)?;
        Ok(out)
    }

    /// Like [`Machine::run_skb`], writing what the program did into `out`, whose buffers are
    /// reused (a caller running many packets allocates nothing per run once they have grown).
    pub fn run_into(
        &self,
        name: &str,
        packet: &[u8],
        skb: Skb,
        out: &mut Outcome,
    ) -> Result<(), VmError> {
        let mut after = std::mem::take(&mut out.packet);
        self.run_then(name, packet, skb, out, |_, packet| {
            after.clear();
            after.extend_from_slice(packet);
        })?;
        out.packet = after;
        Ok(())
    }

    /// Like [`Machine::run_into`], but `out.packet` is left empty: `look` is given the outcome
    /// and the packet after the run where it lies (a caller that only compares it saves a
    /// copy).
    pub fn run_then<R>(
        &self,
        name: &str,
        packet: &[u8],
        skb: Skb,
        out: &mut Outcome,
        look: impl FnOnce(&Outcome, &[u8]) -> R,
    ) -> Result<R, VmError> {
        let at = self
            .programs
            .iter()
            .position(|(_, p)| p.name == name)
            .ok_or_else(|| VmError(format!("no program '{name}'")))?;
        if packet.len() > MAX_PACKET {
            return Err(VmError(format!(
                "packet of {} bytes is too long",
                packet.len()
            )));
        }
        with_arena(|arena| {
            assert_eq!(
                arena.addr(0),
                self.arena,
                "a machine runs on the thread that made it"
            );
            let prog = match self.loaded[at].get() {
                Some(prog) => prog,
                None => {
                    let (hook, prog) = &self.programs[at];
                    let peers = self.peers.len() as u32 / 4;
                    let loaded = Loaded::new(prog, *hook, self.engine, arena, peers)?;
                    self.loaded[at].get_or_init(|| loaded)
                }
            };
            let ran = execute(arena, prog, &self.peers, &self.devmap, packet, skb, out);
            // Outside a batch, every run (even one that failed) looks at the rest of the maps.
            if self.batches.get() == 0 {
                take_other_counters(arena, &mut out.counted);
                take_other_probes(arena, &mut out.probes);
            }
            ran?;
            Ok(look(out, packet_after(arena, prog.hook)))
        })
    }
}

/// Runs `prog` on `packet`, taking the counter slots and `probes` entries it looked up.
fn execute(
    arena: &mut Arena,
    prog: &Loaded,
    peers: &[u8],
    devmap: &Rc<Devmap>,
    packet: &[u8],
    skb: Skb,
    out: &mut Outcome,
) -> Result<(), VmError> {
    let hook = prog.hook;
    let start = PACKET_AT + HEADROOM;
    let end = start + packet.len();
    let (data, data_end) = (arena.addr(start) as u32, arena.addr(end) as u32);
    let mem = arena.bytes();
    // What a run may see besides the packet starts as the kernel would give it: the context
    // zeroed but for its fields, the headroom zeroed (if the program can reach it: see
    // below), the `peers` array as configured. (The counters are zero: every run's are read
    // and cleared after it.)
    mem[CTX_AT..CTX_AT + CTX_LEN].fill(0);
    if prog.grows_head {
        mem[PACKET_AT..start].fill(0);
    }
    mem[start..end].copy_from_slice(packet);
    mem[PEERS_AT..PEERS_AT + peers.len()].copy_from_slice(peers);
    let mut put = |off: i16, v: u32| {
        let at = CTX_AT + off as usize;
        mem[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    };
    match hook {
        Hook::Tc => {
            put(SKB_LEN, packet.len() as u32);
            put(SKB_DATA, data);
            put(SKB_DATA_END, data_end);
            put(SKB_TC_INDEX, skb.tc_index);
            put(SKB_GSO_SIZE, skb.gso_size);
            put(SKB_PROTOCOL, u32::from(u16::from_ne_bytes(skb.protocol)));
            put(SKB_VLAN_PRESENT, u32::from(skb.vlan_tci.is_some()));
        }
        Hook::Xdp => {
            put(XDP_DATA, data);
            put(XDP_DATA_END, data_end);
        }
    }
    STATE.with(|s| {
        *s.borrow_mut() = Some(RunState {
            hook,
            arena: arena.addr(0),
            devmap: Rc::clone(devmap),
            peers: peers.len() as u32 / 4,
            redirect: None,
            counters_looked_up: [0; 3],
            probes_looked_up: 0,
        })
    });
    // Only a program that grows the packet at its head may reach in front of it, and only by
    // an Ethernet header; every other access outside the packet is an error.
    let mem_start = if prog.grows_head {
        start - ETH_HLEN as usize
    } else {
        start
    };
    let all = arena.bytes();
    let (ctx, rest) = all.split_at_mut(CTX_AT + CTX_LEN);
    let packet_mem = &mut rest[mem_start - CTX_LEN..end - CTX_LEN];
    let result = if prog.jit {
        // SAFETY: rbpf wants the context borrowed for as long as the VM lives; it only uses it
        // during this call, while the arena lives. The compiled program is the loaded one and
        // reaches the context and packet through the pointers written above (checking nothing:
        // see `Engine::Jit`).
        unsafe {
            let ctx: &'static mut [u8] = &mut *std::ptr::from_mut::<[u8]>(ctx);
            prog.vm.execute_program_jit(packet_mem, ctx)
        }
    } else {
        prog.vm.execute_program(packet_mem, ctx)
    };
    let state = STATE
        .with(|s| s.borrow_mut().take())
        .expect("state set above");
    take_counters(arena, &state.counters_looked_up, &mut out.counted);
    take_probes(arena, state.probes_looked_up, &mut out.probes);
    out.verdict = result.map_err(|e| VmError(format!("{}: {e}", prog.name)))? as i32;
    out.redirect = state.redirect;
    out.packet.clear();
    out.tc_index = match hook {
        Hook::Tc => ctx_u32(arena, SKB_TC_INDEX),
        Hook::Xdp => 0,
    };
    Ok(())
}

/// Whether the program calls a helper that grows the packet at its head.
fn grows_head(prog: &Assembled) -> bool {
    l3mp_asm::disassemble(&prog.slots).is_ok_and(|insns| {
        insns.iter().any(|(_, i)| {
            matches!(
                i,
                Insn::Call(AsmHelper::SkbChangeHead) | Insn::Call(AsmHelper::XdpAdjustHead)
            )
        })
    })
}

/// A 32-bit field of the context.
fn ctx_u32(arena: &mut Arena, off: i16) -> u32 {
    let at = CTX_AT + off as usize;
    u32::from_ne_bytes(arena.bytes()[at..at + 4].try_into().expect("4 bytes"))
}

/// The packet after the run, from `data` to `data_end`, where it lies in the arena.
fn packet_after(arena: &mut Arena, hook: Hook) -> &[u8] {
    let (data_off, end_off) = match hook {
        Hook::Tc => (SKB_DATA, SKB_DATA_END),
        Hook::Xdp => (XDP_DATA, XDP_DATA_END),
    };
    let (data, end) = (ctx_u32(arena, data_off), ctx_u32(arena, end_off));
    let base = arena.addr(0);
    &arena.bytes()[(u64::from(data) - base) as usize..(u64::from(end) - base) as usize]
}

/// The `probes` entries the run looked up (a bit for each in `looked_up`) and wrote (every
/// entry starts zero), into `out` by label; zeroed again for the next run.
fn take_probes(arena: &mut Arena, looked_up: u64, out: &mut Vec<(u32, [u8; 8], u64)>) {
    out.clear();
    let all = &mut arena.bytes()[PROBES_AT..PROBES_AT + PROBES_LEN];
    let mut bits = looked_up;
    while bits != 0 {
        take_probe(all, bits.trailing_zeros() as usize, out);
        bits &= bits - 1;
    }
}

/// Every other `probes` entry holding something (a write past a looked-up entry stays inside
/// the map, which the interpreter allows), added to `out`, which stays in label order.
fn take_other_probes(arena: &mut Arena, out: &mut Vec<(u32, [u8; 8], u64)>) {
    let all = &mut arena.bytes()[PROBES_AT..PROBES_AT + PROBES_LEN];
    take_others(all, PROBE_SLOTS, out, take_probe, |(label, _, _)| *label);
}

/// Every entry of the map `all` (of `entries` entries) that still holds something, added to
/// `out` by `take`, then `out` ordered by the entries' `index`.
fn take_others<T>(
    all: &mut [u8],
    entries: u32,
    out: &mut Vec<T>,
    take: fn(&mut [u8], usize, &mut Vec<T>),
    index: fn(&T) -> u32,
) {
    static ZEROS: [u8; COUNTERS_LEN] = [0; COUNTERS_LEN];
    // Most runs write nothing else: one comparison.
    if *all == ZEROS[..all.len()] {
        return;
    }
    for entry in 0..entries as usize {
        take(all, entry, out);
    }
    out.sort_unstable_by_key(index);
}

const PROBES_LEN: usize = (PROBE_SLOTS * PROBE_SIZE) as usize;
const _: () = assert!(
    PROBES_LEN <= COUNTERS_LEN,
    "take_others' zeros cover both maps"
);

/// The `probes` entry of `label` in `all`, into `out` if it holds anything; then zeroed.
fn take_probe(all: &mut [u8], label: usize, out: &mut Vec<(u32, [u8; 8], u64)>) {
    let entry = &mut all[label * PROBE_SIZE as usize..(label + 1) * PROBE_SIZE as usize];
    if entry.iter().any(|&b| b != 0) {
        let word: [u8; 8] = entry[..8].try_into().expect("8 bytes");
        let at = u64::from_ne_bytes(entry[8..].try_into().expect("8 bytes"));
        out.push((label as u32, word, at));
        entry.fill(0);
    }
}

/// The counter slots the run looked up (a bit for each in `looked_up`) and changed, with
/// what it added to each, into `out` in slot order; zeroed again for the next run.
fn take_counters(arena: &mut Arena, looked_up: &[u64; 3], out: &mut Vec<(u32, [u64; 2])>) {
    out.clear();
    let all = &mut arena.bytes()[COUNTERS_AT..COUNTERS_AT + COUNTERS_LEN];
    for (w, bits) in looked_up.iter().enumerate() {
        let mut bits = *bits;
        while bits != 0 {
            take_counter(all, 64 * w + bits.trailing_zeros() as usize, out);
            bits &= bits - 1;
        }
    }
}

/// Every other counter slot holding something (a write past a looked-up slot stays inside
/// the counters map, which the interpreter allows), added to `out`, which stays in slot order.
fn take_other_counters(arena: &mut Arena, out: &mut Vec<(u32, [u64; 2])>) {
    let all = &mut arena.bytes()[COUNTERS_AT..COUNTERS_AT + COUNTERS_LEN];
    take_others(all, COUNTER_SLOTS, out, take_counter, |(slot, _)| *slot);
}

const COUNTERS_LEN: usize = (COUNTER_SLOTS * COUNTER_SIZE) as usize;

/// Counter slot `slot` of `all`, into `out` if it is not zero; then zeroed.
fn take_counter(all: &mut [u8], slot: usize, out: &mut Vec<(u32, [u64; 2])>) {
    const SIZE: usize = COUNTER_SIZE as usize;
    let bytes = &mut all[slot * SIZE..(slot + 1) * SIZE];
    let word = |i: usize| u64::from_ne_bytes(bytes[i..i + 8].try_into().expect("8"));
    let counter = [word(0), word(8)];
    if counter != [0, 0] {
        out.push((slot as u32, counter));
        bytes.fill(0);
    }
}
