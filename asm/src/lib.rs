//! A typed eBPF assembler.
//!
//! Programs are written as [`Insn`] values with symbolic jump labels and map names
//! ([`Program`]), assembled in a final pass into the kernel's `struct bpf_insn` slots plus a
//! list of map relocations ([`Assembled`]). The same relocation list feeds the ELF writer
//! ([`write_elf`], which aya-obj parses) and any userspace VM that patches map addresses itself.
//! The disassembler prints the kernel/LLVM listing syntax.
//!
//! # Example
//!
//! A loop that sums 1 to 10, assembled, listed, and run in rbpf's interpreter on the very
//! bytes the kernel would get:
//!
//! ```
//! use l3mp_asm::{alu64, exit, jump_if, mov, AluOp, Cond, Program, Reg};
//!
//! let mut p = Program::new("sum");
//! p.comment("r0 = 10 + 9 + ... + 1");
//! p.extend([mov(Reg::R0, 0), mov(Reg::R1, 10)]);
//! let again = p.local("again"); // unique in `p`, whoever else asks for "again"
//! p.label(&again).extend([
//!     alu64(AluOp::Add, Reg::R0, Reg::R1),
//!     alu64(AluOp::Sub, Reg::R1, 1),
//!     jump_if(Cond::Ne, Reg::R1, 0, &again),
//!     exit(),
//! ]);
//! let asm = p.assemble()?;
//!
//! assert_eq!(
//!     asm.listing()?,
//!     "\
//! sum:
//!     ; r0 = 10 + 9 + ... + 1
//!     0: r0 = 0
//!     1: r1 = 10
//! again.0:
//!     2: r0 += r1
//!     3: r1 -= 1
//!     4: if r1 != 0 goto -3
//!     5: exit
//! "
//! );
//! let bytes = asm.bytes(); // struct bpf_insn[], 8 bytes a slot
//! assert_eq!(bytes[..8], [0xb7, 0x00, 0, 0, 0, 0, 0, 0]); // r0 = 0
//!
//! let vm = rbpf::EbpfVmNoData::new(Some(&bytes))?;
//! assert_eq!(vm.execute_program()?, 55);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`write_elf`] puts such programs, with their maps, into the ELF object a loader (aya,
//! libbpf) takes.

#![deny(missing_docs)]

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
    /// A jump names a label the program never places.
    UndefinedLabel {
        /// The program's name.
        program: String,
        /// The label.
        label: String,
    },
    /// A label is placed twice.
    DuplicateLabel {
        /// The program's name.
        program: String,
        /// The label.
        label: String,
    },
    /// A jump's offset does not fit the instruction's 16 bits.
    JumpOutOfRange {
        /// The program's name.
        program: String,
        /// The label jumped to.
        label: String,
        /// The offset it would need, in slots.
        offset: i64,
    },
    /// A jump goes to a label after the last instruction, out of the program.
    JumpPastEnd {
        /// The program's name.
        program: String,
        /// The label.
        label: String,
    },
    /// The program (named) has no instructions.
    Empty(String),
    /// An instruction has no encoding (why).
    Encode(String),
    /// Bytes that are no instruction the assembler writes.
    Decode {
        /// The slot where decoding failed.
        slot: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The programs and maps cannot make an ELF object (why).
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
