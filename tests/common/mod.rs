//! Shared by the integration tests: the configurations that cover every program variant,
//! packet builders, and privilege checks. The privilege checks and the loading need the
//! `daemon` feature (the sys layer, aya); the rest serves the offline tests too.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod corpus;
pub mod packets;

use l3mp::programs::{self, Bundle, Config, Ext, ExtKind, Link, LinkMacs, Unknown};
use l3mp::vm;

// The tests' configurations are those of `Config::offline`, which `l3mp asm`, `l3mp replay`
// and the fuzz targets generate (checked by `config`), so that a failing packet reproduces
// there. Its placeholders, by name:

/// ext's MAC on an Ethernet ext.
pub const EXT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xe0];
/// The MAC of the remote l3mp host on an Ethernet ext.
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xe1];
/// ext's ifindex.
pub const EXT_IFINDEX: u32 = 1;
/// ext's MTU: egress drops (as too big) what is longer, GSO packets aside.
pub const EXT_MTU: u32 = 1500;

/// The MACs of the links' veth ends.
pub const LINK_MACS: LinkMacs = LinkMacs {
    user: [0x02, 0, 0, 0, 0],
    hidden: [0x02, 0, 0, 0, 0x01],
};

/// The MAC of the user end of the link with `label`.
pub fn link_mac(label: u8) -> [u8; 6] {
    LINK_MACS.user_end(label)
}

/// The MAC of the hidden end of the link with `label`.
pub fn hidden_mac(label: u8) -> [u8; 6] {
    LINK_MACS.hidden_end(label)
}

/// The ifindex of the hidden end of the link with `label`.
pub fn hidden_ifindex(label: u8) -> u32 {
    200 + u32::from(label)
}

/// A link with `label`, named after it.
pub fn link(label: u8) -> Link {
    Link {
        name: format!("l{label}"),
        label,
        ifindex: 100 + u32::from(label),
        peer_ifindex: hidden_ifindex(label),
    }
}

/// Both kinds of ext.
pub fn ext_kinds() -> [ExtKind; 2] {
    [
        ExtKind::L3,
        ExtKind::Ethernet {
            mac: EXT_MAC,
            peer_mac: PEER_MAC,
        },
    ]
}

/// A configuration with the given labels: the one `Config::offline` makes (asserted).
pub fn config(bits: u8, kind: ExtKind, labels: &[u8], unknown: Unknown) -> Config {
    let cfg = Config {
        label_bits: bits,
        ext: Ext {
            ifindex: EXT_IFINDEX,
            kind,
            mtu: EXT_MTU,
        },
        links: labels.iter().map(|&l| link(l)).collect(),
        macs: LINK_MACS,
        unknown,
    };
    let named: Vec<(String, u8)> = cfg
        .links
        .iter()
        .map(|l| (l.name.clone(), l.label))
        .collect();
    let offline = Config::offline(bits, kind.framing(), &named, unknown);
    assert_eq!(
        cfg, offline,
        "the tests' configuration is l3mp's offline one"
    );
    cfg
}

/// A configuration and its programs, built once.
pub struct Setup {
    pub cfg: Config,
    pub bundle: Bundle,
}

impl Setup {
    /// Builds the programs of `cfg`.
    pub fn new(cfg: Config) -> Setup {
        let bundle = programs::build(&cfg).expect("programs build");
        Setup { cfg, bundle }
    }

    /// Every label of width `bits` in use, on an ext of `kind`.
    pub fn all_labels(bits: u8, kind: ExtKind, unknown: Unknown) -> Setup {
        let labels: Vec<u8> = (1..=(1u8 << bits) - 1).collect();
        Setup::new(config(bits, kind, &labels, unknown))
    }

    /// Whether ext is an Ethernet device.
    pub fn ethernet(&self) -> bool {
        matches!(self.cfg.ext.kind, ExtKind::Ethernet { .. })
    }

    /// Runs `program` on `packet` in the VM (the `__sk_buff` the kernel derives from the
    /// bytes); a VM error fails the test, naming the packet.
    pub fn run(&self, program: &str, packet: &[u8]) -> vm::Outcome {
        vm::run(&self.bundle, &self.cfg, program, packet)
            .unwrap_or_else(|e| panic!("{program} on {}: VM error {e}", packets::hex(packet)))
    }
}

