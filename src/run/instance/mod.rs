//! One running l3mp: its claims on ext, its links, its programs, what it publishes for
//! `status`, and the cleanup that removes them. Everything is created in order and removed in
//! reverse, on a clean stop and on every error path alike. ext may go away and come back
//! meanwhile (see [`super::watch`]): the links stay, the programs follow it.
//!
//! l3mp acts only on what it can tell is its own: ext is the device of ext's name in the
//! instance's network namespace, and a link end is the device of its name there that carries
//! the instance's mark (its alias). A device that leaves the namespace, or is renamed, is no
//! longer taken for ext or for a link: the programs come off it (they would redirect by
//! ifindex, which means another device in another namespace), and are attached again when it
//! is back under its name.

mod adopt;
mod carrier;
mod decide;
mod far_end;
mod mtu;
mod peer;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::programs::TcAttachType;
use nix::sys::signal::{SigSet, Signal};

use crate::programs::{self, Config, Ext, ExtKind, Link, LinkMacs};
use crate::sys::netlink::{format_mac, LinkEvent, LinkInfo, Netlink, VethEnd};
use crate::sys::netns::NetNs;

use super::bpffs::{ensure_bpffs, BPFFS};
use super::counters::{Counter, Counters};
use super::datapath::{serving, Datapath, IngressMode};
use super::lock::Lock;
use super::naming::{hidden_name, is_hidden_name, Identity, Mark};
use super::options::{IngressChoice, LinkArg, Probe, RunOptions};
use super::probe::Prober;
use super::registry::{Claim, Published, Registry};
use super::state::{InstanceId, Loaded, State, StateLink};
use super::wait_ext::{wait_for_ext, Waited};
use super::Error;
use decide::{mac_change, step, Step};

mod recreate;
mod reload;

pub(super) use peer::PEER_CHECK;

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

/// How [`Instance::start_or_wait`] ended.
pub enum Started {
    Running(Box<Instance>),
    /// A signal arrived while it waited for ext; nothing was created.
    Signalled(Signal),
}

/// A managed link: the veth pair behind one `--if`.
#[derive(Clone, Debug)]
pub struct ManagedLink {
    pub label: u8,
    pub user: LinkInfo,
    pub hidden: LinkInfo,
    /// Whether both ends are in the instance's namespace under their names with its mark:
    /// only then do the programs serve the link.
    pub here: bool,
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
    /// When the kernel was last asked to confirm the peer's neighbour entry (Ethernet ext).
    peer_confirmed: Option<Instant>,
    mode: IngressMode,
    /// What the programs were last generated for (on an Ethernet ext, its MAC and the peer's).
    kind: ExtKind,
    /// The MACs of the links' ends, from this end's [`Identity`].
    macs: LinkMacs,
    links: Vec<ManagedLink>,
    /// When and from where the configuration was last loaded.
    loaded: Loaded,
    datapath: Option<Datapath>,
    /// The far-end check; `None` with `--probe off`.
    prober: Option<Prober>,
    registry: Registry,
    /// The claim on the device the programs are on, while they are.
    device: Option<Lock>,
    /// Dropped after everything else (fields drop in order, after [`Instance::drop`]): the
    /// state file, pins and id, then the claim on ext's name.
    published: Published,
    _name: Lock,
}

impl Instance {
    /// Checks `opts` against the system, then creates the links, attaches the programs and
    /// publishes the instance (state file and pinned counters). Runs in ext's network
    /// namespace; on error nothing is left behind.
    pub fn start(opts: &RunOptions) -> Result<Instance, Error> {
        match Instance::start_or_wait(opts, None)? {
            Started::Running(instance) => Ok(*instance),
            Started::Signalled(signal) => Err(Error::new(format!("{signal} while starting"))),
        }
    }

