//! The fuzz targets' invariants, bounded, so that `cargo test` covers them without cargo-fuzz:
//! for arbitrary bytes and arbitrary configurations, every program runs without a VM error,
//! returns a verdict it may return, and does exactly what the wire-format spec says
//! (`l3mp::roundtrip`): marking then demuxing restores the packet with the label cleared, ECN
//! and every other byte unchanged, the IPv4 checksum valid whenever it was; non-IP and
//! malformed input passes untouched.

mod common;

use l3mp::programs::{build, ExtKind, Hook, Unknown};
use l3mp::roundtrip;
use l3mp::vm::{Engine, Machine};
use proptest::prelude::*;

/// An arbitrary configuration: label width, the label under test plus one other, ext kind,
/// unknown-label policy.
fn configs() -> impl Strategy<Value = (l3mp::programs::Config, u8)> {
    (
        1u8..=6,
        any::<u8>(),
        any::<u8>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(bits, a, b, ethernet, drop)| {
            let max = (1u8 << bits) - 1;
            let label = 1 + a % max;
            let mut labels = vec![label];
            let other = 1 + b % max;
            if other != label {
                labels.push(other);
            }
            let kind = if ethernet {
                common::ext_kinds()[1]
            } else {
                ExtKind::L3
            };
            let unknown = if drop { Unknown::Drop } else { Unknown::Pass };
            (common::config(bits, kind, &labels, unknown), label)
        })
}

/// An Ethernet frame carrying a plausible IP header (any TOS/ECN, any IHL, options, payload),
/// so that most cases reach the marking and demux paths.
fn ip_frames() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        any::<u8>(),
        0usize..=40,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(v6, tc, extra, mut tail)| {
            let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
            if v6 {
                frame.extend([0x86, 0xdd, 0x60 | (tc >> 4), tc << 4, 0, 0]);
                frame.extend([0u8; 36]);
            } else {
                let ihl = 5 + (extra / 4).min(10) as u8;
                frame.extend([0x08, 0x00, 0x40 | ihl, tc]);
                let header_len = 4 * usize::from(ihl);
                frame.extend(std::iter::repeat_n(0x11, header_len - 2));
                let csum = etherparse::checksum::Sum16BitWords::new()
                    .add_slice(&frame[14..14 + header_len])
                    .ones_complement()
                    .to_be();
                frame[24..26].copy_from_slice(&csum.to_be_bytes());
            }
            frame.append(&mut tail);
            frame
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_follow_the_spec((cfg, label) in configs(), bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let bundle = build(&cfg).expect("programs build");
        roundtrip::check(&machine(&bundle, &cfg), label, &bytes).map_err(|v| TestCaseError::fail(v.0))?;
    }

    #[test]
    fn ip_frames_round_trip((cfg, label) in configs(), frame in ip_frames()) {
        let bundle = build(&cfg).expect("programs build");
        let trip = roundtrip::check(&machine(&bundle, &cfg), label, &frame).map_err(|v| TestCaseError::fail(v.0))?;
        prop_assert!(trip.restored, "a well-formed IP frame is marked, sent and restored");
        for step in &trip.steps {
            let hook = if step.program.contains("xdp") { Hook::Xdp } else { Hook::Tc };
            prop_assert!(hook.verdicts().contains(&step.outcome.verdict), "{}: verdict {}", step.program, step.outcome.verdict);
        }
    }
}

/// The checker can fail: a spec violation planted in a program's output is reported.
#[test]
fn a_wrong_program_is_caught() {
    let cfg = common::config(4, ExtKind::L3, &[1], Unknown::Pass);
    let mut bundle = build(&cfg).expect("programs build");
    // Swap the egress program for the ingress one: egress then passes instead of marking.
    let ingress = bundle.program("l3mp_in_tc").expect("exists").slots.clone();
    let egress = bundle
        .programs
        .iter_mut()
        .find(|(_, p)| p.name == "l3mp_eg_1")
        .expect("exists");
    egress.1.slots = ingress;
    egress.1.relocs = bundle_relocs(&cfg);
    let frame = {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xdd, 0x60];
        f.extend([0u8; 39]);
        f
    };
    let err = roundtrip::check(&machine(&bundle, &cfg), 1, &frame).expect_err("must be caught");
    assert!(err.0.contains("l3mp_eg_1"), "{err}");
}

/// The checker catches a program that writes a counter slot it never looked up, even where it
/// leaves the packet and verdict as the spec says, on either engine.
#[test]
fn a_write_to_a_counter_not_looked_up_is_caught() {
    use l3mp::programs::layout::{COUNTERS_MAP, COUNTER_SIZE};
    use l3mp_asm::{
        alu64, call, exit, jump_if, load_map, mov, store, AluOp, Cond, Helper, Program, Reg, Size,
    };
    let cfg = common::config(4, ExtKind::L3, &[1], Unknown::Pass);
    let mut bundle = build(&cfg).expect("programs build");
    // A guard that passes everything untouched, as the spec says for non-IP, but adds 9 bytes
    // to the slot after the one it looked up.
    let mut p = Program::new(l3mp::programs::GUARD);
    p.extend([
        store(Size::W, Reg::R10, -4, 0),
        mov(Reg::R2, Reg::R10),
        alu64(AluOp::Add, Reg::R2, -4),
        load_map(Reg::R1, COUNTERS_MAP),
        call(Helper::MapLookupElem),
        mov(Reg::R1, 9),
        jump_if(Cond::Eq, Reg::R0, 0, "out"),
        store(Size::DW, Reg::R0, COUNTER_SIZE as i16 + 8, Reg::R1),
    ]);
    p.label("out");
    p.extend([mov(Reg::R0, -1), exit()]);
    let guard = p.assemble().expect("assembles");
    let slot = bundle
        .programs
        .iter_mut()
        .find(|(_, p)| p.name == l3mp::programs::GUARD)
        .expect("exists");
    slot.1 = guard;
    let not_ip = [0u8; 20];
    for engine in engines() {
        let m = Machine::new(&bundle, &cfg, engine).expect("the VM takes the programs");
        let err = roundtrip::guard(&m, &not_ip, 0).expect_err("must be caught");
        assert!(
            err.0.contains("counter slots [(1, [0, 9])]"),
            "{engine:?}: {err}"
        );
        // The stray is taken: the next packet starts clean, and is caught the same way.
        let again = roundtrip::guard(&m, &not_ip, 0).expect_err("caught again");
        assert_eq!(again, err, "{engine:?}");
    }
}

/// Every engine this host can run.
fn engines() -> Vec<Engine> {
    let mut engines = vec![Engine::Interp];
    if cfg!(target_arch = "x86_64") {
        engines.push(Engine::Jit);
    }
    engines
}

/// The programs on the interpreter, the engine of every test.
fn machine(bundle: &l3mp::programs::Bundle, cfg: &l3mp::programs::Config) -> Machine {
    Machine::new(bundle, cfg, Engine::Interp).expect("the VM takes the programs")
}

fn bundle_relocs(cfg: &l3mp::programs::Config) -> Vec<l3mp_asm::MapReloc> {
    build(cfg)
        .expect("builds")
        .program("l3mp_in_tc")
        .expect("exists")
        .relocs
        .clone()
}
