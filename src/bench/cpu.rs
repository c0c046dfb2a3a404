//! Pinning the bench's threads to CPUs, and the machine they run on.

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use super::Error;

/// Pins the calling thread to `cpu` (modulo the CPUs the machine has).
pub fn pin(cpu: usize) -> Result<(), Error> {
    let cpu = cpu % count();
    let mut set = CpuSet::new();
    set.set(cpu)
        .map_err(|e| Error::new(format!("CPU {cpu}: {e}")))?;
    sched_setaffinity(Pid::from_raw(0), &set)
        .map_err(|e| Error::new(format!("pinning a thread to CPU {cpu}: {e}")))
}

/// Lets the calling thread run on every CPU again.
pub fn unpin() -> Result<(), Error> {
    let mut set = CpuSet::new();
    for cpu in 0..count() {
        set.set(cpu)
            .map_err(|e| Error::new(format!("CPU {cpu}: {e}")))?;
    }
    sched_setaffinity(Pid::from_raw(0), &set)
        .map_err(|e| Error::new(format!("unpinning a thread: {e}")))
}

/// How many CPUs are online (not how many the calling thread may use, which pinning narrows).
pub fn count() -> usize {
    // SAFETY: sysconf only reads a system setting.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(online).unwrap_or(1).max(1)
}

/// One line saying what the figures were measured on: kernel, CPU model, CPUs, memory.
pub fn machine() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let uname = format!("Linux {}", release.trim());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".into(), |(_, m)| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    format!("{uname}, {model}, {} CPUs, {mem_gib:.0} GiB", count())
}
