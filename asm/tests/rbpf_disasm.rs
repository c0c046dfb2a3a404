//! rbpf as a second, independent decoder: its disassembler must read our bytes as the operation
//! each `Insn` means (mnemonic, dst, src, off, imm), its verifier must accept programs built from
//! them, and its interpreter must execute the instructions LLVM 14 cannot check (store-immediate,
//! JSET, `mod`) and the byte swaps and conditions with their kernel meaning.

mod common;

use l3mp_asm::*;
use rbpf::disassembler::{to_insn_vec, HLInsn};
use rbpf::EbpfVmNoData;

/// What rbpf should report for an instruction, derived from the `Insn` alone (not from our
/// encoder).
#[derive(Debug, PartialEq)]
struct Expected {
    name: String,
    dst: u8,
    src: u8,
    off: i16,
    imm: i64,
}

fn suffix(size: Size) -> &'static str {
    match size {
        Size::B => "b",
        Size::H => "h",
        Size::W => "w",
        Size::DW => "dw",
    }
}

fn width_suffix(width: Width, w64: &'static str) -> &'static str {
    match width {
        Width::W64 => w64,
        Width::W32 => "32",
    }
}

fn src_fields(src: Src) -> (u8, i64) {
    match src {
        Src::Reg(r) => (r.number(), 0),
        Src::Imm(imm) => (0, i64::from(imm)),
    }
}

fn expected(insn: &Insn) -> Expected {
    let e = |name: String, dst: u8, src: u8, off: i16, imm: i64| Expected {
        name,
        dst,
        src,
        off,
        imm,
    };
    match insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => {
            let op = match op {
                AluOp::Add => "add",
                AluOp::Sub => "sub",
                AluOp::Mul => "mul",
                AluOp::Div => "div",
                AluOp::Or => "or",
                AluOp::And => "and",
                AluOp::Lsh => "lsh",
                AluOp::Rsh => "rsh",
                AluOp::Mod => "mod",
                AluOp::Xor => "xor",
                AluOp::Mov => "mov",
                AluOp::Arsh => "arsh",
            };
            let (s, imm) = src_fields(*src);
            e(
                format!("{op}{}", width_suffix(*width, "64")),
                dst.number(),
                s,
                0,
                imm,
            )
        }
        Insn::Neg { width, dst } => e(
            format!("neg{}", width_suffix(*width, "64")),
            dst.number(),
            0,
            0,
            0,
        ),
        Insn::Swap { order, bits, dst } => {
            let name = if *order == Endian::Be { "be" } else { "le" };
            e(name.into(), dst.number(), 0, 0, i64::from(*bits))
        }
        Insn::Load {
            size,
            dst,
            base,
            off,
        } => e(
            format!("ldx{}", suffix(*size)),
            dst.number(),
            base.number(),
            *off,
            0,
        ),
        Insn::Store {
            size,
            base,
            off,
            src: Src::Reg(r),
        } => e(
            format!("stx{}", suffix(*size)),
            base.number(),
            r.number(),
            *off,
            0,
        ),
        Insn::Store {
            size,
            base,
            off,
            src: Src::Imm(imm),
        } => e(
            format!("st{}", suffix(*size)),
            base.number(),
            0,
            *off,
            i64::from(*imm),
        ),
        Insn::LoadImm64 { dst, imm } => e("lddw".into(), dst.number(), 0, 0, *imm),
        Insn::LoadMap { dst, .. } => e("lddw".into(), dst.number(), 0, 0, 0),
        Insn::Jump {
            target: Target::Offset(off),
        } => e("ja".into(), 0, 0, *off, 0),
        Insn::JumpIf {
            width,
            cond,
            dst,
            src,
            target: Target::Offset(off),
        } => {
            let c = match cond {
                Cond::Eq => "eq",
                Cond::Ne => "ne",
                Cond::Gt => "gt",
                Cond::Ge => "ge",
                Cond::Lt => "lt",
                Cond::Le => "le",
                Cond::Sgt => "sgt",
                Cond::Sge => "sge",
                Cond::Slt => "slt",
                Cond::Sle => "sle",
                Cond::Set => "set",
            };
            let (s, imm) = src_fields(*src);
            e(
                format!("j{c}{}", width_suffix(*width, "")),
                dst.number(),
                s,
                *off,
                imm,
            )
        }
        Insn::Jump { .. } | Insn::JumpIf { .. } => panic!("unresolved label in {insn:?}"),
        Insn::Call(h) => e("call".into(), 0, 0, 0, i64::from(h.id())),
        Insn::Exit => e("exit".into(), 0, 0, 0, 0),
    }
}

