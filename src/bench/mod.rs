//! `l3mp bench`: what the datapath costs, measured on this machine in one run, every figure
//! against a baseline measured in the same run.
//!
//! 1. Per program ([`program_cost`]): every hot-path program under BPF_PROG_TEST_RUN against
//!    a floor program of its hook that only redirects (also alone: [`programs`]).
//! 2. End to end ([`throughput`]): TCP and small-packet UDP between two network namespaces
//!    over a veth ext: plain, muxed with TC ingress, muxed with XDP ingress, and VXLAN.
//! 3. Scale ([`scale`]): per-packet demux cost with 1 and 63 links, and start-up time (also
//!    alone: [`start_up`]).
//!
//! Needs root (namespaces, BPF, runtime statistics).
//!
//! Apart, without root ([`offline`]): `l3mp replay` on a generated capture against `tcpdump -nr`.

mod capture;
mod cpu;
mod figure;
mod floor;
mod offline;
mod primed;
mod program_cost;
mod scale;
mod testrun;
mod throughput;
mod traffic;

pub use figure::{Check, Figure, ProgramFacts, Report, Sample, Target};
pub use offline::bench as offline;

use crate::sys::caps::{missing_capabilities, Cap};

crate::error::line_error!(
    /// A measurement that could not be made, as one line.
    from crate::run::Error, crate::lab::Error
);

/// How long and how often things are measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Test runs per program and round (repeats, or single runs).
    pub runs: u32,
    /// Rounds per program figure; the figure is their median.
    pub rounds: usize,
    /// Rounds per scale figure: more, as it tells apart programs within 5 % of each other.
    pub scale_rounds: usize,
    /// Seconds of traffic per end-to-end measurement.
    pub traffic_secs: f64,
    /// End-to-end measurements per path and traffic kind; the figure is their median.
    pub traffic_rounds: usize,
    /// Start-ups per link count.
    pub starts: usize,
    /// Frames in the capture the offline part replays.
    pub capture_packets: usize,
}

impl Settings {
    /// The full bench: 10^6 runs, 5 rounds (15 for scale), 1.5 s of traffic 9 times.
    pub const FULL: Settings = Settings {
        runs: 1_000_000,
        rounds: 5,
        scale_rounds: 15,
        traffic_secs: 1.5,
        traffic_rounds: 9,
        starts: 5,
        capture_packets: 200_000,
    };

    /// A short run that exercises everything (for the smoke test); its figures are rough.
    pub const QUICK: Settings = Settings {
        runs: 10_000,
        rounds: 3,
        scale_rounds: 3,
        traffic_secs: 0.2,
        traffic_rounds: 1,
        starts: 1,
        capture_packets: 20_000,
    };
}

/// Runs every part of the bench.
pub fn bench(settings: &Settings) -> Result<Report, Error> {
    let mut report = new_report(settings)?;
    on_one_cpu(|| {
        program_cost::measure(settings, &mut report)?;
        scale::per_packet(settings, &mut report)
    })?;
    throughput::measure(settings, &mut report)?;
    scale::start_up(settings, &mut report)?;
    Ok(report)
}

/// Only the per-program part (`l3mp bench --programs`): every hot-path program against the
/// floor of its hook.
pub fn programs(settings: &Settings) -> Result<Report, Error> {
    let mut report = new_report(settings)?;
    on_one_cpu(|| program_cost::measure(settings, &mut report))?;
    Ok(report)
}

/// Runs `measure` pinned to one CPU (test runs execute on the calling CPU), unpinned after.
fn on_one_cpu(measure: impl FnOnce() -> Result<(), Error>) -> Result<(), Error> {
    cpu::pin(cpu::count() - 1)?;
    let measured = measure();
    cpu::unpin()?;
    measured
}

/// Only the start-up figure (`l3mp bench --start-up`): 1 link against 63.
pub fn start_up(settings: &Settings) -> Result<Report, Error> {
    let mut report = new_report(settings)?;
    scale::start_up(settings, &mut report)?;
    Ok(report)
}

/// An empty report for this machine, once the capabilities the bench needs are there.
fn new_report(settings: &Settings) -> Result<Report, Error> {
    let missing = missing_capabilities(&[Cap::NetAdmin, Cap::Bpf, Cap::SysAdmin]);
    if !missing.is_empty() {
        return Err(Error::new(format!(
            "the bench loads BPF programs and creates network namespaces: missing {}; run it as root",
            missing.join(", ")
        )));
    }
    Ok(Report {
        machine: cpu::machine(),
        mode: if *settings == Settings::QUICK {
            "quick".into()
        } else {
            "full".into()
        },
        ..Report::default()
    })
}
