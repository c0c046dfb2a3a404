//! With CAP_BPF and CAP_NET_ADMIN: the offline VM agrees with the kernel. Every corpus packet
//! (the captures, the fuzz seed corpus, and what egress makes of each) runs through the same
//! program in rbpf's interpreter, in rbpf's JIT and in the kernel (BPF_PROG_TEST_RUN through
//! aya); return code and output bytes must be equal, and so must the counters summed over the
//! whole run, and so must the word of the last far-end probe recorded under each label (the
//! corpus has probes; the arrival time is the kernel's clock, only checked to be set). The
//! interpreter and the JIT must agree on everything a run reports (verdict, redirect, bytes,
//! counters, tc_index, probes recorded), on every packet.
//!
//! Compared: egress (TC), the guard and both ingress flavours on an Ethernet ext; egress and XDP
//! ingress on an L3 ext. Not compared: TC ingress and the guard on an L3 ext, because a TC test
//! run always presents an Ethernet frame (the kernel runs `eth_type_trans` on the input), while
//! on a real L3 device the packet starts at the IP header; those are covered by the end-to-end
//! tests instead.
//! Nor can a test run present a VLAN tag the kernel holds outside the frame (`vlan_present`)
//! or a protocol other than the frame's EtherType: the VM's rows for those are checked against
//! the kernel by the end-to-end tests (`tests/protocols.rs`).
//! The redirect target is not observable through a test run; the output bytes identify it,
//! since each link's MACs are written in the same leaf that picks its target.
//! Packets shorter than 14 bytes (EINVAL) or longer than a test run takes are counted apart.

mod common;

use aya::maps::{Array, PerCpuArray};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use aya::{EbpfLoader, Pod};
use l3mp::programs::layout::{
    COUNTERS_MAP, COUNTER_SLOTS, PROBES_MAP, PROBE_SLOTS, TC_ACT_REDIRECT,
};
use l3mp::programs::{build, egress_name, ingress_name, Config, ExtKind, Hook, Unknown, GUARD};
use l3mp::run::point_links;
use l3mp::vm::{Engine, Machine};

/// The largest input a test run takes comfortably (a page less head- and tailroom).
const MAX_TEST_RUN: usize = 3000;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Counter([u64; 2]);
// SAFETY: two u64s, no padding, every bit pattern valid.
unsafe impl Pod for Counter {}

/// A `probes` entry: the probe's word and when it arrived.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Probe([u8; 8], u64);
// SAFETY: 16 bytes, no padding, every bit pattern valid.
unsafe impl Pod for Probe {}

/// Configurations for the comparison; hidden ends are `lo` so that the DEVMAP takes them.
fn configs() -> Vec<Config> {
    let mut out = Vec::new();
    for bits in [1u8, 4, 6] {
        let max = (1u8 << bits) - 1;
        for kind in common::ext_kinds() {
            let unknown = if bits == 4 {
                Unknown::Drop
            } else {
                Unknown::Pass
            };
            let mut cfg = common::config(bits, kind, &[1, max], unknown);
            cfg.links.dedup_by_key(|l| l.label);
            for link in &mut cfg.links {
                link.peer_ifindex = 1;
            }
            out.push(cfg);
        }
    }
    out
}

struct Tally {
    compared: usize,
    skipped: usize,
    mismatches: Vec<String>,
    vm_counters: Vec<[u64; 2]>,
    /// Runs of a demux the kernel also made in which the VM delivered into a link.
    delivered: u64,
    /// By label, the word of the last probe the VM recorded in a run the kernel also made.
    vm_probes: Vec<Option<[u8; 8]>>,
}

fn kernel_run(ebpf: &aya::Ebpf, name: &str, input: &[u8]) -> (i32, Vec<u8>) {
    let mut out = vec![0u8; input.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(input),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    };
    let result = match ebpf.program(name).expect("program") {
        aya::programs::Program::SchedClassifier(p) => {
            let p: &SchedClassifier = p;
            p.test_run(opts)
        }
        aya::programs::Program::Xdp(p) => {
            let p: &Xdp = p;
            p.test_run(opts)
        }
        other => panic!("{other:?}"),
    }
    .unwrap_or_else(|e| panic!("{name}: test run of {} bytes: {e}", input.len()));
    out.truncate(result.data_size_out as usize);
    (result.return_value as i32, out)
}

/// The bundle on the interpreter and on the JIT.
struct Machines {
    interp: Machine,
    jit: Machine,
}

fn compare(
    t: &mut Tally,
    ebpf: &aya::Ebpf,
    m: &Machines,
    cfg: &Config,
    name: &str,
    input: &[u8],
) -> Option<l3mp::vm::Outcome> {
    let vm = m.interp.run(name, input).expect("the VM runs it");
    // Only where the interpreter found no fault: the JIT checks no memory access.
    let jit = m.jit.run(name, input).expect("the JIT runs it");
    if jit != vm {
        t.mismatches.push(format!(
            "N={} {:?} {name} on {} bytes: interpreter {vm:?}, JIT {jit:?}",
            cfg.label_bits,
            cfg.ext.kind,
            input.len()
        ));
    }
    if input.len() < 14 || input.len() > MAX_TEST_RUN {
        t.skipped += 1;
        return Some(vm);
    }
    for (sum, add) in t.vm_counters.iter_mut().zip(&vm.counters()) {
        sum[0] += add[0];
        sum[1] += add[1];
    }
    for &(label, word, _) in &vm.probes {
        t.vm_probes[label as usize] = Some(word);
    }
    let demux = [Hook::Tc, Hook::Xdp].map(ingress_name);
    if demux.contains(&name) && vm.redirect.is_some() {
        t.delivered += 1;
    }
    let (verdict, bytes) = kernel_run(ebpf, name, input);
    t.compared += 1;
    if verdict != vm.verdict || bytes != vm.packet {
        t.mismatches.push(format!(
            "N={} {:?} {name} on {} bytes: kernel {verdict} {:02x?}, VM {} {:02x?}",
            cfg.label_bits,
            cfg.ext.kind,
            input.len(),
            &bytes[..bytes.len().min(40)],
            vm.verdict,
            &vm.packet[..vm.packet.len().min(40)]
        ));
    }
    Some(vm)
}

