//! One running l3mp: its links, its programs, and the cleanup that removes them. Everything is
//! created in order and removed in reverse, on a clean stop and on every error path alike.

use std::time::Duration;

use crate::programs::{Config, Ext, ExtKind, Link};
use crate::sys::netlink::{LinkInfo, Netlink};

use super::datapath::{Counter, Datapath, IngressMode};
use super::naming::{alive, hidden_name, Mark};
use super::options::{IngressChoice, RunOptions};
use super::Error;

/// How long `--peer` may take to resolve.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// A managed link: the veth pair behind one `--if`.
#[derive(Clone, Debug)]
pub struct ManagedLink {
    pub label: u8,
    pub user: LinkInfo,
    pub hidden: LinkInfo,
}

/// A running instance. Dropping it detaches every program and deletes every link it created.
pub struct Instance {
    netlink: Netlink,
    ext: LinkInfo,
    mode: IngressMode,
    links: Vec<ManagedLink>,
    datapath: Option<Datapath>,
}

impl Instance {
    /// Checks `opts` against the system, then creates the links and attaches the programs.
    /// Runs in ext's network namespace; on error nothing is left behind.
    pub fn start(opts: &RunOptions) -> Result<Instance, Error> {
        opts.check()?;
        let netlink = Netlink::new().map_err(|e| Error::new(format!("netlink: {e}")))?;
        let ext = netlink
            .link(&opts.ext)
            .map_err(|e| Error::new(format!("--ext {}: {e}", opts.ext)))?
            .ok_or_else(|| {
                Error::new(format!(
                    "--ext {}: no such interface (bring the tunnel up first)",
                    opts.ext
                ))
            })?;
        let kind = ext_kind(&netlink, &ext, opts)?;
        let leftovers = leftovers(&netlink, &opts.ext)?;
        check_names_free(&netlink, opts, &leftovers)?;
        for stale in &leftovers {
            log::warn!(
                "removing {} (label {}) left by an l3mp on {} that is no longer running (pid {})",
                stale.user.name,
                stale.label,
                opts.ext,
                stale.pid
            );
            delete(&netlink, &stale.user);
        }

        let mut instance = Instance {
            netlink,
            mode: IngressMode::Tc,
            ext,
            links: Vec::new(),
            datapath: None,
        };
        instance.create_links(opts)?;
        instance.mode = instance.attach(opts, kind)?;
        Ok(instance)
    }

    fn create_links(&mut self, opts: &RunOptions) -> Result<(), Error> {
        let pid = std::process::id();
        for arg in &opts.links {
            let mark = |hidden| Mark {
                ext: opts.ext.clone(),
                label: arg.label,
                pid,
                hidden,
            };
            let hidden = hidden_name(&opts.ext, arg.label);
            let (user, hidden) = self
                .netlink
                .create_veth(
                    &arg.name,
                    &hidden,
                    self.ext.mtu,
                    &mark(false).alias(),
                    &mark(true).alias(),
                )
                .map_err(|e| Error::new(format!("--if {}@{}: {e}", arg.name, arg.label)))?;
            log::debug!(
                "created {} (ifindex {}) with hidden peer {} (ifindex {})",
                user.name,
                user.index,
                hidden.name,
                hidden.index
            );
            self.links.push(ManagedLink {
                label: arg.label,
                user,
                hidden,
            });
        }
        Ok(())
    }

    /// Attaches the programs in the mode `opts` asks for (or `auto` picks).
    fn attach(&mut self, opts: &RunOptions, kind: ExtKind) -> Result<IngressMode, Error> {
        let cfg = Config {
            label_bits: opts.label_bits,
            ext: Ext {
                ifindex: self.ext.index,
                kind,
            },
            links: self.links.iter().map(ManagedLink::program_link).collect(),
            unknown: opts.unknown,
        };
        let (mode, why) = choose_mode(opts.ingress, &self.ext);
        let attached = Datapath::attach(&cfg, &self.ext.name, mode);
        let (mode, datapath) = match (attached, opts.ingress) {
            (Err(e), IngressChoice::Auto) if mode == IngressMode::Xdp => {
                log::info!(
                    "native XDP on {} failed ({e}); using TC ingress",
                    self.ext.name
                );
                (
                    IngressMode::Tc,
                    Datapath::attach(&cfg, &self.ext.name, IngressMode::Tc)?,
                )
            }
            (attached, _) => {
                let datapath = attached?;
                log::info!("ingress on {}: {mode} ({why})", self.ext.name);
                (mode, datapath)
            }
        };
        self.datapath = Some(datapath);
        Ok(mode)
    }

    /// The tunnel device.
    pub fn ext(&self) -> &LinkInfo {
        &self.ext
    }

    /// How ingress demux runs.
    pub fn mode(&self) -> IngressMode {
        self.mode
    }

    /// The managed links.
    pub fn links(&self) -> &[ManagedLink] {
        &self.links
    }

    /// Every counter slot, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<Counter>, Error> {
        self.datapath
            .as_ref()
            .ok_or_else(|| Error::new("not attached"))?
            .counters()
    }
}

