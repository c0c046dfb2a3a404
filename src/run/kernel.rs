//! What the programs need of the kernel, probed before they are loaded: each program type and
//! each helper they call, as the kernel's verifier answers for a minimal program (aya's
//! probes, libbpf's way). A kernel lacking one is refused in one line naming it, instead of a
//! verifier log; the version number alone says nothing of backports or configuration.

use aya::programs::ProgramType;
use aya::sys::{is_helper_supported, is_program_supported, BpfHelper};
use l3mp_asm::{Helper, Section};

use crate::programs::Bundle;

use super::Error;

/// `BPF_JMP | BPF_CALL`: a helper call, whose immediate is the helper's number.
const CALL: u8 = 0x85;

/// Checks that the kernel loads every program type of `bundle` and offers every helper they
/// call; otherwise the error names the first one missing.
pub fn check(bundle: &Bundle) -> Result<(), Error> {
    for (section, helper) in needs(bundle) {
        let (kind, program_type) = program_type(section);
        let supported = is_program_supported(program_type)
            .map_err(|e| Error::new(format!("probing the kernel for {kind} BPF programs: {e}")))?;
        if !supported {
            return Err(Error::new(format!(
                "this kernel cannot load {kind} BPF programs (needs BPF_PROG_TYPE_{}); \
                 l3mp needs Linux 6.1 or later",
                kind.to_uppercase()
            )));
        }
        let Some(helper) = helper else { continue };
        let supported = is_helper_supported(program_type, bpf_helper(helper))
            .map_err(|e| Error::new(format!("probing the kernel for {}: {e}", helper.name())))?;
        if !supported {
            return Err(Error::new(format!(
                "this kernel lacks the BPF helper {} for {kind} programs; l3mp needs Linux \
                 6.1 or later",
                helper.name()
            )));
        }
    }
    Ok(())
}

/// Each program section of `bundle` once with no helper, then with each helper its programs
/// call, in order and without repeats.
fn needs(bundle: &Bundle) -> Vec<(Section, Option<Helper>)> {
    let mut needs = Vec::new();
    for (section, program) in &bundle.programs {
        let calls = program
            .slots
            .iter()
            .filter(|insn| insn.code == CALL && insn.src == 0)
            .filter_map(|insn| Helper::from_id(insn.imm))
            .map(Some);
        for need in std::iter::once(None).chain(calls) {
            if !needs.contains(&(*section, need)) {
                needs.push((*section, need));
            }
        }
    }
    needs
}

/// The name and aya's type of the programs of `section`.
fn program_type(section: Section) -> (&'static str, ProgramType) {
    match section {
        Section::Classifier => ("sched_cls", ProgramType::SchedClassifier),
        Section::Xdp => ("xdp", ProgramType::Xdp),
    }
}

/// aya's name for `helper`.
fn bpf_helper(helper: Helper) -> BpfHelper {
    match helper {
        Helper::MapLookupElem => BpfHelper::BPF_FUNC_map_lookup_elem,
        Helper::Redirect => BpfHelper::BPF_FUNC_redirect,
        Helper::SkbChangeHead => BpfHelper::BPF_FUNC_skb_change_head,
        Helper::XdpAdjustHead => BpfHelper::BPF_FUNC_xdp_adjust_head,
        Helper::RedirectMap => BpfHelper::BPF_FUNC_redirect_map,
        Helper::KtimeGetNs => BpfHelper::BPF_FUNC_ktime_get_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::{build, Config, Ext, ExtKind, Link, LinkMacs, Unknown};

    fn config(kind: ExtKind) -> Config {
        Config {
            label_bits: 4,
            ext: Ext {
                ifindex: 2,
                kind,
                mtu: 1500,
            },
            links: vec![Link {
                name: "a".into(),
                label: 1,
                ifindex: 5,
                peer_ifindex: 6,
            }],
            macs: LinkMacs {
                user: [2, 0, 0, 0, 0],
                hidden: [2, 0, 0, 0, 1],
            },
            unknown: Unknown::Pass,
        }
    }

    /// The probe asks for what the programs call: every helper of the TC programs and of the
    /// XDP ones, the helper numbers as aya knows them.
    #[test]
    fn the_probe_asks_for_every_helper_the_programs_call() {
        let ethernet = ExtKind::Ethernet {
            mac: [2, 0, 0, 0, 0, 1],
            peer_mac: [2, 0, 0, 0, 0, 2],
        };
        for kind in [ExtKind::L3, ethernet] {
            let needs = needs(&build(&config(kind)).expect("programs build"));
            let tc: Vec<Helper> = needs
                .iter()
                .filter(|(s, _)| *s == Section::Classifier)
                .filter_map(|(_, h)| *h)
                .collect();
            let xdp: Vec<Helper> = needs
                .iter()
                .filter(|(s, _)| *s == Section::Xdp)
                .filter_map(|(_, h)| *h)
                .collect();
            assert!(tc.contains(&Helper::Redirect), "{kind:?}: {tc:?}");
            assert!(tc.contains(&Helper::MapLookupElem), "{kind:?}: {tc:?}");
            assert!(xdp.contains(&Helper::RedirectMap), "{kind:?}: {xdp:?}");
            assert!(
                needs.contains(&(Section::Classifier, None))
                    && needs.contains(&(Section::Xdp, None)),
                "{needs:?}"
            );
            for helper in tc.iter().chain(&xdp) {
                assert_eq!(bpf_helper(*helper) as i32, helper.id(), "{}", helper.name());
            }
        }
    }
}
