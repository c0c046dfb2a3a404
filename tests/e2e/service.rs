//! Running l3mp as a service, end to end: `l3mp status` against the traffic sent (from inside
//! an instance's namespace and from outside), ext deleted and created again while traffic
//! runs, ext's MTU followed, SIGKILL then restart, two instances on two exts side by side, and
//! the systemd unit's capabilities being enough.

use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use l3mp::lab::{
    echo, ext_address, link_addresses, payload, send, AddressKind, ExtKind, Host, SendOptions,
    Side, UdpReceiver, EXT, EXT2, LINK_TIMEOUT,
};
use l3mp::programs::{egress_name, ingress_name, Hook, GUARD};
use l3mp::run::{ensure_bpffs, hidden_name, Mark, BPFFS};

use super::daemon::{link_status, run_confined_to_exit, run_to_exit, status, Daemon};
use super::far_end::far_end_becomes;
use super::inspect::tool;
use super::{
    inspect, lab, link_carries, link_names, planned, privileged, received, run_args, run_on, start,
    Running, Setup, LINKS, WAIT,
};

/// How soon l3mp must act on a change of ext.
pub(crate) const PROMPTLY: Duration = Duration::from_secs(1);
/// Between two datagrams of the background traffic.
const TRAFFIC_INTERVAL: Duration = Duration::from_millis(20);

/// UDP, TCP and ICMP echo over link `name` (label `label`) from `from`, IPv4.
pub(crate) fn link_works(r: &Running, name: &str, label: u8, from: Side, what: &str) {
    let target = planned(label, AddressKind::Ipv4, from.other());
    link_carries(r, name, from, target, 100, what);
}

/// Datagrams sent from A to B over one link on a thread of its own, every
/// [`TRAFFIC_INTERVAL`], until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    sender: JoinHandle<Vec<(Instant, Vec<u8>)>>,
}

impl Traffic {
    /// Starts sending from `host`'s address on the link with `label` to `target:port`.
    fn start(host: &Host, label: u8, target: IpAddr, port: u16) -> Traffic {
        let source = planned(label, AddressKind::Ipv4, host.side());
        let socket = host
            .run(|| UdpSocket::bind((source, 0)))
            .expect("enter the host")
            .expect("bind the sender");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let sender = thread::spawn(move || {
            let mut sent = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let datagram = payload(64);
                if socket.send_to(&datagram, (target, port)).is_ok() {
                    sent.push((Instant::now(), datagram));
                }
                thread::sleep(TRAFFIC_INTERVAL);
            }
            sent
        });
        Traffic { stop, sender }
    }

    /// Stops and returns what was sent, with when.
    fn stop(self) -> Vec<(Instant, Vec<u8>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.sender.join().expect("the sender thread")
    }
}

/// Creates ext again on both hosts (after [`Lab::remove_ext`](l3mp::lab::Lab::remove_ext))
/// and checks that both instances re-attach within [`PROMPTLY`] of its return; for native XDP
/// on a veth, turns tx checksum offload off again on the new devices.
fn bring_ext_back(r: &mut Running, setup: Setup) {
    r.lab
        .restore_ext()
        .unwrap_or_else(|e| panic!("{setup:?}: {e}"));
    if setup.kind() == ExtKind::Veth {
        // An Ethernet ext is back for l3mp once the peer answers on it, which the kernel may
        // delay by up to a second after the carrier comes (it activates the transmit queue
        // from its link-watch work, rate-limited when a veth's peer index equals its own, as
        // in the lab's twin namespaces).
        let peer = ext_address(AddressKind::Ipv4, Side::A);
        let answered = echo(r.host(Side::B).end(EXT), peer, WAIT).expect("echo");
        assert!(answered, "{setup:?}: {EXT} carries nothing once back");
    }
    let restored = Instant::now();
    for daemon in &mut r.daemons {
        let said = daemon.wait_for_line("re-attached", PROMPTLY);
        assert!(
            said.is_some() && restored.elapsed() <= PROMPTLY,
            "{setup:?}: not re-attached within {PROMPTLY:?} of {EXT}'s return:\n{}",
            daemon.transcript()
        );
    }
    if setup == Setup::VethXdp {
        for side in Side::BOTH {
            r.host(side).set_tx_checksum(EXT, false).expect("tx off");
        }
    }
}

