//! `l3mp replay`: every packet of a capture through mark and demux in the offline VM, checked
//! against the wire-format spec: one line per packet (or only the violations, or the totals),
//! as text or as one JSON document.

mod capture;
mod output;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::programs::{build, Bundle, Config, Framing, Hook, Unknown};
use crate::roundtrip::{self, Step};
use crate::vm::{Engine, Machine};

pub use capture::frames;
use output::Output;

crate::error::line_error!(
    /// A replay that could not be done (a capture not read, a report not written), as one
    /// line.
);

/// What a replay prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    /// A line per packet, then the totals.
    Packets,
    /// Every violation, then the totals.
    Summary,
    /// Every violation and nothing else.
    Violations,
}

/// What to replay a capture with.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub label: u8,
    pub label_bits: u8,
    pub ethernet: bool,
    /// The engine the programs run on.
    pub engine: Engine,
    pub show: Show,
    /// One JSON document instead of text.
    pub json: bool,
    /// A progress bar on stderr when it is a terminal and the replay takes more than a second.
    pub progress: bool,
}

impl ReplayOptions {
    /// The per-packet text report on the interpreter, without a progress bar.
    pub fn lines(label: u8, label_bits: u8, ethernet: bool) -> ReplayOptions {
        ReplayOptions {
            label,
            label_bits,
            ethernet,
            engine: Engine::Interp,
            show: Show::Packets,
            json: false,
            progress: false,
        }
    }
}

/// How many packets a replay saw, and what became of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub packets: usize,
    /// Marked by egress and restored by both ingress flavours.
    pub restored: usize,
    pub violations: usize,
}

impl Totals {
    /// Packets egress rightly left unmarked: not IP, or malformed.
    pub fn not_marked(&self) -> usize {
        self.packets - self.restored - self.violations
    }
}

/// The report of a replay as text, and how many violations there were.
pub struct Report {
    pub text: String,
    pub violations: usize,
}

/// Replays the capture at `path` into a string.
pub fn replay(path: &Path, opts: &ReplayOptions) -> Result<Report, Error> {
    let mut out = Vec::new();
    let totals = replay_to(path, opts, &mut out)?;
    Ok(Report {
        text: String::from_utf8(out).expect("the report is UTF-8"),
        violations: totals.violations,
    })
}

/// How long a replay runs before it shows a progress bar.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// Packets a thread checks at a time (and between progress bar updates).
const BATCH: usize = 8192;

/// What became of a batch of packets, and the entries of those shown in the report.
#[derive(Default)]
struct Done {
    packets: usize,
    restored: usize,
    violations: usize,
    /// The entries, one after the other (one string for the batch, not one per packet).
    text: String,
    /// Where each entry sits in `text`.
    entries: Vec<std::ops::Range<usize>>,
}

/// Replays the capture at `path`, writing the report to `out`. Batches of packets go round
/// to as many threads as there are CPUs, each with its own machine; the report keeps the
/// packets' order.
pub fn replay_to(path: &Path, opts: &ReplayOptions, out: &mut dyn Write) -> Result<Totals, Error> {
    let framing = if opts.ethernet {
        Framing::Ethernet
    } else {
        Framing::Ip
    };
    let cfg = Config::offline(
        opts.label_bits,
        framing,
        &[("link".to_string(), opts.label)],
        Unknown::Pass,
    );
    let bundle = build(&cfg).map_err(|e| Error::new(format!("--label {}: {e}", opts.label)))?;
    let file = capture::Mapped::open(path)?;
    report(
        &bundle,
        &cfg,
        |put| capture::each_frame(path, file.bytes(), put),
        path,
        opts,
        out,
    )
}

