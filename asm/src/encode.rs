//! Encoding to and decoding from the kernel's `struct bpf_insn`:
//! `{ u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm; }`, little endian.

use crate::insn::{AluOp, Cond, Endian, Helper, Insn, Reg, Size, Src, Target, Width};
use crate::Error;

/// One encoded 8-byte instruction slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RawInsn {
    /// Opcode: class, size or operation, and source bits.
    pub code: u8,
    /// Destination register number (4 bits).
    pub dst: u8,
    /// Source register number (4 bits); a pseudo-source on `ld_imm64` (1: a map).
    pub src: u8,
    /// Memory offset, or jump offset in slots.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl RawInsn {
    /// The slot as the kernel reads it.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }

    /// The slot from its 8 bytes.
    pub fn from_bytes(b: [u8; 8]) -> RawInsn {
        RawInsn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Concatenates slots into the byte image the kernel and rbpf take.
pub fn to_bytes(slots: &[RawInsn]) -> Vec<u8> {
    slots.iter().flat_map(|s| s.to_bytes()).collect()
}

/// Splits a byte image into slots. The length must be a multiple of 8.
pub fn from_bytes(bytes: &[u8]) -> Result<Vec<RawInsn>, Error> {
    if !bytes.len().is_multiple_of(8) {
        return Err(Error::Decode {
            slot: bytes.len() / 8,
            why: format!(
                "{} bytes is not a whole number of instructions",
                bytes.len()
            ),
        });
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| RawInsn::from_bytes(c.try_into().expect("chunks of 8")))
        .collect())
}

// Instruction classes, sizes, modes and operation codes (include/uapi/linux/bpf_common.h, bpf.h).
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
const MEM: u8 = 0x60;
const SRC_X: u8 = 0x08;
const LD_IMM64: u8 = 0x18;
const NEG: u8 = 0x80;
const END: u8 = 0xd0;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;

fn size_bits(size: Size) -> u8 {
    match size {
        Size::W => 0x00,
        Size::H => 0x08,
        Size::B => 0x10,
        Size::DW => 0x18,
    }
}

fn alu_bits(op: AluOp) -> u8 {
    match op {
        AluOp::Add => 0x00,
        AluOp::Sub => 0x10,
        AluOp::Mul => 0x20,
        AluOp::Div => 0x30,
        AluOp::Or => 0x40,
        AluOp::And => 0x50,
        AluOp::Lsh => 0x60,
        AluOp::Rsh => 0x70,
        AluOp::Mod => 0x90,
        AluOp::Xor => 0xa0,
        AluOp::Mov => 0xb0,
        AluOp::Arsh => 0xc0,
    }
}

fn cond_bits(cond: Cond) -> u8 {
    match cond {
        Cond::Eq => 0x10,
        Cond::Gt => 0x20,
        Cond::Ge => 0x30,
        Cond::Set => 0x40,
        Cond::Ne => 0x50,
        Cond::Sgt => 0x60,
        Cond::Sge => 0x70,
        Cond::Lt => 0xa0,
        Cond::Le => 0xb0,
        Cond::Slt => 0xc0,
        Cond::Sle => 0xd0,
    }
}

fn alu_class(width: Width) -> u8 {
    match width {
        Width::W64 => ALU64,
        Width::W32 => ALU,
    }
}

fn jmp_class(width: Width) -> u8 {
    match width {
        Width::W64 => JMP,
        Width::W32 => JMP32,
    }
}

/// `(source bit, src register, imm)` of a source operand.
fn operand(src: Src) -> (u8, u8, i32) {
    match src {
        Src::Reg(r) => (SRC_X, r.number(), 0),
        Src::Imm(imm) => (0, 0, imm),
    }
}

/// Encodes one instruction whose jump target is already a slot offset. Map loads encode as
/// `ld_imm64 dst, 0`: the relocation supplies the map.
pub fn encode(insn: &Insn) -> Result<Vec<RawInsn>, Error> {
    let one = |code, dst: Reg, src: u8, off, imm| {
        Ok(vec![RawInsn {
            code,
            dst: dst.number(),
            src,
            off,
            imm,
        }])
    };
    match insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => {
            let (x, s, imm) = operand(*src);
            one(alu_class(*width) | alu_bits(*op) | x, *dst, s, 0, imm)
        }
        Insn::Neg { width, dst } => one(alu_class(*width) | NEG, *dst, 0, 0, 0),
        Insn::Swap { order, bits, dst } => {
            if ![16, 32, 64].contains(bits) {
                return Err(Error::Encode(format!("byte swap of {bits} bits")));
            }
            let x = if *order == Endian::Be { SRC_X } else { 0 };
            one(ALU | END | x, *dst, 0, 0, i32::from(*bits))
        }
        Insn::Load {
            size,
            dst,
            base,
            off,
        } => one(LDX | MEM | size_bits(*size), *dst, base.number(), *off, 0),
        Insn::Store {
            size,
            base,
            off,
            src: Src::Reg(r),
        } => one(STX | MEM | size_bits(*size), *base, r.number(), *off, 0),
        Insn::Store {
            size,
            base,
            off,
            src: Src::Imm(imm),
        } => one(ST | MEM | size_bits(*size), *base, 0, *off, *imm),
        Insn::LoadImm64 { dst, imm } => Ok(ld_imm64(*dst, *imm)),
        Insn::LoadMap { dst, .. } => Ok(ld_imm64(*dst, 0)),
        Insn::Jump { target } => one(JMP, Reg::R0, 0, resolved(target)?, 0),
        Insn::JumpIf {
            width,
            cond,
            dst,
            src,
            target,
        } => {
            let (x, s, imm) = operand(*src);
            let code = jmp_class(*width) | cond_bits(*cond) | x;
            one(code, *dst, s, resolved(target)?, imm)
        }
        Insn::Call(h) => one(CALL, Reg::R0, 0, 0, h.id()),
        Insn::Exit => one(EXIT, Reg::R0, 0, 0, 0),
    }
}

