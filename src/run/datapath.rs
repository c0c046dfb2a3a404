//! The programs in the kernel: loaded through aya from the assembler's ELF, attached to the
//! links and to ext. Dropping a [`Datapath`] detaches everything it attached.

use aya::maps::{Array, DevMap, MapData};
use aya::programs::tc::{SchedClassifierLink, SchedClassifierLinkId};
use aya::programs::xdp::{XdpLink, XdpLinkId};
use aya::programs::{ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use serde::{Deserialize, Serialize};

use crate::programs::layout::{COUNTERS_MAP, LINKS_MAP, PEERS_MAP, PROBES_MAP};
use crate::programs::{self, Config, Hook, NAPI_PASS};
use crate::sys::netns::NetNs;

use super::counters::Counters;
use super::kernel;
use super::probe::Recorded;
use super::registry::Pins;
use super::tc_attach::{attach_error, has_tcx, Clsacts, TcAttach};
use super::Error;

/// How ingress demux runs on ext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressMode {
    Tc,
    Xdp,
}

impl std::fmt::Display for IngressMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IngressMode::Tc => "TC",
            IngressMode::Xdp => "XDP",
        })
    }
}

/// The loaded and attached programs.
pub struct Datapath {
    /// `None` only while it is dropped.
    ebpf: Option<Ebpf>,
    /// Every attachment made (or taken over), so that a replacement can take it over.
    attached: Vec<Attached>,
    /// How the TC programs on ext are attached (those on the links are always filters: see
    /// [`LINK_TC_ATTACH`]).
    tc_attach: TcAttach,
    /// The network namespace they were attached in. aya detaches netlink filters by ifindex
    /// in the namespace of the thread that drops them: a [`Datapath`] dropped elsewhere (the
    /// demo drops its instances from outside their namespaces) would miss them, or remove
    /// another device's.
    netns: NetNs,
    /// Dropped after `ebpf` (fields drop in order), once the filters on them are gone.
    clsacts: Clsacts,
}

/// How the links' egress programs are attached, on every kernel: as cls_bpf filters on a
/// clsact qdisc. A tcx attachment costs an RCU grace period (`tcx_entry_sync`), waited for
/// under the RTNL lock, so attachments cannot share one, even from several threads or
/// processes: about 12 to 19 ms each here, most of a start-up with many links. A filter's
/// first attachment waits for an expedited grace period at most. A link's filter goes with
/// the link, and with its qdisc when the link is moved to another network namespace.
const LINK_TC_ATTACH: TcAttach = TcAttach::Netlink;

/// Which device a TC program goes to: one of l3mp's links, or ext (the way given).
#[derive(Clone, Copy)]
enum Way {
    Link,
    Ext(TcAttach),
}

/// Where a program is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Place {
    prog: String,
    ifname: String,
    hook: Hooked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hooked {
    Tc(TcAttachType),
    Xdp,
}

/// One attachment: where, and aya's handle on the kernel's link.
struct Attached {
    place: Place,
    id: AttachedId,
}

enum AttachedId {
    Tc(SchedClassifierLinkId),
    Xdp(XdpLinkId),
}

/// The attachments an earlier [`Datapath`] hands over to its replacement: each one is updated
/// in place, so that the device is never without a program.
type Handover = Vec<(Place, HandedLink)>;

enum HandedLink {
    Tc(SchedClassifierLink),
    Xdp(XdpLink),
}

fn program_error(what: String) -> impl FnOnce(ProgramError) -> Error {
    move |e| {
        let log = match &e {
            ProgramError::LoadError { verifier_log, .. } => format!("\n{verifier_log}"),
            _ => String::new(),
        };
        Error::new(format!("{what}: {e}{log}"))
    }
}

impl Datapath {
    /// Loads the programs of `cfg` and attaches egress to every link's user end and ingress
    /// demux to `ext` in `mode`. Must run in ext's network namespace.
    ///
    /// The counters and probes maps are those pinned at `pins`, created and pinned there if
    /// there are none yet: programs loaded again for the same instance (after ext came back
    /// with a new ifindex) keep counting where the previous ones stopped.
    ///
    /// `adopted` are the ifindexes of the links a start adopted from a killed instance, whose
    /// filters may still be on them; the other links carry none of l3mp's.
    pub fn attach(
        cfg: &Config,
        ext: &str,
        mode: IngressMode,
        pins: &Pins,
        adopted: &[u32],
    ) -> Result<Datapath, Error> {
        let mut dp = Datapath::load(cfg, mode, pins)?;
        // Attached afresh, so no datapath of this instance is on these devices: l3mp filters
        // there (netlink TC) are a killed instance's, on ext (before Linux 6.6) and on the
        // links a start adopted. (A replacement keeps the old filters: it takes them over.)
        let on_ext = [programs::GUARD, programs::ingress_name(Hook::Tc)];
        dp.clsacts
            .remove_stale(cfg.ext.ifindex, ext, &on_ext, false)?;
        for link in cfg.links.iter().filter(|l| adopted.contains(&l.ifindex)) {
            let egress = programs::egress_name(link.label);
            dp.clsacts
                .remove_stale(link.ifindex, &link.name, &[egress.as_str()], true)?;
        }
        dp.attach_all(cfg, ext, mode, &mut Vec::new())?;
        Ok(dp)
    }

