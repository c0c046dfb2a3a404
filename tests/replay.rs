//! The committed capture corpus (tests/captures, recorded from real traffic by record.sh)
//! replays offline with no violation of the wire format, and the per-packet report matches the
//! committed golden report, for an L3 ext (label 1 of 4 bits) and an Ethernet ext (label 6 of 3).
//! A file that is not a capture is refused with its first bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    check(&ReplayOptions::lines(1, 4, false), "l3.expected");
}

#[test]
fn corpus_replays_over_an_ethernet_ext() {
    check(&ReplayOptions::lines(6, 3, true), "ether.expected");
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

/// `l3mp replay` on files that are neither pcap nor pcapng: it says so, with the bytes it found,
/// and exits non-zero.
#[test]
fn a_file_that_is_not_a_capture_is_named_with_its_first_bytes() {
    let dir = std::env::temp_dir().join(format!("l3mp-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "elf",
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0",
            "neither pcap nor pcapng: it starts with \
             7f 45 4c 46 02 01 01 00 00 00 00 00 00 00 00 00 (a pcap file",
        ),
        (
            "short",
            b"ab",
            "neither pcap nor pcapng: it starts with 61 62 (a pcap file",
        ),
        ("empty", b"", "neither pcap nor pcapng: the file is empty"),
    ];
    for (name, bytes, says) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_l3mp"))
            .arg("replay")
            .arg(&path)
            .output()
            .expect("l3mp runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {out:?}");
        assert!(
            stderr.starts_with(&format!("l3mp: {}: {says}", path.display())),
            "{name}: {stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A capture of VLAN-tagged frames (802.1Q VLAN 100 and a priority tag, VLAN 0; 802.1ad),
/// labelled and from the peer's MAC to ext's: they replay without a violation and no program
/// delivers them into a link: TC sees them untagged with the kernel holding the tag, XDP sees
/// the tag in the frame.
#[test]
fn vlan_tagged_captures_replay_and_never_enter_a_link() {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let opts = ReplayOptions::lines(6, 3, true);
    let cfg = l3mp::programs::Config::offline(
        3,
        l3mp::programs::Framing::Ethernet,
        &[("link".into(), 6)],
        l3mp::programs::Unknown::Pass,
    );
    let l3mp::programs::ExtKind::Ethernet { mac, peer_mac } = cfg.ext.kind else {
        unreachable!("an Ethernet configuration")
    };
    let mut ip = vec![0x45, 6 << 2, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend([10, 0, 0, 1, 10, 0, 0, 2]);
    let sum = etherparse::checksum::Sum16BitWords::new()
        .add_slice(&ip)
        .ones_complement()
        .to_be();
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend([0x13, 0x88, 0x13, 0x89, 0, 8, 0, 0]);
    let dir = std::env::temp_dir().join(format!("l3mp-vlan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("vlan.pcap");
    {
        let file = std::fs::File::create(&path).expect("create");
        let mut w = PcapWriter::new(file).expect("pcap header");
        for (tpid, tci) in [([0x81, 0x00], 100u16), ([0x81, 0x00], 0), ([0x88, 0xa8], 7)] {
            let frame = [
                &mac[..],
                &peer_mac,
                &tpid,
                &tci.to_be_bytes(),
                &[0x08, 0x00],
                &ip,
            ]
            .concat();
            let packet = PcapPacket::new(std::time::Duration::ZERO, frame.len() as u32, &frame);
            w.write_packet(&packet).expect("write");
        }
    }
    let report = replay(&path, &opts).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(report.violations, 0, "{}", report.text);
    let lines: Vec<&str> = report.text.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(lines.len(), 3, "{}", report.text);
    for line in lines {
        assert!(line.contains("egress=drop"), "{line}");
        assert!(
            line.contains("tc=pass") && line.contains("xdp=pass"),
            "{line}"
        );
        assert!(!line.contains("redirect"), "{line}");
    }
}
