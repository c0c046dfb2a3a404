//! Programs loaded for BPF_PROG_TEST_RUN, and the two ways the bench times them.
//!
//! - [`Loaded::repeated`]: one test run with `repeat` = R; the kernel runs the program R times
//!   back to back on the *same* context and reports the mean. Faithful only for programs whose
//!   effect on the packet is idempotent (egress, the floors): the callers check that.
//! - [`Loaded::single_runs`]: N test runs with `repeat` = 1, each on a fresh copy of the input,
//!   timed by the kernel's BPF runtime statistics (`run_time_ns / run_cnt`, the time around the
//!   program alone). Faithful for any program, at the price of one syscall per run.

use std::os::fd::OwnedFd;

use aya::programs::{ProgramInfo, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader};

use super::Error;
use crate::run::Counter;

use super::figure::ProgramFacts;

/// Output room beyond the input (programs may grow the packet by an Ethernet header).
const OUT_ROOM: usize = 64;

/// An object's programs, all loaded (not attached).
pub struct Loaded {
    ebpf: Ebpf,
}

/// What one test run returned.
pub struct Outcome {
    pub verdict: u32,
    pub packet: Vec<u8>,
    /// The kernel's mean time per repeat, in ns.
    pub duration_ns: u32,
}

/// The kernel's BPF runtime statistics, on while this lives.
pub struct RuntimeStats {
    _fd: OwnedFd,
}

impl RuntimeStats {
    /// Turns the statistics on (`BPF_ENABLE_STATS`). They cost every BPF program in the
    /// system two clock reads per run while on, so drop this as soon as it is not needed.
    pub fn enable() -> Result<RuntimeStats, Error> {
        aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map(|fd| RuntimeStats { _fd: fd })
            .map_err(|e| Error::new(format!("enabling BPF runtime statistics: {e}")))
    }
}

impl Loaded {
    /// Loads every program of the ELF object `elf`, then lets `fill` fill its maps.
    pub fn load(
        elf: &[u8],
        fill: impl FnOnce(&mut Ebpf) -> Result<(), Error>,
    ) -> Result<Loaded, Error> {
        let mut ebpf = EbpfLoader::new()
            .load(elf)
            .map_err(|e| Error::new(format!("loading the programs: {e}")))?;
        let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_string()).collect();
        for name in names {
            let loaded = match ebpf.program_mut(&name) {
                Some(aya::programs::Program::SchedClassifier(p)) => p.load(),
                Some(aya::programs::Program::Xdp(p)) => p.load(),
                _ => return Err(Error::new(format!("{name}: not a TC or XDP program"))),
            };
            loaded.map_err(|e| Error::new(format!("loading {name}: {e}")))?;
        }
        fill(&mut ebpf)?;
        Ok(Loaded { ebpf })
    }

    /// One test run of `name` with `repeat` repeats on `input`.
    pub fn run(&self, name: &str, input: &[u8], repeat: u32) -> Result<Outcome, Error> {
        let mut out = vec![0u8; input.len() + OUT_ROOM];
        let opts = TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        };
        let result = match self.ebpf.program(name) {
            Some(aya::programs::Program::SchedClassifier(p)) => p.test_run(opts),
            Some(aya::programs::Program::Xdp(p)) => p.test_run(opts),
            _ => return Err(Error::new(format!("{name}: no such TC or XDP program"))),
        }
        .map_err(|e| Error::new(format!("test run of {name}: {e}")))?;
        out.truncate(result.data_size_out as usize);
        Ok(Outcome {
            verdict: result.return_value,
            packet: out,
            duration_ns: result.duration.as_nanos() as u32,
        })
    }

    /// Mean ns per run of `runs` single test runs, each on a fresh copy of `input`, from the
    /// runtime statistics (which must be on); every run must return `verdict`.
    pub fn single_runs(
        &self,
        name: &str,
        input: &[u8],
        runs: u32,
        verdict: u32,
        _stats: &RuntimeStats,
    ) -> Result<f64, Error> {
        let before = self.info(name)?;
        for _ in 0..runs {
            let got = self.run(name, input, 1)?.verdict;
            if got != verdict {
                return Err(Error::new(format!(
                    "{name} returned {got} instead of {verdict} in a single run"
                )));
            }
        }
        let after = self.info(name)?;
        let count = after.run_count() - before.run_count();
        if count != u64::from(runs) {
            return Err(Error::new(format!(
                "{name}: the kernel counted {count} runs, not {runs} (statistics off?)"
            )));
        }
        let ns = (after.run_time() - before.run_time()).as_nanos() as f64;
        Ok(ns / count as f64)
    }

    fn info(&self, name: &str) -> Result<ProgramInfo, Error> {
        match self.ebpf.program(name) {
            Some(aya::programs::Program::SchedClassifier(p)) => p.info(),
            Some(aya::programs::Program::Xdp(p)) => p.info(),
            _ => return Err(Error::new(format!("{name}: no such TC or XDP program"))),
        }
        .map_err(|e| Error::new(format!("{name}: program info: {e}")))
    }

    /// What the kernel made of program `name` (emitted as `insns` instructions).
    pub fn facts(&self, name: &str, insns: usize) -> Result<ProgramFacts, Error> {
        let info = self.info(name)?;
        Ok(ProgramFacts {
            name: name.to_string(),
            insns,
            xlated_insns: info.size_translated().unwrap_or(0) / 8,
            verified_insns: info.verified_instruction_count().unwrap_or(0),
            jited_bytes: info.size_jitted(),
        })
    }

    /// The `counters` map, summed over CPUs (l3mp objects only).
    pub fn counters(&self) -> Result<Vec<Counter>, Error> {
        Ok(crate::run::Counters::of(&self.ebpf)?.0)
    }
}
