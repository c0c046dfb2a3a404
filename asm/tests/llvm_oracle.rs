//! LLVM as the oracle: the listing we print must assemble, with `llvm-mc -triple bpf`, to
//! exactly the bytes we encode, and LLVM must disassemble our bytes to exactly the text we print.
//!
//! LLVM 14 (Debian's `llvm` package on bookworm) knows neither `BPF_ST` store-immediate
//! (`*(u32 *)(r10 - 4) = 7`), nor `BPF_JSET` (`if r1 & 1 goto +1`), nor `BPF_MOD` (`r1 %= r2`):
//! it rejects them when assembling and calls them invalid encodings when disassembling. They are
//! excluded from the oracle here and covered by `rbpf_disasm.rs` instead. A newer LLVM that does
//! accept them must then agree with our bytes (`excluded_instructions_are_rejected_or_agree`).
//!
//! Without `llvm-mc` on PATH the tests print a skip notice and pass, unless `CI` is set.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use l3mp_asm::*;

/// The LLVM major version, or `None` (after printing the skip notice) when llvm-mc is missing.
/// Under `CI` a missing llvm-mc is a failure: CI must really run the oracle.
fn llvm_mc_version() -> Option<u32> {
    let out = match Command::new("llvm-mc").arg("--version").output() {
        Ok(out) if out.status.success() => out,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "llvm-mc not found but CI is set: the LLVM oracle must run in CI (apt-get install llvm)"
            );
            println!("skipped: llvm-mc not found (apt-get install llvm)");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split("LLVM version ")
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|major| major.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot read the version from llvm-mc --version:\n{text}"));
    Some(version)
}

/// Whether LLVM `version` prints the syntax our disassembler targets (LLVM 14, Debian 12's).
/// Elsewhere the text comparisons skip, with a notice; under CI, where `.ci/run` installs that
/// version, a different one is a lost oracle and fails.
fn compares_text(version: u32) -> bool {
    if version == 14 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but llvm-mc is LLVM {version}: the text oracle needs LLVM 14 (Debian 12's llvm)"
    );
    println!("skipped: text comparison targets LLVM 14, found LLVM {version}");
    false
}

