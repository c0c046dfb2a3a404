//! Over a real WireGuard tunnel: wireguard-go's `wg0` in each of two hosts, joined by a veth
//! underlay (the lab's ext0), configured with wireguard-tools' `wg`, and the real `l3mp run
//! --ext wg0` on both. What a routing daemon needs crosses the links in both directions, wg0's
//! own traffic keeps working, and the links come back when wireguard-go is restarted (wg0
//! deleted and created again) without restarting l3mp.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use l3mp::lab::{
    echo, ext_address, link_addresses, payload, send, transfer, AddressKind, ExtKind, Host, Lab,
    SendOptions, Side, UdpReceiver, LINK_TIMEOUT,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::daemon::Daemon;
use super::inspect::tool;
use super::lifecycle::{ip, links_are, operstate};
use super::sniff::Sniffer;
use super::{privileged, LINKS, TCP_BYTES, WAIT};

/// The tunnel's name on both hosts.
pub(super) const WG: &str = "wg0";
/// wireguard-go's default MTU, which the links take.
const WG_MTU: usize = 1420;
/// The UDP port WireGuard listens on (each host has its own namespace).
const WG_PORT: u16 = 51820;
/// DSCP CS6 in the TOS / traffic class byte: what BIRD and FRR send BGP and OSPF with.
const CS6: u8 = 48 << 2;
/// How long traffic may take to come back once wg0 is back (a WireGuard handshake first).
const BACK: Duration = Duration::from_secs(15);

/// wg0's address of `kind` on `side` (the tunnel's own, not l3mp's).
fn wg_address(kind: AddressKind, side: Side) -> IpAddr {
    let n = if side == Side::A { 1 } else { 2 };
    match kind {
        AddressKind::Ipv4 => Ipv4Addr::new(10, 77, 0, n).into(),
        _ => Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, n.into()).into(),
    }
}

/// One host's WireGuard: its keys, and wireguard-go while it runs. Dropping it stops
/// wireguard-go (which deletes wg0) and removes the key file.
struct WireGuard {
    side: Side,
    key_file: PathBuf,
    public: String,
    process: Option<Child>,
}

