//! How the TC programs are attached: as tcx links (kernel 6.6 and later), or before tcx as
//! cls_bpf filters on a clsact qdisc, over netlink. tcx links go with the process; netlink
//! filters and qdiscs stay until someone removes them, so on that path l3mp removes its filters
//! when it stops, the clsact qdiscs it added once nothing else hangs off them, and at the next
//! start on ext what a killed l3mp left there.

use aya::programs::tc::{NlOptions, TcAttachOptions};
use aya::programs::{LinkOrder, ProgramError, SchedClassifier, TcAttachType, TcError};

use crate::sys::netlink::{Netlink, TcFilter};
use crate::sys::SysError;

use super::Error;

/// The environment variable that picks the way: `auto` (or unset), `tcx` or `netlink`.
pub const TC_ATTACH_ENV: &str = "L3MP_TC_ATTACH";

/// How TC programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcAttach {
    /// tcx links (BPF_LINK_CREATE), on kernels that have tcx.
    Tcx,
    /// cls_bpf filters on a clsact qdisc, through netlink.
    Netlink,
}

impl TcAttach {
    /// The way [`TC_ATTACH_ENV`] asks for; `auto` is tcx where the kernel has it.
    pub fn chosen() -> Result<TcAttach, Error> {
        let asked = std::env::var(TC_ATTACH_ENV).unwrap_or_default();
        match asked.as_str() {
            "" | "auto" if has_tcx() => Ok(TcAttach::Tcx),
            "" | "auto" | "netlink" => Ok(TcAttach::Netlink),
            "tcx" if has_tcx() => Ok(TcAttach::Tcx),
            "tcx" => Err(Error::new(format!(
                "{TC_ATTACH_ENV}=tcx: this kernel has no tcx (Linux 6.6 and later); \
                 unset it or use {TC_ATTACH_ENV}=netlink"
            ))),
            other => Err(Error::new(format!(
                "{TC_ATTACH_ENV}={other}: expected auto, tcx or netlink"
            ))),
        }
    }

    /// The options aya attaches with this way.
    pub fn options(self) -> TcAttachOptions {
        match self {
            TcAttach::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
            TcAttach::Netlink => TcAttachOptions::Netlink(NlOptions::default()),
        }
    }
}

impl std::fmt::Display for TcAttach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TcAttach::Tcx => "tcx",
            TcAttach::Netlink => "netlink (clsact qdisc, cls_bpf filters)",
        })
    }
}

/// Whether the kernel has tcx: a tcx query on the loopback device, which every network
/// namespace has, is refused by kernels without it.
pub(super) fn has_tcx() -> bool {
    SchedClassifier::query_tcx("lo", TcAttachType::Ingress).is_ok()
}

/// The clsact qdiscs one set of attached programs hangs off (netlink path). Those it added
/// are removed when it is dropped, unless something else has been attached to them meanwhile.
/// Drop it after the programs, whose filters must be gone by then.
pub struct Clsacts {
    netlink: Netlink,
    /// ifindex and name of each device it added a clsact qdisc to.
    added: Vec<(u32, String)>,
}

impl Clsacts {
    /// A handle on the calling thread's network namespace.
    pub fn new() -> Result<Clsacts, Error> {
        let netlink = Netlink::new().map_err(|e| Error::new(format!("netlink: {e}")))?;
        Ok(Clsacts {
            netlink,
            added: Vec::new(),
        })
    }

    /// Gives device `index` (`name`) a clsact qdisc unless it has one. One added to a device
    /// that is not `own` is removed when this is dropped; one added to l3mp's own link stays
    /// as long as the link (it goes with the link, or with a move to another network
    /// namespace): programs generated again for the link find it there, and nothing has to
    /// stop the link's transmit queue to take it off and put it back.
    ///
    /// On l3mp's own link, one request: the qdisc is added, and a refusal because the link has
    /// one means it is there (l3mp's, kept). Elsewhere the qdisc is looked up first: another's
    /// legacy ingress qdisc there would also refuse, and the error must say so.
    pub fn ensure(&mut self, index: u32, name: &str, own: bool) -> Result<(), Error> {
        if own {
            return match self.netlink.add_clsact(index) {
                Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
                added => added.map_err(|e| tc_error(name, e)),
            };
        }
        if self
            .netlink
            .has_clsact(index)
            .map_err(|e| tc_error(name, e))?
        {
            return Ok(());
        }
        self.netlink
            .add_clsact(index)
            .map_err(|e| tc_error(name, e))?;
        self.added.push((index, name.to_string()));
        Ok(())
    }