#[test]
fn vm_and_kernel_agree_on_every_corpus_packet() {
    if !common::can_bpf("vm_and_kernel_agree_on_every_corpus_packet") {
        return;
    }
    let packets = common::corpus::packets();
    assert!(packets.len() > 50, "corpus has {} packets", packets.len());
    let mut grand = (0, 0);
    for cfg in configs() {
        let bundle = build(&cfg).expect("builds");
        let machines = Machines {
            interp: Machine::new(&bundle, &cfg, Engine::Interp).expect("VM"),
            jit: Machine::new(&bundle, &cfg, Engine::Jit).expect("JIT"),
        };
        let mut ebpf = EbpfLoader::new()
            .load(&bundle.elf().expect("ELF"))
            .expect("aya loads");
        for (_, prog) in &bundle.programs {
            match ebpf.program_mut(&prog.name).expect("program") {
                aya::programs::Program::SchedClassifier(p) => p.load().expect("loads"),
                aya::programs::Program::Xdp(p) => p.load().expect("loads"),
                other => panic!("{other:?}"),
            }
        }
        point_links(&mut ebpf, &cfg).expect("link maps filled");
        let ethernet = matches!(cfg.ext.kind, ExtKind::Ethernet { .. });
        let ingress: Vec<&str> = if ethernet {
            vec![ingress_name(Hook::Tc), ingress_name(Hook::Xdp), GUARD]
        } else {
            vec![ingress_name(Hook::Xdp)]
        };
        let on_wire = |frame: &[u8]| {
            if ethernet {
                frame.to_vec()
            } else {
                frame.get(14..).unwrap_or_default().to_vec()
            }
        };
        let mut t = Tally {
            compared: 0,
            skipped: 0,
            mismatches: Vec::new(),
            vm_counters: vec![[0; 2]; COUNTER_SLOTS as usize],
            delivered: 0,
            vm_probes: vec![None; PROBE_SLOTS as usize],
        };
        for packet in &packets {
            let mut wires = vec![on_wire(packet)];
            if ethernet && packet.len() >= 12 {
                // The same frame as the peer would send it to ext.
                let from_peer = [&common::EXT_MAC[..], &common::PEER_MAC, &packet[12..]].concat();
                wires.push(from_peer);
            }
            for link in &cfg.links {
                let out = compare(
                    &mut t,
                    &ebpf,
                    &machines,
                    &cfg,
                    &egress_name(link.label),
                    packet,
                );
                if let Some(o) = out.filter(|o| o.verdict == TC_ACT_REDIRECT) {
                    // What the far end receives, with this configuration mirrored.
                    wires.push(on_wire(&l3mp::roundtrip::at_the_mirror(&o.packet)));
                }
            }
            for wire in &wires {
                for name in &ingress {
                    compare(&mut t, &ebpf, &machines, &cfg, name, wire);
                }
            }
        }
        let counters: PerCpuArray<_, Counter> = ebpf
            .map(COUNTERS_MAP)
            .expect("map")
            .try_into()
            .expect("per-CPU array");
        for slot in 0..COUNTER_SLOTS {
            let kernel = counters
                .get(&slot, 0)
                .expect("read")
                .iter()
                .fold([0u64; 2], |s, c| [s[0] + c.0[0], s[1] + c.0[1]]);
            if kernel != t.vm_counters[slot as usize] {
                t.mismatches.push(format!(
                    "N={} {:?}: counter {slot}: kernel {kernel:?}, VM {:?}",
                    cfg.label_bits, cfg.ext.kind, t.vm_counters[slot as usize]
                ));
            }
        }
        let probes: Array<_, Probe> = ebpf
            .map(PROBES_MAP)
            .expect("map")
            .try_into()
            .expect("array");
        for label in 0..PROBE_SLOTS {
            let Probe(word, at) = probes.get(&label, 0).expect("read");
            let kernel = (at != 0).then_some(word);
            if kernel != t.vm_probes[label as usize] {
                t.mismatches.push(format!(
                    "N={} {:?}: probes[{label}]: kernel {kernel:?}, VM {:?}",
                    cfg.label_bits, cfg.ext.kind, t.vm_probes[label as usize]
                ));
            }
        }
        let recorded = t.vm_probes.iter().flatten().count();
        assert!(
            recorded > 0,
            "N={} {:?}: the corpus's probes recorded nothing",
            cfg.label_bits,
            cfg.ext.kind
        );
        assert!(
            t.mismatches.is_empty(),
            "{} mismatches:\n{}",
            t.mismatches.len(),
            t.mismatches.join("\n")
        );
        eprintln!(
            "N={} {:<8} compared {} runs, 0 mismatches ({} outside test-run sizes)",
            cfg.label_bits,
            if ethernet { "ethernet" } else { "l3" },
            t.compared,
            t.skipped
        );
        let delivered = t.delivered;
        assert!(
            delivered > 100,
            "N={} {:?}: only {delivered} packets demuxed into links",
            cfg.label_bits,
            cfg.ext.kind
        );
        grand.0 += t.compared;
        grand.1 += t.skipped;
    }
    eprintln!("differential: {} packets, {} program runs compared in kernel and VM, 0 mismatches, {} not comparable by size", packets.len(), grand.0, grand.1);
    assert!(grand.0 > 1000);
}
