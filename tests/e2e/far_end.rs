//! The far-end check, end to end: the real `l3mp run` on two hosts, over the lab's TUN and
//! veth ext (TC and XDP ingress) and over a real WireGuard (wireguard-go). With both ends
//! alike, each sees the other's probe on every link with its own label and label bits, and no
//! socket or packet socket on the far link ever receives one. With the issue's mismatch (A
//! `--label-bits 4 --if c9@9`, B `--label-bits 3 --if c1@1`), B says "mismatch" naming 4 bits
//! and label 9, A says "not seen", and each log says so once. With `--probe off` nothing is
//! sent: the far end sees nothing, and not a probe crosses ext.

use std::net::{IpAddr, Ipv6Addr};
use std::thread;
use std::time::{Duration, Instant};

use l3mp::lab::{Host, Side, UdpReceiver, EXT};

use super::daemon::{link_status, run_to_exit, status, Daemon};
use super::sniff::Sniffer;
use super::wireguard::{tunnel_with, WG};
use super::{lab, privileged, run_args_with, start, Setup, LINKS};

/// The probe's UDP port and the first bytes of its payload (the wire format, written out).
const PROBE_PORT: u16 = 19507;
const MAGIC: &[u8] = b"l3mprobe";
/// How long a far end may take to be judged: a probe a second, "not seen" after 3.5 s.
const JUDGED: Duration = Duration::from_secs(10);
/// How long to watch the far link for a probe that must not reach it: several probes.
const WATCH: Duration = Duration::from_millis(2500);

