//! rbpf's JIT, the fast engine of `l3mp replay --engine jit`, agrees with the interpreter (the
//! reference) on the whole corpus, for every program variant: each program run directly on
//! every corpus packet, and every packet's whole round trip (`l3mp replay`'s checks, with the
//! kernel's `__sk_buff` fields and the MPLS runs of an L3 ext), give the same verdicts,
//! redirects, bytes, counters and tc_index on both. The JIT checks no memory access, so it
//! only runs what the interpreter ran without a fault. Needs no root (the differential test
//! adds the kernel to the comparison).

mod common;

use l3mp::programs::{build, ExtKind};
use l3mp::roundtrip;
use l3mp::vm::{Engine, Machine};

#[test]
fn interpreter_and_jit_agree_on_every_corpus_packet() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipping: rbpf's JIT compiles for x86_64 only");
        return;
    }
    let packets = common::corpus::packets();
    assert!(packets.len() > 50, "corpus has {} packets", packets.len());
    let (mut runs, mut trips, mut faults, mut restored) = (0, 0, 0, 0);
    let mut mismatches = Vec::new();
    for cfg in common::variants() {
        let bundle = build(&cfg).expect("builds");
        let interp = Machine::new(&bundle, &cfg, Engine::Interp).expect("VM");
        let jit = Machine::new(&bundle, &cfg, Engine::Jit).expect("JIT");
        let ethernet = matches!(cfg.ext.kind, ExtKind::Ethernet { .. });
        for packet in &packets {
            // Each program on the packet as it is (a frame) and, on an L3 ext, without its
            // MAC header (as the tunnel carries it).
            let mut inputs = vec![packet.clone()];
            if !ethernet {
                inputs.push(packet.get(14..).unwrap_or_default().to_vec());
            }
            for input in &inputs {
                for (_, prog) in &bundle.programs {
                    let Ok(want) = interp.run(&prog.name, input) else {
                        faults += 1;
                        continue;
                    };
                    let got = jit.run(&prog.name, input).expect("the JIT runs it");
                    runs += 1;
                    if got != want {
                        mismatches.push(format!(
                            "N={} {:?} {} on {:02x?}: interpreter {want:?}, JIT {got:?}",
                            cfg.label_bits, cfg.ext.kind, prog.name, input
                        ));
                    }
                }
            }
            for link in &cfg.links {
                let want = roundtrip::check(&interp, link.label, packet);
                if want.as_ref().is_err_and(|v| v.0.contains("VM error")) {
                    faults += 1;
                    continue;
                }
                let got = roundtrip::check(&jit, link.label, packet);
                trips += 1;
                restored += usize::from(want.as_ref().is_ok_and(|t| t.restored));
                if got != want {
                    mismatches.push(format!(
                        "N={} {:?} round trip of label {} on {:02x?}: interpreter {want:?}, JIT {got:?}",
                        cfg.label_bits, cfg.ext.kind, link.label, packet
                    ));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(10)].join("\n")
    );
    eprintln!(
        "{} packets: {runs} program runs and {trips} round trips ({restored} restored) agree; \
         {faults} faulted in the interpreter and were not run on the JIT",
        packets.len()
    );
    assert!(
        runs > 10_000 && restored > 1000,
        "{runs} runs, {restored} restored"
    );
}
