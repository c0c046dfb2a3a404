//! The committed capture corpus (tests/captures, recorded from real traffic by record.sh)
//! replays offline with no violation of the wire format, and the per-packet report matches the
//! committed golden report, for an L3 ext (label 1 of 4 bits) and an Ethernet ext (label 6 of 3).

use std::path::{Path, PathBuf};

use l3mp::replay::{replay, ReplayOptions};

fn captures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/captures exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    out.sort();
    out
}

fn check(opts: &ReplayOptions, suffix: &str) {
    let files = captures();
    assert!(files.len() >= 6, "the corpus is there: {files:?}");
    for pcap in files {
        let report = replay(&pcap, opts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.violations, 0, "{}:\n{}", pcap.display(), report.text);
        let golden = pcap.with_extension(suffix);
        let expected = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        assert_eq!(
            report.text,
            expected,
            "{} differs from {}",
            pcap.display(),
            golden.display()
        );
    }
}

#[test]
fn corpus_replays_over_an_l3_ext() {
    check(
        &ReplayOptions {
            label: 1,
            label_bits: 4,
            ethernet: false,
        },
        "l3.expected",
    );
}

#[test]
fn corpus_replays_over_an_ethernet_ext() {
    check(
        &ReplayOptions {
            label: 6,
            label_bits: 3,
            ethernet: true,
        },
        "ether.expected",
    );
}

#[test]
fn the_corpus_covers_what_it_claims() {
    let all: String = captures()
        .iter()
        .map(|p| std::fs::read_to_string(p.with_extension("l3.expected")).expect("golden"))
        .collect();
    for what in [
        "IPv4 TCP",
        "IPv4 UDP",
        "IPv6 UDP",
        "IPv4 ICMP",
        "IPv6 ICMPv6",
        "ARP",
        "IPv4 fragment",
        "IPv6+ext fragment",
        "IPv4+options",
        "IPv6+ext ICMPv6",
    ] {
        assert!(all.contains(what), "no {what} in the corpus");
    }
}
