//! `l3mp status`: every running instance as its state file describes it, the state of its ext
//! and links as its network namespace shows them (entered when it is not the caller's), and
//! its counters as the pinned map holds them. It works from any process with CAP_BPF (and
//! CAP_SYS_ADMIN to enter another network namespace), while the instances run.

mod collect;
mod prometheus;
mod table;

pub use collect::collect;
pub use prometheus::prometheus;
pub use table::table;

use std::net::Ipv6Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::programs::Unknown;
use crate::run::probe::FarEnd;
use crate::run::{Counter, IngressMode, InstanceId, Loaded};

crate::error::line_error!(
    /// What kept `status` from saying anything, as one line.
    from crate::run::Error
);

/// What `status` says about one running instance: its status, or why it cannot be had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    Instance(InstanceStatus),
    Unreadable(Unreadable),
}

/// A running instance whose state file (or counters) cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    pub id: InstanceId,
    pub state_file: PathBuf,
    /// Why not.
    pub unreadable: String,
}

/// One running instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub id: InstanceId,
    pub pid: u32,
    /// The inode of its network namespace.
    pub netns: u64,
    /// The name `ip netns` gives that namespace, where it has one.
    pub netns_name: Option<String>,
    pub ext: ExtStatus,
    pub ingress: IngressMode,
    pub label_bits: u8,
    pub unknown: Unknown,
    /// Whether the far-end check runs (`--probe`); `None` for an instance of an earlier l3mp.
    #[serde(default)]
    pub probe: Option<bool>,
    pub links: Vec<LinkStatus>,
    /// What concerns ext rather than one link.
    pub counters: ExtCounters,
    /// When (and from which file) the configuration was last loaded; `None` for an instance
    /// of an earlier l3mp, which does not say.
    pub loaded: Option<Box<Loaded>>,
}

/// The state of an interface; every field is `None` when its namespace could not be entered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Whether it exists (for a managed link: and is this instance's, by its alias).
    pub exists: Option<bool>,
    /// Its ifindex now.
    pub ifindex: Option<u32>,
    /// Whether it is administratively up.
    pub up: Option<bool>,
    pub mtu: Option<u32>,
}

/// ext: its name, the ifindex the programs are attached to, and its state now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtStatus {
    pub name: String,
    /// The ifindex the programs were last attached to.
    pub attached_ifindex: u32,
    /// Whether the programs are on ext as it is now (`false`: the instance waits for ext).
    pub attached: Option<bool>,
    #[serde(flatten)]
    pub device: Device,
}

/// One managed link: its label, state and traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub name: String,
    pub label: u8,
    pub hidden: String,
    #[serde(flatten)]
    pub device: Device,
    /// Its IPv6 link-local addresses (`fe80::/10`) as the kernel lists them; `None` when
    /// its namespace could not be entered.
    pub link_local: Option<Vec<Ipv6Addr>>,
    /// Sent by the link, labelled, out of ext.
    pub egress: Counter,
    /// Arrived on ext with the link's label and delivered to it: what the link received from
    /// its hidden end, as the kernel counts it (the hidden end's transmit counters, from the
    /// hidden end's creation on); `None` when its namespace could not be entered or the hidden
    /// end is not there.
    pub ingress: Option<Counter>,
    /// How its far end stands, from the probes; `None` when they cannot be read (an
    /// instance of an earlier l3mp).
    #[serde(default)]
    pub far_end: Option<FarEnd>,
}

/// The counters that belong to no link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtCounters {
    /// Ingress passed to ext's own stack untouched (unlabelled, not IP, VLAN-tagged,
    /// malformed).
    pub pass: Counter,
    /// Ingress with a label no link uses (passed or dropped, per `--unknown`).
    pub unknown: Counter,
    /// Egress dropped (not IP, malformed or truncated).
    pub drop: Counter,
    /// ext's own traffic whose label bits the guard cleared.
    pub guard: Counter,
    /// Ethernet ext: labelled ingress not from the peer's MAC to ext's, passed untouched.
    pub foreign: Counter,
    /// ext's own traffic the guard left alone: not IP, VLAN-tagged or malformed.
    pub guard_not_ip: Counter,
    /// Egress dropped because longer than ext's MTU (a link's MTU set above ext's).
    #[serde(default)]
    pub too_big: Counter,
}

/// The JSON document: an array of instances.
pub fn json(instances: &[Entry]) -> String {
    // Strings, numbers, booleans and lists always serialise.
    serde_json::to_string_pretty(instances).unwrap_or_default() + "\n"
}

/// `l3mp status` reads pinned maps (`CAP_BPF`) and enters other network namespaces
/// (`CAP_SYS_ADMIN`): one line saying so when either is missing.
pub fn check_privileges() -> Result<(), Error> {
    use crate::sys::caps::{missing_capabilities, Cap};
    let missing = missing_capabilities(&[Cap::Bpf, Cap::SysAdmin]);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::new(format!(
        "status needs root: missing {} (CAP_BPF reads the instances' pinned counters, \
         CAP_SYS_ADMIN enters their network namespaces)",
        missing.join(" and ")
    )))
}