/// Runs llvm-mc for BPF with `args`, feeding `input`; returns (stdout, stderr).
fn llvm_mc(args: &[&str], input: String) -> (String, String) {
    let mut child = Command::new("llvm-mc")
        .args(["-triple", "bpf"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn llvm-mc");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("wait for llvm-mc");
    writer.join().expect("writer").expect("write to llvm-mc");
    (
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

/// The 1-based input lines llvm-mc reported an error for.
fn error_lines(stderr: &str) -> BTreeSet<usize> {
    stderr
        .lines()
        .filter(|l| l.contains(": error: "))
        .filter_map(|l| l.strip_prefix("<stdin>:"))
        .filter_map(|l| l.split(':').next())
        .map(|n| n.parse().expect("line number"))
        .collect()
}

/// Parses `[0x18,0x01,...]` into bytes; fixups (`A`, `0x18'A'`) are not expected here.
fn parse_encoding(list: &str) -> Vec<u8> {
    let inner = list
        .trim()
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not an encoding list: {list}"));
    inner
        .split(',')
        .map(|b| {
            let hex = b
                .strip_prefix("0x")
                .unwrap_or_else(|| panic!("unexpected encoding byte {b:?} in {list}"));
            u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad byte {b:?} in {list}"))
        })
        .collect()
}

/// Assembles one instruction per line. Each line comes back as `Ok((text llvm printed back,
/// bytes))` or `Err(())` when llvm-mc rejected it.
fn llvm_assemble(lines: &[String]) -> Vec<Result<(String, Vec<u8>), ()>> {
    let mut input = lines.join("\n");
    input.push('\n');
    let (stdout, stderr) = llvm_mc(&["-show-encoding"], input);
    let rejected = error_lines(&stderr);
    let mut encodings = stdout.lines().filter_map(|l| {
        let (text, enc) = l.split_once("# encoding: ")?;
        Some((text.trim().to_string(), parse_encoding(enc)))
    });
    let out: Vec<_> = (1..=lines.len())
        .map(|n| {
            if rejected.contains(&n) {
                Err(())
            } else {
                Ok(encodings.next().expect("an encoding per accepted line"))
            }
        })
        .collect();
    assert!(encodings.next().is_none(), "more encodings than lines");
    out
}

/// True for the instructions LLVM 14 cannot assemble or disassemble (see the module comment).
fn beyond_llvm14(insn: &Insn) -> bool {
    matches!(
        insn,
        Insn::Store {
            src: Src::Imm(_),
            ..
        } | Insn::JumpIf {
            cond: Cond::Set,
            ..
        } | Insn::Alu { op: AluOp::Mod, .. }
    )
}

/// The oracle's instruction set: the shared systematic set, minus what LLVM 14 lacks.
fn oracle_set() -> Vec<Insn> {
    let set: Vec<Insn> = common::common_set()
        .into_iter()
        .filter(|i| !beyond_llvm14(i))
        .collect();
    // Make sure the filter only removed `mod`, and left every other operation in.
    for op in AluOp::ALL.into_iter().filter(|op| *op != AluOp::Mod) {
        for width in common::WIDTHS {
            assert!(set.iter().any(
                |i| matches!(i, Insn::Alu { op: o, width: w, .. } if *o == op && *w == width)
            ));
        }
    }
    set
}

/// One instruction line of a listing: slot, instruction text, map annotation.
struct ListingLine {
    slot: usize,
    text: String,
    map: Option<String>,
}

/// Reads the instruction lines back out of `Assembled::listing()`.
fn listing_lines(listing: &str) -> Vec<ListingLine> {
    listing
        .lines()
        .filter_map(|line| {
            let (slot, rest) = line.split_once(": ")?;
            let slot = slot.trim().parse().ok()?;
            // A trailing comment names a map or a helper; llvm-mc gets the instruction only.
            let (text, map) = match rest.split_once("    ; ") {
                Some((text, note)) => (text, note.strip_prefix("map ").map(str::to_string)),
                None => (rest, None),
            };
            Some(ListingLine {
                slot,
                text: text.to_string(),
                map,
            })
        })
        .collect()
}

#[test]
fn llvm_assembles_our_listing_to_our_bytes() {
    if llvm_mc_version().is_none() {
        return;
    }
    let insns = oracle_set();
    let mut p = Program::new("oracle");
    p.comment("a block comment that must not reach llvm-mc")
        .label("start")
        .push(load_map(Reg::R1, "some_map"))
        .extend(insns.iter().cloned());
    let asm = p.assemble().expect("assemble");
    let listing = asm.listing().expect("listing");
    let lines = listing_lines(&listing);
    assert_eq!(
        lines.len(),
        insns.len() + 1,
        "one listing line per instruction"
    );
    assert_eq!(lines[0].map.as_deref(), Some("some_map"));

    let texts: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
    let llvm = llvm_assemble(&texts);
    let mut failures = Vec::new();
    for (i, (line, got)) in lines.iter().zip(&llvm).enumerate() {
        let width = if i == 0 { 2 } else { insns[i - 1].slots() };
        let ours = to_bytes(&asm.slots[line.slot..line.slot + width]);
        match got {
            Err(()) => failures.push(format!(
                "{:5}: {}: llvm-mc rejected it",
                line.slot, line.text
            )),
            Ok((_, bytes)) if *bytes != ours => failures.push(format!(
                "{:5}: {}: llvm {bytes:02x?} ours {ours:02x?}",
                line.slot, line.text
            )),
            Ok(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} instructions disagree with llvm-mc:\n{}",
        failures.len(),
        lines.len(),
        failures.join("\n")
    );
}

#[test]
fn llvm_prints_our_text_back() {
    // llvm-mc echoes each instruction in its own printer's syntax: for LLVM 14, the syntax our
    // disassembler targets, that must be our text exactly. (Newer LLVMs print some operands in
    // hex; only the bytes are compared for them.)
    let Some(version) = llvm_mc_version() else {
        return;
    };
    if !compares_text(version) {
        return;
    }
    let insns = oracle_set();
    let texts: Vec<String> = insns.iter().map(ToString::to_string).collect();
    let llvm = llvm_assemble(&texts);
    let failures: Vec<String> = texts
        .iter()
        .zip(&llvm)
        .filter_map(|(ours, got)| match got {
            Ok((text, _)) if text == ours => None,
            Ok((text, _)) => Some(format!("ours {ours:?}, llvm {text:?}")),
            Err(()) => Some(format!("ours {ours:?}: rejected")),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn llvm_disassembles_our_bytes_to_our_text() {
    let Some(version) = llvm_mc_version() else {
        return;
    };
    if !compares_text(version) {
        return;
    }
    let insns = oracle_set();
    let asm = common::assemble_all("oracle", &insns);
    // One line of hex bytes per instruction, so that llvm-mc's output lines up with ours.
    let starts = common::slot_starts(&insns);
    let mut input = String::new();
    for (insn, at) in insns.iter().zip(&starts) {
        for b in to_bytes(&asm.slots[*at..*at + insn.slots()]) {
            input.push_str(&format!("{b:#04x} "));
        }
        input.push('\n');
    }
    let (stdout, stderr) = llvm_mc(&["-disassemble"], input);
    assert!(stderr.trim().is_empty(), "llvm-mc -disassemble: {stderr}");
    let texts: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('.'))
        .collect();
    assert_eq!(texts.len(), insns.len(), "one line per instruction");
    let ours = disassemble(&asm.slots).expect("disassemble");
    let failures: Vec<String> = ours
        .iter()
        .zip(&texts)
        .filter(|((_, insn), llvm)| insn.to_string() != **llvm)
        .map(|((slot, insn), llvm)| format!("{slot:5}: ours {insn}, llvm {llvm}"))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn excluded_instructions_are_rejected_or_agree() {
    let Some(version) = llvm_mc_version() else {
        return;
    };
    let mut excluded = common::beyond_llvm14();
    excluded.extend(common::alu().into_iter().filter(beyond_llvm14));
    assert!(excluded.iter().all(beyond_llvm14));
    let texts: Vec<String> = excluded.iter().map(ToString::to_string).collect();
    let llvm = llvm_assemble(&texts);
    for (insn, (text, got)) in excluded.iter().zip(texts.iter().zip(&llvm)) {
        match got {
            // The reason for the exclusion: this LLVM cannot assemble it.
            Err(()) => {}
            Ok((_, bytes)) => {
                assert_ne!(version, 14, "LLVM 14 was expected to reject {text}");
                let ours = to_bytes(&encode(insn).expect("encode"));
                assert_eq!(*bytes, ours, "{text}");
            }
        }
    }
    if version == 14 {
        assert!(llvm.iter().all(Result::is_err), "LLVM 14 accepted some");
    }
}

#[test]
fn error_line_parsing_finds_rejected_lines() {
    // The oracle's own plumbing: a rejected line in the middle must not shift the encodings.
    if llvm_mc_version().is_none() {
        return;
    }
    let lines = ["r0 = 1", "this is not bpf", "exit"].map(String::from);
    let got = llvm_assemble(&lines);
    assert_eq!(
        got[0].as_ref().map(|(_, b)| b.clone()),
        Ok(vec![0xb7, 0, 0, 0, 1, 0, 0, 0])
    );
    assert!(got[1].is_err());
    assert_eq!(
        got[2].as_ref().map(|(_, b)| b.clone()),
        Ok(vec![0x95, 0, 0, 0, 0, 0, 0, 0])
    );
}