fn resolved(target: &Target) -> Result<i16, Error> {
    match target {
        Target::Offset(off) => Ok(*off),
        Target::Label(l) => Err(Error::Encode(format!(
            "jump to label '{l}' must be resolved before encoding"
        ))),
    }
}

fn ld_imm64(dst: Reg, imm: i64) -> Vec<RawInsn> {
    vec![
        RawInsn {
            code: LD_IMM64,
            dst: dst.number(),
            src: 0,
            off: 0,
            imm: imm as i32,
        },
        RawInsn {
            imm: (imm >> 32) as i32,
            ..RawInsn::default()
        },
    ]
}

/// Decodes the instruction starting at `slots[at]`. Returns it and the number of slots used.
/// Jump targets come back as offsets; an `ld_imm64` comes back as `LoadImm64` whatever its
/// `src_reg` says (map loads are told apart by relocations, not by bytes).
pub fn decode(slots: &[RawInsn], at: usize) -> Result<(Insn, usize), Error> {
    let raw = *slots.get(at).ok_or_else(|| Error::Decode {
        slot: at,
        why: format!("the program has only {} slots", slots.len()),
    })?;
    let bad = |why: &str| Error::Decode {
        slot: at,
        why: format!("{why} (code {:#04x})", raw.code),
    };
    let reg = |n: u8| Reg::from_number(n).ok_or_else(|| bad(&format!("no register r{n}")));
    let dst = reg(raw.dst)?;
    let src = || -> Result<Src, Error> {
        Ok(if raw.code & SRC_X != 0 {
            Src::Reg(reg(raw.src)?)
        } else {
            Src::Imm(raw.imm)
        })
    };
    let size = match raw.code & 0x18 {
        0x00 => Size::W,
        0x08 => Size::H,
        0x10 => Size::B,
        _ => Size::DW,
    };
    let insn = match raw.code & 0x07 {
        0x00 if raw.code == LD_IMM64 => {
            // ld_imm64 returns early, before the re-encoding check at the end, so its fields
            // are checked here. Of the first slot, code, dst_reg and imm are modelled and
            // src_reg is ignored on purpose (map loads are told apart by relocations); off is
            // neither, and must be 0 (the kernel: "BPF_LD_IMM64 uses reserved fields"). The
            // second slot must be 0 but for imm, as the kernel also requires.
            if raw.off != 0 {
                return Err(bad("ld_imm64 with a nonzero offset"));
            }
            let hi = slots
                .get(at + 1)
                .ok_or_else(|| bad("ld_imm64 without its second slot"))?;
            if hi.code != 0 || hi.dst != 0 || hi.src != 0 || hi.off != 0 {
                return Err(bad("malformed second slot of ld_imm64"));
            }
            let imm = (i64::from(hi.imm) << 32) | i64::from(raw.imm as u32);
            return Ok((Insn::LoadImm64 { dst, imm }, 2));
        }
        LDX if raw.code & 0xe0 == MEM => Insn::Load {
            size,
            dst,
            base: reg(raw.src)?,
            off: raw.off,
        },
        ST if raw.code & 0xe0 == MEM => Insn::Store {
            size,
            base: dst,
            off: raw.off,
            src: Src::Imm(raw.imm),
        },
        STX if raw.code & 0xe0 == MEM => Insn::Store {
            size,
            base: dst,
            off: raw.off,
            src: Src::Reg(reg(raw.src)?),
        },
        class @ (ALU | ALU64) => {
            let width = if class == ALU64 {
                Width::W64
            } else {
                Width::W32
            };
            match raw.code & 0xf0 {
                NEG => Insn::Neg { width, dst },
                END if class == ALU && [16, 32, 64].contains(&raw.imm) => Insn::Swap {
                    order: if raw.code & SRC_X != 0 {
                        Endian::Be
                    } else {
                        Endian::Le
                    },
                    bits: raw.imm as u8,
                    dst,
                },
                bits => {
                    let op = AluOp::ALL
                        .into_iter()
                        .find(|op| alu_bits(*op) == bits)
                        .ok_or_else(|| bad("unknown ALU operation"))?;
                    Insn::Alu {
                        width,
                        op,
                        dst,
                        src: src()?,
                    }
                }
            }
        }
        class @ (JMP | JMP32) => {
            let width = if class == JMP { Width::W64 } else { Width::W32 };
            match raw.code {
                JMP => Insn::Jump {
                    target: Target::Offset(raw.off),
                },
                CALL => Insn::Call(
                    Helper::from_id(raw.imm).ok_or_else(|| bad("call of an unknown helper"))?,
                ),
                EXIT => Insn::Exit,
                code => {
                    let cond = Cond::ALL
                        .into_iter()
                        .find(|c| cond_bits(*c) == code & 0xf0)
                        .ok_or_else(|| bad("unknown jump condition"))?;
                    Insn::JumpIf {
                        width,
                        cond,
                        dst,
                        src: src()?,
                        target: Target::Offset(raw.off),
                    }
                }
            }
        }
        _ => return Err(bad("unsupported instruction class or mode")),
    };
    // Re-encoding must give the same slot back; anything else carried bits we do not model.
    if encode(&insn)?[0] != raw {
        return Err(bad("fields the instruction does not use are set"));
    }
    Ok((insn, 1))
}