    /// Replaces `old` by the programs of `cfg`: every attachment `old` has at a place the new
    /// programs go to is updated in place (tcx and XDP links: `BPF_LINK_UPDATE`; netlink TC
    /// filters: replaced by handle), so that no device is ever without a program and no
    /// packet meets neither. The links' programs go first and the demux last: an added link's
    /// program is there before the demux delivers to it. What `old` has elsewhere (on links
    /// no longer served) comes off when it is dropped.
    ///
    /// Loading happens before anything is touched: when it fails, `old` is given back as it
    /// was. When an attachment then fails, `old` has already handed over some of its places:
    /// no datapath is given back, and the caller attaches afresh.
    pub fn replace(
        mut old: Datapath,
        cfg: &Config,
        ext: &str,
        mode: IngressMode,
        pins: &Pins,
    ) -> Result<Datapath, (Option<Box<Datapath>>, Error)> {
        let mut dp = match Datapath::load(cfg, mode, pins) {
            Ok(dp) => dp,
            Err(e) => return Err((Some(Box::new(old)), e)),
        };
        // The clsact qdiscs the old one added now hold the new one's filters.
        std::mem::swap(&mut dp.clsacts, &mut old.clsacts);
        let mut handover = match old.hand_over() {
            Ok(handover) => handover,
            Err((mut old, e)) => {
                std::mem::swap(&mut dp.clsacts, &mut old.clsacts);
                return Err((Some(old), e));
            }
        };
        dp.attach_all(cfg, ext, mode, &mut handover)
            .map_err(|e| (None, e))?;
        Ok(dp)
    }

    /// Loads every program `cfg` and `mode` need into the kernel, with the maps pinned at
    /// `pins` and the links' maps filled, attaching none.
    fn load(cfg: &Config, mode: IngressMode, pins: &Pins) -> Result<Datapath, Error> {
        let bundle = programs::build(cfg).map_err(|e| Error::new(e.to_string()))?;
        kernel::check(&bundle)?;
        let elf = bundle.elf().map_err(|e| Error::new(e.to_string()))?;
        let ebpf = EbpfLoader::new()
            .map_pin_path(COUNTERS_MAP, &pins.counters)
            .map_pin_path(PROBES_MAP, &pins.probes)
            .load(&elf)
            .map_err(|e| Error::new(format!("loading the programs: {e}")))?;
        let tc_attach = TcAttach::chosen()?;
        log::debug!(
            "TC programs attach to ext through {tc_attach}, to the links through {LINK_TC_ATTACH}"
        );
        let clsacts = Clsacts::new()?;
        let netns = NetNs::of_current_thread().map_err(|e| Error::new(e.to_string()))?;
        let mut dp = Datapath {
            ebpf: Some(ebpf),
            attached: Vec::new(),
            tc_attach,
            netns,
            clsacts,
        };
        point_links(dp.ebpf_mut(), cfg)?;
        let mut tc: Vec<String> = cfg
            .links
            .iter()
            .map(|l| programs::egress_name(l.label))
            .collect();
        tc.push(programs::GUARD.into());
        let mut xdp = Vec::new();
        match mode {
            IngressMode::Tc => tc.push(programs::ingress_name(Hook::Tc).into()),
            IngressMode::Xdp => xdp.extend([NAPI_PASS, programs::ingress_name(Hook::Xdp)]),
        }
        for prog in &tc {
            let p: &mut SchedClassifier = dp.program(prog)?;
            p.load().map_err(program_error(format!("loading {prog}")))?;
        }
        for prog in xdp {
            let p: &mut Xdp = dp.program(prog)?;
            p.load().map_err(program_error(format!("loading {prog}")))?;
        }
        Ok(dp)
    }

