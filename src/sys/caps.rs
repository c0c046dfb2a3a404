//! Which of the capabilities the product needs the process lacks.

use std::fs;

/// A Linux capability the product may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// `CAP_NET_ADMIN`: configure links, addresses, qdiscs, attach TC/XDP.
    NetAdmin,
    /// `CAP_BPF`: load BPF programs and create maps.
    Bpf,
    /// `CAP_PERFMON`: with CAP_BPF, lets the verifier accept arithmetic on packet pointers
    /// by a variable amount (the IPv4 header length) without Spectre v1 hardening, which
    /// would reject it.
    PerfMon,
    /// `CAP_SYS_ADMIN`: namespaces, mounts, BPF on older kernels.
    SysAdmin,
    /// `CAP_SYS_RESOURCE`: raise `RLIMIT_MEMLOCK` for BPF maps on old kernels.
    SysResource,
}

impl Cap {
    /// The capability's bit number (`CAP_*` in `linux/capability.h`).
    pub fn number(self) -> u32 {
        match self {
            Cap::NetAdmin => 12,
            Cap::SysAdmin => 21,
            Cap::SysResource => 24,
            Cap::PerfMon => 38,
            Cap::Bpf => 39,
        }
    }

    /// The capability's name, e.g. `"CAP_NET_ADMIN"`.
    pub fn name(self) -> &'static str {
        match self {
            Cap::NetAdmin => "CAP_NET_ADMIN",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::SysResource => "CAP_SYS_RESOURCE",
            Cap::PerfMon => "CAP_PERFMON",
            Cap::Bpf => "CAP_BPF",
        }
    }
}

/// The names of the capabilities in `wanted` that the calling thread does
/// not have in its effective set, in the order asked. If the set cannot be
/// read (no `/proc`), every wanted capability is reported missing.
pub fn missing_capabilities(wanted: &[Cap]) -> Vec<&'static str> {
    let effective = fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|status| effective_set(&status));
    if effective.is_none() {
        log::warn!("could not read the effective capabilities from /proc/thread-self/status");
    }
    missing_from(effective.unwrap_or(0), wanted)
}

/// The `CapEff:` mask of a `/proc/<pid>/status` text.
fn effective_set(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn missing_from(effective: u64, wanted: &[Cap]) -> Vec<&'static str> {
    wanted
        .iter()
        .filter(|cap| effective & (1u64 << cap.number()) == 0)
        .map(|cap| cap.name())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Cap; 5] = [
        Cap::NetAdmin,
        Cap::Bpf,
        Cap::PerfMon,
        Cap::SysAdmin,
        Cap::SysResource,
    ];

    #[test]
    fn effective_mask_is_parsed_from_status() {
        let status =
            "Name:\tl3mp\nCapPrm:\t0000000000000000\nCapEff:\t000001fffeffffff\nCapBnd:\t0\n";
        assert_eq!(effective_set(status), Some(0x1ff_feff_ffff));
        assert_eq!(effective_set("Name:\tx\n"), None);
        assert_eq!(effective_set("CapEff:\tzz\n"), None);
    }

    #[test]
    fn missing_capabilities_are_named_in_order() {
        let only_net_admin_and_bpf = (1 << 12) | (1 << 39);
        assert_eq!(
            missing_from(only_net_admin_and_bpf, &ALL),
            vec!["CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE"]
        );
        assert!(missing_from(u64::MAX, &ALL).is_empty());
        assert_eq!(missing_from(0, &[Cap::Bpf]), vec!["CAP_BPF"]);
    }

    #[test]
    fn this_process_is_checked_against_its_own_status() {
        let status = fs::read_to_string("/proc/thread-self/status").expect("procfs");
        let effective = effective_set(&status).expect("CapEff line");
        let expected = missing_from(effective, &ALL);
        assert_eq!(missing_capabilities(&ALL), expected);
    }
}
