//! Encode/decode properties: `decode(encode(i)) == i` for any valid instruction; assembling a
//! program of random jumps to random labels and disassembling it gives back the instructions,
//! with each offset pointing at its label's slot; and decoding arbitrary slots never panics and,
//! when it succeeds, re-encodes to the same slots.

use l3mp_asm::*;
use proptest::prelude::*;
use proptest::sample::{select, Index};

fn reg() -> impl Strategy<Value = Reg> {
    select(Reg::ALL.to_vec())
}

fn width() -> impl Strategy<Value = Width> {
    select(vec![Width::W64, Width::W32])
}

fn size() -> impl Strategy<Value = Size> {
    select(vec![Size::B, Size::H, Size::W, Size::DW])
}

/// Immediates: anything, with the edges drawn often.
fn imm() -> impl Strategy<Value = i32> {
    prop_oneof![
        any::<i32>(),
        select(vec![0, 1, -1, i32::MIN, i32::MAX, 0x7fff, -0x8000]),
    ]
}

fn src() -> impl Strategy<Value = Src> {
    prop_oneof![reg().prop_map(Src::Reg), imm().prop_map(Src::Imm)]
}

fn offset() -> impl Strategy<Value = i16> {
    prop_oneof![any::<i16>(), select(vec![0, 1, -1, i16::MIN, i16::MAX])]
}

/// Every instruction that does not jump (`LoadMap` aside: it decodes as `LoadImm64`).
fn straight_insn() -> impl Strategy<Value = Insn> {
    prop_oneof![
        (width(), select(AluOp::ALL.to_vec()), reg(), src()).prop_map(|(width, op, dst, src)| {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            }
        }),
        (width(), reg()).prop_map(|(width, dst)| Insn::Neg { width, dst }),
        (
            select(vec![Endian::Be, Endian::Le]),
            select(vec![16u8, 32, 64]),
            reg()
        )
            .prop_map(|(order, bits, dst)| Insn::Swap { order, bits, dst }),
        (size(), reg(), reg(), offset()).prop_map(|(size, dst, base, off)| Insn::Load {
            size,
            dst,
            base,
            off
        }),
        (size(), reg(), offset(), src()).prop_map(|(size, base, off, src)| Insn::Store {
            size,
            base,
            off,
            src
        }),
        (
            reg(),
            prop_oneof![
                any::<i64>(),
                select(vec![0, -1, i64::MIN, i64::MAX, 0xffff_ffff, 1 << 32])
            ]
        )
            .prop_map(|(dst, imm)| Insn::LoadImm64 { dst, imm }),
        select(Helper::ALL.to_vec()).prop_map(Insn::Call),
        Just(Insn::Exit),
    ]
}

/// A jump (conditional or not) to `target`.
fn jump_to(target: impl Strategy<Value = Target>) -> impl Strategy<Value = Insn> {
    (
        prop::option::of((width(), select(Cond::ALL.to_vec()), reg(), src())),
        target,
    )
        .prop_map(|(cond, target)| match cond {
            None => Insn::Jump { target },
            Some((width, cond, dst, src)) => Insn::JumpIf {
                width,
                cond,
                dst,
                src,
                target,
            },
        })
}

