//! The TC attach path (tcx, or a clsact qdisc with cls_bpf filters over netlink, as
//! `L3MP_TC_ATTACH` picks; CI runs this binary once per path): what others put on ext stays,
//! through a start, a SIGKILL, a restart and a stop; what l3mp put there goes, also when an
//! instance is dropped outside its namespace.

use l3mp::lab::{link_addresses, Host, Lab, Side, EXT};
use l3mp::programs::{ingress_name, Hook, Unknown, GUARD};
use l3mp::run::{IngressChoice, Instance, LinkArg, Probe, RunOptions, TcAttach};

use super::daemon::Daemon;
use super::inspect::{self, tool};
use super::service::link_works;
use super::{lab, privileged, run_args, run_on, Setup, LINKS};

/// Someone else's filter: classic BPF bytecode that matches nothing (`ret #0`), so packets go
/// on to the next filter.
const FOREIGN_FILTER: &str = "1,6 0 0 0,";

/// Whether TC programs attach as tcx links here: netlink filters (before Linux 6.6, or with
/// `L3MP_TC_ATTACH=netlink`) outlive their process and say nothing of whether it runs. Says
/// why a test skips when not.
pub(crate) fn tcx(test: &str) -> bool {
    if TcAttach::chosen().is_ok_and(|way| way == TcAttach::Tcx) {
        return true;
    }
    eprintln!("skipped {test}: needs TC programs attached as tcx links");
    false
}

/// A lab for `setup`, or `None` (saying why) when `test` may not run.
fn new_lab(test: &str, setup: Setup) -> Option<Lab> {
    privileged(test, setup.kind()).then(|| lab(setup))
}

/// ext on `host` carries one set of l3mp's programs: the guard and the TC demux.
fn assert_one_set(host: &Host) {
    let mut on_ext: Vec<String> = inspect::attached(host.netns(), EXT)
        .into_iter()
        .map(|p| p.name)
        .collect();
    on_ext.sort();
    assert_eq!(on_ext, [GUARD, ingress_name(Hook::Tc)], "programs on {EXT}");
}

/// Runs `tc <args>` in `host`.
fn tc(host: &Host, args: &[&str]) {
    let mut all = vec!["-n", host.name()];
    all.extend(args);
    tool("tc", &all);
}

/// UDP, TCP and ICMP over every link, both ways.
fn links_work(r: &super::Running, what: &str) {
    for from in Side::BOTH {
        for (name, label) in LINKS {
            link_works(r, name, label, from, what);
        }
    }
}

/// Host A's ext has a clsact qdisc with another's filters on ingress and egress, host B's an
/// empty clsact qdisc, before l3mp starts. The links work; after a SIGKILL and a restart on A
/// (which removes the filters the killed one left, and says so, on the netlink path) they
/// work again; after SIGTERM both exts have exactly the qdiscs and filters they had before.
#[test]
fn foreign_tc_is_left_alone() {
    let setup = Setup::VethTc;
    let Some(lab) = new_lab("foreign_tc_is_left_alone", setup) else {
        return;
    };
    let (a, b) = (lab.host(Side::A), lab.host(Side::B));
    tc(a, &["qdisc", "add", "dev", EXT, "clsact"]);
    for dir in ["ingress", "egress"] {
        tc(
            a,
            &[
                "filter",
                "add",
                "dev",
                EXT,
                dir,
                "bpf",
                "bytecode",
                FOREIGN_FILTER,
            ],
        );
    }
    tc(b, &["qdisc", "add", "dev", EXT, "clsact"]);
    let before = Side::BOTH.map(|side| inspect::tc_leftovers(lab.host(side), EXT));
    assert_eq!(before[0].len(), 5, "the qdisc and two filters: {before:?}");

    let mut r = run_on(lab, setup, link_addresses, None);
    links_work(&r, "beside another's filters");

    let host = r.lab.host(Side::A);
    let netlink: Vec<String> = inspect::attached(host.netns(), EXT)
        .into_iter()
        .filter(|p| p.at.contains(" tc "))
        .map(|p| p.name)
        .collect();
    let killed = r.daemons.remove(0);
    assert!(
        killed.kill().status.code().is_none(),
        "not killed by a signal"
    );
    let args = run_args(setup, Side::A);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let names: Vec<&str> = LINKS.iter().map(|(n, _)| *n).collect();
    let mut restarted = Daemon::start(host, &args, &names, setup.ingress().1);
    let said = restarted.lines();
    for (program, dir) in [(ingress_name(Hook::Tc), "ingress"), (GUARD, "egress")] {
        let removal = format!("removing the {dir} filter {program} of {EXT}, left by an l3mp");
        assert_eq!(
            said.iter().any(|l| l.contains(&removal)),
            netlink.iter().any(|n| n == program),
            "attached as filters: {netlink:?}; the restart said:\n{said:#?}"
        );
    }
    assert_one_set(host);
    r.daemons.insert(0, restarted);
    // The restart adopted the dead instance's links, addresses and all: they work as they are.
    links_work(&r, "after a SIGKILL and a restart");

    for daemon in r.daemons.drain(..) {
        assert!(daemon.stop().status.success());
    }
    let after = Side::BOTH.map(|side| inspect::tc_leftovers(r.host(side), EXT));
    assert_eq!(
        after, before,
        "qdiscs and filters on {EXT} before and after"
    );
}

/// An instance started inside a host's namespace and dropped from outside it, as `l3mp demo`
/// drops its two, leaves no program, filter or qdisc on ext.
#[test]
fn dropped_outside_its_namespace() {
    let Some(lab) = new_lab("dropped_outside_its_namespace", Setup::TunTc) else {
        return;
    };
    let host = lab.host(Side::A);
    let opts = RunOptions {
        ext: EXT.to_string(),
        links: vec![LinkArg {
            name: "a".to_string(),
            label: 1,
        }],
        label_bits: 4,
        ingress: IngressChoice::Tc,
        peer: None,
        unknown: Unknown::Pass,
        host_id: None,
        probe: Probe::On,
    };
    let instance = host
        .run(|| Instance::start(&opts))
        .expect("enter the host")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_one_set(host);
    // Here, in the test's own thread: not the host's namespace.
    drop(instance);
    let attached = inspect::attached(host.netns(), EXT);
    assert!(attached.is_empty(), "still on {EXT}: {attached:?}");
    let tc = inspect::tc_leftovers(host, EXT);
    assert!(tc.is_empty(), "qdiscs or filters left on {EXT}: {tc:?}");
}
