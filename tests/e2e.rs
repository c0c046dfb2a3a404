//! End to end, as root: two hosts in network namespaces joined by an ext, the real `l3mp run`
//! on both (started inside each namespace, stopped with SIGTERM), and traffic from the test's
//! own sockets. Every case runs on an L3 ext (TUN + relay) and an Ethernet ext (veth) with TC
//! ingress, and on the Ethernet ext with native XDP ingress. Each test builds its own
//! namespaces (unique names) and deletes them, also when it fails. The cases about running it
//! as a service (status, ext going and coming back, MTU, SIGKILL, two instances) are in
//! `e2e/service.rs`.

#[path = "common/mod.rs"]
mod common;
#[path = "e2e/daemon.rs"]
mod daemon;
#[path = "e2e/inspect.rs"]
mod inspect;
#[path = "e2e/sniff.rs"]
mod sniff;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::thread;
use std::time::Duration;

use l3mp::lab::{
    echo, ext_address, link_address, link_addresses, payload, send, transfer, AddressKind, ExtKind,
    Host, Lab, SendOptions, Side, UdpReceiver, EXT, LINK_TIMEOUT,
};
use l3mp::programs::{egress_name, ingress_name, Hook, GUARD};
use l3mp::run::hidden_name;
use l3mp::sys::caps::{missing_capabilities, Cap};
use l3mp::sys::netlink::Netlink;

use daemon::{link_status, run_to_exit, status, Daemon, Finished};
use sniff::Sniffer;

/// The links every instance manages: name and label.
const LINKS: [(&str, u8); 2] = [("a", 1), ("b", 2)];
/// A label no link uses (with the default 4 label bits).
const UNUSED_LABEL: u8 = 3;
/// How long something that should arrive may take.
const WAIT: Duration = Duration::from_secs(3);
/// How long to listen for something that must not arrive.
const SILENCE: Duration = Duration::from_millis(300);
/// Bytes per TCP transfer.
const TCP_BYTES: usize = 512 * 1024;

/// The ext and the ingress flavour a case runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    TunTc,
    VethTc,
    VethXdp,
}

impl Setup {
    fn kind(self) -> ExtKind {
        match self {
            Setup::TunTc => ExtKind::Tun,
            Setup::VethTc | Setup::VethXdp => ExtKind::Veth,
        }
    }

    /// The `--ingress` value and the mode `l3mp run` reports for it.
    fn ingress(self) -> (&'static str, &'static str) {
        match self {
            Setup::TunTc | Setup::VethTc => ("tc", "TC"),
            Setup::VethXdp => ("xdp", "XDP"),
        }
    }
}

/// Generates one test per setup for a case `fn case(Setup)`.
macro_rules! for_each_setup {
    ($case:ident) => {
        mod $case {
            #[test]
            fn tun_tc() {
                super::$case(super::Setup::TunTc)
            }
            #[test]
            fn veth_tc() {
                super::$case(super::Setup::VethTc)
            }
            #[test]
            fn veth_xdp() {
                super::$case(super::Setup::VethXdp)
            }
        }
    };
}

// After the macro, which it uses.
#[path = "e2e/far_end.rs"]
mod far_end;
#[path = "e2e/lifecycle.rs"]
mod lifecycle;
#[path = "e2e/old_kernel.rs"]
mod old_kernel;
#[path = "e2e/ownership.rs"]
mod ownership;
#[path = "e2e/reload.rs"]
mod reload;
#[path = "e2e/service.rs"]
mod service;
#[path = "e2e/tc_attach.rs"]
mod tc_attach;
#[path = "e2e/tos.rs"]
mod tos;
#[path = "e2e/vlan.rs"]
mod vlan;
#[path = "e2e/wireguard.rs"]
mod wireguard;

/// Whether the test may run; prints why it is skipped when not.
fn privileged(test: &str, kind: ExtKind) -> bool {
    let missing = missing_capabilities(&[Cap::NetAdmin, Cap::Bpf, Cap::SysAdmin]);
    if !missing.is_empty() {
        eprintln!(
            "skipped {test}: needs root (missing {}) to create namespaces and load BPF programs",
            missing.join(", ")
        );
        return false;
    }
    if kind == ExtKind::Tun && !Path::new("/dev/net/tun").exists() {
        eprintln!("skipped {test}: needs /dev/net/tun for the TUN ext");
        return false;
    }
    true
}