fn seen(hl: &HLInsn) -> Expected {
    Expected {
        name: hl.name.clone(),
        dst: hl.dst,
        src: hl.src,
        off: hl.off,
        imm: hl.imm,
    }
}

/// The shared set plus what LLVM 14 cannot check.
fn full_set() -> Vec<Insn> {
    let mut set = common::common_set();
    set.extend(common::beyond_llvm14());
    set
}

/// `goto -32768`: rbpf 0.4.1's disassembler formats it with `-insn.off` on an `i16`, which
/// overflows (a panic in debug builds). The LLVM oracle covers it.
fn rbpf_disassembler_overflows(insn: &Insn) -> bool {
    *insn
        == Insn::Jump {
            target: Target::Offset(i16::MIN),
        }
}

#[test]
fn rbpf_reads_every_instruction_as_meant() {
    let insns: Vec<Insn> = full_set()
        .into_iter()
        .filter(|i| !rbpf_disassembler_overflows(i))
        .collect();
    assert!(insns.iter().any(|i| matches!(
        i,
        Insn::JumpIf {
            target: Target::Offset(i16::MIN),
            ..
        }
    )));
    let asm = common::assemble_all("rbpf", &insns);
    let hl = to_insn_vec(&asm.bytes());
    assert_eq!(hl.len(), insns.len(), "rbpf counts ld_imm64 as one");
    let starts = common::slot_starts(&insns);
    let mut failures = Vec::new();
    for ((insn, at), hl) in insns.iter().zip(&starts).zip(&hl) {
        if hl.opc != asm.slots[*at].code {
            failures.push(format!(
                "{insn}: opcode {:#04x} vs {:#04x}",
                hl.opc, asm.slots[*at].code
            ));
        }
        let want = expected(insn);
        let got = seen(hl);
        if want != got {
            failures.push(format!(
                "{insn}: want {want:?}, rbpf says {got:?} ({})",
                hl.desc
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        insns.len(),
        failures.join("\n")
    );
}

#[test]
fn full_set_covers_store_immediate_jset_and_mod() {
    let set = full_set();
    for size in common::SIZES {
        assert!(set.iter().any(|i| matches!(i,
            Insn::Store { size: s, src: Src::Imm(_), .. } if *s == size)));
    }
    for width in common::WIDTHS {
        for reg in [true, false] {
            assert!(set.iter().any(|i| matches!(i,
                Insn::JumpIf { cond: Cond::Set, width: w, src, .. }
                    if *w == width && matches!(src, Src::Reg(_)) == reg)));
            assert!(set.iter().any(|i| matches!(i,
                Insn::Alu { op: AluOp::Mod, width: w, src, .. }
                    if *w == width && matches!(src, Src::Reg(_)) == reg)));
        }
    }
}

/// Padding around the instruction under test, so that short jumps land inside the program.
const PAD: usize = 8;

/// `PAD` moves, the instruction, `PAD` moves, exit.
fn program_around(insn: &Insn) -> Vec<u8> {
    let mut p = Program::new("around");
    p.extend(std::iter::repeat_n(mov(Reg::R0, 0), PAD))
        .push(insn.clone())
        .extend(std::iter::repeat_n(mov(Reg::R0, 0), PAD))
        .push(exit());
    p.assemble().expect("assemble").bytes()
}

/// rbpf's verifier checks registers, jump targets and ld_imm64 pairing. Jumps that leave the
/// padded program (|off| > PAD) and `off == -1` (which rbpf rejects as an infinite loop, the
/// kernel does not) are not meaningful there.
fn verifiable(insn: &Insn) -> bool {
    match insn {
        Insn::Jump {
            target: Target::Offset(off),
        }
        | Insn::JumpIf {
            target: Target::Offset(off),
            ..
        } => *off != -1 && usize::from(off.unsigned_abs()) <= PAD,
        _ => true,
    }
}

#[test]
fn rbpf_verifier_accepts_programs_built_from_the_set() {
    let insns = full_set();
    let checked: Vec<&Insn> = insns.iter().filter(|i| verifiable(i)).collect();
    assert!(
        checked.len() > insns.len() * 3 / 4,
        "most of the set is checked"
    );
    let failures: Vec<String> = checked
        .iter()
        .filter_map(|insn| {
            let bytes = program_around(insn);
            EbpfVmNoData::new(Some(&bytes))
                .err()
                .map(|e| format!("{insn}: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rbpf_verifier_rejects_what_it_should() {
    // The acceptance above means something only if the verifier does reject bad programs.
    let out_of_code = program_around(&Insn::Jump {
        target: Target::Offset(PAD as i16 + 1),
    });
    assert_rejected(
        &out_of_code,
        "[Verifier] Error: jump out of code to #18 (insn #8)",
    );
    let into_ld_imm64 = {
        let mut p = Program::new("mid");
        p.push(jump_if(Cond::Eq, Reg::R1, 0, Target::Offset(1)))
            .push(load_imm64(Reg::R0, 1))
            .push(exit());
        p.assemble().expect("assemble").bytes()
    };
    assert_rejected(
        &into_ld_imm64,
        "[Verifier] Error: jump to middle of LD_DW at #2 (insn #0)",
    );
    let write_r10 = program_around(&mov(Reg::R10, 1));
    assert_rejected(
        &write_r10,
        "[Verifier] Error: cannot write into register r10 (insn #8)",
    );
}

/// rbpf's verifier refuses `bytes` with exactly `message`.
fn assert_rejected(bytes: &[u8], message: &str) {
    match EbpfVmNoData::new(Some(bytes)) {
        Ok(_) => panic!("rbpf accepted a program it must refuse ({message})"),
        Err(e) => assert_eq!(e.to_string(), message, "rbpf's message"),
    }
}

/// Runs a program in rbpf's interpreter and returns r0.
fn run(p: &Program) -> u64 {
    let bytes = p.assemble().expect("assemble").bytes();
    let vm = EbpfVmNoData::new(Some(&bytes)).expect("rbpf accepts the program");
    vm.execute_program().expect("rbpf runs the program")
}

#[test]
fn store_immediate_writes_its_size_at_its_offset() {
    for (size, want) in [
        (Size::B, 0xffu64),
        (Size::H, 0xffff),
        (Size::W, 0xffff_ffff),
        (Size::DW, u64::MAX), // the immediate is sign-extended
    ] {
        let mut p = Program::new("st");
        p.push(store(Size::DW, Reg::R10, -16, 0))
            .push(store(size, Reg::R10, -16, -1))
            .push(load(Size::DW, Reg::R0, Reg::R10, -16))
            .push(exit());
        assert_eq!(run(&p), want, "{size:?}");
    }
    // A positive offset from a copy of the frame pointer, and a positive immediate.
    let mut p = Program::new("st");
    p.push(mov(Reg::R1, Reg::R10))
        .push(alu64(AluOp::Add, Reg::R1, -64))
        .push(store(Size::DW, Reg::R1, 8, 0))
        .push(store(Size::W, Reg::R1, 12, 0x1234_5678))
        .push(load(Size::DW, Reg::R0, Reg::R10, -56))
        .push(exit());
    assert_eq!(run(&p), 0x1234_5678_0000_0000);
}

/// `r0 = (a cond b)` as a program: `b` in r2 or as the immediate.
fn cond_program(width: Width, cond: Cond, a: u64, b: Src, b_value: u64) -> Program {
    let mut p = Program::new("cond");
    p.push(load_imm64(Reg::R1, a as i64))
        .push(load_imm64(Reg::R2, b_value as i64))
        .push(mov(Reg::R0, 1))
        .push(Insn::JumpIf {
            width,
            cond,
            dst: Reg::R1,
            src: b,
            target: "taken".into(),
        })
        .push(mov(Reg::R0, 0))
        .label("taken")
        .push(exit());
    p
}

/// The kernel's meaning of each condition (include/linux/filter.h, kernel/bpf/core.c).
fn holds(width: Width, cond: Cond, a: u64, b: u64) -> bool {
    let (ua, ub, sa, sb) = match width {
        Width::W64 => (a, b, a as i64, b as i64),
        Width::W32 => (
            u64::from(a as u32),
            u64::from(b as u32),
            i64::from(a as u32 as i32),
            i64::from(b as u32 as i32),
        ),
    };
    match cond {
        Cond::Eq => ua == ub,
        Cond::Ne => ua != ub,
        Cond::Gt => ua > ub,
        Cond::Ge => ua >= ub,
        Cond::Lt => ua < ub,
        Cond::Le => ua <= ub,
        Cond::Sgt => sa > sb,
        Cond::Sge => sa >= sb,
        Cond::Slt => sa < sb,
        Cond::Sle => sa <= sb,
        Cond::Set => ua & ub != 0,
    }
}

/// rbpf 0.4.1's interpreter zero-extends the immediate of 64-bit *unsigned* comparisons
/// (`JEQ`, `JNE`, `JGT`, `JGE`, `JLT`, `JLE` with `BPF_K`); the kernel sign-extends it. The
/// interpreter then disagrees with the kernel for negative immediates.
fn rbpf_zero_extends(width: Width, cond: Cond, src: Src) -> bool {
    let unsigned = matches!(
        cond,
        Cond::Eq | Cond::Ne | Cond::Gt | Cond::Ge | Cond::Lt | Cond::Le
    );
    matches!(src, Src::Imm(imm) if imm < 0) && width == Width::W64 && unsigned
}

#[test]
fn rbpf_interpreter_zero_extends_unsigned_64bit_jump_immediates() {
    // Pins the deviation above, so that an rbpf upgrade that fixes it is noticed: with
    // r1 = u64::MAX, the kernel takes `if r1 == -1 goto`; rbpf 0.4.1 does not.
    let p = cond_program(Width::W64, Cond::Eq, u64::MAX, Src::Imm(-1), 0);
    assert!(holds(
        Width::W64,
        Cond::Eq,
        u64::MAX,
        i64::from(-1i32) as u64
    ));
    assert_eq!(run(&p), 0, "rbpf now sign-extends: drop rbpf_zero_extends");
    // The register form agrees with the kernel.
    let p = cond_program(Width::W64, Cond::Eq, u64::MAX, Src::Reg(Reg::R2), u64::MAX);
    assert_eq!(run(&p), 1);
}

#[test]
fn conditions_jump_with_their_kernel_meaning() {
    let values: [i64; 7] = [0, 1, 2, -1, -2, i64::from(i32::MIN), 0x1_0000_0001];
    let mut failures = Vec::new();
    let mut runs = 0;
    for cond in Cond::ALL {
        for width in common::WIDTHS {
            for a in values {
                for b in values {
                    let a = a as u64;
                    // Register form: b as is. Immediate form: b's low 32 bits, sign-extended.
                    let imm = b as i32;
                    for (src, b_value) in [
                        (Src::Reg(Reg::R2), b as u64),
                        (Src::Imm(imm), i64::from(imm) as u64),
                    ] {
                        if rbpf_zero_extends(width, cond, src) {
                            continue;
                        }
                        let want = holds(width, cond, a, b_value);
                        let got = run(&cond_program(width, cond, a, src, b_value));
                        runs += 1;
                        if got != u64::from(want) {
                            failures.push(format!("{width:?} {cond:?} {a:#x} {src:?}: {got}"));
                        }
                    }
                }
            }
        }
    }
    // 6 unsigned conditions × 7 values × 3 negative immediates are rbpf's deviation.
    assert_eq!(runs, 11 * 2 * 7 * 7 * 2 - 6 * 7 * 3);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn byte_swaps_convert_to_their_order() {
    let x: u64 = 0x1122_3344_5566_7788;
    for (order, bits, want) in [
        (Endian::Be, 16, u64::from((x as u16).swap_bytes())),
        (Endian::Be, 32, u64::from((x as u32).swap_bytes())),
        (Endian::Be, 64, x.swap_bytes()),
        // Little endian is the host order here: the conversion only truncates.
        (Endian::Le, 16, u64::from(x as u16)),
        (Endian::Le, 32, u64::from(x as u32)),
        (Endian::Le, 64, x),
    ] {
        let mut p = Program::new("swap");
        p.push(load_imm64(Reg::R0, x as i64))
            .push(swap(order, bits, Reg::R0))
            .push(exit());
        assert_eq!(run(&p), want, "{order:?}{bits}");
    }
}

#[test]
fn alu_operations_compute_their_meaning() {
    let a: u64 = 0xf123_4567_89ab_cdef;
    let b: u64 = 7;
    let imm: i32 = -7;
    // (op, 64-bit result with b in a register, 32-bit result with the immediate)
    let cases: [(AluOp, u64, u32); 12] = [
        (
            AluOp::Add,
            a.wrapping_add(b),
            (a as u32).wrapping_add(imm as u32),
        ),
        (
            AluOp::Sub,
            a.wrapping_sub(b),
            (a as u32).wrapping_sub(imm as u32),
        ),
        (
            AluOp::Mul,
            a.wrapping_mul(b),
            (a as u32).wrapping_mul(imm as u32),
        ),
        (AluOp::Div, a / b, (a as u32) / (imm as u32)),
        (AluOp::Or, a | b, (a as u32) | imm as u32),
        (AluOp::And, a & b, (a as u32) & imm as u32),
        (AluOp::Lsh, a << b, (a as u32) << 7),
        (AluOp::Rsh, a >> b, (a as u32) >> 7),
        (AluOp::Mod, a % b, (a as u32) % (imm as u32)),
        (AluOp::Xor, a ^ b, (a as u32) ^ imm as u32),
        (AluOp::Mov, b, imm as u32),
        (
            AluOp::Arsh,
            ((a as i64) >> b) as u64,
            ((a as u32 as i32) >> 7) as u32,
        ),
    ];
    for (op, want64, want32) in cases {
        let mut p = Program::new("alu");
        p.push(load_imm64(Reg::R0, a as i64))
            .push(mov(Reg::R1, b as i32))
            .push(alu64(op, Reg::R0, Reg::R1))
            .push(exit());
        assert_eq!(run(&p), want64, "{op:?} 64-bit, register");
        let shift_safe = matches!(op, AluOp::Lsh | AluOp::Rsh | AluOp::Arsh);
        let mut p = Program::new("alu32");
        p.push(load_imm64(Reg::R0, a as i64))
            .push(alu32(op, Reg::R0, if shift_safe { 7 } else { imm }))
            .push(exit());
        // 32-bit operations zero the upper half.
        assert_eq!(run(&p), u64::from(want32), "{op:?} 32-bit, immediate");
    }
}