/// Polls `l3mp status --json` for the instance `pid` on `host` until link `name`'s far end is
/// in `state`; its `far_end` object, or a panic with the last status.
pub(super) fn far_end_becomes(host: &Host, pid: u32, name: &str, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + JUDGED;
    loop {
        let shown = status(Some(host), pid);
        let far = link_status(&shown, name)["far_end"].clone();
        if far["state"] == state {
            return far;
        }
        if Instant::now() > deadline {
            panic!(
                "host {}: {name}'s far end is not {state} after {JUDGED:?}: {shown:#}",
                host.side()
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// `l3mp run`'s arguments for the lab's ext on `side` with `setup`'s ingress (and `--peer` on
/// a veth ext), the links `links`, and `more`.
fn lab_args(setup: Setup, side: Side, links: &[(&str, u8)], more: &[&str]) -> Vec<String> {
    let mut args = run_args_with(setup, side, links);
    args.extend(more.iter().map(ToString::to_string));
    args
}

/// The table `l3mp status` prints for the instance `pid` (its block among every instance's).
fn table_of(host: &Host, pid: u32) -> String {
    let out = run_to_exit(host, &["status"]);
    let text = out.stdout.join("\n");
    let start = text
        .find(&format!("l3mp {pid} on "))
        .unwrap_or_else(|| panic!("no instance {pid} in:\n{text}"));
    let block = &text[start..];
    block[..block.find("\n\n").unwrap_or(block.len())].to_string()
}

/// Both ends alike: on every link each end sees the other's probe with its own label and
/// label bits, recently (so probes kept arriving while the far link was watched), the table
/// says so, and over that time neither a packet socket on the far end's link nor a UDP socket
/// bound to the probe port on it received a probe.
fn far_ends_alike(hosts: [&Host; 2], pids: [u32; 2], links: &[(&str, u8)], bits: u8) {
    for (i, side) in Side::BOTH.into_iter().enumerate() {
        for (name, label) in links {
            let far = far_end_becomes(hosts[i], pids[i], name, "ok");
            assert_eq!(far["label"], *label, "{side} {name}: {far}");
            assert_eq!(far["label_bits"], bits, "{side} {name}: {far}");
        }
    }
    let (b, pid_b) = (hosts[1], pids[1]);
    let (name, label) = links[0];
    let sniffer = Sniffer::open(b, name);
    let any = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let socket = UdpReceiver::bind(b.end(name), any, PROBE_PORT).expect("a socket on the port");
    let seen = sniffer.seen(&[MAGIC], WATCH);
    assert_eq!(seen, [false], "a probe reached {name} on B");
    let received = socket.next(Duration::from_millis(100)).expect("receive");
    assert_eq!(received, None, "a socket on {name} on B received something");
    let far = link_status(&status(Some(b), pid_b), name)["far_end"].clone();
    assert_eq!(far["state"], "ok", "{far}");
    let ago = far["seen_ms_ago"].as_u64().expect("seen");
    assert!(
        ago < 1500,
        "no probe arrived on B while {name} was watched: {far}"
    );
    let table = table_of(b, pid_b);
    let expected = format!(", label {label}, bits {bits}");
    assert!(
        table.contains("far end") && table.contains(&expected),
        "the table does not show the far end:\n{table}"
    );
}

fn far_ends_alike_on_the_lab(setup: Setup) {
    let Some(r) = start("far_ends_alike_on_the_lab", setup) else {
        return;
    };
    let pids = [r.daemons[0].pid(), r.daemons[1].pid()];
    far_ends_alike([r.host(Side::A), r.host(Side::B)], pids, &LINKS, 4);
}
for_each_setup!(far_ends_alike_on_the_lab);

/// The issue's case: A runs `--label-bits 4 --if c9@9`, B `--label-bits 3 --if c1@1`. B's
/// demux reads label 1 from A's probe (the low 3 of 9's 4 bits): B's c1 shows a mismatch with
/// the far end's 4 bits and label 9. A's demux reads label 1 from B's probe, which no link of
/// A's has (counted unknown): A's c9 shows its far end not seen. Each log says so once.
fn mismatch(hosts: [&Host; 2], daemons: [&mut Daemon; 2]) {
    let (a, b) = (hosts[0], hosts[1]);
    let (pid_a, pid_b) = (daemons[0].pid(), daemons[1].pid());
    let far = far_end_becomes(b, pid_b, "c1", "mismatch");
    assert_eq!(
        (&far["label"], &far["label_bits"]),
        (&9.into(), &4.into()),
        "{far}"
    );
    let far = far_end_becomes(a, pid_a, "c9", "not_seen");
    assert_eq!(far["seen_ms_ago"], serde_json::Value::Null, "{far}");
    let unknown = status(Some(a), pid_a)["counters"]["unknown"]["packets"]
        .as_u64()
        .expect("unknown");
    assert!(unknown > 0, "B's probes did not arrive as unknown on A");
    let table = table_of(b, pid_b);
    assert!(
        table.contains("mismatch: far end uses 4 bits, label 9"),
        "{table}"
    );
    let said_b = "c1 (label 1, 3 label bits): mismatch: the far end's probe on this link says \
                  label 9 with 4 label bits";
    let said_a = "c9 (label 9): far end not seen";
    let [daemon_a, daemon_b] = daemons;
    let mut saying = [(daemon_b, said_b), (daemon_a, said_a)];
    for (daemon, said) in saying.iter_mut() {
        assert!(
            daemon.wait_for_line(said, JUDGED).is_some(),
            "not said: {said}\n{}",
            daemon.lines().join("\n")
        );
    }
    // Several probes later, still said once each.
    thread::sleep(Duration::from_secs(3));
    for (daemon, said) in saying.iter_mut() {
        let said: &str = said;
        let lines = daemon.lines();
        let times = lines.iter().filter(|l| l.contains(said)).count();
        assert_eq!(times, 1, "said {times} times:\n{}", lines.join("\n"));
        assert!(
            lines
                .iter()
                .any(|l| l.contains(said) && l.contains("--label-bits")),
            "the warning says what to check:\n{}",
            lines.join("\n")
        );
    }
}

fn mismatch_is_said_on_the_lab(setup: Setup) {
    let test = "mismatch_is_said_on_the_lab";
    if !privileged(test, setup.kind()) {
        return;
    }
    let lab = lab(setup);
    let mode = setup.ingress().1;
    let mut a = Daemon::start_owned(
        lab.host(Side::A),
        &lab_args(setup, Side::A, &[("c9", 9)], &["--label-bits", "4"]),
        mode,
    );
    let mut b = Daemon::start_owned(
        lab.host(Side::B),
        &lab_args(setup, Side::B, &[("c1", 1)], &["--label-bits", "3"]),
        mode,
    );
    mismatch([lab.host(Side::A), lab.host(Side::B)], [&mut a, &mut b]);
}
for_each_setup!(mismatch_is_said_on_the_lab);

/// With `--probe off` on A, A sends nothing: B's far ends stay not seen, and A's status says
/// the check is off. Where a packet socket on B's ext sees what arrives before the demux does
/// (TC ingress; native XDP acts first), no probe crosses ext either, and the same watch sees
/// A's probes arrive once A runs with the check on again.
fn probe_off_sends_nothing(setup: Setup) {
    let test = "probe_off_sends_nothing";
    if !privileged(test, setup.kind()) {
        return;
    }
    let lab = lab(setup);
    let mode = setup.ingress().1;
    let (host_a, host_b) = (lab.host(Side::A), lab.host(Side::B));
    let a = Daemon::start_owned(
        host_a,
        &lab_args(setup, Side::A, &LINKS, &["--probe", "off"]),
        mode,
    );
    let b = Daemon::start_owned(host_b, &lab_args(setup, Side::B, &LINKS, &[]), mode);
    let (pid_a, pid_b) = (a.pid(), b.pid());
    let watch = Sniffer::open(host_b, EXT);
    for (name, _) in LINKS {
        let far = far_end_becomes(host_b, pid_b, name, "not_seen");
        assert_eq!(far["seen_ms_ago"], serde_json::Value::Null, "{far}");
        far_end_becomes(host_a, pid_a, name, "off");
    }
    assert_eq!(status(Some(host_a), pid_a)["probe"], false);
    let tapped = setup != Setup::VethXdp;
    if tapped {
        assert_eq!(watch.seen(&[MAGIC], WATCH), [false], "a probe crossed ext");
    }
    drop(a);
    let again = Daemon::start_owned(host_a, &lab_args(setup, Side::A, &LINKS, &[]), mode);
    let watch = Sniffer::open(host_b, EXT);
    far_end_becomes(host_b, pid_b, LINKS[0].0, "ok");
    if tapped {
        assert_eq!(
            watch.seen(&[MAGIC], WATCH),
            [true],
            "the watch sees no probe"
        );
    }
    drop(again);
}
for_each_setup!(probe_off_sends_nothing);

/// Over wireguard-go's wg0: both ends alike, then the issue's mismatch.
#[test]
fn far_end_check_over_wireguard_go() {
    let test = "far_end_check_over_wireguard_go";
    let alike = |_| {
        let mut args = vec!["--ext".to_string(), WG.to_string()];
        for (name, label) in LINKS {
            args.extend(["--if".to_string(), format!("{name}@{label}")]);
        }
        args
    };
    let Some(t) = tunnel_with(test, alike) else {
        return;
    };
    let pids = [t.daemons[0].pid(), t.daemons[1].pid()];
    far_ends_alike([t.host(Side::A), t.host(Side::B)], pids, &LINKS, 4);
    drop(t);

    let issue = |side| {
        let (link, bits) = match side {
            Side::A => ("c9@9", "4"),
            Side::B => ("c1@1", "3"),
        };
        ["--ext", WG, "--if", link, "--label-bits", bits]
            .map(String::from)
            .to_vec()
    };
    let Some(mut t) = tunnel_with(test, issue) else {
        return;
    };
    let (hosts, daemons) = t.hosts_and_daemons();
    let [a, b] = daemons else {
        panic!("two daemons");
    };
    mismatch(hosts, [a, b]);
}