impl WireGuard {
    /// A new key pair for `side`, the private key in a file of `dir` only root can read.
    fn new(side: Side, dir: &Path) -> WireGuard {
        let private = tool("wg", &["genkey"]);
        let mut pubkey = Command::new("wg")
            .arg("pubkey")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("wg pubkey");
        pubkey
            .stdin
            .take()
            .expect("stdin")
            .write_all(private.as_bytes())
            .expect("write the key");
        let out = pubkey.wait_with_output().expect("wg pubkey");
        assert!(out.status.success(), "wg pubkey: {out:?}");
        let key_file = dir.join(format!("{side}.key"));
        fs::write(&key_file, private.trim()).expect("write the key file");
        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).expect("chmod");
        WireGuard {
            side,
            key_file,
            public: String::from_utf8(out.stdout)
                .expect("a key")
                .trim()
                .to_string(),
            process: None,
        }
    }

    /// Starts wireguard-go on `host` and configures wg0 towards `peer` (its public key) at
    /// the other host's underlay address, with its addresses, up. wireguard-go runs in a mount
    /// namespace of its own (`ip netns exec` makes one) with a tmpfs on /run, where its UAPI
    /// socket goes, so that both hosts' can be called wg0.
    fn start(&mut self, host: &Host, peer: &str) {
        let script = "mount -t tmpfs tmpfs /run && exec wireguard-go wg0";
        let child = Command::new("ip")
            .args(["netns", "exec", host.name(), "sh", "-c", script])
            .env("WG_PROCESS_FOREGROUND", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wireguard-go");
        let pid = child.id();
        self.process = Some(child);
        // Its socket, seen through its own root.
        let socket = PathBuf::from(format!("/proc/{pid}/root/run/wireguard/{WG}.sock"));
        let deadline = Instant::now() + LINK_TIMEOUT;
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "host {}: wireguard-go made no {} within {LINK_TIMEOUT:?}",
                self.side,
                socket.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
        let endpoint = format!(
            "{}:{WG_PORT}",
            ext_address(AddressKind::Ipv4, self.side.other())
        );
        let key = self.key_file.display().to_string();
        let port = WG_PORT.to_string();
        tool(
            "nsenter",
            &[
                "--target",
                &pid.to_string(),
                "--mount",
                "wg",
                "set",
                WG,
                "private-key",
                &key,
                "listen-port",
                &port,
                "peer",
                peer,
                "allowed-ips",
                "0.0.0.0/0,::/0",
                "endpoint",
                &endpoint,
            ],
        );
        let addresses = [
            (wg_address(AddressKind::Ipv4, self.side), 24),
            (wg_address(AddressKind::Ipv6, self.side), 64),
        ];
        host.configure_link(WG, &addresses, LINK_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops wireguard-go (SIGTERM, as `wg-quick down` does), which deletes wg0.
    fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for WireGuard {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_file(&self.key_file);
    }
}

/// The two hosts, WireGuard on both and l3mp on both. Fields drop in order: l3mp first, then
/// wireguard-go, then the key directory, then the namespaces.
pub(super) struct Tunnel {
    /// A's, then B's.
    pub(super) daemons: Vec<Daemon>,
    wireguard: Vec<WireGuard>,
    _key_dir: KeyDir,
    lab: Lab,
}

/// A directory of its own for the keys, removed when dropped.
struct KeyDir(PathBuf);

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Tunnel {
    pub(super) fn host(&self, side: Side) -> &Host {
        self.lab.host(side)
    }

    /// Both hosts (A's first) and l3mp on each.
    pub(super) fn hosts_and_daemons(&mut self) -> ([&Host; 2], &mut [Daemon]) {
        let hosts = [self.lab.host(Side::A), self.lab.host(Side::B)];
        (hosts, &mut self.daemons)
    }

    fn index(side: Side) -> usize {
        if side == Side::A {
            0
        } else {
            1
        }
    }

    /// (Re)starts wireguard-go on `side`.
    fn start_wireguard(&mut self, side: Side) {
        let peer = self.wireguard[Tunnel::index(side.other())].public.clone();
        let host = self.lab.host(side);
        self.wireguard[Tunnel::index(side)].start(host, &peer);
    }
}

/// Whether wireguard-go and wg are installed; says why the test is skipped when not.
fn wireguard_installed(test: &str) -> bool {
    for program in ["wireguard-go", "wg", "nsenter"] {
        let found = Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            eprintln!(
                "skipped {test}: needs {program} (apt-get install wireguard-go wireguard-tools)"
            );
            return false;
        }
    }
    true
}

/// Builds the hosts, starts and configures WireGuard on both, then l3mp, and addresses the
/// links; `None` when skipped.
fn tunnel(test: &str) -> Option<Tunnel> {
    let mut args = vec!["--ext".to_string(), WG.to_string()];
    for (name, label) in LINKS {
        args.extend(["--if".to_string(), format!("{name}@{label}")]);
    }
    let t = tunnel_with(test, |_| args.clone())?;
    for side in Side::BOTH {
        for (name, label) in LINKS {
            t.host(side)
                .configure_link(name, &link_addresses(label, side), LINK_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    Some(t)
}

/// Builds the hosts, starts and configures WireGuard on both, then `l3mp run <args(side)>`
/// (on `wg0`, with `--if NAME@LABEL` links) on each; `None` when skipped.
pub(super) fn tunnel_with(test: &str, args: impl Fn(Side) -> Vec<String>) -> Option<Tunnel> {
    if !privileged(test, ExtKind::Tun) || !wireguard_installed(test) {
        return None;
    }
    let lab = Lab::new("l3mp-wg", ExtKind::Veth).unwrap_or_else(|e| panic!("the lab: {e}"));
    let key_dir = std::env::temp_dir().join(format!("l3mp-wg-{}-{}", std::process::id(), test));
    fs::create_dir_all(&key_dir).expect("key directory");
    let wireguard = Side::BOTH
        .iter()
        .map(|&side| WireGuard::new(side, &key_dir))
        .collect();
    let mut t = Tunnel {
        daemons: Vec::new(),
        wireguard,
        _key_dir: KeyDir(key_dir),
        lab,
    };
    for side in Side::BOTH {
        t.start_wireguard(side);
    }
    for side in Side::BOTH {
        let daemon = Daemon::start_owned(t.host(side), &args(side), "TC");
        t.daemons.push(daemon);
    }
    Some(t)
}

/// Sends one UDP datagram of `size` bytes of payload on `device` from `from` to `target`
/// (received at `to` by `receiver`, on `device` too), with `how`; returns the frame the far
/// end's device received, and checks the receiving socket got it from `source`, if given.
fn datagram(
    t: &Tunnel,
    device: &str,
    from: Side,
    target: IpAddr,
    receiver: &UdpReceiver,
    size: usize,
    how: SendOptions,
) -> Option<(IpAddr, Vec<u8>)> {
    let to = from.other();
    let sniffer = Sniffer::open(t.host(to), device);
    let data = payload(size);
    send(
        t.host(from).end(device),
        target,
        receiver.port(),
        &data,
        how,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let source = receiver.wait_for(&data, WAIT).expect("receive")?;
    let frame = sniffer.frames(&[&data], WAIT).remove(0)?;
    Some((source.ip(), frame))
}

/// The TOS / traffic class byte and the TTL / hop limit of the IP packet in an Ethernet
/// frame.
fn tos_and_ttl(frame: &[u8]) -> (u8, u8) {
    let ip = &frame[14..];
    match ip[0] >> 4 {
        4 => (ip[1], ip[8]),
        6 => ((ip[0] << 4) | (ip[1] >> 4), ip[7]),
        v => panic!("IP version {v} in {frame:02x?}"),
    }
}

/// Unicast over each link, both ways, to each kind of address (the far end's link-local one
/// is the kernel's): UDP arrives from the sender's address, with DSCP CS6 kept; TCP and echo
/// work.
fn unicast_crosses(t: &Tunnel, what: &str) {
    for (name, label) in LINKS {
        for kind in AddressKind::ALL {
            for from in Side::BOTH {
                let to = from.other();
                let address = |side: Side| {
                    t.host(side)
                        .link_address(name, label, kind)
                        .unwrap_or_else(|e| panic!("{e}"))
                };
                let target = address(to);
                let case = format!("{what}: {kind} on {name} from {from} to {target}");
                let receiver = UdpReceiver::bind(t.host(to).end(name), target, 0).expect("bind");
                let cs6 = SendOptions {
                    tos: Some(CS6),
                    ..SendOptions::default()
                };
                let (source, frame) = datagram(t, name, from, target, &receiver, 200, cs6)
                    .unwrap_or_else(|| panic!("{case}: the datagram is lost"));
                assert_eq!(source, address(from), "{case}: from {source}");
                assert_eq!(tos_and_ttl(&frame).0, CS6, "{case}: DSCP CS6 not kept");

                let sender = t.host(from).end(name);
                let received = transfer(sender, t.host(to).end(name), target, TCP_BYTES, WAIT)
                    .unwrap_or_else(|e| panic!("{case}: TCP: {e}"));
                assert_eq!(received, TCP_BYTES, "{case}: TCP bytes");
                assert!(echo(sender, target, WAIT).expect("echo"), "{case}: no echo");
            }
        }
    }
}

/// UDP over wg0 itself, both ways, and echo: the tunnel's own traffic.
fn wg_traffic_crosses(t: &Tunnel, what: &str) {
    for kind in [AddressKind::Ipv4, AddressKind::Ipv6] {
        for from in Side::BOTH {
            let target = wg_address(kind, from.other());
            let receiver =
                UdpReceiver::bind(t.host(from.other()).end(WG), target, 0).expect("bind");
            let data = payload(100);
            send(
                t.host(from).end(WG),
                target,
                receiver.port(),
                &data,
                SendOptions::default(),
            )
            .expect("send");
            let source = receiver.wait_for(&data, WAIT).expect("receive");
            assert_eq!(
                source.map(|s| s.ip()),
                Some(wg_address(kind, from)),
                "{what}: wg0's own {kind} from {from}"
            );
            assert!(
                echo(t.host(from).end(WG), target, WAIT).expect("echo"),
                "{what}: no echo on wg0 to {target}"
            );
        }
    }
}

/// Over wireguard-go's wg0: unicast of every kind (link-local included), OSPF's multicast
/// groups with TTL / hop limit 1, DSCP CS6, TCP, packets of the links' full MTU with DF set,
/// all in both directions; wg0's own traffic; and after wireguard-go is restarted on A (wg0
/// deleted and created again), the same links carry traffic again, with the same link-local
/// addresses, l3mp still running.
#[test]
fn over_wireguard_go() {
    let Some(mut t) = tunnel("over_wireguard_go") else {
        return;
    };
    let (name, label) = LINKS[0];
    for side in Side::BOTH {
        let links = t.host(side).links().expect("links");
        let mtu = |n: &str| links.iter().find(|l| l.name == n).map(|l| l.mtu as usize);
        assert_eq!(mtu(WG), Some(WG_MTU), "wg0's MTU on {side}");
        for (link, _) in LINKS {
            assert_eq!(mtu(link), Some(WG_MTU), "{link}'s MTU on {side}");
        }
    }
    unicast_crosses(&t, "wg0");
    wg_traffic_crosses(&t, "wg0");

    // What OSPF (224.0.0.5, ff02::5) and babel-like protocols (ff02::1:6) send: link-scoped
    // multicast with TTL / hop limit 1, in CS6.
    let groups: [IpAddr; 3] = [
        Ipv4Addr::new(224, 0, 0, 5).into(),
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 6).into(),
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 5).into(),
    ];
    for group in groups {
        for from in Side::BOTH {
            let to = from.other();
            let receiver = UdpReceiver::join(t.host(to).end(name), group, 0).expect("join");
            let cs6 = SendOptions {
                tos: Some(CS6),
                ..SendOptions::default()
            };
            let case = format!("{group} on {name} from {from}");
            let (source, frame) = datagram(&t, name, from, group, &receiver, 120, cs6)
                .unwrap_or_else(|| panic!("{case}: lost"));
            let expected = t
                .host(from)
                .link_address(name, label, kind_of(group))
                .expect("the sender's address");
            assert_eq!(source, expected, "{case}: from {source}");
            assert_eq!(tos_and_ttl(&frame), (CS6, 1), "{case}: TOS and TTL");
        }
    }

    // The largest packet the links take (their MTU, wg0's) crosses whole with DF set; one
    // byte more is refused at the sender.
    for kind in [AddressKind::Ipv4, AddressKind::Ipv6] {
        let headers = if kind == AddressKind::Ipv4 { 28 } else { 48 };
        for from in Side::BOTH {
            let to = from.other();
            let target = t.host(to).link_address(name, label, kind).expect("address");
            let receiver = UdpReceiver::bind(t.host(to).end(name), target, 0).expect("bind");
            let whole = SendOptions {
                dont_fragment: true,
                ..SendOptions::default()
            };
            let case = format!("{WG_MTU}-byte {kind} packet on {name} from {from}");
            let (_, frame) = datagram(&t, name, from, target, &receiver, WG_MTU - headers, whole)
                .unwrap_or_else(|| panic!("{case}: lost"));
            assert_eq!(frame.len(), 14 + WG_MTU, "{case}: not whole");
            let too_big = payload(WG_MTU - headers + 1);
            let refused = send(t.host(from).end(name), target, 9, &too_big, whole);
            assert!(refused.is_err(), "{case}: one byte more was sent");
        }
    }

    // wg-quick down / up: wg0 goes, comes back with a new ifindex; l3mp follows.
    let own = |t: &Tunnel| -> Vec<Ipv6Addr> {
        LINKS
            .iter()
            .map(|(n, _)| {
                t.host(Side::A)
                    .link_local(n, LINK_TIMEOUT)
                    .expect("address")
            })
            .collect()
    };
    let own_before = own(&t);
    t.wireguard[0].stop();
    let gone = t.daemons[0].wait_for_line(&format!("{WG} (ifindex"), WAIT);
    assert!(
        gone.is_some_and(|l| l.contains("is gone")),
        "{}",
        t.daemons[0].transcript()
    );
    t.start_wireguard(Side::A);
    let back = t.daemons[0].wait_for_line("is back", WAIT);
    assert!(back.is_some(), "{}", t.daemons[0].transcript());
    // The first datagrams wait for WireGuard's handshake: A, whose state is new, sends first.
    unicast_crosses_within(&t, name, label, "wg0 coming back");
    assert_eq!(own(&t), own_before, "the link-local addresses changed");
    unicast_crosses(&t, "wg0 back");
    wg_traffic_crosses(&t, "wg0 back");
    for daemon in t.daemons.drain(..) {
        let finished = daemon.stop();
        assert!(finished.status.success(), "l3mp: {finished:?}");
    }
}

/// Over WireGuard, links behave like the point-to-point interfaces they stand in for: while
/// wireguard-go is stopped on A (wg0 deleted) A's links show no carrier, and have it again when
/// it is back; an MTU set above wg0's on a link is set back; and a SIGKILL of l3mp on A and a
/// new start keep the links (ifindex, addresses) and what crosses them.
#[test]
fn links_over_wireguard_follow_it_and_survive_a_restart() {
    let Some(mut t) = tunnel("links_over_wireguard_follow_it_and_survive_a_restart") else {
        return;
    };
    let (name, label) = LINKS[0];
    links_are(t.host(Side::A), true, "at start");
    t.wireguard[0].stop();
    links_are(t.host(Side::A), false, "wireguard-go stopped");
    t.start_wireguard(Side::A);
    let back = t.daemons[0].wait_for_line("is back", WAIT);
    assert!(back.is_some(), "{}", t.daemons[0].transcript());
    links_are(t.host(Side::A), true, "wireguard-go back");
    unicast_crosses_within(&t, name, label, "wg0 back");

    // wireguard-go makes wg0 with an MTU of 1500 and sets 1420 right after. When l3mp sees
    // that change after ours, it gives the links wg0's MTU without a word (the same end
    // state); then, and only then, 1450 is set again, and this time it must be said.
    let above = format!("{name}: MTU 1450 is above");
    let mut said = None;
    for attempt in 0..2 {
        ip(
            t.host(Side::A),
            &["link", "set", "dev", name, "mtu", "1450"],
        );
        said = t.daemons[0].wait_for_line(&above, WAIT);
        if said.is_some() {
            break;
        }
        let followed = t.daemons[0]
            .lines()
            .iter()
            .any(|l| l.contains(&format!("{WG}'s MTU is {WG_MTU}: so is that of")));
        let mtu = t
            .host(Side::A)
            .wait_link(name, LINK_TIMEOUT)
            .map(|l| l.mtu)
            .ok();
        assert!(
            attempt == 0 && followed && mtu == Some(WG_MTU as u32),
            "{name}'s MTU 1450 neither said nor followed (MTU now {mtu:?}): {}",
            t.daemons[0].transcript()
        );
    }
    assert!(
        said.is_some_and(|l| l.contains(&format!("set back to {WG_MTU}"))),
        "{}",
        t.daemons[0].transcript()
    );

    let seen = |t: &Tunnel| {
        let link = t
            .host(Side::A)
            .wait_link(name, LINK_TIMEOUT)
            .expect("the link");
        let addresses = ip(t.host(Side::A), &["-br", "addr", "show", "dev", name]);
        (link.index, link.mac, link.mtu, addresses)
    };
    let before = seen(&t);
    assert_eq!(before.2, WG_MTU as u32, "set back");
    let names: Vec<&str> = LINKS.iter().map(|(n, _)| *n).collect();
    let links: Vec<String> = LINKS.iter().map(|(n, l)| format!("{n}@{l}")).collect();
    let mut args = vec!["--ext", WG];
    for link in &links {
        args.extend(["--if", link.as_str()]);
    }
    t.daemons.remove(0).kill();
    let mut again = Daemon::start(t.host(Side::A), &args, &names, "TC");
    let adopted = again.wait_for_line(&format!("adopted {name} (label {label}"), WAIT);
    assert!(adopted.is_some(), "{}", again.transcript());
    t.daemons.insert(0, again);
    assert_eq!(seen(&t), before, "the link changed over the restart");
    assert_eq!(operstate(t.host(Side::A), name), "up");
    unicast_crosses_within(&t, name, label, "after a SIGKILL and a new start");
    for daemon in t.daemons.drain(..) {
        let finished = daemon.stop();
        assert!(finished.status.success(), "l3mp: {finished:?}");
    }
}

/// A datagram sent over link `name` from A arrives on B within [`BACK`] (tries again every
/// 300 ms: a WireGuard handshake may come first).
fn unicast_crosses_within(t: &Tunnel, name: &str, label: u8, what: &str) {
    let target = t
        .host(Side::B)
        .link_address(name, label, AddressKind::Ipv4)
        .expect("address");
    let receiver = UdpReceiver::bind(t.host(Side::B).end(name), target, 0).expect("bind");
    let deadline = Instant::now() + BACK;
    loop {
        let data = payload(64);
        let how = SendOptions::default();
        send(
            t.host(Side::A).end(name),
            target,
            receiver.port(),
            &data,
            how,
        )
        .expect("send");
        let waited = receiver.wait_for(&data, Duration::from_millis(300));
        if waited.expect("receive").is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: nothing crossed {name} within {BACK:?}"
        );
    }
}

/// The address family's kind of `group`'s sender address on a link: IPv4, or for an IPv6
/// link-scoped group the link-local address the kernel picks as its source.
fn kind_of(group: IpAddr) -> AddressKind {
    match group {
        IpAddr::V4(_) => AddressKind::Ipv4,
        IpAddr::V6(_) => AddressKind::Ipv6LinkLocal,
    }
}