/// Checks the frames `frames` gives (those of the capture at `path`, each to the closure it is
/// handed) with `bundle`, generated from `cfg`, and writes the report to `out`. The frames are
/// checked in batches by as many threads as there are CPUs, each with its own machine, from
/// the first batch on while `frames` still reads the capture; the report keeps their order.
fn report<'f, F: AsRef<[u8]> + Send + 'f>(
    bundle: &Bundle,
    cfg: &Config,
    frames: impl FnOnce(&mut dyn FnMut(F)) -> Result<(), Error>,
    path: &Path,
    opts: &ReplayOptions,
    out: &mut dyn Write,
) -> Result<Totals, Error> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let started = Instant::now();
    let bar = indicatif::ProgressBar::hidden();
    let mut show_bar = opts.progress && std::io::stderr().is_terminal();
    let mut report = Output::new(out, path, opts)?;
    let mut totals = Totals::default();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<Done, Error>)>();
    let (batch_tx, batch_rx) = std::sync::mpsc::channel::<(usize, Vec<F>)>();
    let batch_rx = std::sync::Mutex::new(batch_rx);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (tx, batch_rx) = (tx.clone(), &batch_rx);
            s.spawn(move || {
                let machine = match Machine::new(bundle, cfg, opts.engine) {
                    Ok(m) => m,
                    Err(e) => return drop(tx.send((0, Err(Error::new(e.to_string()))))),
                };
                loop {
                    let next = batch_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((b, batch))) = next else {
                        return; // every batch is taken
                    };
                    let done = check_all(&machine, cfg, opts, b * BATCH + 1, &batch);
                    if tx.send((b, Ok(done))).is_err() {
                        return; // the report stopped
                    }
                }
            });
        }
        drop(tx);
        // The capture is read into batches, each checked as soon as it is whole.
        let (mut batch, mut batches, mut count) = (Vec::with_capacity(BATCH), 0, 0);
        let read = frames(&mut |frame| {
            count += 1;
            batch.push(frame);
            if batch.len() == BATCH {
                let whole = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                let _ = batch_tx.send((batches, whole));
                batches += 1;
            }
        });
        if !batch.is_empty() {
            let _ = batch_tx.send((batches, batch));
        }
        drop(batch_tx);
        read?;
        bar.set_length(count);
        // Batches arrive in any order; each is written once those before it are.
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        for (b, done) in rx {
            waiting.insert(b, done?);
            while let Some(done) = waiting.remove(&next) {
                totals.packets += done.packets;
                totals.restored += done.restored;
                totals.violations += done.violations;
                for entry in &done.entries {
                    report.packet(&done.text[entry.clone()])?;
                }
                next += 1;
                if show_bar && started.elapsed() > PROGRESS_AFTER {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    show_bar = false;
                }
                bar.inc(done.packets as u64);
            }
        }
        Ok::<(), Error>(())
    })?;
    bar.finish_and_clear();
    report.finish(&totals)?;
    Ok(totals)
}

/// Checks `frames`, the first of which is packet number `first`.
fn check_all<F: AsRef<[u8]>>(
    machine: &Machine,
    cfg: &Config,
    opts: &ReplayOptions,
    first: usize,
    frames: &[F],
) -> Done {
    let mut done = Done {
        packets: frames.len(),
        ..Done::default()
    };
    for (i, frame) in frames.iter().enumerate() {
        let frame = frame.as_ref();
        let result = roundtrip::check(machine, opts.label, frame);
        done.restored += usize::from(result.as_ref().is_ok_and(|t| t.restored));
        done.violations += usize::from(result.is_err());
        if opts.show == Show::Packets || result.is_err() {
            let start = done.text.len();
            output::entry(&mut done.text, cfg, opts.json, first + i, frame, &result);
            done.entries.push(start..done.text.len());
        }
        if let Ok(trip) = result {
            trip.recycle();
        }
    }
    done
}