    /// Like [`Instance::start`]; with `signals`, an ext that does not exist yet is waited for
    /// (said once), until it appears or one of `signals` arrives.
    pub fn start_or_wait(opts: &RunOptions, signals: Option<&SigSet>) -> Result<Started, Error> {
        opts.check()?;
        let netlink = Netlink::new().map_err(|e| Error::new(format!("netlink: {e}")))?;
        let netns = NetNs::of_current_thread()
            .and_then(|netns| netns.inode())
            .map_err(|e| Error::new(e.to_string()))?;
        // Before anything is looked at or made: one instance per ext.
        let registry = Registry::system();
        let name = registry
            .claim(Claim::Name {
                netns,
                ext: &opts.ext,
            })?
            .map_err(|who| {
                Error::new(format!(
                    "--ext {}: {who} already runs on it; stop it first or pick another tunnel",
                    opts.ext
                ))
            })?;
        let ext = match (
            netlink
                .link(&opts.ext)
                .map_err(|e| Error::new(format!("--ext {}: {e}", opts.ext)))?,
            signals,
        ) {
            (Some(ext), _) => ext,
            (None, Some(signals)) => match wait_for_ext(&netlink, &opts.ext, signals)? {
                Waited::Appeared(ext) => ext,
                Waited::Signalled(signal) => return Ok(Started::Signalled(signal)),
            },
            (None, None) => {
                return Err(Error::new(format!(
                    "--ext {}: no such interface (bring the tunnel up first)",
                    opts.ext
                )))
            }
        };
        let device = claim_device(&registry, netns, &ext)
            .map_err(|e| Error::new(format!("--ext {}: {e}", opts.ext)))?;
        let kind = ext_kind(&netlink, &ext, opts, PEER_TIMEOUT)?;
        super::tunnel_peers::check_peers(&opts.ext);
        ensure_bpffs(Path::new(BPFFS))?;
        let identity = Identity::of_this_end(opts.host_id.as_deref(), &opts.ext)?;
        let macs = identity.link_macs();
        let prefix: Vec<String> = macs.user.iter().map(|b| format!("{b:02x}")).collect();
        log::info!(
            "links' Ethernet addresses {}:<label>, and the IPv6 link-local addresses made from \
             them, derived from {identity}",
            prefix.join(":")
        );
        // No other instance can run on ext: whatever is marked for it is a dead one's, adopted
        // where the configuration has it, removed where not.
        let adoptable = adopt::Adoptable::find(&netlink, opts, &macs)?;
        remove_leftovers(&netlink, &opts.ext, &adoptable)?;
        check_names_free(&netlink, opts, &adoptable)?;

        let published = registry.publish()?;
        let mut instance = Instance {
            netlink,
            opts: opts.clone(),
            id: published.id(),
            netns,
            mode: IngressMode::Tc,
            kind,
            macs,
            ext,
            ext_present: true,
            failed_on: None,
            peer_confirmed: None,
            links: Vec::new(),
            loaded: Loaded::now(None),
            datapath: None,
            prober: prober(opts),
            registry: registry.clone(),
            device: Some(device),
            published,
            _name: name,
        };
        instance.adopt(adoptable)?;
        let adopted: Vec<u32> = instance.links.iter().map(|l| l.user.index).collect();
        instance.create_links()?;
        let order = |l: &ManagedLink| opts.links.iter().position(|a| a.label == l.label);
        instance.links.sort_by_key(order);
        instance.attach(&adopted)?;
        instance.bring_up_links()?;
        instance.published.write(&instance.state())?;
        for line in registry.sweep_dead() {
            log::info!("{line}");
        }
        Ok(Started::Running(Box::new(instance)))
    }

    /// The mark of the end of the link with `label` (the hidden end if `hidden`).
    fn mark(&self, label: u8, hidden: bool) -> Mark {
        Mark {
            ext: self.opts.ext.clone(),
            label,
            pid: self.id.pid,
            hidden,
        }
    }

    fn create_links(&mut self) -> Result<(), Error> {
        for arg in self.opts.links.clone() {
            if self.links.iter().any(|l| l.label == arg.label) {
                continue; // adopted
            }
            let link = self.create_link(&arg)?;
            self.links.push(link);
        }
        Ok(())
    }

    /// Brings both ends of every link up, hidden end first: they were created down, so that
    /// nothing crosses a pair before its programs are on it.
    fn bring_up_links(&self) -> Result<(), Error> {
        self.bring_up(&self.links)
    }

    /// Brings both ends of each of `links` up, hidden end first.
    fn bring_up(&self, links: &[ManagedLink]) -> Result<(), Error> {
        for link in links {
            for end in [&link.hidden, &link.user] {
                self.netlink.set_up(end.index).map_err(|e| {
                    Error::new(format!("--if {}@{}: {e}", link.user.name, link.label))
                })?;
            }
        }
        Ok(())
    }

