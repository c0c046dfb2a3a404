//! A program under construction: instructions, labels and block comments, assembled in a
//! final pass that resolves every label to a slot offset and every map load to a relocation.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::encode::{encode, RawInsn};
use crate::insn::{Insn, Label, Target};
use crate::Error;

#[derive(Clone, Debug)]
enum Item {
    Insn(Insn),
    Label(String),
    Comment(String),
}

/// A map reference to patch: the `ld_imm64` at `slot` loads the map named `map`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapReloc {
    /// The first slot of the `ld_imm64`.
    pub slot: usize,
    /// The map's name.
    pub map: String,
}

/// A program being written. Labels and map names stay symbolic until [`Program::assemble`].
#[derive(Clone, Debug, Default)]
pub struct Program {
    name: String,
    items: Vec<Item>,
    /// How many local labels of each name [`Program::local`] has made.
    locals: HashMap<String, usize>,
}

impl Program {
    /// An empty program called `name` (the ELF symbol and the kernel's program name).
    pub fn new(name: &str) -> Program {
        Program {
            name: name.to_string(),
            ..Program::default()
        }
    }

    /// The program's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends one instruction.
    pub fn push(&mut self, insn: Insn) -> &mut Program {
        self.items.push(Item::Insn(insn));
        self
    }

    /// Appends instructions in order.
    pub fn extend(&mut self, insns: impl IntoIterator<Item = Insn>) -> &mut Program {
        self.items.extend(insns.into_iter().map(Item::Insn));
        self
    }

    /// Places the label `name` (a `&str`, or a [`Label`] from [`Program::local`]) at the next
    /// instruction. A name placed twice is an error at [`Program::assemble`].
    pub fn label(&mut self, name: impl AsRef<str>) -> &mut Program {
        self.items.push(Item::Label(name.as_ref().to_string()));
        self
    }

    /// A new label for one block, unique in this program: `name.0` the first time `name` is
    /// asked for, then `name.1`, and so on. Jump to it with `&label` and place it with
    /// [`Program::label`]; like any label, it is resolved to an offset only when the program is
    /// assembled, so a jump may name it before it is placed.
    pub fn local(&mut self, name: &str) -> Label {
        let n = self.locals.entry(name.to_string()).or_default();
        let label = Label(format!("{name}.{n}"));
        *n += 1;
        label
    }

    /// Opens a block with a comment, shown in the listing above the block's first instruction.
    pub fn comment(&mut self, text: &str) -> &mut Program {
        self.items.push(Item::Comment(text.to_string()));
        self
    }

    /// Resolves labels and map references and encodes the program.
    pub fn assemble(&self) -> Result<Assembled, Error> {
        let (labels, total) = self.label_slots()?;
        let mut out = Assembled {
            name: self.name.clone(),
            ..Assembled::default()
        };
        for item in &self.items {
            let slot = out.slots.len();
            match item {
                Item::Label(l) => out.notes.push((slot, Note::Label(l.clone()))),
                Item::Comment(c) => out.notes.push((slot, Note::Comment(c.clone()))),
                Item::Insn(insn) => {
                    let insn = self.resolve(insn, slot, &labels, total)?;
                    if let Insn::LoadMap { map, .. } = &insn {
                        out.relocs.push(MapReloc {
                            slot,
                            map: map.clone(),
                        });
                    }
                    out.slots.extend(encode(&insn)?);
                }
            }
        }
        if out.slots.is_empty() {
            return Err(Error::Empty(self.name.clone()));
        }
        Ok(out)
    }

    /// The slot each label stands at, and the program's length in slots; a label defined twice
    /// is an error.
    fn label_slots(&self) -> Result<(HashMap<&str, usize>, usize), Error> {
        let mut slots = HashMap::new();
        let mut at = 0;
        for item in &self.items {
            match item {
                Item::Insn(insn) => at += insn.slots(),
                Item::Label(l) => {
                    if slots.insert(l.as_str(), at).is_some() {
                        return Err(Error::DuplicateLabel {
                            program: self.name.clone(),
                            label: l.clone(),
                        });
                    }
                }
                Item::Comment(_) => {}
            }
        }
        Ok((slots, at))
    }

