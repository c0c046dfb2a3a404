//! Links that behave like the point-to-point interfaces they stand in for: their carrier
//! follows ext's (read as routing daemons read it, the link's operstate), and their MTU is
//! never above ext's, and a restart (after a crash, or a hand-over for an upgrade) keeps them.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use l3mp::lab::{
    link_address, payload, send, AddressKind, ExtKind, Host, SendOptions, Side, UdpReceiver, EXT,
};
use l3mp::run::hidden_name;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::daemon::{status, Daemon};
use super::inspect::{self, tool};
use super::service::{link_works, PROMPTLY};
use super::{run_args, start, Running, Setup, LINKS, SILENCE, TCP_BYTES, WAIT};

/// The planned IPv4 address of the link with `label` on `side`.
fn v4(label: u8, side: Side) -> IpAddr {
    link_address(label, AddressKind::Ipv4, side).expect("an IPv4 address is planned")
}

/// `ip -n <host> <args>`.
pub(crate) fn ip(host: &Host, args: &[&str]) -> String {
    let mut all = vec!["-n", host.name()];
    all.extend(args);
    tool("ip", &all)
}

/// The operstate of `link` on `host`, as the kernel publishes it in sysfs (read in the host's
/// namespace, where `ip netns exec` mounts its own /sys).
pub(crate) fn operstate(host: &Host, link: &str) -> String {
    let path = format!("/sys/class/net/{link}/operstate");
    tool("ip", &["netns", "exec", host.name(), "cat", &path])
        .trim()
        .to_string()
}

/// Waits (at most [`PROMPTLY`]) until every managed link on `host` is `up` or, if not `up`,
/// not; panics saying `what` and the states seen otherwise.
pub(crate) fn links_are(host: &Host, up: bool, what: &str) {
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
    let flags = ip(r.host(Side::A), &["-o", "link", "show", "dev", LINKS[0].0]);
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
    link_works(
        &r,
        name,
        label,
        Side::A,
        &format!("{setup:?} after down and up"),
    );

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
    link_works(
        &r,
        name,
        label,
        Side::A,
        &format!("{setup:?} after {EXT} came back"),
    );
}
for_each_setup!(links_follow_the_carrier_of_ext);