/// Two hosts with `l3mp run` on both and the links addressed. The instances stop (SIGKILL
/// if still running) before the lab is deleted: fields drop in order.
struct Running {
    daemons: Vec<Daemon>,
    lab: Lab,
}

impl Running {
    fn host(&self, side: Side) -> &Host {
        self.lab.host(side)
    }
}

/// A new lab for `setup`, tx checksum offload off on both veth ends for native XDP.
fn lab(setup: Setup) -> Lab {
    let lab =
        Lab::new("l3mp-e2e", setup.kind()).unwrap_or_else(|e| panic!("building the lab: {e}"));
    if setup == Setup::VethXdp {
        for side in Side::BOTH {
            lab.host(side)
                .set_tx_checksum(EXT, false)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    lab
}

/// `l3mp run`'s arguments on `side` for `setup`, before any extra ones.
fn run_args(setup: Setup, side: Side) -> Vec<String> {
    run_args_with(setup, side, &LINKS)
}

/// `l3mp run`'s arguments on `side` for `setup` with the links `links`, before any extra ones.
fn run_args_with(setup: Setup, side: Side, links: &[(&str, u8)]) -> Vec<String> {
    let mut args = vec!["--ext".to_string(), EXT.to_string()];
    for (name, label) in links {
        args.extend(["--if".to_string(), format!("{name}@{label}")]);
    }
    args.extend(["--ingress".to_string(), setup.ingress().0.to_string()]);
    if setup.kind() == ExtKind::Veth {
        let peer = ext_address(AddressKind::Ipv4, side.other());
        args.extend(["--peer".to_string(), peer.to_string()]);
    }
    args
}

/// Builds the lab, starts l3mp on both hosts and addresses the links; `None` when skipped.
fn start(test: &str, setup: Setup) -> Option<Running> {
    if !privileged(test, setup.kind()) {
        return None;
    }
    Some(run_on(lab(setup), setup, link_addresses, None))
}

/// Starts l3mp on both hosts of `lab` (as root limited to `caps` if given, see
/// [`Daemon::start_confined`]) and gives the links the addresses of `plan`.
fn run_on(
    lab: Lab,
    setup: Setup,
    plan: fn(u8, Side) -> Vec<(IpAddr, u8)>,
    caps: Option<&str>,
) -> Running {
    let names: Vec<&str> = LINKS.iter().map(|(name, _)| *name).collect();
    let daemons = Side::BOTH
        .iter()
        .map(|&side| {
            let args = run_args(setup, side);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (host, mode) = (lab.host(side), setup.ingress().1);
            match caps {
                None => Daemon::start(host, &args, &names, mode),
                Some(caps) => Daemon::start_confined(host, caps, &args, &names, mode),
            }
        })
        .collect();
    let running = Running { daemons, lab };
    for side in Side::BOTH {
        for (name, label) in LINKS {
            running
                .host(side)
                .configure_link(name, &plan(label, side), LINK_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    running
}

/// The unspecified address of `ip`'s family.
fn any_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// Whether `source` is the sender's planned address `planned`; a link-local one may be any
/// link-local address of the sender's (the kernel picks among them).
fn is_from(source: IpAddr, planned: IpAddr) -> bool {
    match (source, planned) {
        (IpAddr::V6(s), IpAddr::V6(p)) if p.is_unicast_link_local() => s.is_unicast_link_local(),
        _ => source == planned,
    }
}

/// The lab's planned IPv4 or IPv6 address of the link with `label` on `side`.
fn planned(label: u8, kind: AddressKind, side: Side) -> IpAddr {
    link_address(label, kind, side)
        .unwrap_or_else(|| panic!("the lab plans no {kind} address for links"))
}

/// The other managed link.
fn other_link(name: &str) -> &'static str {
    LINKS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n != name)
        .expect("two links")
}

/// UDP, TCP and ICMP echo over each link, for each kind of address (IPv4, IPv6, IPv6
/// link-local: the kernel's), in both directions; the datagrams arrive from the sender's
/// address on the link.
fn traffic_crosses_every_link(setup: Setup) {
    let Some(r) = start("traffic_crosses_every_link", setup) else {
        return;
    };
    for (name, label) in LINKS {
        for kind in AddressKind::ALL {
            for from in Side::BOTH {
                let to = from.other();
                let address = |side: Side| {
                    r.host(side)
                        .link_address(name, label, kind)
                        .unwrap_or_else(|e| panic!("{setup:?}: {e}"))
                };
                let target = address(to);
                let what = format!("{setup:?}: {kind} on {name} from {from} to {target}");
                let source = link_carries(&r, name, from, target, 200, &what);
                assert_eq!(source, address(from), "{what}: UDP from {source}");
            }
        }
    }
}
for_each_setup!(traffic_crosses_every_link);

/// UDP, TCP and ICMP echo over link `name` from `from` to `target`, an address of the other
/// host's end of it: a datagram of `len` bytes arrives, every TCP byte arrives, the echo is
/// answered. Returns the address the datagram arrived from.
fn link_carries(
    r: &Running,
    name: &str,
    from: Side,
    target: IpAddr,
    len: usize,
    what: &str,
) -> IpAddr {
    let (sender, server) = (r.host(from).end(name), r.host(from.other()).end(name));
    let receiver = UdpReceiver::bind(server, target, 0).expect("bind");
    let datagram = payload(len);
    send(
        sender,
        target,
        receiver.port(),
        &datagram,
        SendOptions::default(),
    )
    .expect("send");
    let source = receiver.wait_for(&datagram, WAIT).expect("receive");
    let source = source.unwrap_or_else(|| panic!("{what}: UDP on {name} from {from} is lost"));

    let received = transfer(sender, server, target, TCP_BYTES, WAIT)
        .unwrap_or_else(|e| panic!("{what}: TCP on {name} from {from}: {e}"));
    assert_eq!(
        received, TCP_BYTES,
        "{what}: TCP bytes on {name} from {from}"
    );

    let answered = echo(sender, target, WAIT).expect("echo");
    assert!(answered, "{what}: no echo reply on {name} from {from}");
    source.ip()
}

/// The packets and bytes of `direction` ("ingress" or "egress") of link `name` in an
/// instance's status.
fn link_packets(instance: &serde_json::Value, name: &str, direction: &str) -> u64 {
    link_status(instance, name)[direction]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no {direction} packets for {name} in {instance:#}"))
}

/// The two ends of every link have link-local addresses of their own, the ones the kernel
/// generates from l3mp's MACs, and `l3mp status` shows them. An echo to the far end's address
/// is answered by the far end: the reply comes from that address, which is not the sender's
/// own, and the far end's counters for the link move both ways. The hidden ends have no IPv6
/// address at all. Then the addresses stay the same over restarts (see
/// [`link_local_addresses_are_stable`]).
fn link_local_addresses_are_distinct(setup: Setup) {
    let Some(r) = start("link_local_addresses_are_distinct", setup) else {
        return;
    };
    let pid = |side: Side| r.daemons[if side == Side::A { 0 } else { 1 }].pid();
    for (name, _) in LINKS {
        let own = |side: Side| {
            r.host(side)
                .link_local(name, LINK_TIMEOUT)
                .unwrap_or_else(|e| panic!("{setup:?}: {e}"))
        };
        assert_ne!(
            own(Side::A),
            own(Side::B),
            "{setup:?}: both ends of {name} have the same link-local address"
        );
        for side in Side::BOTH {
            let shown = status(None, pid(side));
            let expected = serde_json::json!([own(side).to_string()]);
            assert_eq!(
                link_status(&shown, name)["link_local"],
                expected,
                "{setup:?}: status on {side}: {shown:#}"
            );
        }
        for from in Side::BOTH {
            let to = from.other();
            let target = own(to);
            let before = status(None, pid(to));
            let answered = echo(r.host(from).end(name), target.into(), WAIT).expect("echo");
            assert!(
                answered,
                "{setup:?}: no echo reply from {target} on {name} from {from}"
            );
            let after = status(None, pid(to));
            for direction in ["ingress", "egress"] {
                let (was, is) = (
                    link_packets(&before, name, direction),
                    link_packets(&after, name, direction),
                );
                assert!(
                    is > was,
                    "{setup:?}: {name} on {to} answered {from}'s echo to {target} without \
                     counting it: {direction} {was} -> {is}"
                );
            }
        }
    }
    for side in Side::BOTH {
        let host = r.host(side);
        let addresses = host
            .run(|| Netlink::new().and_then(|n| n.addresses()))
            .expect("enter the host")
            .expect("addresses");
        for (_, label) in LINKS {
            let hidden = host
                .wait_link(&hidden_name(EXT, label), LINK_TIMEOUT)
                .expect("the hidden end");
            let its: Vec<_> = addresses
                .iter()
                .filter(|a| a.index == hidden.index)
                .collect();
            assert!(
                its.is_empty(),
                "{setup:?}: {} on {side} has addresses: {its:?}",
                hidden.name
            );
        }
    }
    link_local_addresses_are_stable(r, setup);
}
for_each_setup!(link_local_addresses_are_distinct);

/// Host A's links have the same link-local addresses after l3mp on A is stopped (SIGTERM) and
/// started again, and after it is killed (SIGKILL) and started again.
fn link_local_addresses_are_stable(mut r: Running, setup: Setup) {
    let host = |r: &Running| -> Vec<Ipv6Addr> {
        LINKS
            .iter()
            .map(|(name, _)| {
                r.host(Side::A)
                    .link_local(name, LINK_TIMEOUT)
                    .unwrap_or_else(|e| panic!("{setup:?}: {e}"))
            })
            .collect()
    };
    let first = host(&r);
    let names: Vec<&str> = LINKS.iter().map(|(name, _)| *name).collect();
    let args = run_args(setup, Side::A);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for how in ["SIGTERM", "SIGKILL"] {
        let old = r.daemons.remove(0);
        let finished = if how == "SIGTERM" {
            old.stop()
        } else {
            old.kill()
        };
        assert_eq!(finished.status.success(), how == "SIGTERM", "{finished:?}");
        let again = Daemon::start(r.host(Side::A), &args, &names, setup.ingress().1);
        r.daemons.insert(0, again);
        assert_eq!(host(&r), first, "{setup:?}: after {how} and a new start");
    }
}

/// `ip -s` statistics of `device` on `host`: received packets and bytes.
fn received(host: &Host, device: &str) -> (u64, u64) {
    let shown = inspect::tool(
        "ip",
        &["-n", host.name(), "-s", "-j", "link", "show", "dev", device],
    );
    let value: serde_json::Value =
        serde_json::from_str(&shown).unwrap_or_else(|e| panic!("ip -j: {e}: {shown}"));
    let rx = &value[0]["stats64"]["rx"];
    let field = |key: &str| {
        rx[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no rx {key} in {shown}"))
    };
    (field("packets"), field("bytes"))
}

/// Nothing crosses a link's veth pair but what the programs put there. With l3mp on host A
/// only (so nothing comes to A's links from B), after the time in which a new IPv6 interface
/// sends its duplicate address detection, MLD reports and router solicitations, neither end
/// of A's pairs has received a packet: the hidden end, without an address, says nothing to
/// the link, and what the link says (its egress counter shows it did) goes out of ext, also
/// while the pair was being set up.
#[test]
fn a_pair_carries_nothing_of_its_own() {
    let test = "a_pair_carries_nothing_of_its_own";
    let setup = Setup::TunTc;
    if !privileged(test, setup.kind()) {
        return;
    }
    let lab = lab(setup);
    let host = lab.host(Side::A);
    let names: Vec<&str> = LINKS.iter().map(|(name, _)| *name).collect();
    let args = run_args(setup, Side::A);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = Daemon::start(host, &args, &names, "TC");
    for (name, label) in LINKS {
        host.configure_link(name, &link_addresses(label, Side::A), LINK_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Router solicitations wait up to a second (rtr_solicit_delay); MLD reports repeat.
    thread::sleep(Duration::from_millis(2500));
    let shown = status(None, daemon.pid());
    for (name, label) in LINKS {
        assert!(
            link_packets(&shown, name, "egress") > 0,
            "{name} sent nothing of its own: {shown:#}"
        );
        for device in [name.to_string(), hidden_name(EXT, label)] {
            assert_eq!(received(host, &device).0, 0, "{device} received packets");
        }
    }
}

/// What is sent on one link reaches the other end of that link, and never the other link: no
/// socket bound to the other link gets it, and no frame carrying it is received there (while
/// the same watch on its own link does see it).
fn links_are_isolated(setup: Setup) {
    let Some(r) = start("links_are_isolated", setup) else {
        return;
    };
    for from in Side::BOTH {
        let to = from.other();
        for (name, label) in LINKS {
            let other = other_link(name);
            let own = Sniffer::open(r.host(to), name);
            let foreign = Sniffer::open(r.host(to), other);
            let mut sent = Vec::new();
            for kind in AddressKind::ALL {
                let target = r
                    .host(to)
                    .link_address(name, label, kind)
                    .unwrap_or_else(|e| panic!("{setup:?}: {e}"));
                let right = UdpReceiver::bind(r.host(to).end(name), target, 0).expect("bind");
                let wrong = UdpReceiver::bind(r.host(to).end(other), any_of(target), right.port())
                    .expect("bind on the other link");
                let datagram = payload(300);
                let sender = r.host(from).end(name);
                send(
                    sender,
                    target,
                    right.port(),
                    &datagram,
                    SendOptions::default(),
                )
                .expect("send");
                let what = format!("{setup:?}: {kind} on {name} from {from} to {target}");
                assert!(
                    right.wait_for(&datagram, WAIT).expect("receive").is_some(),
                    "{what}: lost on its own link"
                );
                sent.push((what, wrong, datagram));
            }
            thread::sleep(SILENCE);
            for (what, wrong, datagram) in &sent {
                let got = wrong.wait_for(datagram, Duration::ZERO).expect("receive");
                assert!(got.is_none(), "{what}: a socket on {other} got it");
            }
            let markers: Vec<&[u8]> = sent.iter().map(|(_, _, d)| d.as_slice()).collect();
            let glimpse = Duration::from_millis(50);
            let seen_own = own.seen(&markers, glimpse);
            assert!(
                seen_own.iter().all(|&s| s),
                "{setup:?}: {name} on {to} saw {seen_own:?}"
            );
            let seen_foreign = foreign.seen(&markers, glimpse);
            assert!(
                seen_foreign.iter().all(|&s| !s),
                "{setup:?}: sent on {name} from {from}, received on {other}: {seen_foreign:?}"
            );
        }
    }
}
for_each_setup!(links_are_isolated);

/// A datagram to ff02::1 on a link reaches the other host on that link only: not the other
/// link, not ext's own stack, and not the sender's other link.
fn multicast_stays_on_its_link(setup: Setup) {
    let Some(r) = start("multicast_stays_on_its_link", setup) else {
        return;
    };
    let all_nodes: IpAddr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).into();
    let any: IpAddr = Ipv6Addr::UNSPECIFIED.into();
    for from in Side::BOTH {
        let to = from.other();
        for (name, _) in LINKS {
            let other = other_link(name);
            let right = UdpReceiver::bind(r.host(to).end(name), any, 0).expect("bind");
            let port = right.port();
            let wrong = [
                (
                    to,
                    other,
                    UdpReceiver::bind(r.host(to).end(other), any, port),
                ),
                (to, EXT, UdpReceiver::bind(r.host(to).end(EXT), any, port)),
                (
                    from,
                    other,
                    UdpReceiver::bind(r.host(from).end(other), any, port),
                ),
            ];
            let datagram = payload(120);
            send(
                r.host(from).end(name),
                all_nodes,
                port,
                &datagram,
                SendOptions::default(),
            )
            .expect("send");
            let what = format!("{setup:?}: ff02::1 on {name} from {from}");
            assert!(
                right.wait_for(&datagram, WAIT).expect("receive").is_some(),
                "{what}: host {to} did not get it on {name}"
            );
            thread::sleep(SILENCE);
            for (side, device, receiver) in wrong {
                let receiver = receiver.expect("bind");
                let got = receiver
                    .wait_for(&datagram, Duration::ZERO)
                    .expect("receive");
                assert!(got.is_none(), "{what}: host {side} got it on {device}");
            }
        }
    }
}
for_each_setup!(multicast_stays_on_its_link);

/// The links keep ext's MTU, and IP packets of 1400 bytes and of the full MTU cross whole
/// (don't-fragment set), IPv4 and IPv6, both directions.
fn full_size_packets_cross(setup: Setup) {
    let Some(r) = start("full_size_packets_cross", setup) else {
        return;
    };
    let mtu = |side: Side, name: &str| {
        let links = r.host(side).links().expect("links");
        links
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.mtu)
            .expect("the link")
    };
    for side in Side::BOTH {
        for (name, _) in LINKS {
            assert_eq!(
                mtu(side, name),
                mtu(side, EXT),
                "{setup:?}: {name}'s MTU on {side}"
            );
        }
    }
    let ext_mtu = mtu(Side::A, EXT) as usize;
    for (name, label) in LINKS {
        for kind in [AddressKind::Ipv4, AddressKind::Ipv6] {
            for from in Side::BOTH {
                let to = from.other();
                let target = planned(label, kind, to);
                let headers = if target.is_ipv4() { 20 + 8 } else { 40 + 8 };
                for size in [1400, ext_mtu] {
                    let receiver =
                        UdpReceiver::bind(r.host(to).end(name), target, 0).expect("bind");
                    let datagram = payload(size - headers);
                    let whole = SendOptions {
                        dont_fragment: true,
                        ..SendOptions::default()
                    };
                    send(
                        r.host(from).end(name),
                        target,
                        receiver.port(),
                        &datagram,
                        whole,
                    )
                    .unwrap_or_else(|e| panic!("{setup:?}: {e}"));
                    assert!(
                        receiver
                            .wait_for(&datagram, WAIT)
                            .expect("receive")
                            .is_some(),
                        "{setup:?}: a {size}-byte {kind} packet on {name} from {from} is lost"
                    );
                }
            }
        }
    }
}
for_each_setup!(full_size_packets_cross);

/// Sends a UDP datagram on ext from `from` to the other host's ext address of `kind`, with
/// `tos`; asserts it reaches ext there, from the sender's ext address, and no link.
fn ext_datagram(r: &Running, setup: Setup, from: Side, kind: AddressKind, tos: Option<u8>) {
    let to = from.other();
    let target = ext_address(kind, to);
    let what = format!("{setup:?}: {kind} on {EXT} from {from} to {target}, TOS {tos:?}");
    let right = UdpReceiver::bind(r.host(to).end(EXT), target, 0).expect("bind");
    let port = right.port();
    let wrong: Vec<(&str, UdpReceiver)> = LINKS
        .iter()
        .map(|&(name, _)| {
            let receiver = UdpReceiver::bind(r.host(to).end(name), any_of(target), port);
            (name, receiver.expect("bind on a link"))
        })
        .collect();
    let datagram = payload(150);
    let how = SendOptions {
        tos,
        ..SendOptions::default()
    };
    send(r.host(from).end(EXT), target, port, &datagram, how).expect("send");
    let source = right.wait_for(&datagram, WAIT).expect("receive");
    let source = source.unwrap_or_else(|| panic!("{what}: lost"));
    assert!(
        is_from(source.ip(), ext_address(kind, from)),
        "{what}: received from {source}"
    );
    for (name, receiver) in wrong {
        let got = receiver
            .wait_for(&datagram, Duration::ZERO)
            .expect("receive");
        assert!(got.is_none(), "{what}: reached link {name}");
    }
}

/// Traffic of ext's own, not l3mp's, still reaches ext's addresses and no link: unlabelled,
/// carrying a label no link uses, and even carrying a link's label (DSCP low bits set through
/// IP_TOS / IPV6_TCLASS; the sender's guard clears them). ICMP echo and TCP on ext work too.
/// Then, with l3mp stopped on A (so no guard there), what A sends with an unused label still
/// reaches B's ext: B's ingress passes unknown labels.
fn foreign_traffic_reaches_ext(setup: Setup) {
    let Some(mut r) = start("foreign_traffic_reaches_ext", setup) else {
        return;
    };
    let used_label = LINKS[0].1;
    for from in Side::BOTH {
        let to = from.other();
        let sender = r.host(from).end(EXT);
        for kind in AddressKind::ALL {
            for tos in [None, Some(UNUSED_LABEL << 2), Some(used_label << 2)] {
                ext_datagram(&r, setup, from, kind, tos);
            }
            let target = ext_address(kind, to);
            assert!(
                echo(sender, target, WAIT).expect("echo"),
                "{setup:?}: no echo reply from {target} on {EXT}"
            );
        }
        let target = ext_address(AddressKind::Ipv4, to);
        let received = transfer(sender, r.host(to).end(EXT), target, TCP_BYTES, WAIT)
            .unwrap_or_else(|e| panic!("{setup:?}: TCP on {EXT}: {e}"));
        assert_eq!(received, TCP_BYTES, "{setup:?}: TCP on {EXT}");
    }
    let on_a = r.daemons.remove(0);
    assert!(on_a.stop().status.success(), "{setup:?}: l3mp on A failed");
    for kind in AddressKind::ALL {
        ext_datagram(&r, setup, Side::A, kind, Some(UNUSED_LABEL << 2));
    }
}
for_each_setup!(foreign_traffic_reaches_ext);

/// The names of `host`'s links, sorted.
fn link_names(host: &Host) -> Vec<String> {
    let mut names: Vec<String> = host
        .links()
        .expect("links")
        .into_iter()
        .map(|l| l.name)
        .collect();
    names.sort();
    names
}

/// After SIGTERM, l3mp exits 0 and leaves no link, attached program, qdisc, filter, loaded
/// program, state file or pin behind.
fn sigterm_removes_everything(setup: Setup) {
    let Some(mut r) = start("sigterm_removes_everything", setup) else {
        return;
    };
    let (_, mode) = setup.ingress();
    let mut programs = BTreeSet::new();
    for side in Side::BOTH {
        let host = r.host(side);
        let names = link_names(host);
        for (name, label) in LINKS {
            for link in [name.to_string(), hidden_name(EXT, label)] {
                assert!(
                    names.contains(&link),
                    "{setup:?}: host {side} lacks {link}: {names:?}"
                );
            }
        }
        let mut attached = inspect::attached(host.netns(), EXT);
        let hook = if mode == "XDP" { Hook::Xdp } else { Hook::Tc };
        for program in [ingress_name(hook), GUARD] {
            assert!(
                attached.iter().any(|p| p.name == program),
                "{setup:?}: host {side}: {program} is not on {EXT}: {attached:?}"
            );
        }
        for (name, label) in LINKS {
            let on_link = inspect::attached(host.netns(), name);
            let egress = egress_name(label);
            assert!(
                on_link.iter().any(|p| p.name == egress),
                "{setup:?}: host {side}: {egress} is not on {name}: {on_link:?}"
            );
            attached.extend(on_link);
        }
        programs.extend(attached.iter().map(|p| p.id));
    }

    let pids: Vec<u32> = r.daemons.iter().map(Daemon::pid).collect();
    for &pid in &pids {
        assert!(
            !inspect::published(pid).is_empty(),
            "{setup:?}: l3mp {pid} published nothing"
        );
    }
    for daemon in r.daemons.drain(..) {
        let Finished { status, stderr, .. } = daemon.stop();
        assert!(
            status.success(),
            "{setup:?}: l3mp exited with {status} after SIGTERM: {stderr:?}"
        );
        // A far end not seen is said while it runs, not on the way out: where instances start
        // slowly (a guest without KVM), one may be up seconds before the other.
        let complaints: Vec<&String> = stderr
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.starts_with("l3mp: "))
            .filter(|l| !l.contains("far end not seen"))
            .collect();
        assert!(
            complaints.is_empty(),
            "{setup:?}: l3mp complained on the way out: {complaints:?}"
        );
    }

    for side in Side::BOTH {
        let host = r.host(side);
        assert_eq!(
            link_names(host),
            ["ext0", "lo"],
            "{setup:?}: links left on host {side}"
        );
        let attached = inspect::attached(host.netns(), EXT);
        assert!(
            attached.is_empty(),
            "{setup:?}: still attached on host {side}: {attached:?}"
        );
        let tc = inspect::tc_leftovers(host, EXT);
        assert!(
            tc.is_empty(),
            "{setup:?}: qdiscs or filters left on host {side}: {tc:?}"
        );
    }
    let loaded = inspect::still_loaded(&programs, Duration::from_secs(3));
    assert!(
        loaded.is_empty(),
        "{setup:?}: programs still loaded: {loaded:?}"
    );
    for pid in pids {
        let left = inspect::published(pid);
        assert!(left.is_empty(), "{setup:?}: state or pins left: {left:?}");
    }
}
for_each_setup!(sigterm_removes_everything);

/// The one line a refused invocation said, after checking that it failed and said one line
/// (apart from notes on the log: the first l3mp on a machine mounts the BPF filesystem and
/// says so, a start says what dead instances left).
fn refusal(out: &Finished) -> String {
    assert!(!out.status.success(), "succeeded: {out:#?}");
    let said: Vec<&String> = out
        .stderr
        .iter()
        .filter(|l| !l.starts_with("INFO "))
        .collect();
    assert_eq!(said.len(), 1, "not one line: {out:#?}");
    said[0].clone()
}

/// An invocation that must fail: exit status non-zero, exactly one line on stderr naming the
/// problem (`l3mp: ...` containing `expected`), and the host as it was before.
fn refused(host: &Host, args: &[&str], expected: &str) {
    let links_before = link_names(host);
    let out = run_to_exit(host, args);
    let line = refusal(&out);
    assert!(
        out.stdout.is_empty(),
        "l3mp {args:?}: more than the error: {out:?}"
    );
    assert!(
        line.starts_with("l3mp: ") && line.contains(expected),
        "l3mp {args:?}: {line:?} does not say {expected:?}"
    );
    assert_eq!(
        link_names(host),
        links_before,
        "l3mp {args:?} left links behind"
    );
    let attached = inspect::attached(host.netns(), EXT);
    assert!(
        attached.is_empty(),
        "l3mp {args:?} left programs on {EXT}: {attached:?}"
    );
    let tc = inspect::tc_leftovers(host, EXT);
    assert!(
        tc.is_empty(),
        "l3mp {args:?} left qdiscs or filters on {EXT}: {tc:?}"
    );
}

/// Invalid invocations exit non-zero with one clear line and leave nothing behind.
#[test]
fn invalid_invocations_fail_cleanly() {
    let test = "invalid_invocations_fail_cleanly";
    if !privileged(test, ExtKind::Tun) {
        return;
    }
    let tun = lab(Setup::TunTc);
    let host = tun.host(Side::A);
    refused(
        host,
        &["run", "--ext", EXT, "--if", "a@0"],
        "label must be 1 to 15",
    );
    refused(
        host,
        &["run", "--ext", EXT, "--if", "a@1", "--if", "b@1"],
        "label 1 is already used",
    );
    refused(
        host,
        &["run", "--ext", EXT, "--if", "lo@1"],
        "named lo already exists",
    );
    refused(
        host,
        &["run", "--ext", EXT, "--if", "a@1", "--peer", "10.99.0.2"],
        "drop --peer",
    );
    // Fails only after the links were created: they must be gone again.
    refused(
        host,
        &["run", "--ext", EXT, "--if", "a@1", "--ingress", "xdp"],
        "no native XDP",
    );

    let veth = lab(Setup::VethTc);
    let host = veth.host(Side::A);
    refused(host, &["run", "--ext", EXT, "--if", "a@1"], "needs --peer");
    let peer = ext_address(AddressKind::Ipv4, Side::B).to_string();
    let first = [
        "--ext",
        EXT,
        "--if",
        "a@1",
        "--ingress",
        "tc",
        "--peer",
        &peer,
    ];
    let running = Daemon::start(host, &first, &["a"], "TC");
    let links = link_names(host);
    let second = ["run", "--ext", EXT, "--if", "c@3", "--peer", &peer];
    let out = run_to_exit(host, &second);
    assert!(
        !out.status.success(),
        "a second instance on {EXT} started: {out:?}"
    );
    assert_eq!(out.stderr.len(), 1, "not one line: {out:?}");
    assert!(
        out.stderr[0].contains("already runs on it")
            && out.stderr[0].contains(&format!("pid {}", running.pid())),
        "{out:?}"
    );
    assert_eq!(
        link_names(host),
        links,
        "the second instance changed the links"
    );
    let finished = running.stop();
    assert!(
        finished.status.success(),
        "the first instance failed: {finished:?}"
    );
    assert_eq!(link_names(host), ["ext0", "lo"], "links left behind");
}
