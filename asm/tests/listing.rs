//! The annotated listing: block comments, labels, slot numbers (an `ld_imm64` takes two) and
//! `; map <name>` annotations, in program order, exactly.

use l3mp_asm::*;

fn demo() -> Program {
    let mut p = Program::new("demo");
    p.comment("look up the config")
        .label("start")
        .push(mov(Reg::R2, Reg::R10))
        .push(alu64(AluOp::Add, Reg::R2, -4))
        .push(store(Size::W, Reg::R10, -4, 0))
        .push(load_map(Reg::R1, "config"))
        .push(call(Helper::MapLookupElem))
        .push(jump_if(Cond::Eq, Reg::R0, 0, "miss"))
        .comment("hit: redirect to the port in the value")
        .push(load(Size::W, Reg::R2, Reg::R0, 0))
        .push(load_map(Reg::R1, "ports"))
        .push(mov(Reg::R3, 0))
        .push(call(Helper::RedirectMap))
        .push(exit())
        .label("miss")
        .comment("not configured: pass")
        .push(alu32(AluOp::Mov, Reg::R0, 2))
        .push(jump32_if(Cond::Sgt, Reg::R1, -1, "start"))
        .push(exit());
    p
}

const DEMO: &str = "\
demo:
    ; look up the config
start:
    0: r2 = r10
    1: r2 += -4
    2: *(u32 *)(r10 - 4) = 0
    3: r1 = 0 ll    ; map config
    5: call 1    ; bpf_map_lookup_elem
    6: if r0 == 0 goto +6
    ; hit: redirect to the port in the value
    7: r2 = *(u32 *)(r0 + 0)
    8: r1 = 0 ll    ; map ports
   10: r3 = 0
   11: call 51    ; bpf_redirect_map
   12: exit
miss:
    ; not configured: pass
   13: w0 = 2
   14: if w1 s> -1 goto -15
   15: exit
";

#[test]
fn listing_shows_comments_labels_slots_and_maps_in_order() {
    let asm = demo().assemble().expect("assemble");
    assert_eq!(asm.listing().expect("listing"), DEMO);
}

#[test]
fn listing_agrees_with_notes_and_relocations() {
    let asm = demo().assemble().expect("assemble");
    assert_eq!(
        asm.relocs,
        vec![
            MapReloc {
                slot: 3,
                map: "config".into()
            },
            MapReloc {
                slot: 8,
                map: "ports".into()
            },
        ]
    );
    assert_eq!(
        asm.notes,
        vec![
            (0, Note::Comment("look up the config".into())),
            (0, Note::Label("start".into())),
            (
                7,
                Note::Comment("hit: redirect to the port in the value".into())
            ),
            (13, Note::Label("miss".into())),
            (13, Note::Comment("not configured: pass".into())),
        ]
    );
    assert_eq!(asm.len(), 16);
}

#[test]
fn listing_keeps_notes_after_the_last_instruction() {
    // A label nothing jumps to may stand after the last instruction; the listing shows it.
    let mut p = Program::new("tail");
    p.push(exit()).label("end").comment("nothing here");
    let asm = p.assemble().expect("assemble");
    assert_eq!(
        asm.listing().expect("listing"),
        "tail:\n    0: exit\nend:\n    ; nothing here\n"
    );
}

#[test]
fn listing_of_undecodable_slots_is_an_error() {
    let mut asm = demo().assemble().expect("assemble");
    asm.slots[5].code = 0xff;
    let err = asm.listing().unwrap_err();
    assert!(matches!(err, Error::Decode { slot: 5, .. }), "{err}");
}

/// A block that skips one instruction, emitted by a helper that takes no label from its caller.
fn skip_if_zero(p: &mut Program, reg: Reg) {
    let skip = p.local("skip");
    p.push(jump_if(Cond::Eq, reg, 0, &skip))
        .push(alu64(AluOp::Add, Reg::R0, 1))
        .label(&skip);
}

#[test]
fn local_labels_are_unique_per_use_and_resolve_to_their_own_block() {
    let mut p = Program::new("locals");
    p.push(mov(Reg::R0, 0));
    skip_if_zero(&mut p, Reg::R1);
    skip_if_zero(&mut p, Reg::R2);
    let other = p.local("other");
    p.label(&other).push(exit());
    assert_eq!(other.name(), "other.0");
    let asm = p.assemble().expect("two uses of one helper assemble");
    assert_eq!(
        asm.listing().expect("listing"),
        "\
locals:
    0: r0 = 0
    1: if r1 == 0 goto +1
    2: r0 += 1
skip.0:
    3: if r2 == 0 goto +1
    4: r0 += 1
skip.1:
other.0:
    5: exit
"
    );
}

#[test]
fn a_local_label_placed_twice_is_a_duplicate() {
    let mut p = Program::new("twice");
    let l = p.local("here");
    p.label(&l).push(mov(Reg::R0, 0)).label(&l).push(exit());
    assert_eq!(
        p.assemble().unwrap_err(),
        Error::DuplicateLabel {
            program: "twice".into(),
            label: "here.0".into()
        }
    );
}