impl ManagedLink {
    fn program_link(&self) -> Link {
        Link {
            name: self.user.name.clone(),
            label: self.label,
            ifindex: self.user.index,
            mac: self.user.mac.unwrap_or_default(),
            peer_ifindex: self.hidden.index,
            peer_mac: self.hidden.mac.unwrap_or_default(),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Programs first, so that nothing is redirected into a link being deleted.
        self.datapath.take();
        for link in self.links.drain(..).rev() {
            delete(&self.netlink, &link.user);
        }
    }
}

fn delete(netlink: &Netlink, link: &LinkInfo) {
    match netlink.delete_link(link.index) {
        Ok(()) => log::debug!("deleted {}", link.name),
        Err(e) => log::warn!("could not delete {}: {e}", link.name),
    }
}

/// The kind of ext; an Ethernet ext needs `--peer`, resolved to the remote host's MAC.
fn ext_kind(netlink: &Netlink, ext: &LinkInfo, opts: &RunOptions) -> Result<ExtKind, Error> {
    match (ext.is_ethernet, opts.peer, ext.mac) {
        (false, None, _) => Ok(ExtKind::L3),
        (false, Some(peer), _) => Err(Error::new(format!(
            "--peer {peer}: {} is a layer-3 device, which needs no peer address; drop --peer",
            ext.name
        ))),
        (true, None, _) => Err(Error::new(format!(
            "--ext {}: an Ethernet interface needs --peer <address of the remote l3mp host on it>",
            ext.name
        ))),
        (true, Some(_), None) => Err(Error::new(format!(
            "--ext {}: Ethernet interface without a MAC address",
            ext.name
        ))),
        (true, Some(peer), Some(mac)) => {
            let peer_mac = netlink
                .resolve_neighbour(ext.index, &ext.name, peer, PEER_TIMEOUT)
                .map_err(|e| Error::new(format!("--peer {peer}: {e}")))?;
            Ok(ExtKind::Ethernet { mac, peer_mac })
        }
    }
}

/// Ingress mode for `choice` on `ext`, and why.
pub fn choose_mode(choice: IngressChoice, ext: &LinkInfo) -> (IngressMode, &'static str) {
    match choice {
        IngressChoice::Tc => (IngressMode::Tc, "--ingress tc"),
        IngressChoice::Xdp => (IngressMode::Xdp, "--ingress xdp"),
        IngressChoice::Auto if !ext.is_ethernet => (
            IngressMode::Tc,
            "a layer-3 device (wg0, tun) has no native XDP",
        ),
        IngressChoice::Auto if ext.kind.as_deref() == Some("veth") => (
            IngressMode::Tc,
            "on a veth, native XDP breaks TCP from senders using checksum offload",
        ),
        IngressChoice::Auto if ext.kind.is_some() => (
            IngressMode::Tc,
            "a virtual device has no native XDP worth using",
        ),
        IngressChoice::Auto => (
            IngressMode::Xdp,
            "a physical NIC: native XDP where its driver has it",
        ),
    }
}

/// A link a previous instance on this ext left behind.
struct Leftover {
    user: LinkInfo,
    label: u8,
    pid: u32,
}

/// The user ends of links marked for `ext`; refuses when their instance is still running.
fn leftovers(netlink: &Netlink, ext: &str) -> Result<Vec<Leftover>, Error> {
    let links = netlink
        .links()
        .map_err(|e| Error::new(format!("listing links: {e}")))?;
    let mut out = Vec::new();
    for link in links {
        let Some(mark) = link.alias.as_deref().and_then(Mark::parse) else {
            continue;
        };
        if mark.ext != ext || mark.hidden {
            continue;
        }
        if alive(mark.pid) {
            return Err(Error::new(format!(
                "--ext {ext}: l3mp (pid {}) already runs on it (it owns {}); \
                 stop it first or pick another tunnel",
                mark.pid, link.name
            )));
        }
        out.push(Leftover {
            user: link,
            label: mark.label,
            pid: mark.pid,
        });
    }
    Ok(out)
}

/// Every `--if` name and hidden name must be free, apart from leftovers about to go.
fn check_names_free(
    netlink: &Netlink,
    opts: &RunOptions,
    leftovers: &[Leftover],
) -> Result<(), Error> {
    let ours = |name: &str| {
        leftovers
            .iter()
            .any(|l| l.user.name == name || hidden_name(&opts.ext, l.label) == name)
    };
    for arg in &opts.links {
        let hidden = hidden_name(&opts.ext, arg.label);
        for (name, what) in [(&arg.name, "an interface"), (&hidden, "the hidden peer")] {
            let exists = netlink
                .link(name)
                .map_err(|e| Error::new(format!("--if {}@{}: {e}", arg.name, arg.label)))?
                .is_some();
            if exists && !ours(name) {
                return Err(Error::new(format!(
                    "--if {}@{}: {what} named {name} already exists; pick another name or delete it",
                    arg.name, arg.label
                )));
            }
        }
    }
    Ok(())
}