/// Any valid, encodable instruction.
fn insn() -> impl Strategy<Value = Insn> {
    prop_oneof![
        4 => straight_insn(),
        1 => jump_to(offset().prop_map(Target::Offset)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_inverts_encode(i in insn()) {
        let slots = encode(&i).expect("valid instructions encode");
        prop_assert_eq!(slots.len(), i.slots());
        let (back, used) = decode(&slots, 0).expect("our encoding decodes");
        prop_assert_eq!(used, slots.len());
        prop_assert_eq!(back, i);
        // And through the byte image.
        let bytes = to_bytes(&slots);
        prop_assert_eq!(bytes.len(), 8 * slots.len());
        prop_assert_eq!(from_bytes(&bytes).expect("whole slots"), slots);
    }

    #[test]
    fn decoding_one_slot_never_panics_and_reencodes(bytes in any::<[u8; 8]>()) {
        check_decode(&bytes)?;
    }

    #[test]
    fn decoding_plausible_slots_never_panics_and_reencodes(bytes in plausible_slots()) {
        check_decode(&bytes)?;
    }
}

/// Real encodings with a few bytes overwritten: decoding gets past its first checks (and into
/// `ld_imm64` pairs) far more often than with uniform bytes, and each mutation probes one field.
fn plausible_slots() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(insn(), 1..4),
        prop::collection::vec((any::<Index>(), any::<u8>()), 0..3),
    )
        .prop_map(|(insns, mutations)| {
            let slots: Vec<RawInsn> = insns
                .iter()
                .flat_map(|i| encode(i).expect("encode"))
                .collect();
            let mut bytes = to_bytes(&slots);
            let len = bytes.len();
            for (at, value) in mutations {
                bytes[at.index(len)] = value;
            }
            bytes
        })
}

/// Decodes every slot of `bytes` as the start of an instruction: no panic, and any success
/// re-encodes to exactly the slots it used. The one documented exception: an `ld_imm64` decodes
/// whatever its `src_reg` (relocated map loads carry `BPF_PSEUDO_MAP_FD` there), so that nibble is
/// cleared before comparing.
fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    let slots = from_bytes(bytes).expect("whole slots");
    for at in 0..slots.len() {
        if let Ok((insn, used)) = decode(&slots, at) {
            prop_assert!(used == insn.slots() && at + used <= slots.len());
            let mut want = slots[at..at + used].to_vec();
            if matches!(insn, Insn::LoadImm64 { .. }) {
                want[0].src = 0;
            }
            prop_assert_eq!(encode(&insn).expect("decoded instructions encode"), want);
        }
    }
    // The whole-program disassembler must not panic either, and agrees with decode.
    if let Ok(listing) = disassemble(&slots) {
        let mut at = 0;
        for (slot, insn) in listing {
            prop_assert_eq!(slot, at);
            at += insn.slots();
        }
        prop_assert_eq!(at, slots.len());
    }
    Ok(())
}

/// One step of a random program: a straight instruction, a map load, or a jump to label `k`.
#[derive(Clone, Debug)]
enum Step {
    Insn(Insn),
    Map(Reg, u8),
    Jump(Insn, Index),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => straight_insn().prop_map(Step::Insn),
        1 => (reg(), 0u8..3).prop_map(|(r, m)| Step::Map(r, m)),
        3 => (jump_to(Just(Target::Offset(0))), any::<Index>()).prop_map(|(j, k)| Step::Jump(j, k)),
    ]
}

/// A random program: steps, and for each label the step index it stands before (the end of the
/// program included).
fn random_program() -> impl Strategy<Value = (Vec<Step>, Vec<Index>)> {
    (
        prop::collection::vec(step(), 1..80),
        prop::collection::vec(any::<Index>(), 1..8),
    )
}

