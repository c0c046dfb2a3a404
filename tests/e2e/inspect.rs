//! What is attached where inside a lab host, looked up from the test: tcx programs through
//! aya's BPF_PROG_QUERY (in the host's namespace), XDP programs, cls_bpf filters and qdiscs
//! through `ip` and `tc` (test-only; the product never runs them).

use std::collections::BTreeSet;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use aya::programs::{loaded_programs, SchedClassifier, TcAttachType};
use l3mp::lab::Host;
use l3mp::sys::netns::NetNs;

/// A program attached somewhere: its id and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attached {
    pub id: u32,
    pub name: String,
    pub at: String,
}

/// The programs attached to `device` in the network namespace `netns` (a lab host's:
/// `host.netns()`): tcx ingress and egress, cls_bpf filters (the netlink path), and XDP.
pub fn attached(netns: &NetNs, device: &str) -> Vec<Attached> {
    let mut out = Vec::new();
    for at in [TcAttachType::Ingress, TcAttachType::Egress] {
        let query = netns
            .run(|| SchedClassifier::query_tcx(device, at))
            .expect("enter the host");
        // A device that does not exist has nothing attached.
        let Ok((_, programs)) = query else { continue };
        for p in programs {
            out.push(Attached {
                id: p.id(),
                name: p.name_as_str().unwrap_or("?").to_string(),
                at: format!("{device} tcx {at:?}"),
            });
        }
    }
    out.extend(filters(netns, device));
    if let Some((id, name)) = xdp(netns, device) {
        out.push(Attached {
            id,
            name,
            at: format!("{device} xdp"),
        });
    }
    out
}

/// The XDP program on `device`, as `ip -d link` shows it (`prog/xdp id N name X`).
fn xdp(netns: &NetNs, device: &str) -> Option<(u32, String)> {
    let shown = tool(
        "ip",
        &["-n", netns.name(), "-d", "link", "show", "dev", device],
    );
    let words: Vec<&str> = shown.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "prog/xdp")?;
    match words.get(at + 1..at + 5) {
        Some(["id", id, "name", name]) => {
            Some((id.parse().expect("an XDP program id"), name.to_string()))
        }
        _ => panic!("unexpected `ip -d link` output: {shown}"),
    }
}

/// The eBPF programs of the cls_bpf filters on `device`, as `tc filter show` lists them
/// (`... bpf chain 0 handle 0x1 NAME direct-action not_in_hw id N tag ...`); none when the
/// device is gone.
fn filters(netns: &NetNs, device: &str) -> Vec<Attached> {
    let mut out = Vec::new();
    for dir in ["ingress", "egress"] {
        let Some(shown) = try_tool(
            "tc",
            &["-n", netns.name(), "filter", "show", "dev", device, dir],
        ) else {
            continue;
        };
        for line in shown.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| {
                let at = words.iter().position(|w| *w == key)?;
                words.get(at + 1).copied()
            };
            let (Some(handle), Some(id)) = (words.iter().position(|w| *w == "handle"), after("id"))
            else {
                continue;
            };
            out.push(Attached {
                id: id.parse().expect("a program id"),
                name: words.get(handle + 2).unwrap_or(&"?").to_string(),
                at: format!("{device} tc {dir}"),
            });
        }
    }
    out
}

/// The qdiscs l3mp could have added to `device` (clsact, ingress) and every TC filter on it.
pub fn tc_leftovers(host: &Host, device: &str) -> Vec<String> {
    let qdiscs = tool("tc", &["-n", host.name(), "qdisc", "show", "dev", device]);
    let filters = ["ingress", "egress"].map(|dir| {
        tool(
            "tc",
            &["-n", host.name(), "filter", "show", "dev", device, dir],
        )
    });
    qdiscs
        .lines()
        .filter(|l| l.starts_with("qdisc clsact") || l.starts_with("qdisc ingress"))
        .chain(filters.iter().flat_map(|f| f.lines()))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Waits up to `timeout` until none of `ids` is a loaded program; returns those still loaded.
pub fn still_loaded(ids: &BTreeSet<u32>, timeout: Duration) -> BTreeSet<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let loaded: BTreeSet<u32> = loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .filter(|id| ids.contains(id))
            .collect();
        if loaded.is_empty() || Instant::now() >= deadline {
            return loaded;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// What the instances of process `pid` published and have not removed: state files in
/// /run/l3mp and pin directories under /sys/fs/bpf/l3mp (`<pid>` or `<pid>-<n>`).
pub fn published(pid: u32) -> Vec<String> {
    let ours = |name: &str, suffix: &str| {
        name.strip_suffix(suffix)
            .is_some_and(|id| id == pid.to_string() || id.starts_with(&format!("{pid}-")))
    };
    let mut found = Vec::new();
    for (dir, suffix) in [
        ("/run/l3mp", ".json"),
        ("/run/l3mp", ".tmp"),
        ("/run/l3mp", ".lock"),
        ("/sys/fs/bpf/l3mp", ""),
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if ours(&name, suffix) {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

/// The output of a test tool, or `None` if it failed.
fn try_tool(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The output of a test tool that must succeed.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
