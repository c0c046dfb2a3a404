//! Links that behave like the point-to-point interfaces they stand in for: their carrier
//! follows ext's (read as routing daemons read it, the link's operstate).

use std::thread;
use std::time::{Duration, Instant};

use l3mp::lab::{ExtKind, Host, Side, EXT};

use super::inspect::tool;
use super::service::{link_works, PROMPTLY};
use super::{start, Setup, LINKS};

/// `ip -n <host> <args>`.
fn ip(host: &Host, args: &[&str]) -> String {
    let mut all = vec!["-n", host.name()];
    all.extend(args);
    tool("ip", &all)
}

/// The operstate of `link` on `host`, as the kernel publishes it in sysfs (read in the host's
/// namespace, where `ip netns exec` mounts its own /sys).
fn operstate(host: &Host, link: &str) -> String {
    let path = format!("/sys/class/net/{link}/operstate");
    tool("ip", &["netns", "exec", host.name(), "cat", &path])
        .trim()
        .to_string()
}

/// Waits (at most [`PROMPTLY`]) until every managed link on `host` is `up` or, if not `up`,
/// not; panics saying `what` and the states seen otherwise.
fn links_are(host: &Host, up: bool, what: &str) {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let states: Vec<(&str, String)> = LINKS
            .iter()
            .map(|(name, _)| (*name, operstate(host, name)))
            .collect();
        if states.iter().all(|(_, s)| (s == "up") == up) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: on {}, within {PROMPTLY:?}, links {} expected {}: {states:?}\n{}",
            host.side(),
            if up { "up" } else { "without carrier" },
            if up { "up" } else { "not up" },
            ip(host, &["-o", "link", "show"])
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// ext set down, then up; on a veth ext, the far end's carrier lost by that; ext deleted and
/// created again: the links lose their carrier (operstate not `up`, `NO-CARRIER`) within a
/// second, and get it back as promptly, when ext does; traffic crosses again.
fn links_follow_the_carrier_of_ext(setup: Setup) {
    let Some(mut r) = start("links_follow_the_carrier_of_ext", setup) else {
        return;
    };
    for side in Side::BOTH {
        links_are(r.host(side), true, &format!("{setup:?} at start"));
    }

    ip(r.host(Side::A), &["link", "set", EXT, "down"]);
    links_are(r.host(Side::A), false, &format!("{setup:?}, {EXT} down"));
    let flags = ip(r.host(Side::A), &["-o", "link", "show", LINKS[0].0]);
    assert!(flags.contains("NO-CARRIER"), "{setup:?}: {flags}");
    if setup.kind() == ExtKind::Veth {
        // B's end of the veth ext has lost its carrier, not its administrative state.
        links_are(
            r.host(Side::B),
            false,
            &format!("{setup:?}, {EXT} without carrier (its far end down)"),
        );
    } else {
        links_are(r.host(Side::B), true, &format!("{setup:?}, far end down"));
    }
    ip(r.host(Side::A), &["link", "set", EXT, "up"]);
    for side in Side::BOTH {
        links_are(r.host(side), true, &format!("{setup:?}, {EXT} up again"));
    }
    let (name, label) = LINKS[0];
    link_works(&r, name, label, Side::A, &format!("{setup:?} after down and up"));

    r.lab
        .remove_ext()
        .unwrap_or_else(|e| panic!("{setup:?}: {e}"));
    for side in Side::BOTH {
        links_are(r.host(side), false, &format!("{setup:?}, {EXT} deleted"));
    }
    r.lab
        .restore_ext()
        .unwrap_or_else(|e| panic!("{setup:?}: {e}"));
    if setup == Setup::VethXdp {
        for side in Side::BOTH {
            r.host(side).set_tx_checksum(EXT, false).expect("tx off");
        }
    }
    for side in Side::BOTH {
        // An Ethernet ext is attached again once its peer answers, which may take a second.
        let deadline = Instant::now() + 3 * PROMPTLY;
        while operstate(r.host(side), name) != "up" && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        links_are(r.host(side), true, &format!("{setup:?}, {EXT} back"));
    }
    link_works(&r, name, label, Side::A, &format!("{setup:?} after {EXT} came back"));
}
for_each_setup!(links_follow_the_carrier_of_ext);
