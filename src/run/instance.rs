//! One running l3mp: its links, its programs, what it publishes for `status`, and the cleanup
//! that removes them. Everything is created in order and removed in reverse, on a clean stop
//! and on every error path alike. ext may go away and come back meanwhile (see
//! [`super::watch`]): the links stay, the programs follow it.

use std::path::Path;
use std::time::Duration;

use crate::programs::{Config, Ext, ExtKind, Link};
use crate::sys::netlink::{LinkEvent, LinkInfo, Netlink, VethEnd};
use crate::sys::netns::NetNs;

use super::bpffs::{ensure_bpffs, BPFFS};
use super::counters::Counters;
use super::datapath::{Datapath, IngressMode};
use super::naming::{alive, hidden_name, link_macs, Mark};
use super::options::{IngressChoice, RunOptions};
use super::registry::{Published, Registry};
use super::state::{InstanceId, State, StateLink};
use super::watch::{mac_change, step, Step};
use super::Error;

/// How long `--peer` may take to resolve at start.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `--peer` may take to resolve when ext comes back (the attempt is repeated, and
/// the loop looks for stop signals in between).
const REATTACH_PEER_TIMEOUT: Duration = Duration::from_millis(300);

/// Whether the programs are on ext, after a look at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// On ext, as it is now.
    Attached,
    /// ext is gone, or back but not attached yet: worth another try later.
    Waiting,
}

/// A managed link: the veth pair behind one `--if`.
#[derive(Clone, Debug)]
pub struct ManagedLink {
    pub label: u8,
    pub user: LinkInfo,
    pub hidden: LinkInfo,
}

/// A running instance. Dropping it detaches every program, deletes every link it created and
/// removes its state file and pins.
pub struct Instance {
    netlink: Netlink,
    opts: RunOptions,
    id: InstanceId,
    /// The inode of the network namespace it runs in.
    netns: u64,
    /// The ext the programs were last attached to.
    ext: LinkInfo,
    /// Whether the programs are on `ext` and it is still there.
    ext_present: bool,
    /// The ifindex of an ext that came back but could not be attached yet.
    failed_on: Option<u32>,
    mode: IngressMode,
    links: Vec<ManagedLink>,
    datapath: Option<Datapath>,
    /// Dropped after everything else (fields drop in order, after [`Instance::drop`]).
    published: Published,
}

impl Instance {
    /// Checks `opts` against the system, then creates the links, attaches the programs and
    /// publishes the instance (state file and pinned counters). Runs in ext's network
    /// namespace; on error nothing is left behind.
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
        let kind = ext_kind(&netlink, &ext, opts, PEER_TIMEOUT)?;
        super::tunnel_peers::check_peers(&opts.ext);
        let leftovers = leftovers(&netlink, &opts.ext)?;
        check_names_free(&netlink, opts, &leftovers)?;
        let netns = NetNs::of_current_thread()
            .and_then(|netns| netns.inode())
            .map_err(|e| Error::new(e.to_string()))?;
        ensure_bpffs(Path::new(BPFFS))?;
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