/// The configurations covering every variant: N = 1..6 × both ext kinds × both unknown-label
/// policies, with the lowest, the highest and (where there is room) a middle label in use;
/// label 2 (where N > 1) is left unused so that "unknown" is reachable.
pub fn variants() -> Vec<Config> {
    let mut out = Vec::new();
    for bits in 1..=6u8 {
        let max = (1u8 << bits) - 1;
        let mut labels = vec![1, max];
        if max > 4 {
            labels.push(max / 2 + 1);
        }
        labels.dedup();
        for kind in ext_kinds() {
            for unknown in [Unknown::Pass, Unknown::Drop] {
                out.push(config(bits, kind, &labels, unknown));
            }
        }
    }
    out
}

/// Whether the process may load BPF programs; prints why a test skips when not.
#[cfg(feature = "daemon")]
pub fn can_bpf(test: &str) -> bool {
    let missing = l3mp::sys::caps::missing_capabilities(&[
        l3mp::sys::caps::Cap::Bpf,
        l3mp::sys::caps::Cap::NetAdmin,
    ]);
    if missing.is_empty() {
        return true;
    }
    eprintln!(
        "skipped {test}: needs {} to load BPF programs",
        missing.join(" and ")
    );
    false
}

/// Whether the process may build hosts in network namespaces and run l3mp there (root); prints
/// why a test skips when not.
#[cfg(feature = "daemon")]
pub fn can_build_hosts(test: &str) -> bool {
    use l3mp::sys::caps::{missing_capabilities, Cap};
    let missing = missing_capabilities(&[Cap::NetAdmin, Cap::Bpf, Cap::SysAdmin]);
    if missing.is_empty() {
        return true;
    }
    eprintln!(
        "skipped {test}: needs root (missing {}) to create namespaces and load BPF programs",
        missing.join(", ")
    );
    false
}

/// An ELF holding one classifier, `bad`, that reads a packet byte it never bounds-checked:
/// every verifier must reject it (proof that a verifier check can fail).
pub fn unchecked_read_elf() -> Vec<u8> {
    use l3mp_asm::*;
    let mut p = l3mp_asm::Program::new("bad");
    p.extend([
        load(Size::W, Reg::R2, Reg::R1, 76),
        load(Size::B, Reg::R0, Reg::R2, 20),
        exit(),
    ]);
    let prog = p.assemble().expect("assembles");
    write_elf(&[(Section::Classifier, &prog)], &[], "GPL").expect("ELF")
}

/// Loads `name` of `ebpf` into the kernel, through its verifier.
#[cfg(feature = "daemon")]
pub fn load(
    ebpf: &mut aya::Ebpf,
    name: &str,
) -> Result<aya::programs::ProgramInfo, aya::programs::ProgramError> {
    match ebpf.program_mut(name).expect("program in the ELF") {
        aya::programs::Program::SchedClassifier(p) => {
            p.load()?;
            p.info()
        }
        aya::programs::Program::Xdp(p) => {
            p.load()?;
            p.info()
        }
        other => panic!("{name}: unexpected program type {other:?}"),
    }
}

/// Loads every program of every variant ([`variants`]) into the running kernel, loaded
/// through aya from the ELF the assembler wrote; panics with the verifier's log at the first
/// rejection. Prints the verifier's instruction counts (N = 4) and returns how many it loaded.
#[cfg(feature = "daemon")]
pub fn kernel_accepts_every_variant() -> usize {
    use aya::programs::ProgramError;
    let mut loaded = 0;
    for cfg in variants() {
        let bundle = l3mp::programs::build(&cfg).expect("programs build");
        let elf = bundle.elf().expect("ELF writes");
        let mut ebpf = aya::EbpfLoader::new()
            .load(&elf)
            .expect("aya loads the ELF");
        for (_, prog) in &bundle.programs {
            let info = load(&mut ebpf, &prog.name).unwrap_or_else(|e| {
                let log = match &e {
                    ProgramError::LoadError { verifier_log, .. } => verifier_log.to_string(),
                    _ => String::new(),
                };
                panic!(
                    "N={} {:?} {}: kernel rejected it: {e}\n{log}",
                    cfg.label_bits, cfg.ext.kind, prog.name
                )
            });
            if cfg.label_bits == 4 {
                eprintln!(
                    "N=4 {:<12} {:<12} {:>4} insns, verifier processed {:>4}, jited {:>5} bytes",
                    match cfg.ext.kind {
                        ExtKind::L3 => "l3 ext",
                        ExtKind::Ethernet { .. } => "ethernet ext",
                    },
                    prog.name,
                    prog.len(),
                    info.verified_instruction_count().unwrap_or(0),
                    info.size_jitted()
                );
            }
            loaded += 1;
        }
    }
    eprintln!("the kernel accepted {loaded} programs");
    assert!(loaded > 0);
    loaded
}
