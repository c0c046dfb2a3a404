//! `l3mp bench --offline`: `l3mp replay` on a generated Ethernet capture, on each engine,
//! against `tcpdump -nr` decoding the same file in the same run. Both print a line per packet,
//! to /dev/null. Needs no root.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::figure::{Figure, Report, Sample, Target};
use super::Error;
use super::{capture, cpu, Settings};

/// The replay's options: label 3 of 4 bits over an Ethernet ext.
const REPLAY: [&str; 6] = ["--label", "3", "--label-bits", "4", "--ext-kind", "ether"];

/// The fast engine's target: at most this many times tcpdump's time.
const JIT_TARGET: f64 = 5.0;

/// Runs the offline part: a capture of `settings.capture_packets` frames, replayed and decoded
/// `settings.rounds` times in turns.
pub fn bench(settings: &Settings) -> Result<Report, Error> {
    let packets = settings.capture_packets;
    let dir = std::env::temp_dir().join(format!("l3mp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
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
    let l3mp =
        std::env::current_exe().map_err(|e| Error::new(format!("finding the l3mp binary: {e}")))?;
    let tcpdump = || {
        let mut c = Command::new("tcpdump");
        c.arg("-nr").arg(file);
        c
    };
    let replay = |engine: &str| {
        let mut c = Command::new(&l3mp);
        c.arg("replay")
            .arg(file)
            .args(REPLAY)
            .args(["--engine", engine]);
        c
    };
    let engines = ["interp", "jit"];
    let mut base = Vec::new();
    let mut times = vec![Vec::new(); engines.len()];
    for round in 0..settings.rounds {
        // In turns: tcpdump first in even rounds, last in odd ones.
        if round % 2 == 0 {
            base.push(time(&mut tcpdump())?);
        }
        for (e, engine) in engines.iter().enumerate() {
            times[e].push(time(&mut replay(engine))?);
        }
        if round % 2 == 1 {
            base.push(time(&mut tcpdump())?);
        }
    }
    let packets = settings.capture_packets as f64;
    let wall = |t: &[Time]| t.iter().map(|t| t.wall).collect::<Vec<f64>>();
    let cpu = |t: &[Time]| t.iter().map(|t| t.cpu).collect::<Vec<f64>>();
    let rate = |t: &[Time]| t.iter().map(|t| packets / t.wall).collect::<Vec<f64>>();
    let mut figures = Vec::new();
    for (e, engine) in engines.iter().enumerate() {
        let method = format!(
            "`l3mp replay {} --engine {engine}` (a line per packet, to /dev/null) and \
             `tcpdump -nr` on the same generated capture of {} UDP frames (IPv4 and IPv6, 64 to \
             1500 bytes, every traffic class), in turns, {} rounds",
            REPLAY.join(" "),
            settings.capture_packets,
            settings.rounds
        );
        let figure = |name: String,
                      unit,
                      value: Vec<f64>,
                      baseline_name: &str,
                      baseline: Vec<f64>,
                      target| Figure {
            part: "offline",
            name,
            unit,
            value: Sample::of(&value),
            baseline_name: baseline_name.into(),
            baseline: Sample::of(&baseline),
            target,
            method: method.clone(),
        };
        let jit_target = (*engine == "jit").then_some(Target::RatioAtMost(JIT_TARGET));
        figures.push(figure(
            format!("replay --engine {engine}, wall time"),
            "s",
            wall(&times[e]),
            "tcpdump -nr, wall time",
            wall(&base),
            jit_target,
        ));
        figures.push(figure(
            format!("replay --engine {engine}, CPU time"),
            "s",
            cpu(&times[e]),
            "tcpdump -nr, CPU time",
            cpu(&base),
            None,
        ));
        figures.push(figure(
            format!("replay --engine {engine}, rate"),
            "pkt/s",
            rate(&times[e]),
            "tcpdump -nr, rate",
            rate(&base),
            None,
        ));
    }
    Ok(figures)
}

/// What a command took: wall time, and the CPU time (user and system) of the process and its
/// threads.
#[derive(Clone, Copy, Debug)]
struct Time {
    wall: f64,
    cpu: f64,
}

/// The CPU time of every child waited for so far.
fn children_cpu() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The time a command run to completion with its output discarded took; an error unless it
/// succeeds.
fn time(command: &mut Command) -> Result<Time, Error> {
    let what = format!("{:?}", command.get_program());
    let cpu = children_cpu();
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
    let wall = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(Error::new(format!("{what} failed: {status}")));
    }
    Ok(Time {
        wall,
        cpu: children_cpu() - cpu,
    })
}
