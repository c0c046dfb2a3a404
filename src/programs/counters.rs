//! Per-CPU counters: `{ packets, bytes }` per slot, bumped with plain load/add/store (a per-CPU
//! slot has one writer; rbpf has no atomics).

use l3mp_asm::{
    alu64, call, jump_if, load, load_map, mov, store, AluOp, Cond, Helper, Program, Reg, Size,
};

use super::layout::*;

/// Adds one packet of `LEN` bytes to the counter slot `slot` (a constant: the CPU can look
/// it up before it knows what the packet holds). Clobbers r0..r5.
pub fn count(p: &mut Program, slot: u32) {
    let skip = p.local("counted");
    p.extend([
        store(Size::W, Reg::R10, STACK_KEY, slot as i32),
        mov(Reg::R2, Reg::R10),
        alu64(AluOp::Add, Reg::R2, i32::from(STACK_KEY)),
        load_map(Reg::R1, COUNTERS_MAP),
        call(Helper::MapLookupElem),
        jump_if(Cond::Eq, Reg::R0, 0, &skip),
        load(Size::DW, Reg::R1, Reg::R0, 0),
        alu64(AluOp::Add, Reg::R1, 1),
        store(Size::DW, Reg::R0, 0, Reg::R1),
        load(Size::DW, Reg::R1, Reg::R0, 8),
        alu64(AluOp::Add, Reg::R1, LEN),
        store(Size::DW, Reg::R0, 8, Reg::R1),
    ]);
    p.label(&skip);
}
