//! `l3mp run`: the managed links, the programs on them and on ext, following ext when it goes
//! and comes back, what an instance publishes for `l3mp status`, and the cleanup.

mod bpffs;
pub mod config_file;
mod counters;
mod datapath;
mod instance;
mod kernel;
mod lock;
mod naming;
mod options;
pub mod probe;
mod registry;
mod signals;
mod state;
mod tc_attach;
mod tunnel_peers;
mod wait_ext;
mod watch;

pub use bpffs::{ensure_bpffs, BPFFS};
pub use counters::{Counter, Counters};
pub use datapath::{point_links, set_devmap, IngressMode};
pub use instance::{choose_mode, Instance, ManagedLink, Started};
pub use naming::{hidden_name, Identity, Mark, Source};
pub use options::{parse_link, IngressChoice, LinkArg, Probe, RunOptions};
pub use registry::{Listed, Registry};
pub use state::{InstanceId, Loaded, State, StateLink};
pub use tc_attach::{TcAttach, TC_ATTACH_ENV};
pub use watch::serve;

crate::error::line_error!(
    /// A failure to start or run, as one line for the operator.
);

/// The capabilities `run` needs, or an error naming the missing ones.
pub fn check_privileges() -> Result<(), Error> {
    use crate::sys::caps::{missing_capabilities, Cap};
    let missing = missing_capabilities(&[Cap::NetAdmin, Cap::Bpf, Cap::PerfMon]);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::new(format!(
        "missing {}: run as root, or grant CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON",
        missing.join(" and ")
    )))
}
