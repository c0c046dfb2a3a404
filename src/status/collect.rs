//! Gathering the status of the running instances: state files, link states, pinned counters.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::run::probe::{self, FarEnd, Recorded};
use crate::run::{Counter, Counters, Listed, Mark, Registry, State};

use super::Error;
use crate::sys::netlink::{Address, LinkInfo, Netlink, Sent};
use crate::sys::netns::NetNs;
use crate::sys::SysError;

use super::{Device, Entry, ExtCounters, ExtStatus, InstanceStatus, LinkStatus, Unreadable};

/// How long an instance whose counters cannot be read may take to turn out dead.
const EXIT_GRACE: Duration = Duration::from_millis(200);

/// The status of every running instance (only those on `ext` if given, and every one whose
/// state cannot be read), by id. What dead instances left is removed first, and said on the
/// log.
pub fn collect(registry: &Registry, ext: Option<&str>) -> Result<Vec<Entry>, Error> {
    for line in registry.sweep_dead() {
        log::info!("{line}");
    }
    let own = NetNs::of_current_thread()
        .and_then(|netns| netns.inode())
        .map_err(|e| Error::new(e.to_string()))?;
    let mut out = Vec::new();
    for listed in registry.live()? {
        let state = match listed {
            Listed::Running(state) => state,
            Listed::Unreadable { id, path, reason } => {
                out.push(Entry::Unreadable(Unreadable {
                    id,
                    state_file: path,
                    unreadable: reason,
                }));
                continue;
            }
        };
        if ext.is_some_and(|ext| ext != state.ext) {
            continue;
        }
        let counters = match counters_of(registry, &state) {
            Ok(Some(counters)) => counters,
            Ok(None) => continue,
            Err(e) => {
                out.push(Entry::Unreadable(Unreadable {
                    id: state.id,
                    state_file: registry.state_file(state.id),
                    unreadable: e.to_string(),
                }));
                continue;
            }
        };
        let seen = seen_by(&state, own);
        let probes = probes_of(&state);
        let far = Far {
            recorded: probes.as_deref(),
            now_ns: probe::monotonic_ns(),
        };
        out.push(Entry::Instance(status_of(
            &state,
            seen.as_ref(),
            &counters,
            &far,
        )));
    }
    Ok(out)
}

/// The counters of the instance of `state`; `None` if it stopped (or was killed) since its
/// state file was read.
fn counters_of(registry: &Registry, state: &State) -> Result<Option<Counters>, Error> {
    // The pin as this process sees it, else as the instance's process does.
    let read = || {
        Counters::read_pinned(&state.counters)
            .or_else(|_| Counters::read_pinned(&in_mounts_of(state.pid, &state.counters)))
    };
    let gone = || !registry.running(state.id);
    let error = match read() {
        Ok(counters) => return Ok(Some(counters)),
        Err(e) => e,
    };
    // A process being killed loses its root before it becomes a zombie.
    let deadline = Instant::now() + EXIT_GRACE;
    while Instant::now() < deadline {
        if gone() {
            return Ok(None);
        }
        thread::sleep(EXIT_GRACE / 10);
    }
    Err(Error::new(format!("its counters: {error}")))
}

/// The far ends' probes the instance of `state` recorded; `None` for an earlier l3mp's, or
/// when they cannot be read (said at debug level: the counters were read just before).
fn probes_of(state: &State) -> Option<Vec<Recorded>> {
    let path = state.probes.as_ref()?;
    probe::read_pinned(path)
        .or_else(|_| probe::read_pinned(&in_mounts_of(state.pid, path)))
        .inspect_err(|e| log::debug!("l3mp {}: {e}", state.id))
        .ok()
}

/// The probes an instance recorded, and the time to judge them at.
pub(super) struct Far<'a> {
    pub recorded: Option<&'a [Recorded]>,
    /// CLOCK_MONOTONIC, which the programs' `bpf_ktime_get_ns` reads.
    pub now_ns: u64,
}

/// `path` as process `pid` sees it: through its root, in its mount namespace (`ip netns exec`
/// gives a process a /sys of its own, so its BPF filesystem may be one only it sees).
fn in_mounts_of(pid: u32, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    Path::new(&format!("/proc/{pid}/root")).join(relative)
}

/// What an instance's network namespace shows.
pub(super) struct Seen {
    pub links: Vec<LinkInfo>,
    pub addresses: Vec<Address>,
    /// What each link sent, by interface index.
    pub sent: HashMap<u32, Sent>,
}

impl Seen {
    fn here() -> Result<Seen, SysError> {
        let netlink = Netlink::new()?;
        Ok(Seen {
            links: netlink.links()?,
            addresses: netlink.addresses()?,
            sent: netlink.sent_by_link()?,
        })
    }
}

