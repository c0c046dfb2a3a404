//! Fuzzes the assembler.
//!
//! 1. The input, read as a list of [`Op`]s, builds a program of random instructions, labels
//!    (defined and undefined, duplicated, far away) and map loads. `assemble` must never panic;
//!    when it fails, the error must be one the program really has; when it succeeds, the slots
//!    must disassemble and re-encode to themselves, the listing must build, and `write_elf` must
//!    succeed exactly when the name fits and every map is defined.
//! 2. The same input, read as raw 8-byte slots, must decode without panicking, and every
//!    successful decode must re-encode to the slots it used.

#![no_main]

use std::collections::{HashMap, HashSet};

use arbitrary::{Arbitrary, Unstructured};
use l3mp_asm::*;
use libfuzzer_sys::fuzz_target;

/// A register, operand or choice, picked by index (modulo the number of choices).
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Pick(u8);

impl Pick {
    fn of<T: Copy>(self, all: &[T]) -> T {
        all[usize::from(self.0) % all.len()]
    }
    fn reg(self) -> Reg {
        self.of(&Reg::ALL)
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Operand {
    Reg(Pick),
    Imm(i32),
}

impl Operand {
    fn src(self) -> Src {
        match self {
            Operand::Reg(r) => Src::Reg(r.reg()),
            Operand::Imm(i) => Src::Imm(i),
        }
    }
}

const WIDTHS: [Width; 2] = [Width::W64, Width::W32];
const SIZES: [Size; 4] = [Size::B, Size::H, Size::W, Size::DW];
const ORDERS: [Endian; 2] = [Endian::Be, Endian::Le];

/// One step of building a program.
#[derive(Arbitrary, Debug)]
enum Op {
    Alu(Pick, Pick, Pick, Operand),
    Neg(Pick, Pick),
    /// Any bit count: only 16, 32 and 64 assemble.
    Swap(Pick, u8, Pick),
    Load(Pick, Pick, Pick, i16),
    Store(Pick, Pick, i16, Operand),
    LoadImm64(Pick, i64),
    /// A map load of map `m % 4`; maps 0 and 1 are defined for the ELF check, 2 and 3 are not.
    LoadMap(Pick, u8),
    Call(Pick),
    Exit,
    /// Defines label `n % 48` (so duplicates happen).
    Label(u8),
    /// A jump, conditional or not: for `n < 192` to one of the labels the program defines
    /// (anywhere, before or after, `start` and `end` included), otherwise to label `n % 64`
    /// (often never defined).
    Jump(Option<(Pick, Pick, Pick, Operand)>, u8),
    /// A jump straight to a raw offset.
    JumpOffset(i16),
    Comment,
    /// Several instructions at once (see [`pad_count`]), so that jumps can end up out of
    /// 16-bit range.
    Pad(u8, bool),
}

/// Mostly a few instructions; rarely (6 in 256) 32768 of them, beyond a jump's reach (too slow
/// to do on every input).
fn pad_count(n: u8) -> usize {
    if n < 250 {
        usize::from(n % 64)
    } else {
        1 << 15
    }
}

fn label(n: u8, modulo: u8) -> String {
    format!("L{}", n % modulo)
}

/// What the builder knows about the program it made, to judge `assemble`'s verdict.
#[derive(Default)]
struct Facts {
    insns: usize,
    slots: usize,
    defined: HashMap<String, usize>,
    duplicated: HashSet<String>,
    referenced: HashSet<String>,
    bad_swap: bool,
    maps: Vec<String>,
}

const MAX_SLOTS: usize = 70_000;

/// The listing and the ELF writer are checked on programs up to this size (they are linear but
/// slow enough on far-jump programs to cut the fuzzing rate).
const MAX_CHECKED_SLOTS: usize = 4096;

fn build(ops: &[Op]) -> (Program, Facts) {
    let mut p = Program::new("fuzz");
    let mut f = Facts::default();
    // Programs with jumps get a `start` label before the first instruction and an `end` label
    // before a final `exit`, so that most jumps have somewhere to go.
    let jumps = ops.iter().any(|op| matches!(op, Op::Jump(..)));
    let mut targets: Vec<String> = Vec::new();
    if jumps {
        targets.extend(["start".to_string(), "end".to_string()]);
        f.defined.insert("start".into(), 0);
        p.label("start");
    }
    for op in ops {
        if let Op::Label(n) = op {
            targets.push(label(*n, 48));
        }
    }
    let push = |p: &mut Program, f: &mut Facts, insn: Insn| {
        f.insns += 1;
        f.slots += insn.slots();
        p.push(insn);
    };
    for op in ops {
        if f.slots > MAX_SLOTS {
            break;
        }
        let insn = match *op {
            Op::Alu(w, o, d, s) => Insn::Alu {
                width: w.of(&WIDTHS),
                op: o.of(&AluOp::ALL),
                dst: d.reg(),
                src: s.src(),
            },
            Op::Neg(w, d) => Insn::Neg {
                width: w.of(&WIDTHS),
                dst: d.reg(),
            },
            Op::Swap(o, bits, d) => {
                f.bad_swap |= ![16, 32, 64].contains(&bits);
                swap(o.of(&ORDERS), bits, d.reg())
            }
            Op::Load(s, d, b, off) => load(s.of(&SIZES), d.reg(), b.reg(), off),
            Op::Store(s, b, off, src) => store(s.of(&SIZES), b.reg(), off, src.src()),
            Op::LoadImm64(d, imm) => load_imm64(d.reg(), imm),
            Op::LoadMap(d, m) => {
                let map = format!("map{}", m % 4);
                f.maps.push(map.clone());
                load_map(d.reg(), &map)
            }
            Op::Call(h) => call(h.of(&Helper::ALL)),
            Op::Exit => exit(),
            Op::Label(n) => {
                let l = label(n, 48);
                if f.defined.insert(l.clone(), f.slots).is_some() {
                    f.duplicated.insert(l.clone());
                }
                p.label(&l);
                continue;
            }
            Op::Jump(cond, n) => {
                let l = if n < 192 && !targets.is_empty() {
                    targets[usize::from(n) % targets.len()].clone()
                } else {
                    label(n, 64)
                };
                f.referenced.insert(l.clone());
                match cond {
                    None => jump(l),
                    Some((w, c, d, s)) => Insn::JumpIf {
                        width: w.of(&WIDTHS),
                        cond: c.of(&Cond::ALL),
                        dst: d.reg(),
                        src: s.src(),
                        target: l.into(),
                    },
                }
            }
            Op::JumpOffset(off) => jump(Target::Offset(off)),
            Op::Comment => {
                p.comment("a comment");
                continue;
            }
            Op::Pad(n, wide) => {
                let n = pad_count(n).min(MAX_SLOTS - f.slots.min(MAX_SLOTS));
                for _ in 0..n {
                    let insn = if wide {
                        load_imm64(Reg::R1, -1)
                    } else {
                        mov(Reg::R0, 0)
                    };
                    push(&mut p, &mut f, insn);
                }
                continue;
            }
        };
        push(&mut p, &mut f, insn);
    }
    if jumps {
        f.defined.insert("end".into(), f.slots);
        p.label("end");
        push(&mut p, &mut f, exit());
    }
    (p, f)
}

/// `assemble` on a program: never a panic; a failure the program really has; a success that
/// round-trips.
fn check_program(ops: &[Op], elf_name: &str, defined_maps: u8) {
    let (p, f) = build(ops);
    let asm = match p.assemble() {
        Err(Error::DuplicateLabel { program, label }) => {
            assert_eq!(program, "fuzz");
            assert!(f.duplicated.contains(&label), "{label} is not duplicated");
            return;
        }
        Err(Error::UndefinedLabel { label, .. }) => {
            assert!(f.referenced.contains(&label) && !f.defined.contains_key(&label));
            assert!(f.duplicated.is_empty());
            return;
        }
        Err(Error::JumpOutOfRange { label, offset, .. }) => {
            assert!(i16::try_from(offset).is_err(), "{offset} fits");
            assert!(f.defined.contains_key(&label) && f.duplicated.is_empty());
            return;
        }
        Err(Error::JumpPastEnd { label, .. }) => {
            assert!(f.referenced.contains(&label), "{label} is not jumped to");
            assert_eq!(
                f.defined.get(&label),
                Some(&f.slots),
                "{label} is not at the end"
            );
            return;
        }
        Err(Error::Encode(why)) => {
            assert!(f.bad_swap, "unexpected encode error: {why}");
            return;
        }
        Err(Error::Empty(_)) => {
            assert_eq!(f.insns, 0);
            return;
        }
        Err(e) => panic!("unexpected error from assemble: {e}"),
        Ok(asm) => asm,
    };
    assert!(f.duplicated.is_empty() && !f.bad_swap && f.insns > 0);
    assert!(f.referenced.iter().all(|l| f.defined.contains_key(l)));
    assert_eq!(asm.len(), f.slots);
    assert_eq!(asm.relocs.len(), f.maps.len());

    // Disassemble, re-encode: the very same slots.
    let listing = disassemble(&asm.slots).expect("assembled slots disassemble");
    assert_eq!(listing.len(), f.insns);
    let mut again = Vec::with_capacity(asm.slots.len());
    for (slot, insn) in &listing {
        assert_eq!(*slot, again.len());
        again.extend(encode(insn).expect("decoded instructions encode"));
    }
    assert_eq!(again, asm.slots);
    let by_slot: HashMap<usize, &Insn> = listing.iter().map(|(s, i)| (*s, i)).collect();
    for r in &asm.relocs {
        assert!(matches!(
            by_slot.get(&r.slot),
            Some(Insn::LoadImm64 { imm: 0, .. })
        ));
    }
    if asm.len() > MAX_CHECKED_SLOTS {
        return;
    }
    asm.listing().expect("listing");

    // The ELF writer: fine exactly when the name fits and every loaded map is defined.
    let mut asm = asm;
    asm.name = elf_name.to_string();
    let maps: Vec<MapDef> = (0..defined_maps % 3)
        .map(|i| MapDef {
            name: format!("map{i}"),
            map_type: 2,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            flags: 0,
        })
        .collect();
    let name_ok =
        !elf_name.is_empty() && elf_name.len() <= MAX_PROGRAM_NAME && !elf_name.contains('\0');
    let maps_ok = f.maps.iter().all(|m| maps.iter().any(|d| d.name == *m));
    let elf = write_elf(&[(Section::Classifier, &asm)], &maps, "GPL");
    assert_eq!(elf.is_ok(), name_ok && maps_ok, "{:?}", elf.err());
}

/// Raw slots: decode never panics, and what decodes re-encodes to itself (an ld_imm64's
/// src_reg aside: relocated map loads carry BPF_PSEUDO_MAP_FD there, and decode ignores it).
fn check_raw(data: &[u8]) {
    let whole = data.len() / 8 * 8;
    let slots = from_bytes(&data[..whole]).expect("whole slots");
    assert_eq!(from_bytes(data).is_ok(), whole == data.len());
    for at in 0..slots.len() {
        if let Ok((insn, used)) = decode(&slots, at) {
            assert_eq!(used, insn.slots());
            let mut want = slots[at..at + used].to_vec();
            if matches!(insn, Insn::LoadImm64 { .. }) {
                want[0].src = 0;
            }
            assert_eq!(encode(&insn).expect("decoded instructions encode"), want);
        }
    }
    let _ = disassemble(&slots);
}

fuzz_target!(|data: &[u8]| {
    check_raw(data);
    let mut u = Unstructured::new(data);
    let (Ok(elf_name), Ok(defined_maps)) = (u.arbitrary::<String>(), u.arbitrary::<u8>()) else {
        return;
    };
    let Ok(ops) = u.arbitrary_take_rest_iter::<Op>() else {
        return;
    };
    let ops: Vec<Op> = ops.take(4096).filter_map(Result::ok).collect();
    check_program(&ops, &elf_name, defined_maps);
});