/// ext is deleted on both hosts (the TUN relay stops, or the veth pair goes) while datagrams
/// flow over a link, and created again: both instances say it is gone and keep their links,
/// re-attach within a second of its return (for a veth, to new MACs), and the traffic resumes:
/// every datagram sent after that arrives, TCP and echo work again. The counters carry on.
fn ext_comes_back(setup: Setup) {
    let Some(mut r) = start("ext_comes_back", setup) else {
        return;
    };
    let (name, label) = LINKS[0];
    let pid_a = r.daemons[0].pid();
    link_works(&r, name, label, Side::A, &format!("{setup:?} before"));
    let before = status(None, pid_a);
    let old_ifindex = before["ext"]["attached_ifindex"].clone();
    let sent_before = link_status(&before, name)["egress"]["packets"]
        .as_u64()
        .expect("a count");

    let target = planned(label, AddressKind::Ipv4, Side::B);
    let receiver = UdpReceiver::bind(r.host(Side::B).end(name), target, 0).expect("bind");
    let traffic = Traffic::start(r.host(Side::A), label, target, receiver.port());
    thread::sleep(10 * TRAFFIC_INTERVAL);

    r.lab
        .remove_ext()
        .unwrap_or_else(|e| panic!("{setup:?}: {e}"));
    for daemon in &mut r.daemons {
        let said = daemon.wait_for_line(&format!("{EXT} (ifindex"), PROMPTLY);
        assert!(
            said.is_some_and(|l| l.contains("is gone")),
            "{setup:?}: l3mp did not notice {EXT} going:\n{}",
            daemon.transcript()
        );
    }
    for side in Side::BOTH {
        let names = link_names(r.host(side));
        for (link, label) in LINKS {
            for kept in [link.to_string(), hidden_name(EXT, label)] {
                assert!(
                    names.contains(&kept),
                    "{setup:?}: {kept} went with {EXT} on {side}"
                );
            }
        }
    }
    let away = status(None, pid_a);
    assert_eq!(away["ext"]["exists"], false, "{setup:?}: {away:#}");
    assert_eq!(away["ext"]["attached"], false, "{setup:?}: {away:#}");
    assert_eq!(link_status(&away, name)["exists"], true, "{setup:?}");
    thread::sleep(10 * TRAFFIC_INTERVAL);

    bring_ext_back(&mut r, setup);
    let resumed = Instant::now();
    thread::sleep(15 * TRAFFIC_INTERVAL);
    let sent = traffic.stop();
    let after: Vec<&[u8]> = sent
        .iter()
        .filter(|(at, _)| *at >= resumed)
        .map(|(_, d)| d.as_slice())
        .collect();
    assert!(
        after.len() >= 5,
        "{setup:?}: only {} sent after",
        after.len()
    );
    let arrived = receiver.count(&after, WAIT).expect("receive");
    assert_eq!(
        arrived,
        after.len(),
        "{setup:?}: of the datagrams sent once {EXT} was back, some are lost"
    );
    for from in Side::BOTH {
        for (link, label) in LINKS {
            link_works(&r, link, label, from, &format!("{setup:?} after"));
        }
    }

    let back = status(None, pid_a);
    assert_eq!(back["ext"]["attached"], true, "{setup:?}: {back:#}");
    assert_ne!(
        back["ext"]["attached_ifindex"], old_ifindex,
        "{setup:?}: the same ifindex: {back:#}"
    );
    let sent_after = link_status(&back, name)["egress"]["packets"]
        .as_u64()
        .expect("a count");
    assert!(
        sent_after >= sent_before + after.len() as u64,
        "{setup:?}: counters not kept: {sent_before} before, {sent_after} after {} more",
        after.len()
    );
}
for_each_setup!(ext_comes_back);

