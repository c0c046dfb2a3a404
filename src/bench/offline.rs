//! `l3mp bench --offline`: `l3mp replay` on a generated Ethernet capture, on each engine,
//! against `tcpdump -nr` decoding the same file in the same run. Both print a line per packet,
//! to /dev/null. Needs no root.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::figure::{Figure, Report, Sample, Target};
use super::{capture, cpu, Settings};
use crate::run::Error;

/// The replay's options: label 3 of 4 bits over an Ethernet ext.
const REPLAY: [&str; 6] = ["--label", "3", "--label-bits", "4", "--ext-kind", "ether"];

/// The fast engine's target: at most this many times tcpdump's time.
const JIT_TARGET: f64 = 5.0;

/// Runs the offline part: a capture of `settings.capture_packets` frames, replayed and decoded
/// `settings.rounds` times in turns.
pub fn bench(settings: &Settings) -> Result<Report, Error> {
    let packets = settings.capture_packets;
    let dir = std::env::temp_dir().join(format!("l3mp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
    let file = dir.join("capture.pcap");
    let result = capture::write(&file, packets).and_then(|()| measure(settings, &file));
    let _ = std::fs::remove_dir_all(&dir);
    let figures = result?;
    Ok(Report {
        machine: cpu::machine(),
        mode: format!("offline, {packets} packets"),
        figures,
        ..Report::default()
    })
}

fn measure(settings: &Settings, file: &Path) -> Result<Vec<Figure>, Error> {
    let l3mp = std::env::current_exe()
        .map_err(|e| Error::new(format!("finding the l3mp binary: {e}")))?;
    let tcpdump = || {
        let mut c = Command::new("tcpdump");
        c.arg("-nr").arg(file);
        c
    };
    let replay = |engine: &str| {
        let mut c = Command::new(&l3mp);
        c.arg("replay").arg(file).args(REPLAY).args(["--engine", engine]);
        c
    };
    let engines = ["interp", "jit"];
    let mut base = Vec::new();
    let mut times = vec![Vec::new(); engines.len()];
    for round in 0..settings.rounds {
        // In turns: tcpdump first in even rounds, last in odd ones.
        if round % 2 == 0 {
            base.push(seconds(&mut tcpdump())?);
        }
        for (e, engine) in engines.iter().enumerate() {
            times[e].push(seconds(&mut replay(engine))?);
        }
        if round % 2 == 1 {
            base.push(seconds(&mut tcpdump())?);
        }
    }
    let packets = settings.capture_packets as f64;
    let rate = |s: &[f64]| s.iter().map(|t| packets / t).collect::<Vec<f64>>();
    let mut figures = Vec::new();
    for (e, engine) in engines.iter().enumerate() {
        let method = format!(
            "`l3mp replay {} --engine {engine}` (a line per packet, to /dev/null) and \
             `tcpdump -nr` on the same generated capture of {} UDP frames (IPv4 and IPv6, 64 to \
             1500 bytes, every traffic class), in turns, {} rounds, wall time",
            REPLAY.join(" "),
            settings.capture_packets,
            settings.rounds
        );
        figures.push(Figure {
            part: "offline",
            name: format!("replay --engine {engine}"),
            unit: "s",
            value: Sample::of(&times[e]),
            baseline_name: "tcpdump -nr".into(),
            baseline: Sample::of(&base),
            target: (*engine == "jit").then_some(Target::RatioAtMost(JIT_TARGET)),
            method: method.clone(),
        });
        figures.push(Figure {
            part: "offline",
            name: format!("replay --engine {engine}, rate"),
            unit: "pkt/s",
            value: Sample::of(&rate(&times[e])),
            baseline_name: "tcpdump -nr, rate".into(),
            baseline: Sample::of(&rate(&base)),
            target: None,
            method,
        });
    }
    Ok(figures)
}

/// Wall time of a command run to completion with its output discarded; an error unless it
/// succeeds.
fn seconds(command: &mut Command) -> Result<f64, Error> {
    let what = format!("{:?}", command.get_program());
    let start = Instant::now();
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| {
            Error::new(format!(
                "running {what}: {e} (the offline bench needs tcpdump: apt-get install tcpdump)"
            ))
        })?;
    let elapsed = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(Error::new(format!("{what} failed: {status}")));
    }
    Ok(elapsed)
}
