//! As root: three hosts on one Ethernet segment (a bridge in a namespace of its own), as an
//! operator's LAN would be. l3mp runs on A and B with one link; C does not run l3mp. What C
//! sends to A with a link's label in its DSCP must reach A's own stack untouched, DSCP
//! included, and never the link, with TC and with XDP ingress; what B sends over the link
//! still arrives.

mod common;

#[path = "e2e/daemon.rs"]
#[allow(dead_code)] // shared with the e2e tests, which use more of it
mod daemon;
#[path = "e2e/sniff.rs"]
mod sniff;
#[path = "e2e/tos.rs"]
mod tos;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use l3mp::lab::{payload, send, Host, SendOptions, Side, UdpReceiver, LINK_TIMEOUT};

use daemon::Daemon;
use sniff::Sniffer;
use tos::TosReceiver;

/// The segment's device on every host, and the one link l3mp manages on A and B.
const EXT: &str = "e0";
const LINK: &str = "m1";
/// Label 1 of 4 bits: TOS 0x04 (DSCP 1).
const LABELLED_TOS: u8 = 0x04;
const WAIT: Duration = Duration::from_secs(3);

/// Host `n`'s address on the segment (A 1, B 2, C 3) and on the link.
fn segment_address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, n)
}
fn link_address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 78, 1, n)
}

/// `ip` with `args`; panics with its output on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

/// The packets `device` in namespace `ns` received, as `ip -s link` shows them.
fn rx_packets(ns: &str, device: &str) -> u64 {
    let args = ["-n", ns, "-s", "-j", "link", "show", "dev", device];
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j is JSON");
    shown[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no rx packets in {shown}"))
}

/// Namespaces `<stem>-a`, `-b`, `-c` joined by veths to a bridge in `<stem>-s`; every one of
/// them is deleted on drop, and with them every device in them.
struct Segment {
    stem: String,
}

impl Segment {
    fn new() -> Segment {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let stem = format!(
            "l3mp-seg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let segment = Segment { stem };
        let s = segment.ns('s');
        ip(&["netns", "add", &s]);
        ip(&["-n", &s, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &s, "link", "set", "br0", "up"]);
        for (n, host) in [(1u8, 'a'), (2, 'b'), (3, 'c')] {
            let ns = segment.ns(host);
            let port = format!("p{host}");
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n", &s, "link", "add", &port, "type", "veth", "peer", "name", EXT, "netns", &ns,
            ]);
            ip(&["-n", &s, "link", "set", &port, "master", "br0", "up"]);
            let address = format!("{}/24", segment_address(n));
            ip(&["-n", &ns, "addr", "add", &address, "dev", EXT]);
            ip(&["-n", &ns, "link", "set", EXT, "up"]);
        }
        segment
    }

    fn ns(&self, host: char) -> String {
        format!("{}-{host}", self.stem)
    }

    fn host(&self, host: char, side: Side) -> Host {
        Host::open(&self.ns(host), side).expect("the namespace opens")
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        for host in ['a', 'b', 'c', 's'] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(host)])
                .status();
        }
    }
}

/// A and B with l3mp on them (`--ingress` `ingress`) and their links addressed, and C; the
/// daemons are A's and B's, in that order.
fn run_on_a_and_b(segment: &Segment, ingress: &str, mode: &str) -> ([Host; 3], Vec<Daemon>) {
    let (a, b, c) = (
        segment.host('a', Side::A),
        segment.host('b', Side::B),
        segment.host('c', Side::B),
    );
    // Native XDP on a veth needs the senders' transmit checksum offload off.
    for host in [&a, &b, &c] {
        host.set_tx_checksum(EXT, false).expect("tx checksum off");
    }
    // Links without IPv6 send nothing of their own (no router solicitations, no MLD reports),
    // so that what A's link receives is what the test sends.
    for host in [&a, &b] {
        host.set_sysctl("ipv6/conf/default/disable_ipv6", "1")
            .expect("sysctl");
    }
    let daemons: Vec<Daemon> = [(&a, 2u8), (&b, 1u8)]
        .iter()
        .map(|(host, peer)| {
            let peer = segment_address(*peer).to_string();
            let args = [
                "--ext",
                EXT,
                "--peer",
                &peer,
                "--if",
                "m1@1",
                "--ingress",
                ingress,
            ];
            Daemon::start(host, &args, &[LINK], mode)
        })
        .collect();
    for (host, n) in [(&a, 1u8), (&b, 2)] {
        let address = (IpAddr::V4(link_address(n)), 24);
        host.configure_link(LINK, &[address], LINK_TIMEOUT)
            .expect("address the link");
    }
    ([a, b, c], daemons)
}

