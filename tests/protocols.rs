//! As root: what is not IPv4 or IPv6 to l3mp is left alone on ext, whatever its bytes look
//! like. VLAN-tagged frames from the peer on an Ethernet ext (TC and XDP ingress) never enter
//! a link; MPLS on a TUN ext is neither delivered into a link nor rewritten by the guard.

mod common;

#[path = "e2e/daemon.rs"]
#[allow(dead_code)] // shared with the e2e tests, which use more of it
mod daemon;
#[path = "e2e/sniff.rs"]
mod sniff;
#[path = "e2e/tos.rs"]
mod tos;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use l3mp::lab::{ext_address, AddressKind, ExtKind, Host, Lab, Side, EXT};

use daemon::Daemon;
use sniff::Sniffer;
use tos::TosReceiver;

/// Label 1 of 4 bits in the TOS byte.
const LABELLED_TOS: u8 = 0x04;
const WAIT: Duration = Duration::from_secs(3);
const SILENCE: Duration = Duration::from_millis(300);

/// A labelled IPv4 UDP datagram from `from` to `to:port` carrying `payload`, header
/// checksum valid, no UDP checksum.
fn labelled_ipv4(from: Ipv4Addr, to: Ipv4Addr, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut header = etherparse::Ipv4Header::new(
        (8 + payload.len()) as u16,
        64,
        etherparse::IpNumber::UDP,
        from.octets(),
        to.octets(),
    )
    .expect("a header");
    header.dscp = etherparse::Ipv4Dscp::try_new(LABELLED_TOS >> 2).expect("6 bits");
    header.header_checksum = header.calc_header_checksum();
    let mut packet = header.to_bytes().to_vec();
    packet.extend(40000u16.to_be_bytes());
    packet.extend(port.to_be_bytes());
    packet.extend(((8 + payload.len()) as u16).to_be_bytes());
    packet.extend([0, 0]);
    packet.extend(payload);
    packet
}

/// A packet socket on `host`'s `device` that sends whole frames (`SOCK_RAW`) or packets of
/// one protocol (`SOCK_DGRAM`, the link layer header left to the device).
fn packet_socket(host: &Host, device: &str, kind: libc::c_int, protocol: u16) -> OwnedFd {
    host.run(|| {
        // SAFETY: plain socket(2) and bind(2) calls on a zeroed sockaddr_ll.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, kind, i32::from(protocol.to_be()));
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            let fd = OwnedFd::from_raw_fd(fd);
            let name = std::ffi::CString::new(device).expect("a name");
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = protocol.to_be();
            addr.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            let rc = libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            fd
        }
    })
    .expect("enter the host")
}

fn send_on(fd: &OwnedFd, bytes: &[u8]) {
    // SAFETY: send(2) of a buffer we own on a bound socket.
    let sent = unsafe { libc::send(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
    assert_eq!(
        sent,
        bytes.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
}

/// A priority tag (VLAN 0) reaches the stack as an untagged frame would: A's own socket gets
/// it with its DSCP. VLAN 100 (A has no such VLAN) reaches no link either.
fn tagged_frames_from_the_peer_stay_out_of_the_link(ingress: &str, mode: &str) {
    if !common::can_build_hosts("tagged_frames_from_the_peer_stay_out_of_the_link") {
        return;
    }
    let lab = Lab::new("l3mp-vlan", ExtKind::Veth).expect("the lab");
    let (a, b) = (lab.host(Side::A), lab.host(Side::B));
    b.set_tx_checksum(EXT, false).expect("tx checksum off");
    let peer = ext_address(AddressKind::Ipv4, Side::B).to_string();
    let args = [
        "--ext",
        EXT,
        "--peer",
        &peer,
        "--if",
        "a@1",
        "--ingress",
        ingress,
    ];
    let daemon = Daemon::start(a, &args, &["a"], mode);
    let mac = |host: &Host| {
        let links = host.links().expect("links");
        links
            .iter()
            .find(|l| l.name == EXT)
            .and_then(|l| l.mac)
            .expect("a MAC")
    };
    let (a_mac, b_mac) = (mac(a), mac(b));
    let (IpAddr::V4(a_ip), IpAddr::V4(b_ip)) = (
        ext_address(AddressKind::Ipv4, Side::A),
        ext_address(AddressKind::Ipv4, Side::B),
    ) else {
        unreachable!("IPv4 addresses")
    };
    let receiver = TosReceiver::bind(a, a_ip, WAIT);
    let sniffer = Sniffer::open(a, "a");
    let raw = packet_socket(b, EXT, libc::SOCK_RAW, 0x0003);
    let frame = |vlan: u16, payload: &[u8]| {
        let ip = labelled_ipv4(b_ip, a_ip, receiver.port(), payload);
        [
            &a_mac[..],
            &b_mac,
            &[0x81, 0x00],
            &vlan.to_be_bytes(),
            &[0x08, 0x00],
            &ip,
        ]
        .concat()
    };
    let (priority, vlan100) = (b"priority-tagged".to_vec(), b"on VLAN 100".to_vec());
    send_on(&raw, &frame(100, &vlan100));
    send_on(&raw, &frame(0, &priority));
    assert_eq!(
        receiver.tos_of(&priority),
        Some(LABELLED_TOS),
        "{ingress}: the priority-tagged datagram did not reach A's stack with its DSCP"
    );
    assert_eq!(
        sniffer.seen(&[&priority, &vlan100], SILENCE),
        [false, false],
        "{ingress}: a tagged frame entered the link"
    );
    let status = daemon::status_with(Some(a), daemon.pid(), &["--ext", EXT]);
    let delivered = &daemon::link_status(&status, "a")["ingress"]["packets"];
    assert_eq!(delivered, 0, "{ingress}: {status:#}");
    drop(daemon);
}

#[test]
fn tagged_frames_tc() {
    tagged_frames_from_the_peer_stay_out_of_the_link("tc", "TC");
}

#[test]
fn tagged_frames_xdp() {
    tagged_frames_from_the_peer_stay_out_of_the_link("xdp", "XDP");
}

/// A network namespace of the test's own, deleted on drop.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

/// A TUN device `name` with packet information (so that each packet carries its protocol),
/// held open by the returned file.
fn tun_with_protocol(host: &Host, name: &str) -> File {
    host.run(|| {
        let file = File::options()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .expect("/dev/net/tun");
        // SAFETY: an all-zero ifreq is valid; TUNSETIFF reads and writes one.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (slot, &byte) in request.ifr_name.iter_mut().zip(name.as_bytes()) {
            *slot = byte as libc::c_char;
        }
        request.ifr_ifru.ifru_flags = libc::IFF_TUN as libc::c_short;
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut request) };
        assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        file
    })
    .expect("enter the host")
}