/// Writes `program=verdict[>target]` with the program and target named for a reader.
fn step(out: &mut String, cfg: &Config, s: &Step) {
    let hook = if s.program == crate::programs::ingress_name(Hook::Xdp) {
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
    out.push_str(program);
    // The same bytes as a tunnel would give them as MPLS (L3 ext, TC).
    if hook == Hook::Tc && s.skb.protocol == roundtrip::ETH_P_MPLS {
        out.push_str("[mpls]");
    }
    out.push('=');
    out.push_str(if s.outcome.verdict == hook.redirected() {
        "redirect"
    } else if s.outcome.verdict == hook.pass() {
        "pass"
    } else if s.outcome.verdict == hook.drop() {
        "drop"
    } else {
        "aborted"
    });
    if let Some(r) = s.outcome.redirect {
        out.push('>');
        out.push_str(
            cfg.links
                .iter()
                .find(|l| l.peer_ifindex == r.ifindex)
                .map_or("ext", |l| &l.name),
        );
    }
}

/// Writes what the frame is, in a few words (by etherparse).
fn describe(out: &mut String, frame: &[u8]) {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use std::fmt::Write;
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return out.push_str("truncated or malformed");
    };
    match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            out.push_str("IPv4");
            if v4.header().ihl() > 5 {
                out.push_str("+options");
            }
            if v4.is_payload_fragmented() {
                out.push_str(" fragment");
            }
        }
        Some(NetSlice::Ipv6(v6)) => {
            out.push_str("IPv6");
            if !v6.extensions().is_empty() {
                out.push_str("+ext");
            }
            if v6.is_payload_fragmented() {
                out.push_str(" fragment");
            }
        }
        None => {
            return match frame.get(12..14) {
                Some([0x08, 0x06]) => out.push_str("ARP"),
                Some(b) => {
                    let ethertype = u16::from_be_bytes([b[0], b[1]]);
                    write!(out, "ethertype {ethertype:#06x}").expect("a String takes it")
                }
                None => out.push_str("truncated"),
            };
        }
    }
    let transport = match &p.transport {
        Some(TransportSlice::Tcp(_)) => " TCP",
        Some(TransportSlice::Udp(_)) => " UDP",
        Some(TransportSlice::Icmpv4(_)) => " ICMP",
        Some(TransportSlice::Icmpv6(_)) => " ICMPv6",
        None => "",
    };
    out.push_str(transport);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::Family;

    /// UDP over IPv4 frames, numbered in their payload.
    fn frames(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut f = crate::packets::udp_frame(Family::V4, 64);
                f[60..64].copy_from_slice(&(i as u32).to_be_bytes());
                f
            })
            .collect()
    }

    fn cfg() -> Config {
        Config::offline(4, Framing::Ip, &[("link".to_string(), 1)], Unknown::Pass)
    }

    /// The programs with egress replaced by the TC demux: egress then passes instead of
    /// marking, a violation on every IP frame.
    fn broken() -> Bundle {
        let mut bundle = build(&cfg()).expect("builds");
        let demux = bundle.program("l3mp_in_tc").expect("exists").clone();
        let egress = bundle
            .programs
            .iter_mut()
            .find(|(_, p)| p.name == "l3mp_eg_1")
            .expect("exists");
        egress.1.slots = demux.slots;
        egress.1.relocs = demux.relocs;
        bundle
    }

    fn text(bundle: &Bundle, frames: &[Vec<u8>], show: Show, json: bool) -> String {
        let opts = ReplayOptions {
            show,
            json,
            ..ReplayOptions::lines(1, 4, false)
        };
        let mut out = Vec::new();
        report(
            bundle,
            &cfg(),
            each(frames),
            Path::new("x.pcap"),
            &opts,
            &mut out,
        )
        .expect("replays");
        String::from_utf8(out).expect("UTF-8")
    }

    /// Gives each of `frames` in turn, as a capture's reader does.
    fn each<'a>(
        frames: &'a [Vec<u8>],
    ) -> impl FnOnce(&mut dyn FnMut(&'a [u8])) -> Result<(), Error> {
        move |put| {
            frames.iter().for_each(|f| put(f));
            Ok(())
        }
    }

    #[test]
    fn every_packet_is_reported_in_order_across_threads() {
        let n = 3 * BATCH + 5;
        let report = text(
            &build(&cfg()).expect("builds"),
            &frames(n),
            Show::Packets,
            false,
        );
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), n + 1);
        for (i, line) in lines[..n].iter().enumerate() {
            assert!(line.starts_with(&format!("#{:<4} ", i + 1)), "{line}");
            assert!(line.ends_with("restored"), "{line}");
        }
        assert_eq!(
            lines[n],
            format!("{n} packets: {n} marked and restored, 0 not IP or malformed, 0 violations")
        );
    }

    #[test]
    fn the_summary_and_violations_show_every_violation_and_nothing_else() {
        let good = build(&cfg()).expect("builds");
        let totals = "3 packets: 3 marked and restored, 0 not IP or malformed, 0 violations\n";
        assert_eq!(text(&good, &frames(3), Show::Summary, false), totals);
        assert_eq!(text(&good, &frames(3), Show::Violations, false), "");
        let summary = text(&broken(), &frames(3), Show::Summary, false);
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines.len(), 4, "{summary}");
        for (i, line) in lines[..3].iter().enumerate() {
            assert!(line.starts_with(&format!("#{:<4} ", i + 1)), "{line}");
            assert!(line.contains("VIOLATION l3mp_eg_1: verdict"), "{line}");
        }
        assert_eq!(
            lines[3],
            "3 packets: 0 marked and restored, 0 not IP or malformed, 3 violations"
        );
        let violations = text(&broken(), &frames(3), Show::Violations, false);
        assert_eq!(
            violations,
            summary
                .lines()
                .take(3)
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        );
    }

    #[test]
    fn json_is_one_document_with_the_packets_shown_and_the_totals() {
        let good = build(&cfg()).expect("builds");
        let doc: serde_json::Value =
            serde_json::from_str(&text(&good, &frames(2), Show::Packets, true)).expect("JSON");
        assert_eq!(doc["engine"], "interp");
        assert_eq!(doc["totals"]["packets"], 2);
        assert_eq!(doc["totals"]["restored"], 2);
        let packets = doc["packets"].as_array().expect("array");
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[1]["packet"], 2);
        assert_eq!(packets[1]["fate"], "restored");
        assert_eq!(packets[1]["steps"][0], "egress=redirect>ext");
        let doc: serde_json::Value =
            serde_json::from_str(&text(&broken(), &frames(2), Show::Summary, true)).expect("JSON");
        assert_eq!(doc["totals"]["violations"], 2);
        let packets = doc["packets"].as_array().expect("array");
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0]["fate"], "violation");
        assert!(packets[0]["violation"]
            .as_str()
            .is_some_and(|v| v.contains("l3mp_eg_1")));
        let doc: serde_json::Value =
            serde_json::from_str(&text(&good, &frames(2), Show::Summary, true)).expect("JSON");
        assert_eq!(doc["packets"].as_array().map(Vec::len), Some(0));
    }
}