/// Whether a datagram B sends over its link (labelled on the way, cleared on arrival) reaches
/// A's within `wait`; one is sent every 200 ms meanwhile.
fn b_reaches_a_over_the_link(a: &Host, b: &Host, wait: Duration) -> bool {
    let over_link = UdpReceiver::bind(a.end(LINK), link_address(1).into(), 0).expect("bind");
    let datagram = payload(120);
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        send(
            b.end(LINK),
            link_address(1).into(),
            over_link.port(),
            &datagram,
            SendOptions::default(),
        )
        .expect("send over the link");
        let arrived = over_link.wait_for(&datagram, Duration::from_millis(200));
        if arrived.expect("receive").is_some() {
            return true;
        }
    }
    false
}

/// The case, with `--ingress tc` or `xdp`.
fn a_third_host_cannot_send_into_a_link(ingress: &str, mode: &str) {
    if !common::can_build_hosts("a_third_host_cannot_send_into_a_link") {
        return;
    }
    let segment = Segment::new();
    let ([a, b, c], daemons) = run_on_a_and_b(&segment, ingress, mode);
    assert!(
        b_reaches_a_over_the_link(&a, &b, WAIT),
        "{ingress}: B's datagram over the link did not arrive"
    );

    // C, on the segment, sends to A's segment address with label 1 in DSCP.
    let sniffer = Sniffer::open(&a, LINK);
    let on_ext = TosReceiver::bind(&a, segment_address(1), WAIT);
    let from_c = payload(140);
    let how = SendOptions {
        tos: Some(LABELLED_TOS),
        ..SendOptions::default()
    };
    for _ in 0..3 {
        send(
            c.end(EXT),
            segment_address(1).into(),
            on_ext.port(),
            &from_c,
            how,
        )
        .expect("send from C");
    }
    assert_eq!(
        on_ext.tos_of(&from_c),
        Some(LABELLED_TOS),
        "{ingress}: C's datagram did not reach A's own stack with its DSCP"
    );
    assert_eq!(
        sniffer.seen(&[&from_c], Duration::from_millis(300)),
        [false],
        "{ingress}: C's datagram entered the link {LINK}"
    );
    let status = daemon::status_with(Some(&a), daemons[0].pid(), &["--ext", EXT]);
    let foreign = status["counters"]["foreign"]["packets"]
        .as_u64()
        .expect("a count");
    assert!(
        foreign >= 3,
        "{ingress}: foreign frames counted {foreign}: {status:#}"
    );
    let delivered = daemon::link_status(&status, LINK)["ingress"]["packets"]
        .as_u64()
        .expect("a count");
    assert_eq!(
        delivered, 1,
        "{ingress}: only B's datagram was delivered on {LINK}"
    );
    // What status says the link received is the kernel's own count, as `ip -s link` shows it.
    assert_eq!(
        delivered,
        rx_packets(&segment.ns('a'), LINK),
        "{ingress}: {status:#}"
    );
    drop(daemons);
}

#[test]
fn tc_ingress() {
    a_third_host_cannot_send_into_a_link("tc", "TC");
}

#[test]
fn xdp_ingress() {
    a_third_host_cannot_send_into_a_link("xdp", "XDP");
}