fn with_target(insn: &Insn, target: Target) -> Insn {
    let mut insn = insn.clone();
    match &mut insn {
        Insn::Jump { target: t } | Insn::JumpIf { target: t, .. } => *t = target,
        _ => unreachable!("jump_to makes jumps"),
    }
    insn
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn jumps_land_on_their_labels((steps, labels) in random_program()) {
        let nlabels = labels.len();
        // Where each label stands, as a step index (0..steps.len(): a jump past the last
        // instruction is an error, tested in errors.rs).
        let label_at: Vec<usize> = labels.iter().map(|i| i.index(steps.len())).collect();
        let name = |k: usize| format!("L{k}");

        // The expected slot of every step, counted here independently of the assembler.
        let mut slot_of_step = Vec::new();
        let mut at = 0;
        for s in &steps {
            slot_of_step.push(at);
            at += match s {
                Step::Insn(i) | Step::Jump(i, _) => i.slots(),
                Step::Map(..) => 2,
            };
        }
        slot_of_step.push(at);
        let total = at;

        let mut p = Program::new("random");
        let mut expected = Vec::new();
        let mut expected_relocs = Vec::new();
        for (n, s) in steps.iter().enumerate() {
            for k in (0..nlabels).filter(|k| label_at[*k] == n) {
                p.label(name(k));
            }
            let slot = slot_of_step[n];
            match s {
                Step::Insn(i) => {
                    p.push(i.clone());
                    expected.push((slot, i.clone()));
                }
                Step::Map(r, m) => {
                    let map = format!("map{m}");
                    p.push(load_map(*r, &map));
                    expected.push((slot, load_imm64(*r, 0)));
                    expected_relocs.push(MapReloc { slot, map });
                }
                Step::Jump(j, k) => {
                    let k = k.index(nlabels);
                    p.push(with_target(j, Target::Label(name(k))));
                    let off = slot_of_step[label_at[k]] as i64 - (slot as i64 + 1);
                    let off = i16::try_from(off).expect("short programs");
                    expected.push((slot, with_target(j, Target::Offset(off))));
                }
            }
        }
        for k in (0..nlabels).filter(|k| label_at[*k] == steps.len()) {
            p.label(name(k));
        }

        let asm = p.assemble().expect("every label is defined once");
        prop_assert_eq!(asm.len(), total);
        prop_assert_eq!(&asm.relocs, &expected_relocs);
        let labels_noted: Vec<(usize, String)> = asm
            .notes
            .iter()
            .filter_map(|(slot, n)| match n {
                Note::Label(l) => Some((*slot, l.clone())),
                Note::Comment(_) => None,
            })
            .collect();
        prop_assert_eq!(labels_noted.len(), nlabels);
        for (slot, l) in &labels_noted {
            let k: usize = l[1..].parse().expect("label number");
            prop_assert_eq!(*slot, slot_of_step[label_at[k]]);
        }
        let back = disassemble(&asm.slots).expect("our output disassembles");
        prop_assert_eq!(back, expected);
    }
}

#[test]
fn relocated_map_load_decodes_as_its_fd() {
    // After aya-obj's relocation the ld_imm64 carries src_reg = BPF_PSEUDO_MAP_FD and the fd.
    let mut slots = encode(&load_imm64(Reg::R1, 0)).expect("encode");
    slots[0].src = 1;
    slots[0].imm = 42;
    assert_eq!(
        decode(&slots, 0).expect("decodes"),
        (load_imm64(Reg::R1, 42), 2)
    );
}

#[test]
fn ld_imm64_halves_are_checked() {
    let mut slots = encode(&load_imm64(Reg::R1, -1)).expect("encode");
    assert!(decode(&slots[..1], 0).is_err(), "missing second slot");
    slots[1].dst = 1;
    assert!(decode(&slots, 0).is_err(), "second slot with a register");
    let mut slots = encode(&load_imm64(Reg::R1, -1)).expect("encode");
    slots[0].off = 1;
    assert!(decode(&slots, 0).is_err(), "first slot with an offset");
}

#[test]
fn unused_fields_are_rejected_not_dropped() {
    // A few encodings the kernel knows but the model does not: they must fail to decode rather
    // than come back as a different instruction.
    let cases: [[u8; 8]; 6] = [
        [0xbf, 0x21, 0x08, 0, 0, 0, 0, 0], // movsx (off = 8)
        [0x3f, 0x21, 0x01, 0, 0, 0, 0, 0], // sdiv (off = 1)
        [0x85, 0x10, 0, 0, 1, 0, 0, 0],    // bpf-to-bpf call (src = 1)
        [0xd7, 0x01, 0, 0, 16, 0, 0, 0],   // bswap16 (ALU64 | END)
        [0xdc, 0x01, 0, 0, 8, 0, 0, 0],    // be8
        [0x95, 0x00, 0, 0, 1, 0, 0, 0],    // exit with an immediate
    ];
    for bytes in cases {
        let slots = from_bytes(&bytes).expect("one slot");
        assert!(decode(&slots, 0).is_err(), "{bytes:02x?} decoded");
    }
    assert!(from_bytes(&[0; 12]).is_err());
}
