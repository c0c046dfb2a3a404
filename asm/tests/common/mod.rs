//! The systematic instruction set shared by the LLVM oracle and the rbpf round trip.
//!
//! Jumps carry raw offsets (`Target::Offset`), which `Program::assemble` passes through
//! unchanged, so every instruction can be encoded on its own.

#![allow(dead_code)] // each test crate uses its own part of this module

use l3mp_asm::*;

/// 32-bit immediates: zero, small, negative, the 16-bit edges and the 32-bit edges.
pub const IMMS: [i32; 10] = [
    0,
    1,
    -1,
    7,
    -7,
    0x7fff,
    -0x8000,
    0x1234_5678,
    i32::MIN,
    i32::MAX,
];

/// Memory offsets: zero, positive, negative (stack), and both 16-bit edges.
pub const MEM_OFFS: [i16; 7] = [0, 1, 76, -4, -8, i16::MAX, i16::MIN];

/// Jump offsets: zero, positive, negative, both 16-bit edges.
pub const JUMP_OFFS: [i16; 7] = [0, 1, 5, -1, -3, i16::MAX, i16::MIN];

/// 64-bit immediates for `ld_imm64`, chosen to exercise the split into two halves.
pub const IMMS64: [i64; 14] = [
    0,
    1,
    -1,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    -0x8000_0000,
    -0x8000_0001,
    0x1122_3344_5566_7788,
    -0x1122_3344_5566_7788,
    i64::MAX,
    i64::MIN,
    i64::MIN + 1,
];

pub const SIZES: [Size; 4] = [Size::B, Size::H, Size::W, Size::DW];
pub const WIDTHS: [Width; 2] = [Width::W64, Width::W32];

/// A register picked by index, cycling through r0..r9 (destinations) or r0..r10 (sources).
pub fn dst_reg(i: usize) -> Reg {
    Reg::ALL[i % 10]
}

pub fn any_reg(i: usize) -> Reg {
    Reg::ALL[i % 11]
}

/// Every ALU operation × width × (register source, every immediate in [`IMMS`]).
pub fn alu() -> Vec<Insn> {
    let mut out = Vec::new();
    let mut i = 0;
    for op in AluOp::ALL {
        for width in WIDTHS {
            let mut srcs = vec![Src::Reg(any_reg(i + 3))];
            srcs.extend(IMMS.map(Src::Imm));
            for src in srcs {
                out.push(Insn::Alu {
                    width,
                    op,
                    dst: dst_reg(i),
                    src,
                });
                i += 1;
            }
        }
    }
    out
}

/// `mov dst, src` for every pair of registers (dst r0..r9, src r0..r10), both widths.
pub fn all_registers() -> Vec<Insn> {
    let mut out = Vec::new();
    for width in WIDTHS {
        for dst in &Reg::ALL[..10] {
            for src in Reg::ALL {
                out.push(Insn::Alu {
                    width,
                    op: AluOp::Mov,
                    dst: *dst,
                    src: Src::Reg(src),
                });
            }
        }
    }
    out
}

/// Negation on both widths and several registers.
pub fn neg() -> Vec<Insn> {
    let mut out = Vec::new();
    for width in WIDTHS {
        for dst in [Reg::R0, Reg::R1, Reg::R9] {
            out.push(Insn::Neg { width, dst });
        }
    }
    out
}

/// Every byte order × 16/32/64 bits.
pub fn swaps() -> Vec<Insn> {
    let mut out = Vec::new();
    let mut i = 0;
    for order in [Endian::Be, Endian::Le] {
        for bits in [16, 32, 64] {
            out.push(Insn::Swap {
                order,
                bits,
                dst: dst_reg(i),
            });
            i += 1;
        }
    }
    out
}

/// Loads of every size from r1 and r10 at every offset in [`MEM_OFFS`].
pub fn loads() -> Vec<Insn> {
    let mut out = Vec::new();
    let mut i = 0;
    for size in SIZES {
        for base in [Reg::R1, Reg::R10] {
            for off in MEM_OFFS {
                out.push(Insn::Load {
                    size,
                    dst: dst_reg(i),
                    base,
                    off,
                });
                i += 1;
            }
        }
    }
    out
}