const ETH_P_MPLS_UC: u16 = 0x8847;

/// MPLS whose payload reads as a labelled IPv4 header: the demux does not deliver it and the
/// guard does not clear its "label".
#[test]
fn mpls_on_a_tun_ext_is_left_alone_both_ways() {
    if !common::can_build_hosts("mpls_on_a_tun_ext_is_left_alone_both_ways") {
        return;
    }
    let name = format!("l3mp-mpls-{}", std::process::id());
    ip(&["netns", "add", &name]);
    let _namespace = Namespace(name.clone());
    let host = Host::open(&name, Side::A).expect("the namespace");
    let mut tun = tun_with_protocol(&host, "tun0");
    ip(&["-n", &name, "link", "set", "tun0", "up"]);
    let args = ["--ext", "tun0", "--if", "a@1", "--ingress", "tc"];
    let daemon = Daemon::start(&host, &args, &["a"], "TC");
    let sniffer = Sniffer::open(&host, "a");
    // Bytes that read as a labelled IPv4 header.
    let ip_like = labelled_ipv4(
        Ipv4Addr::new(10, 5, 0, 1),
        Ipv4Addr::new(10, 5, 0, 2),
        5000,
        b"mpls payload",
    );
    // Received as MPLS, starting with what reads as a labelled IPv4 header (a version
    // nibble alone would take it for IPv4 on link 1).
    let info = |protocol: u16| [&[0u8, 0][..], &protocol.to_be_bytes()].concat();
    tun.write_all(&[info(ETH_P_MPLS_UC), ip_like.clone()].concat())
        .expect("inject into the TUN");
    assert_eq!(
        sniffer.seen(&[b"mpls payload"], SILENCE),
        [false],
        "MPLS received on the TUN ext entered the link"
    );

    // Sent as MPLS (a label stack entry: label 16, bottom of stack, TTL 64, then the same
    // bytes): the guard must leave them as they are.
    let mpls = packet_socket(&host, "tun0", libc::SOCK_DGRAM, ETH_P_MPLS_UC);
    let outbound = [&[0x00, 0x01, 0x01, 0x40][..], &ip_like].concat();
    send_on(&mpls, &outbound);
    let mut buffer = [0u8; 2048];
    let deadline = std::time::Instant::now() + WAIT;
    let mut left = None;
    // SAFETY: fcntl on the TUN's open descriptor.
    unsafe { libc::fcntl(tun.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    while left.is_none() && std::time::Instant::now() < deadline {
        match tun.read(&mut buffer) {
            Ok(len) if buffer[2..4] == ETH_P_MPLS_UC.to_be_bytes() => {
                left = Some(buffer[4..len].to_vec())
            }
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert_eq!(
        left,
        Some(outbound),
        "MPLS left the TUN ext changed (or not at all)"
    );
    let status = daemon::status_with(Some(&host), daemon.pid(), &["--ext", "tun0"]);
    let count = |path: [&str; 2]| {
        status["counters"][path[0]][path[1]]
            .as_u64()
            .expect("a count")
    };
    assert!(count(["pass", "packets"]) >= 1, "{status:#}");
    assert!(count(["guard_not_ip", "packets"]) >= 1, "{status:#}");
    assert_eq!(count(["guard", "packets"]), 0, "{status:#}");
    drop(daemon);
}
