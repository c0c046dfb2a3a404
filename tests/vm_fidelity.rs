//! The offline VM only proves what it runs faithfully. rbpf 0.4.1 zero-extends the immediate
//! of a 64-bit conditional jump where the kernel sign-extends it (pinned in
//! asm/tests/rbpf_disasm.rs), so no generated program may compare against a negative immediate
//! on 64 bits; nor use an instruction rbpf rejects (atomics, which the assembler cannot emit).

mod common;

use l3mp_asm::{disassemble, Insn, Src, Width};

/// The 64-bit conditional jumps against a negative immediate in `slots`.
fn divergent(prog: &l3mp_asm::Assembled) -> Vec<String> {
    disassemble(&prog.slots)
        .expect("decodes")
        .into_iter()
        .filter(|(_, i)| {
            matches!(
                i,
                Insn::JumpIf {
                    width: Width::W64,
                    src: Src::Imm(imm),
                    ..
                } if *imm < 0
            )
        })
        .map(|(slot, i)| format!("{}: {slot}: {i}", prog.name))
        .collect()
}

#[test]
fn no_program_depends_on_a_sign_extended_jump_immediate() {
    let mut found = Vec::new();
    for cfg in common::variants() {
        for (_, prog) in &l3mp::programs::build(&cfg).expect("builds").programs {
            found.extend(divergent(prog));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_check_finds_one() {
    let mut p = l3mp_asm::Program::new("probe");
    p.push(l3mp_asm::jump_if(
        l3mp_asm::Cond::Eq,
        l3mp_asm::Reg::R1,
        -1,
        "out",
    ))
    .label("out")
    .push(l3mp_asm::exit());
    assert_eq!(divergent(&p.assemble().expect("assembles")).len(), 1);
}
