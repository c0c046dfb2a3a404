//! The disassembler: instructions in the kernel/LLVM listing syntax
//! (`r2 = *(u32 *)(r1 + 76)`, `if r3 > r2 goto +5`, `w1 &= 3`), which `llvm-mc -triple bpf`
//! assembles back to the same bytes.

use std::fmt;

use crate::encode::{decode, RawInsn};
use crate::insn::{AluOp, Cond, Endian, Insn, Reg, Size, Src, Target, Width};
use crate::Error;

fn reg(width: Width, r: Reg) -> String {
    match width {
        Width::W64 => format!("r{}", r.number()),
        Width::W32 => format!("w{}", r.number()),
    }
}

fn operand(width: Width, src: Src) -> String {
    match src {
        Src::Reg(r) => reg(width, r),
        Src::Imm(imm) => imm.to_string(),
    }
}

fn size(s: Size) -> &'static str {
    match s {
        Size::B => "u8",
        Size::H => "u16",
        Size::W => "u32",
        Size::DW => "u64",
    }
}

fn mem(s: Size, base: Reg, off: i16) -> String {
    let sign = if off < 0 { '-' } else { '+' };
    format!(
        "*({} *)({} {} {})",
        size(s),
        base,
        sign,
        i32::from(off).unsigned_abs()
    )
}

fn alu_op(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "+=",
        AluOp::Sub => "-=",
        AluOp::Mul => "*=",
        AluOp::Div => "/=",
        AluOp::Or => "|=",
        AluOp::And => "&=",
        AluOp::Lsh => "<<=",
        AluOp::Rsh => ">>=",
        AluOp::Mod => "%=",
        AluOp::Xor => "^=",
        AluOp::Mov => "=",
        AluOp::Arsh => "s>>=",
    }
}

fn cond_op(c: Cond) -> &'static str {
    match c {
        Cond::Eq => "==",
        Cond::Ne => "!=",
        Cond::Gt => ">",
        Cond::Ge => ">=",
        Cond::Lt => "<",
        Cond::Le => "<=",
        Cond::Sgt => "s>",
        Cond::Sge => "s>=",
        Cond::Slt => "s<",
        Cond::Sle => "s<=",
        Cond::Set => "&",
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Label(l) => write!(f, "{l}"),
            Target::Offset(off) => write!(f, "{off:+}"),
        }
    }
}

impl fmt::Display for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => write!(
                f,
                "{} {} {}",
                reg(*width, *dst),
                alu_op(*op),
                operand(*width, *src)
            ),
            Insn::Neg { width, dst } => {
                let r = reg(*width, *dst);
                write!(f, "{r} = -{r}")
            }
            Insn::Swap { order, bits, dst } => {
                let o = if *order == Endian::Be { "be" } else { "le" };
                write!(f, "{dst} = {o}{bits} {dst}")
            }
            Insn::Load {
                size: s,
                dst,
                base,
                off,
            } => write!(f, "{dst} = {}", mem(*s, *base, *off)),
            Insn::Store {
                size: s,
                base,
                off,
                src,
            } => write!(
                f,
                "{} = {}",
                mem(*s, *base, *off),
                operand(Width::W64, *src)
            ),
            Insn::LoadImm64 { dst, imm } => write!(f, "{dst} = {imm} ll"),
            Insn::LoadMap { dst, map } => write!(f, "{dst} = {map} ll"),
            Insn::Jump { target } => write!(f, "goto {target}"),
            Insn::JumpIf {
                width,
                cond,
                dst,
                src,
                target,
            } => write!(
                f,
                "if {} {} {} goto {target}",
                reg(*width, *dst),
                cond_op(*cond),
                operand(*width, *src)
            ),
            Insn::Call(h) => write!(f, "call {}", h.id()),
            Insn::Exit => write!(f, "exit"),
        }
    }
}

/// Disassembles encoded slots, one line per instruction, each prefixed with its slot number.
pub fn disassemble(slots: &[RawInsn]) -> Result<Vec<(usize, Insn)>, Error> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < slots.len() {
        let (insn, used) = decode(slots, at)?;
        out.push((at, insn));
        at += used;
    }
    Ok(out)
}