    /// Creates the veth pair of `arg`, with the instance's marks and MACs.
    fn create_link(&self, arg: &LinkArg) -> Result<ManagedLink, Error> {
        let macs = &self.macs;
        let user = VethEnd {
            name: &arg.name,
            alias: &self.mark(arg.label, false).alias(),
            mac: Some(macs.user_end(arg.label)),
        };
        let hidden = VethEnd {
            name: &hidden_name(&self.opts.ext, arg.label),
            alias: &self.mark(arg.label, true).alias(),
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
        Ok(ManagedLink {
            label: arg.label,
            user,
            hidden,
            here: true,
        })
    }

    /// Attaches the programs to `self.ext` of `self.kind` in the mode `--ingress` asks for
    /// (or `auto` picks), for the links that are here (`adopted`: the ifindexes of those a
    /// start adopted, see [`Datapath::attach`]).
    fn attach(&mut self, adopted: &[u32]) -> Result<(), Error> {
        let opts = &self.opts;
        let cfg = self.program_config();
        let pins = self.published.pins();
        let ext = &self.ext.name;
        let (mode, why) = choose_mode(opts.ingress, &self.ext);
        let attached = Datapath::attach(&cfg, ext, mode, &pins, adopted);
        let (mode, datapath) = match (attached, opts.ingress) {
            (Err(e), IngressChoice::Auto) if mode == IngressMode::Xdp => {
                log::info!("native XDP on {ext} failed ({e}); using TC ingress");
                let tc = IngressMode::Tc;
                (tc, Datapath::attach(&cfg, ext, tc, &pins, adopted)?)
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

    /// What the programs are generated from: ext as last attached, and the links that are here.
    fn program_config(&self) -> Config {
        Config {
            label_bits: self.opts.label_bits,
            ext: Ext {
                ifindex: self.ext.index,
                kind: self.kind,
                mtu: self.ext.mtu,
            },
            links: self
                .links
                .iter()
                .filter(|l| l.here)
                .map(ManagedLink::program_link)
                .collect(),
            macs: self.macs,
            unknown: self.opts.unknown,
        }
    }

    /// Reports a change of a link's MAC (see [`mac_change`]): the demux writes the MAC the link
    /// was created with into everything it delivers.
    pub(super) fn check_mac(&mut self, event: &LinkEvent) {
        let LinkEvent::New(info) = event else {
            return;
        };
        let macs = self.macs;
        let Some(label) = self
            .links
            .iter()
            .find(|l| l.user.index == info.index && l.user.name == info.name)
            .map(|l| l.label)
            .filter(|&label| is(info, &self.mark(label, false)))
        else {
            return;
        };
        let Some(link) = self.links.iter_mut().find(|l| l.label == label) else {
            return;
        };
        let expected = macs.user_end(link.label);
        if let Some((level, text)) = mac_change(&link.user.name, expected, link.user.mac, info.mac)
        {
            log::log!(level, "{text}");
        }
        link.user.mac = info.mac;
    }

    /// Whether a link event may concern ext or a link: their names, or their ifindexes.
    pub(super) fn concerns(&self, event: &LinkEvent) -> bool {
        let (index, name) = match event {
            LinkEvent::New(info) => (info.index, &info.name),
            LinkEvent::Deleted { index, name } => (*index, name),
        };
        let mut ends = self.links.iter().flat_map(|l| [&l.user, &l.hidden]);
        *name == self.opts.ext
            || index == self.ext.index
            || ends.any(|end| end.index == index || end.name == *name)
    }

    /// Looks at ext and the links and follows them (see [`Instance::follow_ext`] and
    /// [`Instance::follow_links`]).
    pub(super) fn look(&mut self) -> Result<Attachment, Error> {
        let attachment = self.follow_ext()?;
        self.follow_links()?;
        self.keep_link_mtus();
        self.follow_carrier()?;
        Ok(attachment)
    }

    /// Looks at ext and follows it: takes the programs off when it is gone (deleted, moved to
    /// another namespace or renamed), attaches again to an ext of that name with a new ifindex,
    /// or has the links follow its MTU.
    fn follow_ext(&mut self) -> Result<Attachment, Error> {
        let now = self
            .netlink
            .link(&self.opts.ext)
            .map_err(|e| Error::new(format!("--ext {}: {e}", self.opts.ext)))?;
        match step(&self.ext, self.ext_present, now) {
            Step::Nothing => {}
            Step::Gone => {
                // Programs that went with it would redirect to ifindexes that mean other
                // devices where it is now.
                self.detach();
                let how = match self.netlink.link_by_index(self.ext.index) {
                    Ok(Some(now)) => format!("it was renamed to {}", now.name),
                    _ => "it was deleted or moved to another network namespace".into(),
                };
                log::warn!(
                    "{} (ifindex {}) is gone: keeping the links and waiting for it to come back \
                     (until then what they send is dropped); {how}, and l3mp's programs are off it",
                    self.ext.name,
                    self.ext.index
                );
            }
            Step::Mtu(mtu) => {
                // The programs bake ext's MTU in (what is longer is dropped as too big): for a
                // larger one they are ready before the links have it, for a smaller one the
                // links have it first (nothing they send is then taken for too big).
                let grew = mtu > self.ext.mtu;
                self.ext.mtu = mtu;
                if grew {
                    self.attach_again();
                }
                self.follow_mtu(mtu);
                if !grew {
                    self.attach_again();
                }
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
        self.detach();
        match claim_device(&self.registry, self.netns, &now) {
            Ok(device) => self.device = Some(device),
            Err(e) => return not_yet(self, e, log::Level::Warn),
        }
        self.ext = now.clone();
        self.kind = kind;
        if let Err(e) = self.attach(&[]) {
            self.detach();
            return not_yet(self, e, log::Level::Warn);
        }
        self.ext_present = true;
        self.failed_on = None;
        self.give_back_carrier();
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

    /// Takes the programs off (wherever the devices they are on now are) and gives up the
    /// claim on the device.
    fn detach(&mut self) {
        self.datapath = None;
        self.device = None;
        self.ext_present = false;
    }

    /// Looks at the links: one whose end left the namespace, was renamed or deleted is no
    /// longer served (its program comes off it, and its label is unknown to the demux); one
    /// whose ends are back under their names with the instance's mark is served again. The
    /// programs are generated again for what is here.
    fn follow_links(&mut self) -> Result<(), Error> {
        let list = |netlink: &Netlink| {
            (netlink.links()).map_err(|e| Error::new(format!("listing links: {e}")))
        };
        let mut all = list(&self.netlink)?;
        // A pair someone deleted is created again (down), then found below like one that came
        // back, and brought up once the programs are on it.
        let recreated = self.recreate_deleted(&all);
        if !recreated.is_empty() {
            all = list(&self.netlink)?;
        }
        // Said once the programs are as they should be.
        let mut said = Vec::new();
        for i in 0..self.links.len() {
            let label = self.links[i].label;
            let (user_mark, hidden_mark) = (self.mark(label, false), self.mark(label, true));
            let link = &mut self.links[i];
            let find = |name: &str, mark: &Mark| {
                all.iter().find(|l| l.name == name && is(l, mark)).cloned()
            };
            let user = find(&link.user.name, &user_mark);
            let hidden = find(&link.hidden.name, &hidden_mark);
            let moved = |was: &LinkInfo, now: &Option<LinkInfo>| {
                now.as_ref().is_some_and(|now| now.index != was.index)
            };
            let here = user.is_some() && hidden.is_some();
            if here == link.here && !moved(&link.user, &user) && !moved(&link.hidden, &hidden) {
                continue;
            }
            if here {
                said.push((
                    log::Level::Info,
                    format!(
                        "{} (label {label}) is back: l3mp serves it again",
                        link.user.name
                    ),
                ));
            } else if link.here {
                let (end, what) = if user.is_none() {
                    (&link.user, "")
                } else {
                    (&link.hidden, "the hidden end of ")
                };
                let how = match all.iter().find(|l| l.index == end.index) {
                    Some(now) if now.name != end.name => format!("was renamed to {}", now.name),
                    _ => "left this network namespace or was deleted".into(),
                };
                said.push((
                    log::Level::Warn,
                    format!(
                        "{what}{} (label {label}, ifindex {}) {how}: its program is off it and \
                         what arrives with label {label} is no longer delivered, until it is back",
                        end.name, end.index
                    ),
                ));
            } else {
                said.push((log::Level::Debug, format!("{} moved", link.user.name)));
            }
            link.here = here;
            for (end, now) in [(&mut link.user, user), (&mut link.hidden, hidden)] {
                if let Some(now) = now {
                    *end = now;
                }
            }
        }
        let changed = !said.is_empty();
        if changed {
            self.attach_again();
        }
        self.bring_up_recreated(&recreated);
        if changed {
            if let Err(e) = self.published.write(&self.state()) {
                log::warn!("{e}");
            }
        }
        for (level, line) in said {
            log::log!(level, "{line}");
        }
        Ok(())
    }

    /// Generates the programs again for what is here now and attaches them in place of the
    /// ones on ext (if they are on it).
    fn attach_again(&mut self) {
        if !self.ext_present {
            return;
        }
        // Not two sets at once: a second guard on ext would clear the labels the first
        // lets through.
        self.datapath = None;
        if let Err(e) = self.attach(&[]) {
            log::warn!("{}: {e}; trying again", self.ext.name);
            self.detach();
            self.failed_on = None;
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
            probes: Some(self.published.probes()),
            probe: Some(self.opts.probe == Probe::On),
            links: self
                .links
                .iter()
                .map(|l| StateLink {
                    name: l.user.name.clone(),
                    label: l.label,
                    hidden: l.hidden.name.clone(),
                })
                .collect(),
            loaded: Some(self.loaded.clone()),
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

    /// What each link received, by label: what its hidden end sent it, as the kernel counts
    /// it (the demux does not count what it delivers). A link whose hidden end is not there
    /// has none.
    pub fn received(&self) -> Result<HashMap<u8, Counter>, Error> {
        let sent = self
            .netlink
            .sent_by_link()
            .map_err(|e| Error::new(format!("reading the links' statistics: {e}")))?;
        Ok(self
            .links
            .iter()
            .filter_map(|link| Some((link.label, Counter::from(*sent.get(&link.hidden.index)?))))
            .collect())
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
        self.detach();
        for link in std::mem::take(&mut self.links).into_iter().rev() {
            self.delete_pair(&link);
        }
    }
}

impl Instance {
    /// Deletes the veth pair of `link` through whichever end is still here under its name
    /// with the instance's mark; says so when neither is.
    fn delete_pair(&self, link: &ManagedLink) {
        let ends = [
            (&link.user, self.mark(link.label, false)),
            (&link.hidden, self.mark(link.label, true)),
        ];
        let deleted = ends
            .iter()
            .any(|(end, mark)| delete_ours(&self.netlink, &end.name, mark));
        if !deleted {
            log::warn!(
                "{} (label {}) and its hidden end {} are no longer in this network \
                 namespace under their names (deleted, or moved away or renamed: then \
                 delete them where they are)",
                link.user.name,
                link.label,
                link.hidden.name
            );
        }
    }
}

/// The far-end check `opts` asks for; none (said) when its socket cannot be had.
fn prober(opts: &RunOptions) -> Option<Prober> {
    if opts.probe == Probe::Off {
        return None;
    }
    Prober::new(opts.label_bits)
        .inspect_err(|e| log::warn!("{e}: the far ends are not checked"))
        .ok()
}

/// Whether `link` carries `mark`.
fn is(link: &LinkInfo, mark: &Mark) -> bool {
    link.alias.as_deref().and_then(Mark::parse).as_ref() == Some(mark)
}

/// Deletes the link called `name` if it carries `mark` (looked up just before, so that an
/// ifindex reused by someone else's device is never deleted); whether it did.
fn delete_ours(netlink: &Netlink, name: &str, mark: &Mark) -> bool {
    let found = match netlink.link(name) {
        Ok(Some(found)) if is(&found, mark) => found,
        Ok(_) => return false,
        Err(e) => {
            log::warn!("could not look up {name}: {e}");
            return false;
        }
    };
    match netlink.delete_link(found.index) {
        Ok(()) => log::debug!("deleted {name}"),
        Err(e) => log::warn!("could not delete {name}: {e}"),
    }
    true
}

/// The claim on the device `ext` is now, or who holds it (an instance on it under another
/// name, or one whose claims this process cannot see but whose guard is on it).
fn claim_device(registry: &Registry, netns: u64, ext: &LinkInfo) -> Result<Lock, Error> {
    let claim = Claim::Device {
        netns,
        ifindex: ext.index,
    };
    let device = registry.claim(claim)?.map_err(|who| {
        Error::new(format!(
            "{} (ifindex {}) carries the programs of {who}, which runs on it under another name; \
             stop that one first",
            ext.name, ext.index
        ))
    })?;
    if serving(&ext.name, TcAttachType::Egress, programs::GUARD) {
        return Err(Error::new(format!(
            "{} (ifindex {}) carries the programs of a running l3mp whose claim on it is not seen \
             here (a container with a /run of its own?); stop that one first",
            ext.name, ext.index
        )));
    }
    Ok(device)
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
            log::info!(
                "--peer {peer} is {} on {}: only its frames to {} enter the links",
                format_mac(&peer_mac),
                ext.name,
                format_mac(&mac)
            );
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

/// Removes what a previous instance on `ext` left in this namespace (it is dead: the caller
/// holds the claim on ext's name): every end marked for `ext` but those `adopted`, and the
/// hidden ends of pairs it was killed while creating (named for `ext` and a label, without a
/// mark yet).
fn remove_leftovers(netlink: &Netlink, ext: &str, adopted: &adopt::Adoptable) -> Result<(), Error> {
    let links = netlink
        .links()
        .map_err(|e| Error::new(format!("listing links: {e}")))?;
    let half_made = |link: &LinkInfo| {
        link.alias.is_none()
            && link.kind.as_deref() == Some("veth")
            && is_hidden_name(ext, &link.name)
    };
    let mut found: Vec<(LinkInfo, Option<Mark>)> = links
        .into_iter()
        .filter_map(|link| match link.alias.as_deref().and_then(Mark::parse) {
            Some(_) if adopted.keeps(&link.name) => None,
            Some(mark) if mark.ext == ext => Some((link, Some(mark))),
            Some(_) => None,
            None => half_made(&link).then_some((link, None)),
        })
        .collect();
    // User ends first: the message names the link, and deleting it takes its hidden end.
    found.sort_by_key(|(_, mark)| mark.as_ref().map_or(2, |m| u8::from(m.hidden)));
    for (link, mark) in found {
        let Some(mark) = mark else {
            let Ok(Some(now)) = netlink.link(&link.name) else {
                continue;
            };
            if half_made(&now) {
                log::warn!(
                    "removing {} and its peer, a link an l3mp on {ext} was killed while creating",
                    link.name
                );
                if let Err(e) = netlink.delete_link(now.index) {
                    log::warn!("could not delete {}: {e}", link.name);
                }
            }
            continue;
        };
        if netlink
            .link(&link.name)
            .is_ok_and(|now| now.is_some_and(|n| is(&n, &mark)))
        {
            let what = if mark.hidden {
                format!("{} (the hidden end of label {})", link.name, mark.label)
            } else {
                format!("{} (label {})", link.name, mark.label)
            };
            log::warn!(
                "removing {what} left by an l3mp on {ext} that is no longer running (pid {})",
                mark.pid
            );
        }
        delete_ours(netlink, &link.name, &mark);
    }
    Ok(())
}

/// Every `--if` name and hidden name must be free, but those of the `adopted` links (one
/// listing of the links, however many there are).
fn check_names_free(
    netlink: &Netlink,
    opts: &RunOptions,
    adopted: &adopt::Adoptable,
) -> Result<(), Error> {
    let links = netlink
        .links()
        .map_err(|e| Error::new(format!("listing links: {e}")))?;
    for arg in opts.links.iter().filter(|arg| !adopted.has(arg.label)) {
        let hidden = hidden_name(&opts.ext, arg.label);
        for (name, what) in [(&arg.name, "an interface"), (&hidden, "the hidden peer")] {
            if links.iter().any(|link| link.name == *name) {
                return Err(Error::new(format!(
                    "--if {}@{}: {what} named {name} already exists; pick another name or delete it",
                    arg.name, arg.label
                )));
            }
        }
    }
    Ok(())
}