/// Register stores of every size to r1 and r10 at every offset in [`MEM_OFFS`].
pub fn stores_reg() -> Vec<Insn> {
    let mut out = Vec::new();
    let mut i = 0;
    for size in SIZES {
        for base in [Reg::R1, Reg::R10] {
            for off in MEM_OFFS {
                out.push(Insn::Store {
                    size,
                    base,
                    off,
                    src: Src::Reg(dst_reg(i)),
                });
                i += 1;
            }
        }
    }
    out
}

/// Immediate stores of every size (LLVM 14 cannot assemble these).
pub fn stores_imm() -> Vec<Insn> {
    let mut out = Vec::new();
    let mut i = 0;
    for size in SIZES {
        for off in [0, -4, -8, i16::MAX, i16::MIN] {
            for imm in [0, 7, -1, i32::MIN, i32::MAX] {
                out.push(Insn::Store {
                    size,
                    base: if i % 2 == 0 { Reg::R10 } else { Reg::R1 },
                    off,
                    src: Src::Imm(imm),
                });
                i += 1;
            }
        }
    }
    out
}

/// `ld_imm64` of every value in [`IMMS64`].
pub fn load_imm64() -> Vec<Insn> {
    IMMS64
        .iter()
        .enumerate()
        .map(|(i, imm)| Insn::LoadImm64 {
            dst: dst_reg(i),
            imm: *imm,
        })
        .collect()
}

/// `goto` with every offset in [`JUMP_OFFS`].
pub fn gotos() -> Vec<Insn> {
    JUMP_OFFS
        .iter()
        .map(|off| Insn::Jump {
            target: Target::Offset(*off),
        })
        .collect()
}

/// Conditional jumps on the given conditions × width × (register, immediates) × offsets.
pub fn cond_jumps(conds: &[Cond]) -> Vec<Insn> {
    let mut out = Vec::new();
    let mut i = 0;
    for cond in conds {
        for width in WIDTHS {
            let srcs = [
                Src::Reg(any_reg(i + 1)),
                Src::Imm(0),
                Src::Imm(-1),
                Src::Imm(i32::MIN),
                Src::Imm(i32::MAX),
            ];
            for src in srcs {
                for off in JUMP_OFFS {
                    out.push(Insn::JumpIf {
                        width,
                        cond: *cond,
                        dst: dst_reg(i),
                        src,
                        target: Target::Offset(off),
                    });
                    i += 1;
                }
            }
        }
    }
    out
}

/// Every condition except `Set` (JSET, which LLVM 14 cannot assemble).
pub fn conds_without_set() -> Vec<Cond> {
    Cond::ALL.into_iter().filter(|c| *c != Cond::Set).collect()
}

/// A call of every known helper, and `exit`.
pub fn calls_and_exit() -> Vec<Insn> {
    let mut out: Vec<Insn> = Helper::ALL.into_iter().map(Insn::Call).collect();
    out.push(Insn::Exit);
    out
}

/// The broad set every backend handles: everything except store-immediate and JSET.
pub fn common_set() -> Vec<Insn> {
    let mut out = Vec::new();
    out.extend(alu());
    out.extend(all_registers());
    out.extend(neg());
    out.extend(swaps());
    out.extend(loads());
    out.extend(stores_reg());
    out.extend(load_imm64());
    out.extend(gotos());
    out.extend(cond_jumps(&conds_without_set()));
    out.extend(calls_and_exit());
    out
}

/// The instructions LLVM 14 cannot handle but the kernel and rbpf do: store-immediate and JSET.
pub fn beyond_llvm14() -> Vec<Insn> {
    let mut out = stores_imm();
    out.extend(cond_jumps(&[Cond::Set]));
    out
}

/// Assembles instructions into one program and returns the result.
pub fn assemble_all(name: &str, insns: &[Insn]) -> Assembled {
    let mut p = Program::new(name);
    p.extend(insns.iter().cloned());
    p.assemble()
        .unwrap_or_else(|e| panic!("assembling {name}: {e}"))
}

/// The slot at which each instruction starts.
pub fn slot_starts(insns: &[Insn]) -> Vec<usize> {
    let mut at = 0;
    insns
        .iter()
        .map(|i| {
            let s = at;
            at += i.slots();
            s
        })
        .collect()
}
