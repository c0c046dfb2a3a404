//! Every way assembling or writing ELF can fail: the error value, and a message that names what
//! went wrong (program, label, map).

use l3mp_asm::*;

fn pad(p: &mut Program, n: usize) {
    p.extend(std::iter::repeat_n(mov(Reg::R0, 0), n));
}

#[test]
fn undefined_label_names_program_and_label() {
    let mut p = Program::new("egress");
    p.label("start")
        .push(jump_if(Cond::Eq, Reg::R1, 0, "nowhere"))
        .push(exit());
    let err = p.assemble().unwrap_err();
    assert_eq!(
        err,
        Error::UndefinedLabel {
            program: "egress".into(),
            label: "nowhere".into()
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("egress") && msg.contains("'nowhere'"), "{msg}");
}

#[test]
fn duplicate_label_names_program_and_label() {
    let mut p = Program::new("ingress");
    p.label("again")
        .push(mov(Reg::R0, 0))
        .label("again")
        .push(exit());
    let err = p.assemble().unwrap_err();
    assert_eq!(
        err,
        Error::DuplicateLabel {
            program: "ingress".into(),
            label: "again".into()
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("ingress") && msg.contains("'again'"), "{msg}");
    // A duplicate is an error even when no jump uses the label.
    let mut p = Program::new("unused");
    p.label("x").label("x").push(exit());
    assert!(matches!(p.assemble(), Err(Error::DuplicateLabel { .. })));
}

#[test]
fn jump_beyond_16_bits_names_program_label_and_distance() {
    // 40000 instructions between the jump and its label.
    let mut p = Program::new("long");
    p.push(jump("far"));
    pad(&mut p, 40_000);
    p.label("far").push(exit());
    let err = p.assemble().unwrap_err();
    assert_eq!(
        err,
        Error::JumpOutOfRange {
            program: "long".into(),
            label: "far".into(),
            offset: 40_000
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("long") && msg.contains("'far'") && msg.contains("40000"),
        "{msg}"
    );
}

#[test]
fn jump_range_edges_are_exact() {
    // Forward: offset i16::MAX is fine, one more slot is not.
    for (padding, ok) in [(i16::MAX as usize, true), (i16::MAX as usize + 1, false)] {
        let mut p = Program::new("fwd");
        p.push(jump_if(Cond::Ne, Reg::R1, 0, "end"));
        pad(&mut p, padding);
        p.label("end").push(exit());
        let got = p.assemble();
        assert_eq!(got.is_ok(), ok, "forward over {padding}");
        if let Ok(asm) = got {
            assert_eq!(asm.slots[0].off, i16::MAX);
        }
    }
    // Backward: offset i16::MIN is fine, one more slot is not.
    for (padding, ok) in [(i16::MAX as usize, true), (i16::MAX as usize + 1, false)] {
        let mut p = Program::new("back");
        p.label("top");
        pad(&mut p, padding);
        p.push(jump("top")).push(exit());
        let got = p.assemble();
        assert_eq!(got.is_ok(), ok, "backward over {padding}");
        match got {
            Ok(asm) => assert_eq!(asm.slots[padding].off, i16::MIN),
            Err(e) => assert!(
                matches!(e, Error::JumpOutOfRange { offset: -32769, .. }),
                "{e}"
            ),
        }
    }
}

#[test]
fn jump_range_counts_slots_not_instructions() {
    // 16384 ld_imm64 are 32768 slots: one too many for a forward jump.
    let mut p = Program::new("wide");
    p.push(jump("end"));
    p.extend(std::iter::repeat_n(load_imm64(Reg::R1, 1), 16_384));
    p.label("end").push(exit());
    assert!(matches!(
        p.assemble(),
        Err(Error::JumpOutOfRange { offset: 32_768, .. })
    ));
}

#[test]
fn swap_of_8_bits_is_an_error() {
    for bits in [0u8, 8, 15, 17, 63, 128, 255] {
        let insn = swap(Endian::Be, bits, Reg::R1);
        let err = encode(&insn).unwrap_err();
        assert!(matches!(err, Error::Encode(_)), "{bits}: {err:?}");
        assert!(err.to_string().contains(&format!("{bits} bits")), "{err}");
        let mut p = Program::new("swap");
        p.push(insn).push(exit());
        assert!(matches!(p.assemble(), Err(Error::Encode(_))), "{bits}");
    }
    for bits in [16, 32, 64] {
        assert!(encode(&swap(Endian::Le, bits, Reg::R1)).is_ok());
    }
}

#[test]
fn empty_program_is_an_error() {
    let err = Program::new("nothing").assemble().unwrap_err();
    assert_eq!(err, Error::Empty("nothing".into()));
    assert!(err.to_string().contains("nothing"), "{err}");
    // Labels and comments alone are still empty.
    let mut p = Program::new("notes");
    p.comment("just a comment").label("just_a_label");
    assert_eq!(p.assemble().unwrap_err(), Error::Empty("notes".into()));
}

#[test]
fn unresolved_label_cannot_be_encoded_directly() {
    let err = encode(&jump("later")).unwrap_err();
    assert!(matches!(err, Error::Encode(_)));
    assert!(err.to_string().contains("'later'"), "{err}");
}

fn tiny(name: &str) -> Assembled {
    let mut p = Program::new(name);
    p.push(mov(Reg::R0, 0)).push(exit());
    p.assemble().expect("assemble")
}

#[test]
fn elf_program_names_must_fit_the_kernel() {
    let fits = "a".repeat(MAX_PROGRAM_NAME);
    assert_eq!(MAX_PROGRAM_NAME, 15);
    assert!(write_elf(&[(Section::Xdp, &tiny(&fits))], &[], "GPL").is_ok());
    let long = "sixteen_bytes_xx";
    assert_eq!(long.len(), 16);
    let err = write_elf(&[(Section::Classifier, &tiny(long))], &[], "GPL").unwrap_err();
    assert!(matches!(err, Error::Elf(_)));
    assert!(err.to_string().contains(long), "{err}");
    let err = write_elf(&[(Section::Classifier, &tiny(""))], &[], "GPL").unwrap_err();
    assert!(matches!(err, Error::Elf(_)), "{err}");
}

#[test]
fn elf_relocation_to_undefined_map_names_program_and_map() {
    let mut p = Program::new("lookup");
    p.push(load_map(Reg::R1, "missing_map"))
        .push(mov(Reg::R0, 0))
        .push(exit());
    let asm = p.assemble().expect("assemble");
    let other = MapDef {
        name: "present_map".into(),
        map_type: 1,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        flags: 0,
    };
    for maps in [vec![], vec![other]] {
        let err = write_elf(&[(Section::Classifier, &asm)], &maps, "GPL").unwrap_err();
        assert!(matches!(err, Error::Elf(_)));
        let msg = err.to_string();
        assert!(
            msg.contains("'lookup'") && msg.contains("'missing_map'"),
            "{msg}"
        );
    }
}

#[test]
fn error_messages_are_distinct() {
    // Display covers every variant with its own wording.
    let all = [
        Error::UndefinedLabel {
            program: "p".into(),
            label: "l".into(),
        },
        Error::DuplicateLabel {
            program: "p".into(),
            label: "l".into(),
        },
        Error::JumpOutOfRange {
            program: "p".into(),
            label: "l".into(),
            offset: 1,
        },
        Error::Empty("p".into()),
        Error::Encode("x".into()),
        Error::Decode {
            slot: 3,
            why: "x".into(),
        },
        Error::Elf("x".into()),
    ];
    let msgs: std::collections::HashSet<String> = all.iter().map(ToString::to_string).collect();
    assert_eq!(msgs.len(), all.len());
    assert!(all[5].to_string().contains("slot 3"));
}

#[test]
fn elf_duplicate_program_or_map_names_are_errors() {
    // aya-obj keys programs and maps by name: a duplicate would silently lose one of them.
    let a = tiny("twin");
    let b = tiny("twin");
    let err = write_elf(&[(Section::Classifier, &a), (Section::Xdp, &b)], &[], "GPL").unwrap_err();
    assert!(matches!(err, Error::Elf(_)));
    assert!(err.to_string().contains("'twin'"), "{err}");

    let map = |value_size| MapDef {
        name: "shared".into(),
        map_type: 2,
        key_size: 4,
        value_size,
        max_entries: 1,
        flags: 0,
    };
    let err = write_elf(&[(Section::Classifier, &a)], &[map(4), map(8)], "GPL").unwrap_err();
    assert!(matches!(err, Error::Elf(_)));
    assert!(err.to_string().contains("'shared'"), "{err}");

    let mut unnamed = map(4);
    unnamed.name.clear();
    assert!(write_elf(&[(Section::Classifier, &a)], &[unnamed], "GPL").is_err());
}

#[test]
fn elf_names_and_license_with_nul_are_errors() {
    // ELF symbol names and the license are C strings (the `object` crate panicked on these).
    let err = write_elf(&[(Section::Xdp, &tiny("nu\0l"))], &[], "GPL").unwrap_err();
    assert!(matches!(err, Error::Elf(_)));
    assert!(err.to_string().contains("nu\\0l"), "{err}");
    let map = MapDef {
        name: "m\0".into(),
        map_type: 2,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        flags: 0,
    };
    assert!(matches!(
        write_elf(&[(Section::Xdp, &tiny("ok"))], &[map], "GPL"),
        Err(Error::Elf(_))
    ));
    let err = write_elf(&[(Section::Xdp, &tiny("ok"))], &[], "GP\0L").unwrap_err();
    assert!(err.to_string().contains("license"), "{err}");
}

#[test]
fn a_jump_past_the_last_instruction_is_an_error() {
    let mut p = Program::new("tail");
    p.push(jump("end")).push(exit()).label("end");
    let err = p.assemble().unwrap_err();
    assert!(matches!(err, Error::JumpPastEnd { .. }), "{err}");
    assert!(
        err.to_string().contains("tail") && err.to_string().contains("'end'"),
        "{err}"
    );
}

#[test]
fn decoding_past_the_end_is_an_error() {
    let err = l3mp_asm::decode(&[], 0).unwrap_err();
    assert!(err.to_string().contains("only 0 slots"), "{err}");
}