    /// Removes the filters named `ours` (l3mp's programs) from device `index` (`name`): no
    /// l3mp runs on it, so an l3mp killed there left them, with the programs they hold. On a
    /// device that is not `own`, a clsact qdisc that held nothing else goes with them: that
    /// l3mp added it (l3mp's own links keep theirs, see [`Clsacts::ensure`]).
    pub fn remove_stale(
        &self,
        index: u32,
        name: &str,
        ours: &[&str],
        own: bool,
    ) -> Result<(), Error> {
        let filters = self
            .netlink
            .tc_filters(index)
            .map_err(|e| tc_error(name, e))?;
        let is_ours =
            |f: &TcFilter| f.kind == "bpf" && f.name.as_deref().is_some_and(|n| ours.contains(&n));
        let stale: Vec<&TcFilter> = filters.iter().filter(|f| is_ours(f)).collect();
        if stale.is_empty() {
            return Ok(());
        }
        if stale.len() == filters.len() && !own {
            log::warn!(
                "removing the clsact qdisc of {name} and its {} filters, left by an l3mp that \
                 is no longer running",
                stale.len()
            );
            return self
                .netlink
                .delete_clsact(index)
                .map_err(|e| tc_error(name, e));
        }
        for filter in stale {
            log::warn!(
                "removing the {} filter {} of {name}, left by an l3mp that is no longer running",
                filter.direction,
                filter.name.as_deref().unwrap_or_default()
            );
            self.netlink
                .delete_tc_filter(index, filter)
                .map_err(|e| tc_error(name, e))?;
        }
        Ok(())
    }
}

impl Drop for Clsacts {
    fn drop(&mut self) {
        for (index, name) in self.added.drain(..) {
            match self.netlink.tc_filters(index) {
                Ok(filters) if filters.is_empty() => {}
                Ok(filters) => {
                    log::info!(
                        "leaving the clsact qdisc on {name}: it holds {} filters l3mp did not \
                         add",
                        filters.len()
                    );
                    continue;
                }
                // Gone with its device (ext went away, or a link was deleted).
                Err(e) if e.errno() == Some(libc::ENODEV) => continue,
                Err(e) => {
                    log::warn!("{name}: {e}");
                    continue;
                }
            }
            match self.netlink.delete_clsact(index) {
                Ok(()) => log::debug!("removed the clsact qdisc of {name}"),
                Err(e) if matches!(e.errno(), Some(libc::ENODEV | libc::ENOENT)) => {}
                Err(e) => log::warn!("{e}"),
            }
        }
    }
}

/// A failed qdisc or filter operation on `name`, naming the kernel feature it lacks where
/// that is why.
fn tc_error(name: &str, e: SysError) -> Error {
    match e.errno() {
        Some(libc::ENOENT | libc::EOPNOTSUPP) => Error::new(format!(
            "{name}: this kernel has no clsact qdisc (CONFIG_NET_SCH_INGRESS, module \
             sch_ingress): {e}"
        )),
        _ => Error::new(format!("{name}: {e}")),
    }
}

/// A failed attachment of `prog` to `name`, naming the kernel feature it lacks where that is
/// why: the kernel answers ENOENT for a classifier kind it does not know.
pub fn attach_error(prog: &str, name: &str, at: TcAttachType, e: ProgramError) -> Error {
    let errno = match &e {
        ProgramError::TcError(TcError::NetlinkError(n)) => n.raw_os_error(),
        ProgramError::NetlinkError(n) => n.raw_os_error(),
        _ => None,
    };
    if errno == Some(libc::ENOENT) {
        return Error::new(format!(
            "attaching {prog} to {name} ({at:?}): this kernel has no cls_bpf classifier \
             (CONFIG_NET_CLS_BPF, module cls_bpf): {e}"
        ));
    }
    Error::new(format!("attaching {prog} to {name} ({at:?}): {e}"))
}
