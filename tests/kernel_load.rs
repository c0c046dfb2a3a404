//! With CAP_BPF and CAP_NET_ADMIN: the kernel's verifier accepts every program variant, loaded
//! through aya from the ELF the assembler wrote. Prints the verifier's instruction counts.

mod common;

use aya::programs::{ProgramError, SchedClassifier, Xdp};
use aya::EbpfLoader;

fn load(ebpf: &mut aya::Ebpf, name: &str) -> Result<aya::programs::ProgramInfo, ProgramError> {
    match ebpf.program_mut(name).expect("program in the ELF") {
        aya::programs::Program::SchedClassifier(p) => {
            let p: &mut SchedClassifier = p;
            p.load()?;
            p.info()
        }
        aya::programs::Program::Xdp(p) => {
            let p: &mut Xdp = p;
            p.load()?;
            p.info()
        }
        other => panic!("{name}: unexpected program type {other:?}"),
    }
}

#[test]
fn kernel_accepts_every_variant() {
    if !common::can_bpf("kernel_accepts_every_variant") {
        return;
    }
    let mut loaded = 0;
    for cfg in common::variants() {
        let bundle = l3mp::programs::build(&cfg).expect("programs build");
        let elf = bundle.elf().expect("ELF writes");
        let mut ebpf = EbpfLoader::new().load(&elf).expect("aya loads the ELF");
        for (_, prog) in &bundle.programs {
            let info = load(&mut ebpf, &prog.name).unwrap_or_else(|e| {
                let log = match &e {
                    ProgramError::LoadError { verifier_log, .. } => verifier_log.to_string(),
                    _ => String::new(),
                };
                panic!(
                    "N={} {:?} {}: kernel rejected it: {e}\n{log}",
                    cfg.label_bits, cfg.ext.kind, prog.name
                )
            });
            if cfg.label_bits == 4 {
                eprintln!(
                    "N=4 {:<12} {:<12} {:>4} insns, verifier processed {:>4}, jited {:>5} bytes",
                    match cfg.ext.kind {
                        l3mp::programs::ExtKind::L3 => "l3 ext",
                        l3mp::programs::ExtKind::Ethernet { .. } => "ethernet ext",
                    },
                    prog.name,
                    prog.len(),
                    info.verified_instruction_count().unwrap_or(0),
                    info.size_jitted()
                );
            }
            loaded += 1;
        }
    }
    eprintln!("the kernel accepted {loaded} programs");
    assert!(loaded > 0);
}

/// The check can fail: the kernel rejects a program reading past the bounds it checked.
#[test]
fn kernel_rejects_an_unchecked_packet_read() {
    if !common::can_bpf("kernel_rejects_an_unchecked_packet_read") {
        return;
    }
    let mut ebpf = EbpfLoader::new()
        .load(&common::unchecked_read_elf())
        .expect("aya parses it");
    assert!(load(&mut ebpf, "bad").is_err());
}
