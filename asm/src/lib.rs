//! A typed eBPF assembler.
//!
//! Programs are written as [`Insn`] values with symbolic jump labels and map names
//! ([`Program`]), assembled in a final pass into the kernel's `struct bpf_insn` slots plus a
//! list of map relocations ([`Assembled`]). The same relocation list feeds the ELF writer
//! ([`write_elf`], which aya-obj parses) and any userspace VM that patches map addresses itself.
//! The disassembler prints the kernel/LLVM listing syntax.

mod disasm;
mod elf;
mod encode;
mod insn;
mod program;

pub use disasm::disassemble;
pub use elf::{write_elf, MapDef, Section, MAX_PROGRAM_NAME};
pub use encode::{decode, encode, from_bytes, to_bytes, RawInsn};
pub use insn::*;
pub use program::{Assembled, MapReloc, Note, Program};

use std::fmt;

/// Everything that can go wrong while assembling, encoding, decoding or writing ELF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    UndefinedLabel {
        program: String,
        label: String,
    },
    DuplicateLabel {
        program: String,
        label: String,
    },
    JumpOutOfRange {
        program: String,
        label: String,
        offset: i64,
    },
    JumpPastEnd {
        program: String,
        label: String,
    },
    Empty(String),
    Encode(String),
    Decode {
        slot: usize,
        why: String,
    },
    Elf(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UndefinedLabel { program, label } => {
                write!(f, "{program}: jump to undefined label '{label}'")
            }
            Error::DuplicateLabel { program, label } => {
                write!(f, "{program}: label '{label}' is defined twice")
            }
            Error::JumpOutOfRange {
                program,
                label,
                offset,
            } => write!(
                f,
                "{program}: jump to label '{label}' is {offset} slots away, beyond the 16-bit offset"
            ),
            Error::JumpPastEnd { program, label } => write!(
                f,
                "{program}: label '{label}' stands after the last instruction; a jump there leaves the program"
            ),
            Error::Empty(program) => write!(f, "{program}: program has no instructions"),
            Error::Encode(why) => write!(f, "cannot encode: {why}"),
            Error::Decode { slot, why } => write!(f, "cannot decode slot {slot}: {why}"),
            Error::Elf(why) => write!(f, "cannot write ELF: {why}"),
        }
    }
}

impl std::error::Error for Error {}
