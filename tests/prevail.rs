//! Every program variant passes PREVAIL, an abstract-interpretation verifier, offline.

mod common;

use prevail::crab::ebpf_domain::DomainContext;
use prevail::crab::var_registry::VariableRegistry;
use prevail::elf_loader;
use prevail::fwd_analyzer;
use prevail::ir::program::Program;
use prevail::ir::unmarshal;
use prevail::linux::linux_platform::LinuxPlatform;
use prevail::spec::config::EbpfVerifierOptions;

/// Verifies every program of `elf`; returns (program, PREVAIL's first error) for each that
/// does not pass.
fn verify(elf: &[u8], section: &str) -> Vec<(String, String)> {
    let mut opts = EbpfVerifierOptions {
        mock_map_fds: true,
        ..EbpfVerifierOptions::default()
    };
    opts.runtime.check_for_termination = true;
    let mut platform = LinuxPlatform::new();
    let raw = elf_loader::read_elf(elf, "l3mp.o", section, "", &opts, &mut platform)
        .expect("PREVAIL reads the ELF");
    let mut failures = Vec::new();
    for mut prog in raw {
        platform.map_descriptors = prog.info.map_descriptors.clone();
        platform.set_program_type(&prog.info.program_type);
        let mut notes = Vec::new();
        let seq = unmarshal::unmarshal(&prog.prog, &mut notes, &prog.info, &platform, &opts)
            .unwrap_or_else(|e| panic!("{}: unmarshal: {e:?}", prog.function_name));
        let cfg = Program::from_sequence(&seq, &mut prog.info, &platform, &opts)
            .unwrap_or_else(|e| panic!("{}: CFG: {e:?}", prog.function_name));
        let ctx = DomainContext {
            program_info: &prog.info,
            program: &cfg,
            runtime: &opts.runtime,
            options: &opts,
            platform: &platform,
        };
        let mut registry = VariableRegistry::new();
        let result = fwd_analyzer::analyze(&cfg, &ctx, &mut registry);
        if result.failed {
            let error = result
                .find_first_error()
                .map_or_else(|| "failed without an error".into(), |e| e.to_string());
            failures.push((prog.function_name.clone(), error));
        }
    }
    failures
}

#[test]
fn every_variant_passes_prevail() {
    let mut checked = 0;
    for cfg in common::variants() {
        let bundle = l3mp::programs::build(&cfg).expect("programs build");
        let elf = bundle.elf().expect("ELF writes");
        for section in ["classifier", "xdp"] {
            let failures = verify(&elf, section);
            assert!(
                failures.is_empty(),
                "N={} {:?} {:?}: {failures:?}",
                cfg.label_bits,
                cfg.ext.kind,
                cfg.unknown
            );
        }
        checked += bundle.programs.len();
    }
    eprintln!("PREVAIL verified {checked} programs");
}

/// The check can fail: a program reading past the bounds it checked is rejected, at that
/// read, for that reason.
#[test]
fn prevail_rejects_an_unchecked_packet_read() {
    let failures = verify(&common::unchecked_read_elf(), "classifier");
    let [(program, error)] = failures.as_slice() else {
        panic!("one failure expected: {failures:?}")
    };
    assert_eq!(program, "bad");
    assert_eq!(error, PREVAIL_UNCHECKED_READ, "PREVAIL's message");
}

/// PREVAIL's message for the unchecked read (slot 1, one byte at r2 + 20).
const PREVAIL_UNCHECKED_READ: &str =
    "1: Upper bound must be at most packet_size (valid_access(r2.offset+20, width=1) for read)";
