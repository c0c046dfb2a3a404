//! The committed fuzz seeds (fuzz/seeds/<target>/) replay through the same checks as the fuzz
//! targets, so `cargo test` covers them without cargo-fuzz. Every file is decoded by the
//! targets' own input decoding (fuzz/fuzz_targets/common), so a file the targets accept is
//! accepted here: one too short to hold a configuration is skipped, as the targets skip it.
//! The fuzzer's own finds go to fuzz/corpus/<target>/, which git ignores and this test does not
//! read; the README's fuzzing section says how to promote them to seeds. The generated seeds
//! (`seed-NNN`) are rewritten from the capture corpus with
//! `cargo test --test fuzz_seeds -- --ignored`.

use std::path::{Path, PathBuf};

use l3mp::programs::{build, Hook};
use l3mp::roundtrip::{self, Case};

/// The fuzz targets' input decoding, compiled into this test as it is into each target.
#[path = "../fuzz/fuzz_targets/common/mod.rs"]
mod target_input;

fn seed_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

/// Every seed file of `target`, by name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(seed_dir(target))
        .unwrap_or_else(|e| panic!("fuzz/seeds/{target}: {e}"))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let name = f
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(f).expect("seed"))
        })
        .collect()
}

/// The packet targets.
const TARGETS: [&str; 4] = ["egress", "guard", "ingress_tc", "ingress_xdp"];

#[test]
fn every_seed_passes_its_target_checks() {
    let mut checked = 0;
    for target in TARGETS {
        let mut cases = 0;
        for (name, data) in seeds(target) {
            let Some((case, machine)) = target_input::case(&data) else {
                continue;
            };
            let result = match target {
                "egress" => roundtrip::egress(&machine, case.label, &case.packet),
                "guard" => roundtrip::guard(&machine, &case.packet, 0),
                "ingress_tc" => roundtrip::ingress(&machine, Hook::Tc, &case.packet),
                _ => roundtrip::ingress(&machine, Hook::Xdp, &case.packet),
            };
            result.unwrap_or_else(|v| panic!("fuzz/seeds/{target}/{name}: {v}"));
            cases += 1;
        }
        assert!(cases >= 8, "{target} has {cases} seeds holding a case");
        checked += cases;
    }
    eprintln!("{checked} seeds checked");
}

/// Writes the seeds: every capture frame for egress; for the targets of programs on ext (the
/// guard and the demuxes), what egress makes of it (labelled) and the frame as foreign
/// traffic, over an L3 and an Ethernet ext. Seeds
/// promoted from the fuzzer's finds (any other name) are kept.
#[test]
#[ignore = "regenerates fuzz/seeds; run by hand after the captures change"]
fn regenerate_seeds() {
    let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
    let mut frames = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&captures)
        .expect("captures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    names.sort();
    for pcap in names {
        // A few frames of each capture, the small ones first: seeds should be short.
        let mut f = l3mp::replay::frames(&pcap).expect("reads");
        f.sort_by_key(Vec::len);
        f.dedup();
        frames.extend(f.into_iter().take(4));
    }
    for target in TARGETS {
        let dir = seed_dir(target);
        std::fs::create_dir_all(&dir).expect("seed dir");
        for (name, _) in seeds(target) {
            if name.starts_with("seed-") {
                std::fs::remove_file(dir.join(name)).expect("remove a generated seed");
            }
        }
        let mut n = 0;
        for frame in &frames {
            for flags in [0u8, 1] {
                let data = Case::to_bytes(4, 1, 2, flags, frame);
                let mut write = |bytes: &[u8]| {
                    n += 1;
                    std::fs::write(dir.join(format!("seed-{n:03}")), bytes).expect("write");
                };
                if target == "egress" {
                    write(&data);
                    continue;
                }
                let case = Case::from_bytes(&data).expect("decodes");
                let bundle = build(&case.cfg).expect("builds");
                let wire = |f: &[u8]| {
                    if flags & 1 == 1 {
                        f.to_vec()
                    } else {
                        f.get(14..).unwrap_or_default().to_vec()
                    }
                };
                write(&Case::to_bytes(4, 1, 2, flags, &wire(frame)));
                let out = l3mp::vm::run(&bundle, &case.cfg, &l3mp::programs::egress_name(1), frame)
                    .expect("runs");
                if out.redirect.is_some() {
                    write(&Case::to_bytes(4, 1, 2, flags, &wire(&out.packet)));
                }
            }
        }
    }
}