/// Waits (at most [`PROMPTLY`]) until both ends of every link on `host` have MTU `mtu`.
fn link_mtus_are(host: &Host, mtu: u32, what: &str) {
    let ends: Vec<String> = LINKS
        .iter()
        .flat_map(|&(name, label)| [name.to_string(), hidden_name(EXT, label)])
        .collect();
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let mtus: Vec<(String, u32)> = host
            .links()
            .expect("links")
            .into_iter()
            .filter(|l| ends.contains(&l.name))
            .map(|l| (l.name, l.mtu))
            .collect();
        if mtus.len() == ends.len() && mtus.iter().all(|(_, m)| *m == mtu) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: on {}, MTU {mtu} not there within {PROMPTLY:?}: {mtus:?}",
            host.side()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether one UDP datagram of an IPv4 packet of `size` bytes, sent with DF over link `name`
/// from A, arrives on B.
fn crosses(r: &Running, name: &str, label: u8, size: usize) -> bool {
    let target = v4(label, Side::B);
    let receiver = UdpReceiver::bind(r.host(Side::B).end(name), target, 0).expect("bind");
    let datagram = payload(size - 28);
    let how = SendOptions {
        dont_fragment: true,
        ..SendOptions::default()
    };
    send(
        r.host(Side::A).end(name),
        target,
        receiver.port(),
        &datagram,
        how,
    )
    .expect("send");
    receiver
        .wait_for(&datagram, SILENCE)
        .expect("receive")
        .is_some()
}

/// ext's MTU lowered to 1420: the links follow and a packet of 1420 bytes crosses. A link's
/// MTU then set to 1450 (while l3mp is stopped, so that a packet can be sent at it first): the
/// 1450-byte packet (DF) does not cross and is counted `too_big`, and once l3mp runs again the
/// MTU is set back to 1420 and said.
fn a_link_mtu_above_ext_is_set_back_and_what_is_longer_counted(setup: Setup) {
    let Some(mut r) = start("a_link_mtu_above_ext_is_set_back", setup) else {
        return;
    };
    let (name, label) = LINKS[0];
    let egress_on = |r: &Running| inspect::attached(r.host(Side::A).netns(), name);
    let before = egress_on(&r);
    for side in Side::BOTH {
        r.host(side).set_mtu(EXT, 1420).expect("set ext's MTU");
    }
    for side in Side::BOTH {
        link_mtus_are(
            r.host(side),
            1420,
            &format!("{setup:?}: {EXT}'s MTU lowered"),
        );
    }
    // The programs bake MTU 1420 in now: they are generated and attached again.
    let at = Instant::now();
    while egress_on(&r) == before {
        assert!(
            at.elapsed() < 3 * PROMPTLY,
            "{setup:?}: the programs were not generated again for MTU 1420:\n{}",
            r.daemons[0].transcript()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // Both ends' programs are attached again (B's for its own ext's change) within a moment.
    while !crosses(&r, name, label, 1420) {
        assert!(
            at.elapsed() < 3 * PROMPTLY,
            "{setup:?}: a packet of {EXT}'s MTU does not cross"
        );
    }

    let pid = r.daemons[0].pid();
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
    ip(
        r.host(Side::A),
        &["link", "set", "dev", name, "mtu", "1450"],
    );
    let crossed = crosses(&r, name, label, 1450);
    kill(Pid::from_raw(pid as i32), Signal::SIGCONT).expect("SIGCONT");
    assert!(!crossed, "{setup:?}: 1450 bytes crossed an ext of MTU 1420");
    let said = r.daemons[0].wait_for_line(&format!("{name}: MTU 1450 is above"), PROMPTLY);
    assert!(
        said.is_some_and(|l| l.contains("set back to 1420")),
        "{setup:?}: not set back:\n{}",
        r.daemons[0].transcript()
    );
    link_mtus_are(r.host(Side::A), 1420, &format!("{setup:?}: set back"));
    let now = status(None, pid);
    assert_eq!(
        now["counters"]["too_big"]["packets"], 1,
        "{setup:?}: {now:#}"
    );
    assert_eq!(
        now["counters"]["too_big"]["bytes"],
        1450 + 14,
        "{setup:?}: counted as the link sent it: {now:#}"
    );
    assert!(crosses(&r, name, label, 1420), "{setup:?}: after");
}
for_each_setup!(a_link_mtu_above_ext_is_set_back_and_what_is_longer_counted);

/// The most datagrams of a [`Stream`] over a link lost while its sender's l3mp is SIGKILLed
/// and started again: 50 ms of them, for a replacement that takes a few (without the filter
/// it would be everything sent until the new instance attached, 0.2 s and more).
const SIGKILL_LOSS: u128 = 25;

/// Between two datagrams of a [`Stream`].
const STREAM_INTERVAL: Duration = Duration::from_millis(2);

/// Numbered datagrams over a link from A to B every [`STREAM_INTERVAL`], on threads of their
/// own, until stopped: how many were sent and which arrived.
struct Stream {
    stop: Arc<AtomicBool>,
    sender: JoinHandle<u32>,
    receiver: JoinHandle<BTreeSet<u32>>,
}

impl Stream {
    fn start(r: &Running, label: u8) -> Stream {
        let source = v4(label, Side::A);
        let target = v4(label, Side::B);
        let bind = |host: &Host, address: IpAddr| {
            host.run(|| UdpSocket::bind((address, 0)))
                .expect("enter the host")
                .expect("bind")
        };
        let (tx, rx) = (bind(r.host(Side::A), source), bind(r.host(Side::B), target));
        let port = rx.local_addr().expect("bound").port();
        rx.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let sender = thread::spawn(move || {
            let mut sent = 0u32;
            while !stopped.load(Ordering::Relaxed) {
                // A send may fail while the link has no route (it does not here): not sent.
                if tx.send_to(&sent.to_be_bytes(), (target, port)).is_ok() {
                    sent += 1;
                }
                thread::sleep(STREAM_INTERVAL);
            }
            sent
        });
        let stopped = Arc::clone(&stop);
        let receiver = thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let mut buf = [0u8; 16];
            let mut quiet_since_stop = 0;
            while quiet_since_stop < 10 {
                match rx.recv(&mut buf) {
                    Ok(4) => {
                        seen.insert(u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")));
                    }
                    Ok(_) => {}
                    Err(_) if stopped.load(Ordering::Relaxed) => quiet_since_stop += 1,
                    Err(_) => {}
                }
            }
            seen
        });
        Stream {
            stop,
            sender,
            receiver,
        }
    }

    /// Stops; how many were sent, and how many of them were lost.
    fn stop(self) -> (u32, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.join().expect("the sender");
        let seen = self.receiver.join().expect("the receiver");
        (sent, (0..sent).filter(|n| !seen.contains(n)).count())
    }
}

/// What routing daemons see of link `name` on `host`: its ifindex and MAC, its addresses and
/// its routes (both families), as `ip` prints them.
fn link_as_seen(host: &Host, name: &str) -> (u32, Option<[u8; 6]>, String, String, String) {
    let link = host
        .links()
        .expect("links")
        .into_iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no {name} on {}", host.side()));
    let without_lifetimes = |text: String| {
        text.lines()
            .map(|l| l.split("\\").next().unwrap_or(l).trim().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    (
        link.index,
        link.mac,
        without_lifetimes(ip(host, &["-o", "addr", "show", "dev", name])),
        ip(host, &["-4", "route", "show", "dev", name]),
        ip(host, &["-6", "route", "show", "dev", name]),
    )
}

/// A TCP connection over link `name` from A to B: both ends.
fn connect(r: &Running, label: u8) -> (TcpStream, TcpStream) {
    let target = v4(label, Side::B);
    let listener = r
        .host(Side::B)
        .run(|| TcpListener::bind((target, 0)))
        .expect("enter B")
        .expect("listen");
    let port = listener.local_addr().expect("bound").port();
    let client = r
        .host(Side::A)
        .run(|| TcpStream::connect_timeout(&(target, port).into(), WAIT))
        .expect("enter A")
        .expect("connect");
    let (server, _) = listener.accept().expect("accept");
    for end in [&client, &server] {
        end.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
    }
    (client, server)
}

/// `bytes` from `from` arrive whole at `to` (written on a thread of its own, so that neither
/// side waits for the other).
fn carries(from: &TcpStream, to: &mut TcpStream, bytes: usize, what: &str) {
    let sent = payload(bytes);
    let mut writer = from.try_clone().expect("clone");
    let written = sent.clone();
    let writing = thread::spawn(move || writer.write_all(&written));
    let mut got = vec![0; bytes];
    to.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{what}: reading: {e}"));
    writing
        .join()
        .expect("the writer")
        .unwrap_or_else(|e| panic!("{what}: writing: {e}"));
    assert!(got == sent, "{what}: other bytes arrived");
}

/// l3mp on A is SIGKILLed and started again (a crash and `Restart=on-failure`), then handed
/// over for an upgrade (SIGUSR2, exit status 75) and started again, while numbered datagrams
/// flow over link `a` and a TCP connection is open over it. Each start adopts the links: the
/// same ifindex, MAC, addresses and routes; the TCP connection carries data both ways after
/// each; the datagrams lost are few (the figure is printed). After the SIGKILL, what the
/// link sends keeps crossing: its egress filter stays until the new start replaces it, so
/// only [`SIGKILL_LOSS`] datagrams at most are lost, however long no l3mp ran.
fn restarts_adopt_the_links(setup: Setup) {
    let Some(mut r) = start("restarts_adopt_the_links", setup) else {
        return;
    };
    let (name, label) = LINKS[0];
    let before: Vec<_> = LINKS
        .iter()
        .map(|(name, _)| link_as_seen(r.host(Side::A), name))
        .collect();
    let (mut client, mut server) = connect(&r, label);
    carries(
        &client,
        &mut server,
        TCP_BYTES,
        &format!("{setup:?} before"),
    );
    let args = run_args(setup, Side::A);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let names: Vec<&str> = LINKS.iter().map(|(n, _)| *n).collect();
    let mode = setup.ingress().1;

    for how in ["SIGKILL", "SIGUSR2"] {
        let stream = Stream::start(&r, label);
        thread::sleep(50 * STREAM_INTERVAL);
        let old = r.daemons.remove(0);
        let gone = Instant::now();
        let ended = match how {
            "SIGKILL" => old.kill(),
            _ => old.signal(Signal::SIGUSR2),
        };
        if how == "SIGUSR2" {
            assert_eq!(ended.status.code(), Some(75), "{setup:?}: {ended:#?}");
            assert!(
                ended.stderr.iter().any(|l| l.contains(&format!(
                    "leaving {name} (label {label}, ifindex {}) for the next l3mp",
                    before[0].0
                ))),
                "{setup:?}: {ended:#?}"
            );
        }
        let mut new = Daemon::start(r.host(Side::A), &args, &names, mode);
        let gap = gone.elapsed();
        for (name, label) in LINKS {
            let said = new.wait_for_line(&format!("adopted {name} (label {label}"), PROMPTLY);
            assert!(
                said.is_some(),
                "{setup:?} after {how}: {name} not adopted:\n{}",
                new.transcript()
            );
        }
        r.daemons.insert(0, new);
        thread::sleep(50 * STREAM_INTERVAL);
        let (sent, lost) = stream.stop();
        eprintln!(
            "{setup:?}, {how} and start again ({gap:?} without l3mp): {lost} of {sent} \
             datagrams lost, one every {STREAM_INTERVAL:?}"
        );
        let after: Vec<_> = LINKS
            .iter()
            .map(|(name, _)| link_as_seen(r.host(Side::A), name))
            .collect();
        assert_eq!(after, before, "{setup:?} after {how}: the links changed");
        carries(
            &client,
            &mut server,
            TCP_BYTES,
            &format!("{setup:?} after {how}, A to B"),
        );
        carries(
            &server,
            &mut client,
            TCP_BYTES,
            &format!("{setup:?} after {how}, B to A"),
        );
        // Bounded: what was sent while no l3mp ran, and a second more; after a SIGKILL, what
        // is sent while the new start replaces the link's filter.
        let bound = match how {
            "SIGKILL" => SIGKILL_LOSS,
            _ => (gap + PROMPTLY).as_millis() / STREAM_INTERVAL.as_millis(),
        };
        assert!(
            (lost as u128) <= bound,
            "{setup:?} after {how}: {lost} of {sent} lost, more than {bound}"
        );
        link_works(&r, name, label, Side::B, &format!("{setup:?} after {how}"));
    }
}
for_each_setup!(restarts_adopt_the_links);