    /// Attaches the loaded programs: egress (and for XDP ingress the NAPI pass program) on
    /// every link's user end, then the guard on ext's egress, then the demux on ext's ingress.
    /// A place found in `handover` is taken over rather than attached afresh.
    fn attach_all(
        &mut self,
        cfg: &Config,
        ext: &str,
        mode: IngressMode,
        handover: &mut Handover,
    ) -> Result<(), Error> {
        for link in &cfg.links {
            let name = programs::egress_name(link.label);
            let at = (link.ifindex, link.name.as_str());
            self.tc(&name, at, TcAttachType::Egress, Way::Link, handover)?;
            if mode == IngressMode::Xdp {
                self.xdp(NAPI_PASS, &link.name, handover)
                    .map_err(|e| Error::new(format!("{e} (it gives the veth NAPI)")))?;
            }
        }
        // The guard clears the label of what leaves ext without coming from a link.
        let on_ext = (cfg.ext.ifindex, ext);
        let way = Way::Ext(self.tc_attach);
        self.tc(programs::GUARD, on_ext, TcAttachType::Egress, way, handover)?;
        match mode {
            IngressMode::Tc => self.tc(
                programs::ingress_name(Hook::Tc),
                on_ext,
                TcAttachType::Ingress,
                way,
                handover,
            ),
            IngressMode::Xdp => self
                .xdp(programs::ingress_name(Hook::Xdp), ext, handover)
                .map_err(|e| {
                    Error::new(format!(
                        "--ingress xdp: {ext} has no native XDP ({e}); use --ingress tc \
                         (generic XDP drops GSO packets, so l3mp never falls back to it)"
                    ))
                }),
        }
    }

    /// Attaches the loaded classifier `prog` to the device `(ifindex, name)` the `way` given,
    /// or takes over the attachment `handover` has there.
    fn tc(
        &mut self,
        prog: &str,
        (index, name): (u32, &str),
        at: TcAttachType,
        way: Way,
        handover: &mut Handover,
    ) -> Result<(), Error> {
        let (tc_attach, own) = match way {
            Way::Link => (LINK_TC_ATTACH, true),
            Way::Ext(tc_attach) => (tc_attach, false),
        };
        let place = Place {
            prog: prog.into(),
            ifname: name.into(),
            hook: Hooked::Tc(at),
        };
        let taken = take(handover, &place);
        if tc_attach == TcAttach::Netlink && taken.is_none() {
            self.clsacts.ensure(index, name, own)?;
        }
        let p: &mut SchedClassifier = self.program(prog)?;
        let id = match taken {
            Some(HandedLink::Tc(link)) => p.attach_to_link(link).map_err(program_error(
                format!("replacing {prog} on {name} ({at:?})"),
            ))?,
            _ => p
                .attach_with_options(name, at, tc_attach.options())
                .map_err(|e| attach_error(prog, name, at, e))?,
        };
        self.attached.push(Attached {
            place,
            id: AttachedId::Tc(id),
        });
        Ok(())
    }

    /// Attaches the loaded XDP program `prog` to `ifname` in native mode, or takes over the
    /// attachment `handover` has there.
    fn xdp(&mut self, prog: &str, ifname: &str, handover: &mut Handover) -> Result<(), Error> {
        let place = Place {
            prog: prog.into(),
            ifname: ifname.into(),
            hook: Hooked::Xdp,
        };
        let taken = take(handover, &place);
        let p: &mut Xdp = self.program(prog)?;
        let id = match taken {
            Some(HandedLink::Xdp(link)) => p.attach_to_link(link),
            _ => p.attach(ifname, XdpMode::Driver),
        }
        .map_err(program_error(format!("attaching {prog} to {ifname}")))?;
        self.attached.push(Attached {
            place,
            id: AttachedId::Xdp(id),
        });
        Ok(())
    }

    /// Every attachment, taken out of the programs (which keep nothing attached), for a
    /// replacement to take over; `self` back if one cannot be taken.
    fn hand_over(mut self) -> Result<Handover, (Box<Datapath>, Error)> {
        let mut handover = Vec::new();
        while let Some(Attached { place, id }) = self.attached.pop() {
            let what = format!("taking over {}", place.prog);
            let taken = match id {
                AttachedId::Tc(id) => self
                    .program::<SchedClassifier>(&place.prog)
                    .and_then(|p| p.take_link(id).map_err(program_error(what)))
                    .map(HandedLink::Tc),
                AttachedId::Xdp(id) => self
                    .program::<Xdp>(&place.prog)
                    .and_then(|p| p.take_link(id).map_err(program_error(what)))
                    .map(HandedLink::Xdp),
            };
            match taken {
                Ok(link) => handover.push((place, link)),
                // What was taken goes back to being dropped with the rest: detached.
                Err(e) => return Err((Box::new(self), e)),
            }
        }
        Ok(handover)
    }