        let registry = Registry::system();
        let id = InstanceId::next();
        let mut instance = Instance {
            netlink,
            opts: opts.clone(),
            id,
            netns,
            mode: IngressMode::Tc,
            ext,
            ext_present: true,
            failed_on: None,
            links: Vec::new(),
            datapath: None,
            published: registry.publish(id)?,
        };
        instance.create_links()?;
        instance.attach(kind)?;
        instance.published.write(&instance.state())?;
        for line in registry.sweep_dead() {
            log::info!("{line}");
        }
        Ok(instance)
    }

    fn create_links(&mut self) -> Result<(), Error> {
        let (opts, pid) = (&self.opts, self.id.pid);
        for arg in &opts.links {
            let mark = |hidden| Mark {
                ext: opts.ext.clone(),
                label: arg.label,
                pid,
                hidden,
            };
            let macs = link_macs(&opts.ext);
            let user = VethEnd {
                name: &arg.name,
                alias: &mark(false).alias(),
                mac: Some(macs.user_end(arg.label)),
            };
            let hidden = VethEnd {
                name: &hidden_name(&opts.ext, arg.label),
                alias: &mark(true).alias(),
                mac: Some(macs.hidden_end(arg.label)),
            };
            let (user, hidden) = self
                .netlink
                .create_veth(&user, &hidden, self.ext.mtu)
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

    /// Attaches the programs to `self.ext` of `kind` in the mode `--ingress` asks for (or
    /// `auto` picks).
    fn attach(&mut self, kind: ExtKind) -> Result<(), Error> {
        let opts = &self.opts;
        let cfg = Config {
            label_bits: opts.label_bits,
            ext: Ext {
                ifindex: self.ext.index,
                kind,
            },
            links: self.links.iter().map(ManagedLink::program_link).collect(),
            macs: link_macs(&opts.ext),
            unknown: opts.unknown,
        };
        let counters = self.published.counters();
        let ext = &self.ext.name;
        let (mode, why) = choose_mode(opts.ingress, &self.ext);
        let attached = Datapath::attach(&cfg, ext, mode, &counters);
        let (mode, datapath) = match (attached, opts.ingress) {
            (Err(e), IngressChoice::Auto) if mode == IngressMode::Xdp => {
                log::info!("native XDP on {ext} failed ({e}); using TC ingress");
                let tc = IngressMode::Tc;
                (tc, Datapath::attach(&cfg, ext, tc, &counters)?)
            }
            (attached, _) => {
                let datapath = attached?;
                log::info!("ingress on {ext}: {mode} ({why})");
                (mode, datapath)
            }
        };
        self.mode = mode;
        self.datapath = Some(datapath);
        Ok(())
    }

    /// Reports a change of a link's MAC (see [`mac_change`]): the demux writes the MAC the link
    /// was created with into everything it delivers.
    pub(super) fn check_mac(&mut self, event: &LinkEvent) {
        let LinkEvent::New(info) = event else {
            return;
        };
        let macs = link_macs(&self.opts.ext);
        let Some(link) = self.links.iter_mut().find(|l| l.user.index == info.index) else {
            return;
        };
        let expected = macs.user_end(link.label);
        if let Some((level, text)) = mac_change(&link.user.name, expected, link.user.mac, info.mac)
        {
            log::log!(level, "{text}");
        }
        link.user.mac = info.mac;
    }

    /// Whether a link event may concern ext: its name, or the ifindex the programs are on.
    pub(super) fn concerns(&self, event: &LinkEvent) -> bool {
        let (index, name) = match event {
            LinkEvent::New(info) => (info.index, &info.name),
            LinkEvent::Deleted { index, name } => (*index, name),
        };
        *name == self.opts.ext || index == self.ext.index
    }

    /// Looks at ext and follows it: notes that it is gone, attaches again to an ext of that
    /// name with a new ifindex, or has the links follow its MTU.
    pub(super) fn follow_ext(&mut self) -> Result<Attachment, Error> {
        let now = self
            .netlink
            .link(&self.opts.ext)
            .map_err(|e| Error::new(format!("--ext {}: {e}", self.opts.ext)))?;
        match step(&self.ext, self.ext_present, now) {
            Step::Nothing => {}
            Step::Gone => {
                log::warn!(
                    "{} (ifindex {}) is gone: keeping the links and waiting for it to come back \
                     (until then what they send is dropped)",
                    self.ext.name,
                    self.ext.index
                );
                self.ext_present = false;
            }
            Step::Mtu(mtu) => {
                self.ext.mtu = mtu;
                self.follow_mtu(mtu);
            }
            Step::Attach(now) => self.reattach(now),
        }
        Ok(if self.ext_present {
            Attachment::Attached
        } else {
            Attachment::Waiting
        })
    }

    /// Attaches programs generated for the ext now called `--ext` (a new ifindex, and for an
    /// Ethernet ext its MAC and the peer's, resolved again), in place of the old ones. The
    /// counters carry on: the new programs use the same pinned map.
    fn reattach(&mut self, now: LinkInfo) {
        let first_try = self.failed_on != Some(now.index);
        // Waiting for the peer is expected (a new veth has no carrier until both ends are
        // up); failing to attach is not.
        let not_yet = |this: &mut Instance, e: Error, level: log::Level| {
            let level = if first_try { level } else { log::Level::Debug };
            log::log!(
                level,
                "{} is back (ifindex {}) but cannot be attached yet: {e}; trying again",
                now.name,
                now.index
            );
            this.failed_on = Some(now.index);
        };
        if now.is_ethernet && !now.running {
            // A probe for the peer would be lost, and leave an unresolved neighbour entry that
            // the kernel asks for again only a second later; ext's coming up is notified.
            let e = Error::new(format!(
                "{} is not up and running (no carrier yet?)",
                now.name
            ));
            return not_yet(self, e, log::Level::Info);
        }
        let kind = match ext_kind(&self.netlink, &now, &self.opts, REATTACH_PEER_TIMEOUT) {
            Ok(kind) => kind,
            Err(e) => return not_yet(self, e, log::Level::Info),
        };
        // The old programs redirect to the old ifindex: they go before the new ones come.
        self.datapath = None;
        self.ext_present = false;
        self.ext = now.clone();
        if let Err(e) = self.attach(kind) {
            return not_yet(self, e, log::Level::Warn);
        }
        self.ext_present = true;
        self.failed_on = None;
        log::info!(
            "{} is back (ifindex {}): re-attached, {} ingress, counters kept",
            now.name,
            now.index,
            self.mode
        );
        self.follow_mtu(now.mtu);
        if let Err(e) = self.published.write(&self.state()) {
            log::warn!("{e}");
        }
    }

    /// Gives both ends of every link the MTU `mtu` (ext's).
    fn follow_mtu(&mut self, mtu: u32) {
        let ends = |l: &ManagedLink| [l.user.mtu, l.hidden.mtu];
        if self.links.iter().flat_map(ends).all(|m| m == mtu) {
            return;
        }
        for link in &mut self.links {
            for end in [&mut link.user, &mut link.hidden] {
                if end.mtu == mtu {
                    continue;
                }
                match self.netlink.set_mtu(end.index, mtu) {
                    Ok(()) => end.mtu = mtu,
                    Err(e) => log::warn!(
                        "{} cannot follow the MTU of {}: {e}",
                        end.name,
                        self.ext.name
                    ),
                }
            }
        }
        let followed: Vec<&str> = self
            .links
            .iter()
            .filter(|l| l.user.mtu == mtu && l.hidden.mtu == mtu)
            .map(|l| l.user.name.as_str())
            .collect();
        log::info!(
            "{}'s MTU is {mtu}: so is that of {}",
            self.ext.name,
            followed.join(", ")
        );
    }

    /// What the state file says.
    fn state(&self) -> State {
        State {
            id: self.id,
            pid: self.id.pid,
            netns: self.netns,
            ext: self.ext.name.clone(),
            ext_ifindex: self.ext.index,
            ingress: self.mode,
            label_bits: self.opts.label_bits,
            unknown: self.opts.unknown,
            counters: self.published.counters(),
            links: self
                .links
                .iter()
                .map(|l| StateLink {
                    name: l.user.name.clone(),
                    label: l.label,
                    hidden: l.hidden.name.clone(),
                })
                .collect(),
        }
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
    pub fn counters(&self) -> Result<Counters, Error> {
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
            peer_ifindex: self.hidden.index,
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

/// The kind of ext; an Ethernet ext needs `--peer`, resolved to the remote host's MAC within
/// `timeout`.
fn ext_kind(
    netlink: &Netlink,
    ext: &LinkInfo,
    opts: &RunOptions,
    timeout: Duration,
) -> Result<ExtKind, Error> {
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
                .resolve_neighbour(ext.index, &ext.name, peer, timeout)
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
