//! The programs in the kernel: loaded through aya from the assembler's ELF, attached to the
//! links and to ext. Dropping a [`Datapath`] detaches everything it attached.

use std::path::Path;

use aya::maps::{Array, DevMap, MapData, PerCpuArray};
use aya::programs::{ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use serde::{Deserialize, Serialize};

use crate::programs::layout::{COUNTERS_MAP, LINKS_MAP, PEERS_MAP};
use crate::programs::{self, Config, Hook, NAPI_PASS};
use crate::sys::netns::NetNs;

use super::counters::{Counter, Counters};
use super::kernel;
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
    /// How the TC programs are attached.
    tc_attach: TcAttach,
    /// The network namespace they were attached in. aya detaches netlink filters by ifindex
    /// in the namespace of the thread that drops them: a [`Datapath`] dropped elsewhere (the
    /// demo drops its instances from outside their namespaces) would miss them, or remove
    /// another device's.
    netns: NetNs,
    /// Dropped after `ebpf` (fields drop in order), once the filters on them are gone.
    clsacts: Clsacts,
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
    /// The counters map is the one pinned at `counters`, created and pinned there if there is
    /// none yet: programs loaded again for the same instance (after ext came back with a new
    /// ifindex) keep counting where the previous ones stopped.
    pub fn attach(
        cfg: &Config,
        ext: &str,
        mode: IngressMode,
        counters: &Path,
    ) -> Result<Datapath, Error> {
        let bundle = programs::build(cfg).map_err(|e| Error::new(e.to_string()))?;
        kernel::check(&bundle)?;
        let elf = bundle.elf().map_err(|e| Error::new(e.to_string()))?;
        let ebpf = EbpfLoader::new()
            .map_pin_path(COUNTERS_MAP, counters)
            .load(&elf)
            .map_err(|e| Error::new(format!("loading the programs: {e}")))?;
        let tc_attach = TcAttach::chosen()?;
        log::debug!("TC programs attach through {tc_attach}");
        let clsacts = Clsacts::new()?;
        let on_ext = [programs::GUARD, programs::ingress_name(Hook::Tc)];
        clsacts.remove_stale(cfg.ext.ifindex, ext, &on_ext)?;
        let netns = NetNs::of_current_thread().map_err(|e| Error::new(e.to_string()))?;
        let mut dp = Datapath {
            ebpf: Some(ebpf),
            tc_attach,
            netns,
            clsacts,
        };
        point_links(dp.ebpf_mut(), cfg)?;
        for link in &cfg.links {
            let name = programs::egress_name(link.label);
            dp.tc(&name, (link.ifindex, &link.name), TcAttachType::Egress)?;
        }
        // The guard clears the label of what leaves ext without coming from a link.
        let ext = (cfg.ext.ifindex, ext);
        dp.tc(programs::GUARD, ext, TcAttachType::Egress)?;
        match mode {
            IngressMode::Tc => {
                dp.tc(programs::ingress_name(Hook::Tc), ext, TcAttachType::Ingress)?
            }
            IngressMode::Xdp => dp.xdp_ingress(cfg, ext.1)?,
        }
        Ok(dp)
    }

    /// Loads the classifier `prog` and attaches it to the device `(ifindex, name)`.
    fn tc(
        &mut self,
        prog: &str,
        (index, name): (u32, &str),
        at: TcAttachType,
    ) -> Result<(), Error> {
        let tc_attach = self.tc_attach;
        if tc_attach == TcAttach::Netlink {
            self.clsacts.ensure(index, name)?;
        }
        let p: &mut SchedClassifier = self.program(prog)?;
        p.load().map_err(program_error(format!("loading {prog}")))?;
        p.attach_with_options(name, at, tc_attach.options())
            .map_err(|e| attach_error(prog, name, at, e))?;
        Ok(())
    }

    /// Native XDP demux on ext, and the NAPI pass program on every user end.
    fn xdp_ingress(&mut self, cfg: &Config, ext: &str) -> Result<(), Error> {
        let prog = programs::ingress_name(Hook::Xdp);
        let napi = self.xdp_program(NAPI_PASS)?;
        for link in &cfg.links {
            napi.attach(&link.name, XdpMode::Driver)
                .map_err(program_error(format!(
                    "attaching {NAPI_PASS} to {} (gives the veth NAPI)",
                    link.name
                )))?;
        }
        let demux = self.xdp_program(prog)?;
        demux.attach(ext, XdpMode::Driver).map_err(|e| {
            Error::new(format!(
                "--ingress xdp: {ext} has no native XDP ({e}); use --ingress tc \
                 (generic XDP drops GSO packets, so l3mp never falls back to it)"
            ))
        })?;
        Ok(())
    }

    /// The loaded XDP program `prog`.
    fn xdp_program(&mut self, prog: &str) -> Result<&mut Xdp, Error> {
        let p: &mut Xdp = self.program(prog)?;
        p.load().map_err(program_error(format!("loading {prog}")))?;
        Ok(p)
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
        counters(self.ebpf.as_ref().expect("taken only when dropped"))
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
        // Entering a namespace takes CAP_SYS_ADMIN, which `l3mp run` (in its own) lacks.
        if self.tc_attach == TcAttach::Netlink && here.ok() != self.netns.inode().ok() {
            if let Err(e) = self.netns.run(move || drop(ebpf)) {
                log::warn!("detaching the TC filters: {e}");
            }
        }
    }
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

/// Every counter slot of the `counters` map of `ebpf`, summed over CPUs.
pub fn counters(ebpf: &Ebpf) -> Result<Counters, Error> {
    let map: PerCpuArray<_, Counter> = ebpf
        .map(COUNTERS_MAP)
        .ok_or_else(|| Error::new(format!("map {COUNTERS_MAP} missing from the object")))?
        .try_into()
        .map_err(|e| Error::new(format!("map {COUNTERS_MAP}: {e}")))?;
    Counters::read(&map)
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