    /// The program `prog` of the object, as the type its section says it is.
    fn program<'a, P>(&'a mut self, prog: &str) -> Result<&'a mut P, Error>
    where
        &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        self.ebpf_mut()
            .program_mut(prog)
            .ok_or_else(|| Error::new(format!("program {prog} missing from the object")))?
            .try_into()
            .map_err(program_error(format!("program {prog}")))
    }

    /// Every counter slot, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, Error> {
        Counters::of(self.ebpf.as_ref().expect("taken only when dropped"))
    }

    /// Every entry of the `probes` map, by label.
    pub fn probes(&self) -> Result<Vec<Recorded>, Error> {
        let ebpf = self.ebpf.as_ref().expect("taken only when dropped");
        let map: Array<_, Recorded> = ebpf
            .map(PROBES_MAP)
            .ok_or_else(|| Error::new(format!("map {PROBES_MAP} missing from the object")))?
            .try_into()
            .map_err(|e| Error::new(format!("map {PROBES_MAP}: {e}")))?;
        map.iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::new(format!("reading map {PROBES_MAP}: {e}")))
    }

    fn ebpf_mut(&mut self) -> &mut Ebpf {
        self.ebpf.as_mut().expect("taken only when dropped")
    }
}

impl Drop for Datapath {
    /// Detaches everything (aya does, dropping the programs), from the namespace they were
    /// attached in; the clsact qdiscs go after, with `clsacts`.
    fn drop(&mut self) {
        let ebpf = self.ebpf.take();
        let here = NetNs::of_current_thread().and_then(|netns| netns.inode());
        // Entering a namespace takes CAP_SYS_ADMIN, which `l3mp run` (in its own) lacks. The
        // links' filters are netlink filters on every kernel.
        if here.ok() != self.netns.inode().ok() {
            if let Err(e) = self.netns.run(move || drop(ebpf)) {
                log::warn!("detaching the TC filters: {e}");
            }
        }
    }
}

/// The attachment `handover` has at `place`, taken out of it.
fn take(handover: &mut Handover, place: &Place) -> Option<HandedLink> {
    let i = handover.iter().position(|(p, _)| p == place)?;
    Some(handover.swap_remove(i).1)
}

/// Whether the program `prog` is attached (tcx, at `at`) to the device `ifname` of this
/// namespace. A tcx attachment lives exactly as long as the process that made it (l3mp pins
/// none), so this says an l3mp runs there whatever /run and PID namespace it has. `false`
/// where the kernel has no tcx (before 6.6, TC programs are netlink filters that outlive their
/// process: they say nothing).
pub fn serving(ifname: &str, at: TcAttachType, prog: &str) -> bool {
    has_tcx()
        && SchedClassifier::query_tcx(ifname, at).is_ok_and(|(_, programs)| {
            programs
                .iter()
                .any(|p| p.name_as_str().is_some_and(|name| name == prog))
        })
}

/// Points every link's entry in the `links` DEVMAP (XDP) and in the `peers` array (TC) at its
/// hidden end. Must run in the hidden ends' network namespace, where a DEVMAP resolves them.
pub fn point_links(ebpf: &mut Ebpf, cfg: &Config) -> Result<(), Error> {
    for link in &cfg.links {
        set_devmap(ebpf, LINKS_MAP, u32::from(link.label), link.peer_ifindex)
            .map_err(|e| Error::new(format!("{}: {e}", link.name)))?;
    }
    let mut peers: Array<&mut MapData, u32> = map_mut(ebpf, PEERS_MAP)?;
    for link in &cfg.links {
        peers
            .set(u32::from(link.label), link.peer_ifindex, 0)
            .map_err(|e| {
                Error::new(format!("{PEERS_MAP}[{}] of {}: {e}", link.label, link.name))
            })?;
    }
    Ok(())
}

/// Sets `key` of the DEVMAP `map` to the device `ifindex`.
pub fn set_devmap(ebpf: &mut Ebpf, map: &str, key: u32, ifindex: u32) -> Result<(), Error> {
    let mut devmap: DevMap<&mut MapData> = map_mut(ebpf, map)?;
    devmap
        .set(key, ifindex, None, 0)
        .map_err(|e| Error::new(format!("{map}[{key}] = ifindex {ifindex}: {e}")))
}

/// The map `name` of `ebpf`, as the map type `M`.
fn map_mut<'a, M>(ebpf: &'a mut Ebpf, name: &str) -> Result<M, Error>
where
    M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    ebpf.map_mut(name)
        .ok_or_else(|| Error::new(format!("map {name} missing from the object")))?
        .try_into()
        .map_err(|e| Error::new(format!("map {name}: {e}")))
}