/// The peer's MAC changes while both ends run: B's ext gets a new address. What B then sends
/// over the link comes from the new MAC, which A's programs must follow (B's l3mp resolves A
/// again from its new MAC, and A's kernel learns it). Then A's neighbour entry for B is made
/// wrong by hand (as a stale entry the kernel would verify only if asked): A follows it, stops
/// taking B's frames, and must find B's real MAC again by itself.
#[test]
fn the_peers_new_mac_is_followed() {
    if !common::can_build_hosts("the_peers_new_mac_is_followed") {
        return;
    }
    let segment = Segment::new();
    let ([a, b, _c], mut daemons) = run_on_a_and_b(&segment, "tc", "TC");
    assert!(
        b_reaches_a_over_the_link(&a, &b, WAIT),
        "B's datagram over the link did not arrive"
    );

    let new_mac = "02:00:00:00:b0:0b";
    ip(&[
        "-n",
        &segment.ns('b'),
        "link",
        "set",
        EXT,
        "address",
        new_mac,
    ]);
    // Until B's programs are generated again, what it sends still carries its old MAC.
    assert!(
        daemons[1]
            .wait_for_line("re-attached", Duration::from_secs(10))
            .is_some(),
        "B did not follow its own new MAC: {}",
        daemons[1].transcript()
    );
    assert!(
        b_reaches_a_over_the_link(&a, &b, Duration::from_secs(10)),
        "after B's MAC changed, B's datagrams no longer reach A's link: {}",
        daemons[0].transcript()
    );
    assert!(
        daemons[0]
            .wait_for_line(&format!("is now {new_mac}"), Duration::from_secs(1))
            .is_some(),
        "A did not say it follows B's new MAC: {}",
        daemons[0].transcript()
    );

    let wrong = "02:00:00:00:00:99";
    let peer = segment_address(2).to_string();
    ip(&[
        "-n",
        &segment.ns('a'),
        "neigh",
        "replace",
        &peer,
        "lladdr",
        wrong,
        "nud",
        "stale",
        "dev",
        EXT,
    ]);
    assert!(
        daemons[0]
            .wait_for_line(&format!("is now {wrong}"), Duration::from_secs(10))
            .is_some(),
        "A did not follow its neighbour table: {}",
        daemons[0].transcript()
    );
    // The stale entry is checked by unicast to the wrong MAC, fails, and is resolved again by
    // broadcast: 5 s of delay, 3 probes a second apart, then a new request from A.
    assert!(
        daemons[0].wait_for_lines(&format!("is now {new_mac}"), 2, Duration::from_secs(30)),
        "A did not find B's MAC again: {}",
        daemons[0].transcript()
    );
    assert!(
        b_reaches_a_over_the_link(&a, &b, Duration::from_secs(5)),
        "after A found B again, B's datagrams do not reach A's link: {}",
        daemons[0].transcript()
    );
    drop(daemons);
}

/// The guard on forwarded traffic. A routes for C (as a router running l3mp beside its other
/// traffic does): C sends to B through A with label 1 in DSCP, and A forwards it out of ext.
/// A's guard must clear the label bits on the way, so that B's demux hands the datagram to
/// B's own stack and never to B's link; A counts it.
#[test]
fn forwarded_traffic_is_guarded() {
    if !common::can_build_hosts("forwarded_traffic_is_guarded") {
        return;
    }
    let segment = Segment::new();
    let ([a, b, _c], daemons) = run_on_a_and_b(&segment, "tc", "TC");
    let c = segment.host('c', Side::B);
    a.set_sysctl("ipv4/ip_forward", "1").expect("sysctl");
    for key in [
        "ipv4/conf/all/send_redirects",
        "ipv4/conf/e0/send_redirects",
    ] {
        a.set_sysctl(key, "0").expect("sysctl");
    }
    let b_address = format!("{}/32", segment_address(2));
    let via_a = segment_address(1).to_string();
    ip(&[
        "-n",
        &segment.ns('c'),
        "route",
        "add",
        &b_address,
        "via",
        &via_a,
    ]);

    let sniffer = Sniffer::open(&b, LINK);
    let on_b = TosReceiver::bind(&b, segment_address(2), WAIT);
    let from_c = payload(150);
    let labelled = SendOptions {
        tos: Some(LABELLED_TOS),
        ..SendOptions::default()
    };
    send(
        c.end(EXT),
        segment_address(2).into(),
        on_b.port(),
        &from_c,
        labelled,
    )
    .expect("send from C");
    assert_eq!(
        on_b.tos_of(&from_c),
        Some(LABELLED_TOS & !0x3c),
        "C's datagram forwarded by A did not reach B's own stack with its label cleared"
    );
    assert_eq!(
        sniffer.seen(&[&from_c], Duration::from_millis(300)),
        [false],
        "C's datagram forwarded by A entered B's link {LINK}"
    );
    let status = daemon::status_with(Some(&a), daemons[0].pid(), &["--ext", EXT]);
    let guarded = status["counters"]["guard"]["packets"]
        .as_u64()
        .expect("a count");
    assert!(guarded >= 1, "A's guard counted {guarded}: {status:#}");
    drop(daemons);
}
