//! Every program l3mp loads, generated per configuration with the `l3mp_asm` assembler, and
//! the one ELF object that carries them to aya.

mod classify;
mod config;
mod counters;
mod dscp;
mod egress;
mod guard;
mod hook;
mod ingress;
pub mod layout;

pub use config::{Config, Ext, ExtKind, Framing, Link, LinkMacs, Unknown};
pub use dscp::Family;
pub use hook::Hook;

use l3mp_asm::{exit, mov, Assembled, MapDef, Program, Reg, Section};

use layout::*;

/// Name of the XDP program on each link's user end that only passes: it gives the veth NAPI,
/// which XDP redirects into the hidden end need.
pub const NAPI_PASS: &str = "l3mp_napi";

/// The assembled programs of one configuration and the maps they share.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub programs: Vec<(Section, Assembled)>,
    pub maps: Vec<MapDef>,
}

/// What can be wrong with a configuration handed to the generator.
#[derive(Debug)]
pub enum BuildError {
    Config(String),
    Asm(l3mp_asm::Error),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Config(why) => write!(f, "invalid program configuration: {why}"),
            BuildError::Asm(e) => write!(f, "assembler: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<l3mp_asm::Error> for BuildError {
    fn from(e: l3mp_asm::Error) -> BuildError {
        BuildError::Asm(e)
    }
}

/// Name of the guard on ext's egress.
pub const GUARD: &str = guard::NAME;

/// Name of the egress program of `label`.
pub fn egress_name(label: u8) -> String {
    egress::name(label)
}

/// Name of the ingress demux for `hook`.
pub fn ingress_name(hook: Hook) -> &'static str {
    ingress::name(hook)
}

/// Whether the program `name` sees Ethernet frames: every program on a link (a veth) does; the
/// demux and the guard on ext do when ext is an Ethernet device.
pub fn sees_frames(cfg: &Config, name: &str) -> bool {
    let on_ext = [GUARD, ingress_name(Hook::Tc), ingress_name(Hook::Xdp)].contains(&name);
    !on_ext || matches!(cfg.ext.kind, ExtKind::Ethernet { .. })
}

fn check(cfg: &Config) -> Result<(), BuildError> {
    let bad = |why: String| Err(BuildError::Config(why));
    if !(1..=6).contains(&cfg.label_bits) {
        return bad(format!("label bits {} is not 1 to 6", cfg.label_bits));
    }
    if cfg.links.is_empty() {
        return bad("no links".into());
    }
    for (i, link) in cfg.links.iter().enumerate() {
        if link.label == 0 || link.label > cfg.max_label() {
            return bad(format!(
                "label {} of {} is not 1 to {}",
                link.label,
                link.name,
                cfg.max_label()
            ));
        }
        if cfg.links[..i].iter().any(|l| l.label == link.label) {
            return bad(format!("label {} is used twice", link.label));
        }
    }
    Ok(())
}

/// Generates every program of `cfg`: one egress per link, the TC and XDP ingress demux, the
/// guard on ext's egress, and the NAPI pass program.
pub fn build(cfg: &Config) -> Result<Bundle, BuildError> {
    check(cfg)?;
    let mut programs = Vec::new();
    for link in &cfg.links {
        programs.push((Section::Classifier, egress::egress(cfg, link).assemble()?));
    }
    for hook in [Hook::Tc, Hook::Xdp] {
        programs.push((hook.section(), ingress::ingress(cfg, hook).assemble()?));
    }
    programs.push((Section::Classifier, guard::guard(cfg).assemble()?));
    let mut napi = Program::new(NAPI_PASS);
    napi.comment("Pass everything: attached only so that the veth runs NAPI");
    napi.extend([mov(Reg::R0, XDP_PASS), exit()]);
    programs.push((Section::Xdp, napi.assemble()?));
    Ok(Bundle {
        programs,
        maps: maps(cfg),
    })
}

/// The maps: per-CPU counters, from label to hidden end the DEVMAP for XDP and the array of
/// ifindexes for TC, and the far end's probes by label.
pub fn maps(cfg: &Config) -> Vec<MapDef> {
    vec![
        MapDef {
            name: COUNTERS_MAP.into(),
            map_type: BPF_MAP_TYPE_PERCPU_ARRAY,
            key_size: 4,
            value_size: COUNTER_SIZE,
            max_entries: COUNTER_SLOTS,
            flags: 0,
        },
        MapDef {
            name: LINKS_MAP.into(),
            map_type: BPF_MAP_TYPE_DEVMAP,
            key_size: 4,
            // struct bpf_devmap_val: the ifindex and an (unused) program fd.
            value_size: 8,
            max_entries: u32::from(cfg.max_label()) + 1,
            flags: 0,
        },
        MapDef {
            name: PEERS_MAP.into(),
            map_type: BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: 4,
            max_entries: u32::from(cfg.max_label()) + 1,
            flags: 0,
        },
        MapDef {
            name: PROBES_MAP.into(),
            map_type: BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: PROBE_SIZE,
            max_entries: PROBE_SLOTS,
            flags: 0,
        },
    ]
}

impl Bundle {
    /// The program called `name`.
    pub fn program(&self, name: &str) -> Option<&Assembled> {
        self.programs
            .iter()
            .map(|(_, p)| p)
            .find(|p| p.name == name)
    }

    /// The ELF object aya loads.
    pub fn elf(&self) -> Result<Vec<u8>, BuildError> {
        let programs: Vec<(Section, &Assembled)> =
            self.programs.iter().map(|(s, p)| (*s, p)).collect();
        Ok(l3mp_asm::write_elf(&programs, &self.maps, "GPL")?)
    }

    /// The annotated listing of every program.
    pub fn listing(&self) -> Result<String, BuildError> {
        let mut out = String::new();
        for (section, prog) in &self.programs {
            out.push_str(&format!(
                "; section {} ({} instructions)\n",
                section.name(),
                prog.len()
            ));
            out.push_str(&prog.listing()?);
            out.push('\n');
        }
        Ok(out)
    }
}
