//! A VLAN subinterface as ext (`--ext p.100`), as an operator who gives l3mp one VLAN of a
//! trunk would. Needs the kernel's 8021q; this machine's kernel has none, so the case skips
//! here and runs in the old-kernel guest (`old_kernel::debian_12_kernel`), whose kernel has
//! it as a module.
//!
//! Two hosts joined by a veth, VLAN 100 and VLAN 200 on it, and the untagged parent addressed
//! too. l3mp runs on VLAN 100 on both. The kernel takes the tag off before VLAN 100's TC
//! ingress (and puts it on after its egress), so the programs see plain IP frames there:
//! what a link sends crosses in VLAN 100 and arrives on the far link; what the hosts send with
//! a label's DSCP on VLAN 200 or untagged is theirs, untouched, and never enters a link.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use l3mp::lab::{payload, send, ExtKind, Host, SendOptions, Side, UdpReceiver, LINK_TIMEOUT};

use super::daemon::{self, Daemon};
use super::old_kernel::is_guest;
use super::sniff::Sniffer;
use super::tos::TosReceiver;
use super::{privileged, SILENCE, WAIT};

/// The trunk on both hosts; l3mp's ext is its VLAN 100.
const TRUNK: &str = "p";
const EXT_VLAN: &str = "p.100";
const OTHER_VLAN: &str = "p.200";
const LINK: &str = "m1";
/// Label 1 of 4 bits: TOS 0x04 (DSCP 1).
const LABELLED_TOS: u8 = 0x04;

/// Host `n`'s (1 or 2) address on the network `net` (100 and 200: those VLANs; 50: the
/// untagged parent; 78: the link).
fn address(net: u8, n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, net, 0, n)
}

/// `ip` with `args`; whether it succeeded (its output on stderr if not).
fn ip(args: &[&str]) -> bool {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    if !out.status.success() {
        eprintln!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

/// Namespaces `<stem>-1` and `-2`, joined by a veth, deleted (with everything in them) on
/// drop.
struct Trunk {
    stem: String,
}

impl Trunk {
    fn ns(&self, n: u8) -> String {
        format!("{}-{n}", self.stem)
    }

    /// The two hosts with VLANs 100 and 200 on the trunk and everything addressed; `None` if
    /// the kernel cannot make VLAN devices (no 8021q).
    fn new() -> Option<Trunk> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let stem = format!(
            "l3mp-vlan-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let trunk = Trunk { stem };
        let (one, two) = (trunk.ns(1), trunk.ns(2));
        for ns in [&one, &two] {
            assert!(ip(&["netns", "add", ns]));
            assert!(ip(&["-n", ns, "link", "set", "lo", "up"]));
        }
        assert!(ip(&[
            "-n", &one, "link", "add", TRUNK, "type", "veth", "peer", "name", TRUNK, "netns", &two,
        ]));
        for (n, ns) in [(1u8, &one), (2, &two)] {
            for (vlan, id) in [(EXT_VLAN, "100"), (OTHER_VLAN, "200")] {
                let made = ip(&[
                    "-n", ns, "link", "add", "link", TRUNK, "name", vlan, "type", "vlan", "id", id,
                ]);
                if !made {
                    return None;
                }
            }
            for (device, net) in [(TRUNK, 50u8), (EXT_VLAN, 100), (OTHER_VLAN, 200)] {
                let cidr = format!("{}/24", address(net, n));
                assert!(ip(&["-n", ns, "addr", "add", &cidr, "dev", device]));
                assert!(ip(&["-n", ns, "link", "set", device, "up"]));
            }
        }
        Some(trunk)
    }

    fn host(&self, n: u8) -> Host {
        let side = if n == 1 { Side::A } else { Side::B };
        Host::open(&self.ns(n), side).expect("the namespace opens")
    }
}

impl Drop for Trunk {
    fn drop(&mut self) {
        for n in [1, 2] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .status();
        }
    }
}

#[test]
fn a_vlan_subinterface_serves_as_ext() {
    let test = "a_vlan_subinterface_serves_as_ext";
    if !privileged(test, ExtKind::Veth) {
        return;
    }
    let Some(trunk) = Trunk::new() else {
        // The guest's kernel has the module (its script loads it): not a reason to skip there.
        assert!(!is_guest(), "no VLAN devices in the old-kernel guest");
        eprintln!("skipped {test}: this kernel cannot make VLAN devices (no 8021q)");
        return;
    };
    let (one, two) = (trunk.host(1), trunk.host(2));
    // Nothing of the links' own (router solicitations, MLD) on what the sniffer watches.
    for host in [&one, &two] {
        host.set_sysctl("ipv6/conf/default/disable_ipv6", "1")
            .expect("sysctl");
    }
    let daemons: Vec<Daemon> = [(&one, 2u8), (&two, 1u8)]
        .iter()
        .map(|(host, peer)| {
            let peer = address(100, *peer).to_string();
            let args = ["--ext", EXT_VLAN, "--peer", &peer, "--if", "m1@1"];
            Daemon::start(host, &args, &[LINK], "TC")
        })
        .collect();
    for (host, n) in [(&one, 1u8), (&two, 2)] {
        let link = (IpAddr::V4(address(78, n)), 24);
        host.configure_link(LINK, &[link], LINK_TIMEOUT)
            .expect("address the link");
    }

    // Over the link: labelled in VLAN 100 on the way, cleared on arrival.
    let over_link = UdpReceiver::bind(one.end(LINK), address(78, 1).into(), 0).expect("bind");
    let datagram = payload(120);
    send(
        two.end(LINK),
        address(78, 1).into(),
        over_link.port(),
        &datagram,
        SendOptions::default(),
    )
    .expect("send over the link");
    assert!(
        over_link
            .wait_for(&datagram, WAIT)
            .expect("receive")
            .is_some(),
        "a datagram over the link did not cross VLAN 100: {}",
        daemon::status(Some(&one), daemons[0].pid())
    );

    // The hosts' own labelled traffic in VLAN 200 and untagged: theirs, DSCP and all.
    let sniffer = Sniffer::open(&one, LINK);
    let labelled = SendOptions {
        tos: Some(LABELLED_TOS),
        ..SendOptions::default()
    };
    for (net, what) in [(200u8, "VLAN 200"), (50, "untagged")] {
        let receiver = TosReceiver::bind(&one, address(net, 1), WAIT);
        let own = payload(100 + usize::from(net));
        send(
            two.end(TRUNK),
            address(net, 1).into(),
            receiver.port(),
            &own,
            labelled,
        )
        .expect("send on the trunk");
        assert_eq!(
            receiver.tos_of(&own),
            Some(LABELLED_TOS),
            "{what}: a labelled datagram did not reach the host's own socket untouched"
        );
        assert_eq!(
            sniffer.seen(&[&own], SILENCE),
            [false],
            "{what}: a labelled datagram entered the link"
        );
    }
    drop(daemons);
}