/// The links and addresses of the instance's network namespace; `None` (with a warning) if
/// it cannot be entered.
fn seen_by(state: &State, own_netns: u64) -> Option<Seen> {
    let listed = if state.netns == own_netns {
        Seen::here()
    } else {
        match find_netns(state) {
            Some(netns) => netns.run(Seen::here).and_then(|seen| seen),
            None => Err(SysError::other(
                format!("finding network namespace {}", state.netns),
                "neither the process's nor a named one (ip netns) is it",
            )),
        }
    };
    listed
        .map_err(|e| {
            log::warn!(
                "l3mp {} on {}: {e}; link states unknown",
                state.id,
                state.ext
            )
        })
        .ok()
}

/// The name `ip netns` gives the network namespace with inode `netns`, if any (the first in
/// order when it has several).
fn netns_name(netns: u64) -> Option<String> {
    let mut names = NetNs::names().unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .find(|name| NetNs::open(name).and_then(|n| n.inode()).ok() == Some(netns))
}

/// The instance's network namespace: its process's (the usual case), or a named one (an
/// instance started by a thread that entered it, as `l3mp demo` does).
fn find_netns(state: &State) -> Option<NetNs> {
    let named = NetNs::names().unwrap_or_default();
    std::iter::once(NetNs::of_process(state.pid))
        .chain(named.iter().map(|name| NetNs::open(name)))
        .filter_map(Result::ok)
        .find(|netns| netns.inode().ok() == Some(state.netns))
}

/// The status from the state file, what the instance's namespace shows (`None`: unknown)
/// and the counters.
pub(super) fn status_of(
    state: &State,
    seen: Option<&Seen>,
    counters: &Counters,
    far: &Far<'_>,
) -> InstanceStatus {
    let far_end = |label: u8| {
        let checking = state.probe?;
        let recorded = far.recorded?.get(usize::from(label)).copied()?;
        Some(FarEnd::of(
            recorded,
            far.now_ns,
            label,
            state.label_bits,
            checking,
        ))
    };
    let links = seen.map(|s| s.links.as_slice());
    let device = |found: Option<&LinkInfo>| match links {
        None => Device::default(),
        Some(_) => Device {
            exists: Some(found.is_some()),
            ifindex: found.map(|l| l.index),
            up: found.map(|l| l.up),
            mtu: found.map(|l| l.mtu),
        },
    };
    let ext = links.and_then(|all| all.iter().find(|l| l.name == state.ext));
    let ours = |name: &str, hidden: bool| {
        links.and_then(|all| {
            all.iter().find(|l| {
                let mark = l.alias.as_deref().and_then(Mark::parse);
                l.name == name && mark.is_some_and(|m| m.pid == state.pid && m.hidden == hidden)
            })
        })
    };
    // What a link received is what its hidden end sent it: the demux does not count it.
    let received = |hidden: &str| Some(Counter::from(*seen?.sent.get(&ours(hidden, true)?.index)?));
    InstanceStatus {
        id: state.id,
        pid: state.pid,
        netns: state.netns,
        netns_name: netns_name(state.netns),
        ext: ExtStatus {
            name: state.ext.clone(),
            attached_ifindex: state.ext_ifindex,
            attached: links.map(|_| ext.is_some_and(|e| e.index == state.ext_ifindex)),
            device: device(ext),
        },
        ingress: state.ingress,
        label_bits: state.label_bits,
        unknown: state.unknown,
        probe: state.probe,
        links: state
            .links
            .iter()
            .map(|link| LinkStatus {
                name: link.name.clone(),
                label: link.label,
                hidden: link.hidden.clone(),
                device: device(ours(&link.name, false)),
                link_local: seen.map(|seen| match ours(&link.name, false) {
                    Some(found) => link_local(&seen.addresses, found.index),
                    None => Vec::new(),
                }),
                egress: counters.egress(link.label),
                ingress: received(&link.hidden),
                far_end: far_end(link.label),
            })
            .collect(),
        counters: ExtCounters {
            pass: counters.pass(),
            unknown: counters.unknown(),
            drop: counters.drop(),
            guard: counters.guard(),
            foreign: counters.foreign(),
            guard_not_ip: counters.guard_not_ip(),
            too_big: counters.too_big(),
        },
        loaded: state.loaded.clone().map(Box::new),
    }
}

/// The link-local addresses of interface `index`, in the kernel's order.
fn link_local(addresses: &[Address], index: u32) -> Vec<Ipv6Addr> {
    addresses
        .iter()
        .filter(|a| a.index == index)
        .filter_map(|a| match a.address {
            IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(v6),
            _ => None,
        })
        .collect()
}
