//! `l3mp replay`: every packet of a capture through mark and demux in the offline VM, checked
//! against the wire-format spec, one line per packet.

mod capture;

use std::fmt::Write as _;
use std::path::Path;

use crate::programs::{build, Config, Hook, Unknown};
use crate::roundtrip::{self, Step};
use crate::run::Error;

pub use capture::frames;

/// What to replay a capture with.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub label: u8,
    pub label_bits: u8,
    pub ethernet: bool,
}

/// The report of a replay: one line per packet, a summary, and how many violations there were.
pub struct Report {
    pub text: String,
    pub violations: usize,
}

/// Replays the capture at `path`.
pub fn replay(path: &Path, opts: &ReplayOptions) -> Result<Report, Error> {
    let cfg = Config::offline(
        opts.label_bits,
        opts.ethernet,
        &[("link".to_string(), opts.label)],
        Unknown::Pass,
    );
    let bundle = build(&cfg).map_err(|e| Error::new(format!("--label {}: {e}", opts.label)))?;
    let mut text = String::new();
    let (mut restored, mut violations) = (0, 0);
    let frames = frames(path)?;
    for (n, frame) in frames.iter().enumerate() {
        let result = roundtrip::check(&bundle, &cfg, opts.label, frame);
        let line = match &result {
            Ok(trip) => {
                restored += usize::from(trip.restored);
                let steps: Vec<String> = trip.steps.iter().map(|s| step(&cfg, s)).collect();
                let fate = if trip.restored {
                    "restored"
                } else {
                    "not marked"
                };
                format!("{}  {fate}", steps.join("  "))
            }
            Err(v) => {
                violations += 1;
                format!("VIOLATION {v}")
            }
        };
        writeln!(
            text,
            "#{:<4} {:>5} B  {:<28} {line}",
            n + 1,
            frame.len(),
            describe(frame)
        )
        .expect("write to String");
    }
    writeln!(
        text,
        "{} packets: {restored} marked and restored, {} not IP or malformed, {violations} violations",
        frames.len(),
        frames.len() - restored - violations
    )
    .expect("write to String");
    Ok(Report { text, violations })
}

/// `program=verdict[>target]` with the program and target named for a reader.
fn step(cfg: &Config, s: &Step) -> String {
    let hook = if s.program.contains("xdp") {
        Hook::Xdp
    } else {
        Hook::Tc
    };
    let program = if s.program.starts_with("l3mp_eg") {
        "egress"
    } else if s.program == crate::programs::GUARD {
        "guard"
    } else if hook == Hook::Xdp {
        "xdp"
    } else {
        "tc"
    };
    // The same bytes as a tunnel would give them as MPLS (L3 ext, TC).
    let short = if hook == Hook::Tc && s.skb.protocol == roundtrip::ETH_P_MPLS {
        format!("{program}[mpls]")
    } else {
        program.to_string()
    };
    let verdict = if s.outcome.verdict == hook.redirected() {
        "redirect"
    } else if s.outcome.verdict == hook.pass() {
        "pass"
    } else if s.outcome.verdict == hook.drop() {
        "drop"
    } else {
        "aborted"
    };
    let target = s.outcome.redirect.map(|r| {
        cfg.links
            .iter()
            .find(|l| l.peer_ifindex == r.ifindex)
            .map_or("ext".to_string(), |l| l.name.clone())
    });
    match target {
        Some(t) => format!("{short}={verdict}>{t}"),
        None => format!("{short}={verdict}"),
    }
}

/// What the frame is, in a few words (by etherparse).
fn describe(frame: &[u8]) -> String {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return "truncated or malformed".into();
    };
    let net = match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let mut d = "IPv4".to_string();
            if v4.header().ihl() > 5 {
                d.push_str("+options");
            }
            if v4.is_payload_fragmented() {
                d.push_str(" fragment");
            }
            d
        }
        Some(NetSlice::Ipv6(v6)) => {
            let mut d = "IPv6".to_string();
            if !v6.extensions().is_empty() {
                d.push_str("+ext");
            }
            if v6.is_payload_fragmented() {
                d.push_str(" fragment");
            }
            d
        }
        None => {
            return match frame.get(12..14) {
                Some([0x08, 0x06]) => "ARP".into(),
                Some(b) => format!("ethertype {:#06x}", u16::from_be_bytes([b[0], b[1]])),
                None => "truncated".into(),
            };
        }
    };
    let transport = match &p.transport {
        Some(TransportSlice::Tcp(_)) => "TCP",
        Some(TransportSlice::Udp(_)) => "UDP",
        Some(TransportSlice::Icmpv4(_)) => "ICMP",
        Some(TransportSlice::Icmpv6(_)) => "ICMPv6",
        None => "",
    };
    format!("{net} {transport}").trim_end().to_string()
}