/// Stopped while ext is away (`wg-quick down`, then `systemctl stop`), l3mp exits cleanly and
/// leaves no link, state file or pin.
#[test]
fn stops_cleanly_while_ext_is_gone() {
    let Some(mut r) = start("stops_cleanly_while_ext_is_gone", Setup::TunTc) else {
        return;
    };
    r.lab.remove_ext().expect("remove ext");
    let pids: Vec<u32> = r.daemons.iter().map(Daemon::pid).collect();
    for mut daemon in r.daemons.drain(..) {
        let said = daemon.wait_for_line("is gone", PROMPTLY);
        assert!(said.is_some(), "{}", daemon.transcript());
        let finished = daemon.stop();
        assert!(finished.status.success(), "{finished:?}");
        let complaints: Vec<&String> = finished
            .stderr
            .iter()
            .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR") || l.starts_with("l3mp: "))
            .filter(|l| !l.contains("is gone: keeping the links"))
            .collect();
        assert!(complaints.is_empty(), "{complaints:?}");
    }
    for side in Side::BOTH {
        assert_eq!(link_names(r.host(side)), ["lo"], "left on {side}");
    }
    for pid in pids {
        let left = inspect::published(pid);
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// `l3mp status --json` counts exactly what was sent: 7 datagrams over link a from A are 7
/// egress packets of a on A and 7 ingress packets of a on B, both counted as the link sends
/// and receives them (with a 14-byte Ethernet header, though the TUN ext carries bare IP
/// packets); nothing on b, nothing the other
/// way. Read from inside A's namespace and from outside every lab namespace. The table says the
/// same, and `--ext` naming an interface without an instance fails in one line.
#[test]
fn status_counts_what_was_sent() {
    let setup = Setup::TunTc;
    if !privileged("status_counts_what_was_sent", setup.kind()) {
        return;
    }
    let lab = lab(setup);
    // Links without IPv6 send nothing of their own (no router solicitations, no MLD reports).
    for side in Side::BOTH {
        lab.host(side)
            .set_sysctl("ipv6/conf/default/disable_ipv6", "1")
            .expect("sysctl");
    }
    let ipv4_only = |label, side| {
        let kind = AddressKind::Ipv4;
        vec![(planned(label, kind, side), kind.prefix_len())]
    };
    let r = run_on(lab, setup, ipv4_only, None);
    let (pid_a, pid_b) = (r.daemons[0].pid(), r.daemons[1].pid());
    let (name, label) = LINKS[0];
    let target = planned(label, AddressKind::Ipv4, Side::B);
    let receiver = UdpReceiver::bind(r.host(Side::B).end(name), target, 0).expect("bind");
    const DATAGRAMS: u64 = 7;
    const PAYLOAD: usize = 100;
    let datagrams: Vec<Vec<u8>> = (0..DATAGRAMS).map(|_| payload(PAYLOAD)).collect();
    for datagram in &datagrams {
        let from = r.host(Side::A).end(name);
        send(
            from,
            target,
            receiver.port(),
            datagram,
            SendOptions::default(),
        )
        .expect("send");
    }
    let expected: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    assert_eq!(
        receiver.count(&expected, WAIT).expect("receive"),
        DATAGRAMS as usize
    );

    let ip_bytes = (20 + 8 + PAYLOAD) as u64;
    let a = status(Some(r.host(Side::A)), pid_a);
    let b = status(None, pid_b);
    for (instance, side) in [(&a, Side::A), (&b, Side::B)] {
        assert_eq!(instance["ext"]["name"], EXT, "{instance:#}");
        assert_eq!(instance["ext"]["attached"], true, "{instance:#}");
        assert_eq!(instance["ingress"], "tc", "{instance:#}");
        assert_eq!(instance["label_bits"], 4, "{instance:#}");
        assert_eq!(instance["unknown"], "pass", "{instance:#}");
        for (link, label) in LINKS {
            let l = link_status(instance, link);
            assert_eq!(l["label"], label, "{side}: {l:#}");
            assert_eq!(l["exists"], true, "{side}: {l:#}");
            assert_eq!(l["up"], true, "{side}: {l:#}");
            assert_eq!(l["hidden"], hidden_name(EXT, label), "{side}: {l:#}");
        }
    }
    let count = |instance: &serde_json::Value, link: &str, way: &str| {
        let c = &link_status(instance, link)[way];
        (c["packets"].as_u64(), c["bytes"].as_u64())
    };
    let exactly = |n: u64, size: u64| (Some(n), Some(n * size));
    assert_eq!(
        count(&a, name, "egress"),
        exactly(DATAGRAMS, 14 + ip_bytes),
        "{a:#}"
    );
    // Both ends count what crossed as the link sends and receives it, Ethernet header
    // included, although the tunnel carries the bare IP packet.
    assert_eq!(
        count(&b, name, "ingress"),
        exactly(DATAGRAMS, 14 + ip_bytes),
        "{b:#}"
    );
    // That is the kernel's own count of what the link received, as `ip -s link` shows it.
    let (packets, bytes) = received(r.host(Side::B), name);
    assert_eq!(
        count(&b, name, "ingress"),
        (Some(packets), Some(bytes)),
        "{b:#}"
    );
    for (instance, way) in [(&a, "ingress"), (&b, "egress")] {
        assert_eq!(count(instance, name, way), exactly(0, 0), "{instance:#}");
    }
    let other = LINKS[1].0;
    for instance in [&a, &b] {
        for way in ["egress", "ingress"] {
            assert_eq!(count(instance, other, way), exactly(0, 0), "{instance:#}");
        }
    }

    let table = run_to_exit(r.host(Side::A), &["status", "--ext", EXT]);
    // 3 when some instance shown is not attached: other tests' instances on an ext0 of their
    // own may be between a removed and a restored ext.
    assert!(matches!(table.status.code(), Some(0 | 3)), "{table:?}");
    let heading = format!("l3mp {pid_a} on {EXT} ");
    let ours: Vec<&String> = table
        .stdout
        .iter()
        .skip_while(|l| !l.starts_with(&heading))
        .take_while(|l| !l.is_empty())
        .collect();
    let row = ours
        .iter()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row for {name}: {table:?}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    let egress_bytes = (DATAGRAMS * (14 + ip_bytes)).to_string();
    assert_eq!(
        cells,
        [
            name,
            "1",
            "up",
            "1500",
            "7",
            egress_bytes.as_str(),
            "0",
            "0",
            // IPv6 is off on both hosts' links: no probe crosses, and no link-local address.
            "not",
            "seen",
            "-"
        ],
        "{table:?}"
    );
    let none = run_to_exit(r.host(Side::A), &["status", "--ext", "nosuch0"]);
    assert!(!none.status.success(), "{none:?}");
    // Besides the error, the log may say what dead instances of other tests left.
    let errors: Vec<&String> = none
        .stderr
        .iter()
        .filter(|l| l.starts_with("l3mp: "))
        .collect();
    assert!(
        errors.len() == 1 && errors[0].contains("--ext nosuch0: no l3mp instance runs on it"),
        "{none:?}"
    );
    assert!(none.stdout.is_empty(), "{none:?}");
}

/// When ext's MTU changes, both ends of every link follow within a second, and status shows it.
#[test]
fn links_follow_ext_mtu() {
    let Some(r) = start("links_follow_ext_mtu", Setup::TunTc) else {
        return;
    };
    let host = r.host(Side::A);
    let pid = r.daemons[0].pid();
    for mtu in [1300, 1500, 1420] {
        host.set_mtu(EXT, mtu).expect("set ext's MTU");
        let changed = Instant::now();
        let ends: Vec<String> = LINKS
            .iter()
            .flat_map(|&(name, label)| [name.to_string(), hidden_name(EXT, label)])
            .collect();
        loop {
            let links = host.links().expect("links");
            let mtus: Vec<(String, u32)> = links
                .iter()
                .filter(|l| ends.contains(&l.name))
                .map(|l| (l.name.clone(), l.mtu))
                .collect();
            if mtus.len() == ends.len() && mtus.iter().all(|(_, m)| *m == mtu) {
                break;
            }
            assert!(
                changed.elapsed() <= PROMPTLY,
                "MTU {mtu} not followed within {PROMPTLY:?}: {mtus:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
        let now = status(None, pid);
        for (name, _) in LINKS {
            assert_eq!(link_status(&now, name)["mtu"], mtu, "{now:#}");
        }
        assert_eq!(now["ext"]["mtu"], mtu, "{now:#}");
    }
}

/// Every veth end has l3mp's MAC for its label, the one the demux writes; a link whose MAC is
/// changed is reported, stops receiving, and works again (also reported) once it has it back.
#[test]
fn link_macs_are_the_labels_and_a_changed_one_is_reported() {
    let Some(mut r) = start(
        "link_macs_are_the_labels_and_a_changed_one_is_reported",
        Setup::VethTc,
    ) else {
        return;
    };
    let host = r.lab.host(Side::A);
    let identity = host
        .run(|| l3mp::run::Identity::of_this_end(None, EXT))
        .expect("enter the host")
        .expect("host A's identity");
    assert_eq!(identity.netns, host.name(), "{identity:?}");
    let macs = identity.link_macs();
    let links = host.links().expect("links");
    let mac_of = |name: &str| {
        links
            .iter()
            .find(|l| l.name == name)
            .and_then(|l| l.mac)
            .unwrap_or_else(|| panic!("{name} has no MAC: {links:?}"))
    };
    for (name, label) in LINKS {
        assert_eq!(mac_of(name), macs.user_end(label), "{name}");
        assert_eq!(mac_of(&hidden_name(EXT, label)), macs.hidden_end(label));
    }

    let (name, label) = LINKS[0];
    let ip_link = |mac: [u8; 6]| {
        let mac = l3mp::sys::netlink::format_mac(&mac);
        tool(
            "ip",
            &[
                "-n",
                host.name(),
                "link",
                "set",
                "dev",
                name,
                "address",
                &mac,
            ],
        );
    };
    ip_link([0x02, 0, 0, 0, 0x42, label]);
    let warned = r.daemons[0].wait_for_line("MAC changed to 02:00:00:00:42:01", WAIT);
    assert!(warned.is_some(), "{}", r.daemons[0].transcript());
    let to = planned(label, AddressKind::Ipv4, Side::A);
    let receiver = UdpReceiver::bind(r.host(Side::A).end(name), to, 0).expect("bind");
    let datagram = payload(64);
    send(
        r.host(Side::B).end(name),
        to,
        receiver.port(),
        &datagram,
        SendOptions::default(),
    )
    .expect("send");
    let received = receiver
        .wait_for(&datagram, Duration::from_millis(500))
        .expect("receive");
    assert!(
        received.is_none(),
        "{name} received with a MAC l3mp does not deliver to"
    );

    ip_link(macs.user_end(label));
    let noted = r.daemons[0].wait_for_line("receives again", WAIT);
    assert!(noted.is_some(), "{}", r.daemons[0].transcript());
    link_works(&r, name, label, Side::B, "MAC back");
}

/// Checks that a start said it adopted every link of `links` left by the dead instance with
/// pid `pid` (as that one saw its pid).
pub(crate) fn said_adoptions(said: &[String], links: &[(&str, u8)], pid: u32) {
    for (name, label) in links {
        let adopted = format!("adopted {name} (label {label}, ifindex ");
        let whose = format!("from an l3mp on {EXT} that is no longer running (pid {pid})");
        assert!(
            said.iter()
                .any(|l| l.contains(&adopted) && l.contains(&whose)),
            "the start did not say {adopted:?} … {whose:?}:\n{said:#?}"
        );
    }
}

/// After a SIGKILL (no cleanup at all), a restart that keeps link `a` (label 1) and gives `b`
/// label 5 instead of 2 adopts `a` and removes `b` (it is not in the configuration any more),
/// says so, and ends up with one set of links (all marked with the new pid), one set of
/// programs, its own state and pins only; `a` works with the addresses it had, and a SIGTERM
/// then leaves nothing.
#[test]
fn sigkill_then_restart() {
    let setup = Setup::TunTc;
    let Some(mut r) = start("sigkill_then_restart", setup) else {
        return;
    };
    let host = r.lab.host(Side::A);
    let killed = r.daemons.remove(0);
    let old = killed.pid();
    assert!(
        killed.kill().status.code().is_none(),
        "not killed by a signal"
    );
    let left = link_names(host);
    for (name, label) in LINKS {
        assert!(left.contains(&name.to_string()), "{name} went: {left:?}");
        assert!(left.contains(&hidden_name(EXT, label)), "{left:?}");
    }

    let links = [LINKS[0], ("b", 5)];
    let args = run_args(setup, Side::A);
    let args: Vec<&str> = args
        .iter()
        .map(|a| if a == "b@2" { "b@5" } else { a.as_str() })
        .collect();
    let names: Vec<&str> = links.iter().map(|(n, _)| *n).collect();
    let mut restarted = Daemon::start(host, &args, &names, setup.ingress().1);
    let new = restarted.pid();
    let said = restarted.lines();
    said_adoptions(&said, &links[..1], old);
    let removal = format!(
        "removing b (label 2) left by an l3mp on {EXT} that is no longer running (pid {old})"
    );
    assert!(
        said.iter().any(|l| l.contains(&removal)),
        "the start did not say {removal:?}:\n{said:#?}"
    );
    // Its state file and pins: removed by this start, or already by another l3mp's start or
    // status on this machine (both sweep what dead instances left).
    let gone = inspect::published(old);
    assert!(gone.is_empty(), "left by the killed one: {gone:?}");
    if let Some(line) = said.iter().find(|l| l.contains(&format!("l3mp {old} "))) {
        assert!(
            line.contains("is no longer running: removed /run/l3mp/"),
            "{line}"
        );
    }
    assert!(
        !inspect::published(new).is_empty(),
        "the restart published nothing"
    );

    let mut expected: Vec<String> = vec![EXT.into(), "lo".into()];
    for (name, label) in links {
        expected.extend([name.to_string(), hidden_name(EXT, label)]);
    }
    expected.sort();
    assert_eq!(link_names(host), expected, "duplicates or strays");
    for link in host.links().expect("links") {
        if let Some(mark) = link.alias.as_deref().and_then(Mark::parse) {
            assert_eq!(mark.pid, new, "{} is marked {mark:?}", link.name);
        }
    }
    let on_ext: Vec<String> = inspect::attached(host.netns(), EXT)
        .into_iter()
        .map(|p| p.name)
        .collect();
    let mut want = vec![ingress_name(Hook::Tc).to_string(), GUARD.to_string()];
    want.sort();
    let mut got = on_ext.clone();
    got.sort();
    assert_eq!(got, want, "programs on {EXT}: {on_ext:?}");
    for (name, label) in links {
        let on_link: Vec<String> = inspect::attached(host.netns(), name)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(on_link, [egress_name(label)], "programs on {name}");
    }
    let listed = status(Some(host), new);
    assert_eq!(listed["ext"]["attached"], true, "{listed:#}");
    r.daemons.insert(0, restarted);
    // The adopted link kept its addresses (the far end has no label 5: b carries nothing).
    let (name, label) = links[0];
    for from in Side::BOTH {
        link_works(&r, name, label, from, "after the restart");
    }
    let restarted = r.daemons.remove(0);
    assert!(restarted.stop().status.success());
    let after: Vec<String> = link_names(r.host(Side::A));
    assert_eq!(after, [EXT, "lo"], "left behind");
    let left = inspect::published(new);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Two instances in one namespace, on two exts (ext0: a@1 b@2; ext1: c@3 d@4), on both hosts:
/// each carries its own links, `status` lists both, each ext has its own programs, and
/// stopping one leaves the other working.
#[test]
fn two_instances_side_by_side() {
    let setup = Setup::TunTc;
    if !privileged("two_instances_side_by_side", setup.kind()) {
        return;
    }
    let mut lab = lab(setup);
    lab.add_second_ext().expect("a second ext");
    const SECOND: [(&str, u8); 2] = [("c", 3), ("d", 4)];
    let second = |side: Side| {
        let mut args = vec!["--ext".to_string(), EXT2.to_string()];
        for (name, label) in SECOND {
            args.extend(["--if".to_string(), format!("{name}@{label}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let names: Vec<&str> = SECOND.iter().map(|(n, _)| *n).collect();
        Daemon::start(lab.host(side), &args, &names, "TC")
    };
    let others: Vec<Daemon> = Side::BOTH.iter().map(|&side| second(side)).collect();
    let mut r = run_on(lab, setup, link_addresses, None);
    // [A on ext0, B on ext0, A on ext1, B on ext1]: all stop before the lab goes.
    r.daemons.extend(others);
    for side in Side::BOTH {
        for (name, label) in SECOND {
            r.host(side)
                .configure_link(name, &link_addresses(label, side), LINK_TIMEOUT)
                .expect("address the link");
        }
    }
    let pids = (r.daemons[0].pid(), r.daemons[2].pid());
    for from in Side::BOTH {
        for (name, label) in LINKS.iter().chain(&SECOND) {
            link_works(&r, name, *label, from, "two instances");
        }
    }
    for (pid, ext, links) in [(pids.0, EXT, LINKS), (pids.1, EXT2, SECOND)] {
        let listed = status(None, pid);
        assert_eq!(listed["ext"]["name"], ext, "{listed:#}");
        assert_eq!(listed["ext"]["attached"], true, "{listed:#}");
        for (name, label) in links {
            assert_eq!(link_status(&listed, name)["label"], label, "{listed:#}");
        }
        let on_ext: Vec<String> = inspect::attached(r.host(Side::A).netns(), ext)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(on_ext.len(), 2, "programs on {ext}: {on_ext:?}");
    }

    // The first instance stops on both hosts: the second carries on.
    for daemon in r.daemons.drain(..2).collect::<Vec<_>>() {
        assert!(daemon.stop().status.success());
    }
    for from in Side::BOTH {
        for (name, label) in SECOND {
            link_works(&r, name, label, from, "the second alone");
        }
    }
    let names = link_names(r.host(Side::A));
    for (name, label) in SECOND {
        assert!(names.contains(&name.to_string()), "{names:?}");
        assert!(names.contains(&hidden_name(EXT2, label)), "{names:?}");
    }
    for (name, _) in LINKS {
        assert!(!names.contains(&name.to_string()), "{names:?}");
    }
    assert!(inspect::published(pids.0).is_empty());
    assert!(!inspect::published(pids.1).is_empty());
    for daemon in r.daemons.drain(..) {
        assert!(daemon.stop().status.success());
    }
    assert_eq!(link_names(r.host(Side::A)), [EXT, EXT2, "lo"]);
}

/// The capabilities the systemd unit grants, as setpriv spells them (`+net_admin,+bpf,...`),
/// read from its `CapabilityBoundingSet=`.
fn unit_capabilities() -> String {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/l3mp@.service");
    let text = std::fs::read_to_string(unit).unwrap_or_else(|e| panic!("{unit}: {e}"));
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap_or_else(|| panic!("{unit}: no CapabilityBoundingSet="));
    line.split_whitespace()
        .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// As root limited to the capabilities of contrib/l3mp@.service (the BPF filesystem mounted
/// beforehand, as the unit requires), l3mp starts, carries traffic, sees each link's far end
/// (the probe needs no other privilege), follows ext away and back, and stops cleanly. With CAP_PERFMON taken away as well, it refuses in one line naming it.
fn runs_with_the_units_capabilities(setup: Setup) {
    let test = "runs_with_the_units_capabilities";
    if !privileged(test, setup.kind()) {
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped {test}: needs setpriv (util-linux) to drop capabilities");
        return;
    }
    let caps = unit_capabilities();
    ensure_bpffs(Path::new(BPFFS)).expect("the BPF filesystem");
    let mut r = run_on(lab(setup), setup, link_addresses, Some(&caps));
    for from in Side::BOTH {
        for (name, label) in LINKS {
            link_works(&r, name, label, from, &format!("{setup:?} with {caps}"));
        }
    }
    for (i, side) in Side::BOTH.into_iter().enumerate() {
        for (name, _) in LINKS {
            far_end_becomes(r.host(side), r.daemons[i].pid(), name, "ok");
        }
    }
    r.lab.remove_ext().expect("remove ext");
    bring_ext_back(&mut r, setup);
    let (name, label) = LINKS[0];
    link_works(
        &r,
        name,
        label,
        Side::A,
        &format!("{setup:?} with {caps}, ext back"),
    );
    for daemon in r.daemons.drain(..) {
        let finished = daemon.stop();
        assert!(finished.status.success(), "{setup:?}: {finished:?}");
        let complaints: Vec<&String> = finished
            .stderr
            .iter()
            .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR") || l.starts_with("l3mp: "))
            .filter(|l| !l.contains("is gone: keeping the links"))
            .collect();
        assert!(complaints.is_empty(), "{setup:?}: {complaints:?}");
    }

    let fewer = caps.replace(",+perfmon", "");
    let args = run_args(setup, Side::A);
    let mut all = vec!["run"];
    all.extend(args.iter().map(String::as_str));
    let out = run_confined_to_exit(r.host(Side::A), &fewer, &all);
    assert!(
        !out.status.success(),
        "{setup:?}: started with {fewer}: {out:?}"
    );
    assert!(
        out.stderr == ["l3mp: missing CAP_PERFMON: run as root, or grant CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON"],
        "{setup:?}: {out:?}"
    );
}
for_each_setup!(runs_with_the_units_capabilities);

/// Under a `Type=notify` unit: `READY=1` (with a `STATUS=` line) comes once every link exists
/// and the programs are on ext, and `STOPPING=1` on SIGTERM.
fn readiness_is_notified(setup: Setup) {
    if !privileged("readiness_is_notified", setup.kind()) {
        return;
    }
    let lab = lab(setup);
    let host = lab.host(Side::A);
    let dir = std::env::temp_dir().join(format!("l3mp-notify-{}-{setup:?}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let path = dir.join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let args = run_args(setup, Side::A);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let notify = path.to_str().expect("UTF-8 path");
    let daemon = super::daemon::run_with_env(host, &args, &[("NOTIFY_SOCKET", notify)]);
    let mut message = [0u8; 512];
    let len = socket.recv(&mut message).expect("a notification");
    let said = String::from_utf8_lossy(&message[..len]).to_string();
    // At the moment it says so: every link and its hidden end exist, and the programs are on.
    let names = link_names(host);
    let listed = status(Some(host), daemon.pid());
    assert!(said.lines().any(|l| l == "READY=1"), "{said}");
    assert!(
        said.lines()
            .any(|l| l == format!("STATUS=2 links on {EXT} (TC ingress)")
                || l == format!("STATUS=2 links on {EXT} (XDP ingress)")),
        "{said}"
    );
    for (link, label) in LINKS {
        for name in [link.to_string(), hidden_name(EXT, label)] {
            assert!(
                names.contains(&name),
                "{setup:?}: READY before {name}: {names:?}"
            );
        }
    }
    assert_eq!(listed["ext"]["attached"], true, "{setup:?}: {listed:#}");
    assert!(daemon.stop().status.success());
    let len = socket.recv(&mut message).expect("a notification on stop");
    let said = String::from_utf8_lossy(&message[..len]).to_string();
    assert!(said.lines().any(|l| l == "STOPPING=1"), "{said}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}
for_each_setup!(readiness_is_notified);
