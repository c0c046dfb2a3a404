//! Tests of the netlink handle against the kernel, each in its own namespaces.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use super::*;
use crate::sys::test_support::{privileged, test_namespace};

/// A veth end with a kernel-chosen MAC.
fn end<'a>(name: &'a str, alias: &'a str) -> VethEnd<'a> {
    VethEnd {
        name,
        alias,
        mac: None,
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address literal")
}

#[test]
fn veth_pair_is_created_configured_and_deleted() {
    if !privileged("veth_pair_is_created_configured_and_deleted") {
        return;
    }
    let netns = test_namespace("veth");
    netns
        .run(|| {
            let netlink = Netlink::new().expect("netlink");
            let (a, b) = netlink
                .create_veth(
                    &VethEnd {
                        mac: Some([0x02, 0xaa, 0, 0, 0, 1]),
                        ..end("l3v0", "l3mp link a")
                    },
                    &VethEnd {
                        mac: Some([0x02, 0xaa, 0, 0, 1, 1]),
                        ..end("l3v0p", "l3mp peer a")
                    },
                    1400,
                )
                .expect("create the pair");
            assert_eq!((a.name.as_str(), b.name.as_str()), ("l3v0", "l3v0p"));
            for link in [&a, &b] {
                assert_eq!(link.kind.as_deref(), Some("veth"), "{link:?}");
                assert_eq!(link.mtu, 1400, "{link:?}");
                assert!(
                    !link.up && link.is_ethernet && link.mac.is_some(),
                    "created down: {link:?}"
                );
            }
            netlink.set_up(b.index).expect("up");
            netlink.set_up(a.index).expect("up");
            // The named end gets its EUI-64 link-local address (at once: it is NOARP, so no
            // duplicate address detection); the peer none at all.
            let eui64: IpAddr = ip("fe80::aa:ff:fe00:1");
            let deadline = Instant::now() + Duration::from_secs(3);
            let addresses = loop {
                let addresses = netlink.addresses().expect("addresses");
                if addresses.iter().any(|x| x.index == a.index) || Instant::now() > deadline {
                    break addresses;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            let of = |index| -> Vec<IpAddr> {
                addresses
                    .iter()
                    .filter(|x| x.index == index)
                    .map(|x| x.address)
                    .collect()
            };
            assert_eq!(of(a.index), [eui64], "{addresses:?}");
            assert!(
                of(b.index).is_empty(),
                "the peer has no address: {addresses:?}"
            );
            assert_eq!(a.mac, Some([0x02, 0xaa, 0, 0, 0, 1]));
            assert_eq!(b.mac, Some([0x02, 0xaa, 0, 0, 1, 1]));
            assert!(a.noarp && !b.noarp, "only the named end is NOARP");
            assert_eq!(a.alias.as_deref(), Some("l3mp link a"));
            assert_eq!(b.alias.as_deref(), Some("l3mp peer a"));
            let b_now = netlink.link_by_index(b.index).expect("lookup");
            assert_eq!(b_now.map(|l| (l.up, l.mac)), Some((true, b.mac)));

            netlink.set_mtu(a.index, 1300).expect("set the MTU");
            let mtu = netlink.link("l3v0").expect("lookup").map(|link| link.mtu);
            assert_eq!(mtu, Some(1300));

            let names: Vec<String> = netlink
                .links()
                .expect("dump")
                .into_iter()
                .map(|l| l.name)
                .collect();
            assert!(
                names.contains(&"l3v0".into()) && names.contains(&"l3v0p".into()),
                "{names:?}"
            );

            netlink.delete_link("l3v0").expect("delete");
            assert_eq!(netlink.link("l3v0").expect("lookup"), None);
            assert_eq!(
                netlink.link_by_index(b.index).expect("lookup"),
                None,
                "the peer goes too"
            );
        })
        .expect("enter the namespace");
}

#[test]
fn failed_veth_setup_leaves_nothing_behind_and_says_why() {
    if !privileged("failed_veth_setup_leaves_nothing_behind_and_says_why") {
        return;
    }
    let netns = test_namespace("vethfail");
    netns
        .run(|| {
            let netlink = Netlink::new().expect("netlink");
            let too_long = "x".repeat(300);
            let error = netlink
                .create_veth(&end("l3v1", &too_long), &end("l3v1p", ""), 1500)
                .expect_err("an alias over 255 bytes is refused");
            assert!(error.to_string().contains("\"l3v1\""), "{error}");
            assert_eq!(netlink.link("l3v1").expect("lookup"), None, "rolled back");
            assert_eq!(netlink.link("l3v1p").expect("lookup"), None, "rolled back");

            netlink
                .create_veth(&end("l3v2", ""), &end("l3v2p", ""), 1500)
                .expect("create");
            let error = netlink
                .create_veth(&end("l3v2", ""), &end("l3v3p", ""), 1500)
                .expect_err("the name is taken");
            assert_eq!(error.errno(), Some(libc::EEXIST), "{error}");
            assert!(error.to_string().contains("\"l3v2\"/\"l3v3p\""), "{error}");
            assert!(
                netlink.link("l3v2").expect("lookup").is_some(),
                "the first pair stays"
            );
            let error = netlink.delete_link(999_999).expect_err("no such link");
            assert!(
                error.to_string().starts_with("deleting link 999999"),
                "{error}"
            );
        })
        .expect("enter the namespace");
}

#[test]
fn neighbours_resolve_across_a_veth_between_namespaces() {
    if !privileged("neighbours_resolve_across_a_veth_between_namespaces") {
        return;
    }
    let near = test_namespace("near");
    let far = test_namespace("far");
    let (netlink, link) = near
        .run(|| {
            let netlink = Netlink::new().expect("netlink");
            let (link, peer) = netlink
                .create_veth(&end("l3n0", ""), &end("l3n0p", ""), 1500)
                .expect("create");
            netlink.set_noarp(link.index, false).expect("ARP back on");
            netlink.set_up(link.index).expect("up");
            netlink
                .move_to_netns(peer.index, &far)
                .expect("move the peer away");
            assert_eq!(
                netlink.link("l3n0p").expect("lookup"),
                None,
                "the peer left"
            );
            for (address, prefix) in [("10.77.1.1", 29), ("fd00:77::1", 64), ("fe80::77:1", 64)] {
                netlink
                    .add_address(link.index, ip(address), prefix)
                    .expect("address");
            }
            (netlink, link)
        })
        .expect("enter near");
    let far_mac = far
        .run(|| {
            let netlink = Netlink::new().expect("netlink");
            let peer = netlink
                .link("l3n0p")
                .expect("lookup")
                .expect("the peer arrived");
            netlink.set_up(peer.index).expect("up again after the move");
            for (address, prefix) in [("10.77.1.2", 29), ("fd00:77::2", 64), ("fe80::77:2", 64)] {
                netlink
                    .add_address(peer.index, ip(address), prefix)
                    .expect("address");
            }
            peer.mac.expect("a veth has a MAC")
        })
        .expect("enter far");

    near.run(move || {
        assert_eq!(
            netlink
                .neighbour(link.index, ip("10.77.1.2"))
                .expect("lookup"),
            None
        );
        for address in ["10.77.1.2", "fd00:77::2", "fe80::77:2"] {
            let mac = netlink
                .resolve_neighbour(link.index, "l3n0", ip(address), Duration::from_secs(3))
                .unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(mac, far_mac, "{address}");
            let cached = netlink.neighbour(link.index, ip(address)).expect("lookup");
            assert_eq!(cached, Some(far_mac), "{address}");
        }
        let started = Instant::now();
        let error = netlink
            .resolve_neighbour(
                link.index,
                "l3n0",
                ip("10.77.1.3"),
                Duration::from_millis(300),
            )
            .expect_err("nobody has 10.77.1.3");
        assert!(started.elapsed() >= Duration::from_millis(300));
        let text = error.to_string();
        assert!(
            text.contains("10.77.1.3") && text.contains("l3n0"),
            "{text}"
        );
        assert!(text.contains("check that the peer is up"), "{text}");
    })
    .expect("enter near");
}

/// Reads events until one satisfies `wanted`; panics after `timeout`.
fn wait_for(
    watcher: &mut LinkWatcher,
    what: &str,
    wanted: impl Fn(&LinkEvent) -> bool,
) -> LinkEvent {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    while let Some(remaining) = deadline.checked_duration_since(Instant::now()) {
        match watcher.next(remaining).expect("read events") {
            Some(event) if wanted(&event) => return event,
            Some(event) => seen.push(event),
            None => break,
        }
    }
    panic!("no event for {what}; saw {seen:?}");
}

#[test]
fn link_watcher_sees_a_link_deleted_and_recreated() {
    if !privileged("link_watcher_sees_a_link_deleted_and_recreated") {
        return;
    }
    let netns = test_namespace("watch");
    netns
        .run(|| {
            let netlink = Netlink::new().expect("netlink");
            let mut watcher = Netlink::watch_links().expect("subscribe");
            let named =
                |event: &LinkEvent| matches!(event, LinkEvent::New(link) if link.name == "l3w0");
            let (first, _) = netlink
                .create_veth(&end("l3w0", ""), &end("l3w0p", ""), 1500)
                .expect("create");
            wait_for(&mut watcher, "creation", named);

            netlink.delete_link(first.index).expect("delete");
            let deleted = LinkEvent::Deleted {
                index: first.index,
                name: "l3w0".into(),
            };
            wait_for(&mut watcher, "deletion", |event| *event == deleted);

            let (second, _) = netlink
                .create_veth(&end("l3w0", "again"), &end("l3w0p", ""), 1500)
                .expect("create");
            let LinkEvent::New(seen) = wait_for(&mut watcher, "re-creation", named) else {
                unreachable!("the predicate only accepts New");
            };
            assert_eq!(seen.index, second.index);
            assert_ne!(second.index, first.index, "a new link, not the old one");
        })
        .expect("enter the namespace");
}

#[test]
fn link_watcher_times_out_when_nothing_happens() {
    if !privileged("link_watcher_times_out_when_nothing_happens") {
        return;
    }
    let netns = test_namespace("quiet");
    let mut watcher = netns
        .run(Netlink::watch_links)
        .expect("enter")
        .expect("subscribe");
    let started = Instant::now();
    let event = watcher.next(Duration::from_millis(150)).expect("wait");
    assert_eq!(event, None);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
}