    /// The instruction with its label target turned into an offset from the next slot.
    fn resolve(
        &self,
        insn: &Insn,
        slot: usize,
        labels: &HashMap<&str, usize>,
        total: usize,
    ) -> Result<Insn, Error> {
        let label = match insn {
            Insn::Jump {
                target: Target::Label(l),
            }
            | Insn::JumpIf {
                target: Target::Label(l),
                ..
            } => l,
            _ => return Ok(insn.clone()),
        };
        let to = *labels
            .get(label.as_str())
            .ok_or_else(|| Error::UndefinedLabel {
                program: self.name.clone(),
                label: label.clone(),
            })?;
        if to >= total {
            return Err(Error::JumpPastEnd {
                program: self.name.clone(),
                label: label.clone(),
            });
        }
        let off = to as i64 - (slot as i64 + 1);
        let off = i16::try_from(off).map_err(|_| Error::JumpOutOfRange {
            program: self.name.clone(),
            label: label.clone(),
            offset: off,
        })?;
        let mut insn = insn.clone();
        match &mut insn {
            Insn::Jump { target } | Insn::JumpIf { target, .. } => *target = Target::Offset(off),
            _ => unreachable!("only jumps carry labels"),
        }
        Ok(insn)
    }
}

/// A label or block comment attached to a slot of an assembled program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A label placed at the slot.
    Label(String),
    /// A block comment opening at the slot.
    Comment(String),
}

/// An assembled program: the exact slots the kernel gets, its map relocations, and the labels
/// and comments for the listing.
#[derive(Clone, Debug, Default)]
pub struct Assembled {
    /// The program's name.
    pub name: String,
    /// The encoded instructions (an `ld_imm64` takes two).
    pub slots: Vec<RawInsn>,
    /// Each map load, by slot.
    pub relocs: Vec<MapReloc>,
    /// Labels and comments, by the slot they stand before, in program order.
    pub notes: Vec<(usize, Note)>,
}

impl Assembled {
    /// The byte image (`struct bpf_insn[]`).
    pub fn bytes(&self) -> Vec<u8> {
        crate::encode::to_bytes(&self.slots)
    }

    /// The instruction count as the kernel counts it (an `ld_imm64` is two).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True for a program without instructions (never the case after `assemble`).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The annotated listing: block comments, labels, and each instruction with its slot,
    /// in the LLVM syntax. Map loads name their map, calls their helper (`call 23    ;
    /// bpf_redirect`), in a comment that keeps the line valid LLVM input.
    pub fn listing(&self) -> Result<String, Error> {
        let mut text = format!("{}:\n", self.name);
        let note_line = |text: &mut String, note: &Note| match note {
            Note::Comment(c) => writeln!(text, "    ; {c}").expect("write to String"),
            Note::Label(l) => writeln!(text, "{l}:").expect("write to String"),
        };
        let mut notes = self.notes.iter().peekable();
        for (slot, insn) in crate::disasm::disassemble(&self.slots)? {
            while let Some((_, note)) = notes.next_if(|(at, _)| *at <= slot) {
                note_line(&mut text, note);
            }
            let map = self.relocs.iter().find(|r| r.slot == slot);
            let line = match (map, &insn) {
                (Some(r), _) => format!("{insn}    ; map {}", r.map),
                (None, Insn::Call(helper)) => format!("{insn}    ; {}", helper.name()),
                (None, _) => insn.to_string(),
            };
            writeln!(text, "{slot:5}: {line}").expect("write to String");
        }
        // Labels and comments after the last instruction (a label there is a jump target
        // past the end: show it rather than hide it).
        for (_, note) in notes {
            note_line(&mut text, note);
        }
        Ok(text)
    }
}
