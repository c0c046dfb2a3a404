//! Golden cases, table-driven in the style of Katran's test fixtures: each case is a row
//! (`golden/row.rs`) of a configuration, a program and the bytes it is given, and the verdict,
//! redirect target, bytes and counter slot it must produce. `tests/golden/cases.txt` holds a
//! row per behaviour for a reader; the tests below sweep the same rows over every label width
//! and ext kind. Expected packets are built from their fields with etherparse (label bits set
//! or cleared by plain arithmetic, checksum computed from scratch); nothing expected comes from
//! running a program. `L3MP_CASE=<text>` runs only the matching cases; a failure prints each
//! failing row with the command that runs it alone and a fuzz seed of its packet.

mod common;
#[path = "golden/row.rs"]
mod row;

use std::rc::Rc;

use common::packets::*;
use common::{
    ext_kinds, hidden_ifindex, hidden_mac, link_mac, variants, Setup, EXT_IFINDEX, EXT_MAC,
    EXT_MTU, PEER_MAC,
};
use l3mp::programs::layout::{
    EGRESS, EGRESS_DROP, FOREIGN, GUARDED, GUARD_NOT_IP, PASS, TOO_BIG, UNKNOWN,
};
use l3mp::programs::{self, Config, ExtKind, Hook, Unknown};
use l3mp::vm;
use row::{
    check, hook_of, parse_rows, run_cases, Case, Recorded, TC_REDIRECT, TC_SHOT, TC_UNSPEC,
    XDP_DROP, XDP_PASS, XDP_REDIRECT,
};

/// Verdicts per hook: (pass, drop, redirect).
fn verdicts(hook: Hook) -> (i32, i32, i32) {
    match hook {
        Hook::Tc => (TC_UNSPEC, TC_SHOT, TC_REDIRECT),
        Hook::Xdp => (XDP_PASS, XDP_DROP, XDP_REDIRECT),
    }
}

const HOOKS: [Hook; 2] = [Hook::Tc, Hook::Xdp];

fn setup(cfg: Config) -> Rc<Setup> {
    Rc::new(Setup::new(cfg))
}

/// Every label of width `bits` in use, unknown labels passed.
fn all_labels(bits: u8, kind: ExtKind) -> Rc<Setup> {
    Rc::new(Setup::all_labels(bits, kind, Unknown::Pass))
}

/// What the ext device sees for an IP packet: the bare packet on L3, a frame from the peer on
/// Ethernet.
fn on_ext(s: &Setup, ethertype: u16, ip: &[u8]) -> Vec<u8> {
    if s.ethernet() {
        ether(EXT_MAC, PEER_MAC, ethertype, ip)
    } else {
        ip.to_vec()
    }
}

/// Offset of the IP header in what ext's ingress sees.
fn ext_ip_offset(s: &Setup) -> usize {
    if s.ethernet() {
        ETH_LEN
    } else {
        0
    }
}

/// Egress of `label` sends `ip` (from the link's stack, to `dst_mac`): it leaves on ext with
/// the label in DSCP.
fn egress_case(name: &str, s: &Rc<Setup>, label: u8, ip: &Ip, dst_mac: [u8; 6]) -> Case {
    let bits = s.cfg.label_bits;
    let input = ether(dst_mac, link_mac(label), ip.ethertype(), &ip.bytes());
    let (dst, src) = if s.ethernet() {
        (PEER_MAC, EXT_MAC)
    } else {
        (dst_mac, link_mac(label))
    };
    let output = ether(
        dst,
        src,
        ip.ethertype(),
        &ip.with_label(bits, label).bytes(),
    );
    Case {
        name: format!("egress {name} {} label {label}", ip.family()),
        setup: s.clone(),
        program: programs::egress_name(label),
        input,
        verdict: TC_REDIRECT,
        redirect: Some(EXT_IFINDEX),
        output,
        slot: Some(EGRESS + u32::from(label)),
        skb: None,
        probe: None,
    }
}

/// Ingress at `hook` receives `ip` carrying `label`: it is delivered into the link's hidden end
/// with the label cleared, as a frame from the hidden end to the link, and counted nowhere
/// (the link counts what it receives).
fn ingress_case(name: &str, s: &Rc<Setup>, hook: Hook, label: u8, ip: &Ip) -> Case {
    let bits = s.cfg.label_bits;
    let input = on_ext(s, ip.ethertype(), &ip.with_label(bits, label).bytes());
    let output = ether(
        link_mac(label),
        hidden_mac(label),
        ip.ethertype(),
        &ip.with_label(bits, 0).bytes(),
    );
    Case {
        name: format!("ingress {name} {} label {label} {hook:?}", ip.family()),
        setup: s.clone(),
        program: programs::ingress_name(hook).to_string(),
        input,
        verdict: verdicts(hook).2,
        redirect: Some(hidden_ifindex(label)),
        output,
        slot: None,
        skb: None,
        probe: None,
    }
}

/// Ingress at `hook` leaves `input` alone with `verdict`, counting it at `slot`.
fn ingress_untouched(
    name: &str,
    s: &Rc<Setup>,
    hook: Hook,
    input: Vec<u8>,
    verdict: i32,
    slot: u32,
) -> Case {
    Case {
        name: format!("ingress {name} {hook:?}"),
        setup: s.clone(),
        program: programs::ingress_name(hook).to_string(),
        output: input.clone(),
        input,
        verdict,
        redirect: None,
        slot: Some(slot),
        skb: None,
        probe: None,
    }
}

/// Egress of `label` drops `input` untouched.
fn egress_drop(name: &str, s: &Rc<Setup>, label: u8, input: Vec<u8>) -> Case {
    Case {
        name: format!("egress {name} label {label}"),
        setup: s.clone(),
        program: programs::egress_name(label),
        output: input.clone(),
        input,
        verdict: TC_SHOT,
        redirect: None,
        slot: Some(EGRESS_DROP),
        skb: None,
        probe: None,
    }
}

/// A v4 packet whose DSCP/ECN have bits on both sides of any label width.
fn v4_base() -> Ip {
    Ip::V4(V4 {
        dscp: 0b10_1010,
        ecn: 2,
        ..V4::default()
    })
}

/// A v6 packet whose traffic class has bits on both sides of any label width.
fn v6_base() -> Ip {
    Ip::V6(V6 {
        traffic_class: 0b01_0101 << 2 | 1,
        ..V6::default()
    })
}

/// IPv4 options of `len` bytes: a Record Route option padded with End of Options.
fn options(len: usize) -> Vec<u8> {
    assert!(len.is_multiple_of(4) && (4..=40).contains(&len));
    if len == 4 {
        return vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    }
    let mut out = vec![7, (len - 1) as u8, 4];
    out.resize(len, 0);
    out[len - 1] = 0;
    out[len - 2] = 0;
    out
}

fn v4_with_ihl(ihl: usize) -> Ip {
    Ip::V4(V4 {
        dscp: 0b11_0000,
        ecn: 1,
        options: if ihl > 5 {
            options((ihl - 5) * 4)
        } else {
            Vec::new()
        },
        ..V4::default()
    })
}

fn v6_with_ext() -> Ip {
    Ip::V6(V6 {
        traffic_class: 0b10_0000 << 2 | 3,
        hop_by_hop: Some(HOP_BY_HOP_PADN.to_vec()),
        ..V6::default()
    })
}

#[test]
fn every_label_of_every_width() {
    let mut cases = Vec::new();
    for bits in 1..=6u8 {
        for kind in ext_kinds() {
            let s = all_labels(bits, kind);
            for label in 1..=s.cfg.max_label() {
                for ip in [v4_base(), v6_base()] {
                    cases.push(egress_case("", &s, label, &ip, GATEWAY_MAC));
                    for hook in HOOKS {
                        cases.push(ingress_case("", &s, hook, label, &ip));
                    }
                }
            }
        }
    }
    run_cases("every label of every width", &cases);
}

#[test]
fn sparse_label_sets_deliver_each_configured_label() {
    let mut cases = Vec::new();
    for cfg in variants() {
        let s = setup(cfg);
        let labels: Vec<u8> = s.cfg.links.iter().map(|l| l.label).collect();
        for label in labels {
            for ip in [v4_base(), v6_base()] {
                cases.push(egress_case("sparse", &s, label, &ip, GATEWAY_MAC));
                for hook in HOOKS {
                    cases.push(ingress_case("sparse", &s, hook, label, &ip));
                }
            }
        }
    }
    run_cases("sparse label sets", &cases);
}

#[test]
fn ipv4_options_and_ipv6_extension_headers() {
    let mut cases = Vec::new();
    for bits in 1..=6u8 {
        for kind in ext_kinds() {
            let s = all_labels(bits, kind);
            let labels = [1, s.cfg.max_label()];
            for label in labels {
                for (name, ip) in [
                    ("ihl6", v4_with_ihl(6)),
                    ("ihl15", v4_with_ihl(15)),
                    ("hop-by-hop", v6_with_ext()),
                ] {
                    assert_eq!(ip.bytes().len(), ip.header_len() + 12, "builder lengths");
                    cases.push(egress_case(name, &s, label, &ip, GATEWAY_MAC));
                    for hook in HOOKS {
                        cases.push(ingress_case(name, &s, hook, label, &ip));
                    }
                }
            }
        }
    }
    run_cases("IPv4 options, IPv6 extension header", &cases);
}

#[test]
fn ecn_is_never_touched() {
    let mut cases = Vec::new();
    for bits in 1..=6u8 {
        for kind in ext_kinds() {
            let s = all_labels(bits, kind);
            for label in [1, s.cfg.max_label()] {
                for ecn in 0..4 {
                    for ip in [v4_base(), v6_base(), v4_with_ihl(15), v6_with_ext()] {
                        // Every DSCP bit set and every DSCP bit clear, under every ECN value.
                        for dscp in [0, 63] {
                            let ip = ip.with_dscp(dscp).with_ecn(ecn);
                            let name = format!("ecn {ecn} dscp {dscp}");
                            cases.push(egress_case(&name, &s, label, &ip, GATEWAY_MAC));
                            for hook in HOOKS {
                                cases.push(ingress_case(&name, &s, hook, label, &ip));
                            }
                        }
                    }
                }
            }
        }
    }
    run_cases("ECN", &cases);
}

#[test]
fn cs6_survives_the_round_trip_for_narrow_labels() {
    let mut cases = Vec::new();
    for bits in 1..=4u8 {
        for kind in ext_kinds() {
            let s = all_labels(bits, kind);
            for label in 1..=s.cfg.max_label() {
                for ip in [v4_base(), v6_base(), v6_with_ext()] {
                    let sent = ip.with_dscp(CS6);
                    let eg = egress_case("cs6", &s, label, &sent, GATEWAY_MAC);
                    // What the far ext's ingress then sees: on L3 the kernel strips the MAC
                    // header; on Ethernet the far end's MAC is our peer's, and the other way.
                    let wire = if s.ethernet() {
                        l3mp::roundtrip::at_the_mirror(&eg.output)
                    } else {
                        eg.output[ETH_LEN..].to_vec()
                    };
                    let wire_ip = &wire[ext_ip_offset(&s)..];
                    assert_eq!(
                        dscp_ecn(wire_ip).map(|(d, _)| d),
                        Some(CS6 | label),
                        "label bits sit under CS6"
                    );
                    cases.push(eg);
                    for hook in HOOKS {
                        let expected = ether(
                            link_mac(label),
                            hidden_mac(label),
                            sent.ethertype(),
                            &sent.bytes(),
                        );
                        assert_eq!(dscp_ecn(&expected[ETH_LEN..]).map(|(d, _)| d), Some(CS6));
                        cases.push(Case {
                            name: format!("cs6 back {} label {label} {hook:?}", sent.family()),
                            setup: s.clone(),
                            program: programs::ingress_name(hook).to_string(),
                            input: wire.clone(),
                            verdict: verdicts(hook).2,
                            redirect: Some(hidden_ifindex(label)),
                            output: expected,
                            slot: None,
                            skb: None,
                            probe: None,
                        });
                    }
                }
            }
        }
    }
    run_cases("CS6 round trip", &cases);
}

/// A v4 packet whose header checksum, computed from scratch with `dscp`, is `target`.
fn v4_with_checksum(dscp: u8, target: u16) -> Option<Ip> {
    (0..=u16::MAX).find_map(|identification| {
        let p = V4 {
            dscp,
            ecn: 1,
            identification,
            ..V4::default()
        };
        (p.header().header_checksum == target).then_some(Ip::V4(p))
    })
}

#[test]
fn ipv4_checksum_edge_values() {
    // The one's complement sum has two zeros; from scratch, 0x0000 is a checksum and 0xffff is
    // not. Incremental updates must land on the from-scratch value.
    let mut cases = Vec::new();
    let mut found = 0;
    for bits in [1u8, 3, 6] {
        for kind in ext_kinds() {
            let s = all_labels(bits, kind);
            for label in [1, s.cfg.max_label()] {
                for target in [0x0000, 0x0001, 0xfffe, 0x8000, 0x7fff] {
                    // Unlabelled packet with the edge checksum (egress input, ingress output)...
                    let unlabelled = v4_with_checksum(0b10_0000, target);
                    // ...and one whose labelled form has it (egress output, ingress input).
                    let labelled = (0..=u16::MAX).find_map(|identification| {
                        let p = Ip::V4(V4 {
                            dscp: 0b10_0000,
                            ecn: 1,
                            identification,
                            ..V4::default()
                        });
                        let Ip::V4(l) = p.with_label(bits, label) else {
                            unreachable!()
                        };
                        (l.header().header_checksum == target).then_some(p)
                    });
                    for ip in [unlabelled, labelled].into_iter().flatten() {
                        found += 1;
                        let name = format!("checksum edge {target:#06x}");
                        cases.push(egress_case(&name, &s, label, &ip, GATEWAY_MAC));
                        for hook in HOOKS {
                            cases.push(ingress_case(&name, &s, hook, label, &ip));
                        }
                    }
                }
            }
        }
    }
    assert!(found >= 48, "edge packets found: {found}");
    run_cases("IPv4 checksum edges", &cases);
}

#[test]
fn non_ip_frames() {
    let mut cases = Vec::new();
    for cfg in variants() {
        let s = setup(cfg);
        let label = s.cfg.links[0].label;
        let arp = ether(
            [0xff; 6],
            link_mac(label),
            ETHERTYPE_ARP,
            &arp_request(link_mac(label)),
        );
        let mut tagged_v4 = vec![0x00, 0x05, 0x08, 0x00]; // VLAN 5, then IPv4
        tagged_v4.extend(v4_base().with_label(s.cfg.label_bits, label).bytes());
        let vlan = ether(GATEWAY_MAC, link_mac(label), ETHERTYPE_VLAN, &tagged_v4);
        cases.push(egress_drop("arp", &s, label, arp.clone()));
        cases.push(egress_drop("vlan", &s, label, vlan.clone()));
        for hook in HOOKS {
            let pass = verdicts(hook).0;
            if s.ethernet() {
                let arp_in = ether([0xff; 6], PEER_MAC, ETHERTYPE_ARP, &arp_request(PEER_MAC));
                let vlan_in = ether(EXT_MAC, PEER_MAC, ETHERTYPE_VLAN, &tagged_v4);
                cases.push(ingress_untouched("arp", &s, hook, arp_in, pass, PASS));
                cases.push(ingress_untouched("vlan", &s, hook, vlan_in, pass, PASS));
            } else {
                // Version nibbles that are not IP, on packets otherwise labelled IPv4/IPv6.
                for (ip, version) in [
                    (v4_base(), 5),
                    (v4_base(), 0),
                    (v6_base(), 15),
                    (v6_base(), 7),
                ] {
                    let mut bytes = ip.with_label(s.cfg.label_bits, label).bytes();
                    bytes[0] = version << 4 | (bytes[0] & 15);
                    let name = format!("version {version}");
                    cases.push(ingress_untouched(&name, &s, hook, bytes, pass, PASS));
                }
                let arp_body = arp_request(PEER_MAC);
                cases.push(ingress_untouched(
                    "arp body", &s, hook, arp_body, pass, PASS,
                ));
            }
        }
    }
    run_cases("non-IP", &cases);
}

#[test]
fn truncated_headers() {
    let mut cases = Vec::new();
    let mut lengths_tried = 0;
    for bits in [1u8, 4, 6] {
        for kind in ext_kinds() {
            let s = all_labels(bits, kind);
            let label = s.cfg.max_label();
            for (name, ip) in [
                ("v4", v4_base()),
                ("v4 ihl15", v4_with_ihl(15)),
                ("v6", v6_base()),
                // The programs read only the fixed IPv6 header; the extension header is payload.
                ("v6 hop-by-hop", v6_with_ext()),
            ] {
                let fixed = match ip {
                    Ip::V4(_) => ip.header_len(),
                    Ip::V6(_) => 40,
                };
                // Egress: a frame from the link, cut anywhere inside its headers, is dropped;
                // cut just after them it goes out.
                let full = egress_case(name, &s, label, &ip, GATEWAY_MAC);
                let end = ETH_LEN + fixed;
                for len in 0..end {
                    let cut = format!("{name} cut at {len}");
                    cases.push(egress_drop(&cut, &s, label, full.input[..len].to_vec()));
                }
                cases.push(Case {
                    name: format!("{} cut at {end}", full.name),
                    input: full.input[..end].to_vec(),
                    output: full.output[..end].to_vec(),
                    ..full
                });
                // Ingress: passed untouched until the headers are whole.
                for hook in HOOKS {
                    let full = ingress_case(name, &s, hook, label, &ip);
                    let end = ext_ip_offset(&s) + fixed;
                    for len in 0..end {
                        let cut = format!("{name} cut at {len}");
                        let input = full.input[..len].to_vec();
                        cases.push(ingress_untouched(
                            &cut,
                            &s,
                            hook,
                            input,
                            verdicts(hook).0,
                            PASS,
                        ));
                    }
                    let out_len = end - ext_ip_offset(&s) + ETH_LEN;
                    cases.push(Case {
                        name: format!("{} cut at {end}", full.name),
                        input: full.input[..end].to_vec(),
                        output: full.output[..out_len].to_vec(),
                        ..full
                    });
                    lengths_tried += end + 1;
                }
            }
        }
    }
    assert!(lengths_tried > 1000);
    run_cases("truncated headers", &cases);
}

#[test]
fn malformed_ihl() {
    let mut cases = Vec::new();
    for bits in [1u8, 3, 6] {
        for kind in ext_kinds() {
            let s = all_labels(bits, kind);
            let label = s.cfg.max_label();
            let labelled = |ihl: u8, payload_len: usize| {
                let mut p = V4 {
                    payload: vec![0x5a; payload_len],
                    ..V4::default()
                };
                p.dscp = dscp_with_label(0b10_0000, bits, label);
                let mut bytes = p.bytes();
                bytes[0] = 0x40 | ihl;
                bytes
            };
            let mut bad = Vec::new();
            // IHL below 5, with plenty of data after.
            for ihl in 0..5 {
                bad.push((format!("ihl {ihl}"), labelled(ihl, 60)));
            }
            // IHL pointing one byte, or far, beyond the data.
            for ihl in 6..=15u8 {
                let words = usize::from(ihl) * 4;
                bad.push((
                    format!("ihl {ihl} one byte short"),
                    labelled(ihl, words - 20 - 1),
                ));
                bad.push((format!("ihl {ihl} no options"), labelled(ihl, 0)));
            }
            for (name, ip) in bad {
                cases.push(egress_drop(
                    &name,
                    &s,
                    label,
                    ether(GATEWAY_MAC, link_mac(label), ETHERTYPE_IPV4, &ip),
                ));
                for hook in HOOKS {
                    let input = on_ext(&s, ETHERTYPE_IPV4, &ip);
                    cases.push(ingress_untouched(
                        &name,
                        &s,
                        hook,
                        input,
                        verdicts(hook).0,
                        PASS,
                    ));
                }
            }
        }
    }
    run_cases("malformed IHL", &cases);
}

#[test]
fn version_not_matching_the_ethertype() {
    let mut cases = Vec::new();
    // Labels that leave the v6 header's first byte reading as IHL 5.
    for (bits, label) in [(3u8, 5u8), (6, 21)] {
        for kind in ext_kinds() {
            let s = all_labels(bits, kind);
            // A v6 packet whose first byte also reads as a plausible IPv4 IHL (5), and a v4
            // packet long enough to hold an IPv6 header.
            let v6 = Ip::V6(V6 {
                traffic_class: 0b01_0000 << 2,
                ..V6::default()
            })
            .with_label(bits, label)
            .bytes();
            assert_eq!(v6[0] & 15, 5);
            let v4 = Ip::V4(V4 {
                payload: vec![0xa5; 40],
                ..V4::default()
            })
            .with_label(bits, label)
            .bytes();
            for (name, ethertype, ip) in [
                ("v6 under 0x0800", ETHERTYPE_IPV4, &v6),
                ("v4 under 0x86dd", ETHERTYPE_IPV6, &v4),
            ] {
                let frame = ether(GATEWAY_MAC, link_mac(label), ethertype, ip);
                cases.push(egress_drop(name, &s, label, frame));
                if s.ethernet() {
                    for hook in HOOKS {
                        let input = ether(EXT_MAC, PEER_MAC, ethertype, ip);
                        cases.push(ingress_untouched(
                            name,
                            &s,
                            hook,
                            input,
                            verdicts(hook).0,
                            PASS,
                        ));
                    }
                }
            }
        }
    }
    run_cases("version vs EtherType", &cases);
}

#[test]
fn label_zero_passes_untouched() {
    let mut cases = Vec::new();
    for cfg in variants() {
        let s = setup(cfg);
        let bits = s.cfg.label_bits;
        let mut dscps = vec![0, dscp_with_label(63, bits, 0)];
        if bits <= 4 {
            dscps.push(CS6);
        }
        for dscp in dscps {
            for ip in [v4_base(), v6_base(), v4_with_ihl(15), v6_with_ext()] {
                let ip = ip.with_dscp(dscp);
                let name = format!("label 0 dscp {dscp} {}", ip.family());
                for hook in HOOKS {
                    let input = on_ext(&s, ip.ethertype(), &ip.bytes());
                    cases.push(ingress_untouched(
                        &name,
                        &s,
                        hook,
                        input,
                        verdicts(hook).0,
                        PASS,
                    ));
                }
            }
        }
    }
    run_cases("label 0", &cases);
}

#[test]
fn unknown_labels_pass_or_drop_by_policy() {
    let mut cases = Vec::new();
    for cfg in variants() {
        let s = setup(cfg);
        let bits = s.cfg.label_bits;
        let unused: Vec<u8> = (1..=s.cfg.max_label())
            .filter(|&l| s.cfg.link(l).is_none())
            .collect();
        if bits > 1 {
            assert!(unused.contains(&2), "label 2 is left unused");
        }
        for label in unused {
            for ip in [v4_base(), v6_base()] {
                let bytes = ip.with_label(bits, label).bytes();
                let input = on_ext(&s, ip.ethertype(), &bytes);
                let name = format!("unknown label {label} {}", ip.family());
                for hook in HOOKS {
                    let (pass, drop, _) = verdicts(hook);
                    let verdict = match s.cfg.unknown {
                        Unknown::Pass => pass,
                        Unknown::Drop => drop,
                    };
                    cases.push(ingress_untouched(
                        &name,
                        &s,
                        hook,
                        input.clone(),
                        verdict,
                        UNKNOWN,
                    ));
                }
            }
        }
    }
    run_cases("unknown labels", &cases);
}

#[test]
fn multicast_destinations_still_go_to_the_peer() {
    let mut cases = Vec::new();
    for bits in 1..=6u8 {
        for kind in ext_kinds() {
            let s = all_labels(bits, kind);
            for label in [1, s.cfg.max_label()] {
                let v6 = Ip::V6(V6 {
                    destination: ALL_NODES_V6,
                    hop_limit: 1,
                    ..V6::default()
                });
                let v4 = Ip::V4(V4 {
                    destination: ALL_HOSTS_V4,
                    ttl: 1,
                    ..V4::default()
                });
                cases.push(egress_case("ff02::1", &s, label, &v6, ALL_NODES_V6_MAC));
                cases.push(egress_case("224.0.0.1", &s, label, &v4, ALL_HOSTS_V4_MAC));
                cases.push(egress_case("broadcast", &s, label, &v4, [0xff; 6]));
                if s.ethernet() {
                    // The expectation itself: unicast to the peer whatever the destination.
                    let out = &cases[cases.len() - 3].output;
                    assert_eq!(out[..12], [PEER_MAC, EXT_MAC].concat());
                }
            }
        }
    }
    run_cases("multicast destinations", &cases);
}

/// A program on ext leaves `input` alone, passing it to the next program or the stack and
/// counting it at `slot`, given `skb`.
fn untouched_with(
    name: &str,
    s: &Rc<Setup>,
    program: &str,
    input: Vec<u8>,
    slot: u32,
    skb: vm::Skb,
) -> Case {
    let hook = hook_of(program);
    Case {
        name: format!("{name} {program}"),
        setup: s.clone(),
        program: program.to_string(),
        output: input.clone(),
        input,
        verdict: verdicts(hook).0,
        redirect: None,
        slot: Some(slot),
        skb: Some(skb),
        probe: None,
    }
}

/// The `__sk_buff` the kernel gives `packet` on a device with or without Ethernet headers.
fn kernel_skb(packet: &[u8], framed: bool) -> vm::Skb {
    vm::Skb::of(packet, framed)
}

/// `ip` with a payload that makes its frame on a link `frame` bytes long.
fn framed_to(ip: &Ip, frame: usize) -> Ip {
    let payload = vec![0x5a; frame - ETH_LEN - ip.header_len()];
    match ip.clone() {
        Ip::V4(p) => Ip::V4(V4 { payload, ..p }),
        Ip::V6(p) => Ip::V6(V6 { payload, ..p }),
    }
}

#[test]
fn egress_drops_what_is_longer_than_ext_mtu_unless_gso() {
    let mut cases = Vec::new();
    let longest = EXT_MTU as usize + ETH_LEN;
    for bits in [1u8, 4, 6] {
        for kind in ext_kinds() {
            let s = all_labels(bits, kind);
            let label = s.cfg.max_label();
            for ip in [v4_base(), v6_base()] {
                // As long as ext's MTU allows: sent.
                let fits = egress_case(
                    "MTU-sized",
                    &s,
                    label,
                    &framed_to(&ip, longest),
                    GATEWAY_MAC,
                );
                cases.push(fits);
                // One byte more (a link's MTU above ext's): dropped untouched, counted too big.
                let over = framed_to(&ip, longest + 1);
                let frame = ether(GATEWAY_MAC, link_mac(label), ip.ethertype(), &over.bytes());
                cases.push(Case {
                    slot: Some(TOO_BIG),
                    ..egress_drop(
                        &format!("{} 1 byte over ext's MTU", ip.family()),
                        &s,
                        label,
                        frame,
                    )
                });
                // A GSO packet of any length: the kernel cuts it into segments later, sent.
                let gso = egress_case(
                    "GSO 64 KiB",
                    &s,
                    label,
                    &framed_to(&ip, 65_000),
                    GATEWAY_MAC,
                );
                cases.push(Case {
                    skb: Some(vm::Skb {
                        gso_size: 1448,
                        ..kernel_skb(&gso.input, true)
                    }),
                    ..gso
                });
            }
        }
    }
    run_cases("longer than ext's MTU", &cases);
}

/// A MAC of a third host on the segment.
const THIRD_HOST_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 3];

#[test]
fn on_an_ethernet_ext_only_the_peers_frames_to_ext_enter_a_link() {
    let mut cases = Vec::new();
    for cfg in variants().into_iter().filter(|c| c.ext.kind != ExtKind::L3) {
        let s = setup(cfg);
        let bits = s.cfg.label_bits;
        let labels: Vec<u8> = (1..=s.cfg.max_label()).collect();
        for label in labels {
            for ip in [v4_base(), v6_base()] {
                let labelled = ip.with_label(bits, label).bytes();
                for (who, dst, src) in [
                    ("third host to ext", EXT_MAC, THIRD_HOST_MAC),
                    ("peer to a third host", THIRD_HOST_MAC, PEER_MAC),
                    ("peer to broadcast", [0xff; 6], PEER_MAC),
                    ("ext's own MAC as source", EXT_MAC, EXT_MAC),
                    ("peer's MAC but one bit", EXT_MAC, {
                        let mut m = PEER_MAC;
                        m[5] ^= 0x80;
                        m
                    }),
                ] {
                    let input = ether(dst, src, ip.ethertype(), &labelled);
                    let name = format!("{who} {} label {label}", ip.family());
                    for hook in HOOKS {
                        let pass = verdicts(hook).0;
                        cases.push(ingress_untouched(
                            &name,
                            &s,
                            hook,
                            input.clone(),
                            pass,
                            FOREIGN,
                        ));
                    }
                }
            }
        }
    }
    run_cases("Ethernet ext: foreign frames", &cases);
}

#[test]
fn vlan_tagged_frames_never_enter_a_link_and_are_never_changed() {
    let mut cases = Vec::new();
    for cfg in variants() {
        let s = setup(cfg);
        let bits = s.cfg.label_bits;
        let label = s.cfg.links[0].label;
        for ip in [v4_base(), v6_base()] {
            let labelled = ip.with_label(bits, label).bytes();
            let frame = ether(EXT_MAC, PEER_MAC, ip.ethertype(), &labelled);
            // The kernel took a tag off this frame (VLAN 100, and VLAN 0 for priority tags).
            for tci in [100u16, 0] {
                let tagged = vm::Skb {
                    vlan_tci: Some(tci),
                    ..kernel_skb(&frame, true)
                };
                let name = format!("VLAN {tci} {}", ip.family());
                // On a link, egress drops what a VLAN device on it would send.
                let from_link = ether(GATEWAY_MAC, link_mac(label), ip.ethertype(), &ip.bytes());
                cases.push(Case {
                    skb: Some(vm::Skb {
                        vlan_tci: Some(tci),
                        ..kernel_skb(&from_link, true)
                    }),
                    ..egress_drop(&name, &s, label, from_link)
                });
                if s.ethernet() {
                    let demux = programs::ingress_name(Hook::Tc);
                    cases.push(untouched_with(
                        &name,
                        &s,
                        demux,
                        frame.clone(),
                        PASS,
                        tagged,
                    ));
                    cases.push(untouched_with(
                        &name,
                        &s,
                        programs::GUARD,
                        frame.clone(),
                        GUARD_NOT_IP,
                        tagged,
                    ));
                }
            }
        }
    }
    run_cases("VLAN tags", &cases);
}

#[test]
fn on_a_layer_3_ext_tc_trusts_the_tunnels_protocol() {
    let mut cases = Vec::new();
    for cfg in variants().into_iter().filter(|c| c.ext.kind == ExtKind::L3) {
        let s = setup(cfg);
        let bits = s.cfg.label_bits;
        let label = s.cfg.links[0].label;
        for ip in [v4_base(), v6_base()] {
            let labelled = ip.with_label(bits, label).bytes();
            // MPLS (unicast and multicast), and a protocol that names the other family.
            let other_family = if ip.ethertype() == ETHERTYPE_IPV4 {
                ETHERTYPE_IPV6
            } else {
                ETHERTYPE_IPV4
            };
            for protocol in [0x8847u16, 0x8848, other_family] {
                let skb = vm::Skb {
                    protocol: protocol.to_be_bytes(),
                    ..vm::Skb::default()
                };
                let name = format!("{} bytes as protocol {protocol:#06x}", ip.family());
                let demux = programs::ingress_name(Hook::Tc);
                cases.push(untouched_with(
                    &name,
                    &s,
                    demux,
                    labelled.clone(),
                    PASS,
                    skb,
                ));
                cases.push(untouched_with(
                    &name,
                    &s,
                    programs::GUARD,
                    labelled.clone(),
                    GUARD_NOT_IP,
                    skb,
                ));
            }
        }
    }
    run_cases("L3 ext: the tunnel's protocol", &cases);
}

#[test]
fn the_guard_clears_the_label_of_ext_own_ip_traffic() {
    let mut cases = Vec::new();
    for cfg in variants() {
        let s = setup(cfg);
        let bits = s.cfg.label_bits;
        for label in [1, s.cfg.max_label()] {
            for ip in [v4_base(), v6_base(), v4_with_ihl(15)] {
                let wire = on_ext(&s, ip.ethertype(), &ip.with_label(bits, label).bytes());
                let cleared = on_ext(&s, ip.ethertype(), &ip.with_label(bits, 0).bytes());
                cases.push(Case {
                    name: format!("guard {} label {label}", ip.family()),
                    setup: s.clone(),
                    program: programs::GUARD.to_string(),
                    skb: Some(kernel_skb(&wire, s.ethernet())),
                    input: wire,
                    verdict: TC_UNSPEC,
                    redirect: None,
                    output: cleared,
                    slot: Some(GUARDED),
                    probe: None,
                });
            }
        }
    }
    run_cases("guard", &cases);
}

/// A far end's probe, written out from the wire format: UDP from an ephemeral port to 19507,
/// the magic `l3mprobe`, then the sender's label, its label bits, two zero bytes and a
/// big-endian sequence number; `port` and `magic` are what the test varies.
fn probe_ip(port: u16, magic: &[u8; 8], word: [u8; 8]) -> Ip {
    let mut udp = Vec::new();
    udp.extend_from_slice(&40_000u16.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&24u16.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(magic);
    udp.extend_from_slice(&word);
    let mut source = [0u8; 16];
    source[..2].copy_from_slice(&[0xfe, 0x80]);
    source[15] = 9;
    let mut destination = [0u8; 16];
    destination[..2].copy_from_slice(&[0xff, 0x02]);
    destination[15] = 1;
    Ip::V6(V6 {
        traffic_class: 0b10_0000 << 2 | 2,
        hop_limit: 1,
        source,
        destination,
        payload: udp,
        ..V6::default()
    })
}

const PROBE_MAGIC: &[u8; 8] = b"l3mprobe";

/// A probe whose sender says label 9, 4 bits, sequence 0x01020304.
const FAR_WORD: [u8; 8] = [9, 4, 0, 0, 1, 2, 3, 4];

/// The far end's probe on a configured label has its word and arrival time recorded in that
/// label's `probes` entry, and is dropped: never delivered (nor counted). A UDP datagram to another port, or to the probe port
/// without the magic, or cut short, or one byte longer, is delivered as before; a probe on a label no link uses
/// takes the unknown path and records nothing.
#[test]
fn the_far_ends_probe_is_recorded_and_dropped() {
    let mut cases = Vec::new();
    for cfg in variants() {
        let s = setup(cfg);
        let bits = s.cfg.label_bits;
        for label in [1, s.cfg.max_label()] {
            let ip = probe_ip(19507, PROBE_MAGIC, FAR_WORD);
            let wire = on_ext(&s, ip.ethertype(), &ip.with_label(bits, label).bytes());
            let cleared = on_ext(&s, ip.ethertype(), &ip.with_label(bits, 0).bytes());
            for hook in HOOKS {
                cases.push(Case {
                    name: format!("probe label {label} {hook:?}"),
                    setup: s.clone(),
                    program: programs::ingress_name(hook).to_string(),
                    input: wire.clone(),
                    verdict: verdicts(hook).1,
                    redirect: None,
                    output: cleared.clone(),
                    slot: None,
                    skb: None,
                    probe: Some(Recorded {
                        label,
                        word: FAR_WORD,
                    }),
                });
                let mut other_magic = *PROBE_MAGIC;
                other_magic[7] ^= 1;
                // A probe's length is exact: one byte more and it is the operator's datagram.
                let Ip::V6(mut longer) = probe_ip(19507, PROBE_MAGIC, FAR_WORD) else {
                    unreachable!("a probe is IPv6")
                };
                longer.payload.push(0);
                for (name, other) in [
                    ("wrong magic", probe_ip(19507, &other_magic, FAR_WORD)),
                    ("other port", probe_ip(19508, PROBE_MAGIC, FAR_WORD)),
                    ("one byte longer than a probe", Ip::V6(longer)),
                ] {
                    cases.push(ingress_case(name, &s, hook, label, &other));
                }
                // One byte short of the word: not a probe, delivered.
                let full = ingress_case("probe cut short", &s, hook, label, &ip);
                cases.push(Case {
                    input: full.input[..full.input.len() - 1].to_vec(),
                    output: full.output[..full.output.len() - 1].to_vec(),
                    ..full
                });
            }
        }
        let unused = (1..=s.cfg.max_label()).find(|&l| s.cfg.link(l).is_none());
        if let Some(label) = unused {
            let ip = probe_ip(19507, PROBE_MAGIC, FAR_WORD);
            let wire = on_ext(&s, ip.ethertype(), &ip.with_label(bits, label).bytes());
            for hook in HOOKS {
                let (pass, drop, _) = verdicts(hook);
                let verdict = match s.cfg.unknown {
                    Unknown::Pass => pass,
                    Unknown::Drop => drop,
                };
                let name = format!("probe on unknown label {label}");
                cases.push(ingress_untouched(
                    &name,
                    &s,
                    hook,
                    wire.clone(),
                    verdict,
                    UNKNOWN,
                ));
            }
        }
    }
    run_cases("far-end probes", &cases);
}

/// The checks can fail: a wrong expected byte, verdict, redirect or slot is reported, and so is
/// a program that does nothing.
#[test]
fn harness_detects_wrong_expectations() {
    let s = all_labels(3, ext_kinds()[1]);
    let good = ingress_case("self-test", &s, Hook::Xdp, 5, &v4_base());
    assert!(check(&good).is_empty(), "{:?}", check(&good));
    let good_eg = egress_case("self-test", &s, 5, &v4_base(), GATEWAY_MAC);
    assert!(check(&good_eg).is_empty(), "{:?}", check(&good_eg));

    let mut wrong: Vec<Case> = Vec::new();
    for at in [
        0,
        6,
        12,
        ETH_LEN + 1,
        ETH_LEN + 10,
        ETH_LEN + 11,
        good.output.len() - 1,
    ] {
        let mut c = good.clone();
        c.output[at] ^= 0x04;
        wrong.push(c);
    }
    let mut c = good.clone();
    c.output.push(0);
    wrong.push(c);
    let mut c = good.clone();
    c.verdict = XDP_PASS;
    wrong.push(c);
    let mut c = good.clone();
    c.redirect = Some(hidden_ifindex(4));
    wrong.push(c);
    let mut c = good.clone();
    c.redirect = None;
    wrong.push(c);
    let mut c = good.clone();
    c.slot = Some(PASS);
    wrong.push(c);
    let mut c = good_eg.clone();
    c.slot = Some(EGRESS_DROP);
    wrong.push(c);
    // Expecting the label to be left in place (a program that forgot to clear it).
    let mut c = good.clone();
    c.output = ether(
        link_mac(5),
        hidden_mac(5),
        ETHERTYPE_IPV4,
        &v4_base().with_label(3, 5).bytes(),
    );
    wrong.push(c);
    // A probe expected where none is recorded, and a wrong word expected.
    let mut c = good.clone();
    c.probe = Some(Recorded {
        label: 5,
        word: FAR_WORD,
    });
    wrong.push(c);
    let probe = probe_ip(19507, PROBE_MAGIC, FAR_WORD);
    let mut c = ingress_case("self-test", &s, Hook::Xdp, 5, &probe);
    c.verdict = XDP_DROP;
    c.redirect = None;
    c.output = on_ext(&s, probe.ethertype(), &probe.with_label(3, 0).bytes());
    let mut other = FAR_WORD;
    other[1] = 3;
    c.probe = Some(Recorded {
        label: 5,
        word: other,
    });
    wrong.push(c);
    for (i, c) in wrong.iter().enumerate() {
        assert!(!check(c).is_empty(), "wrong expectation {i} not detected");
    }
}

/// The fixture rows of `tests/golden/cases.txt`, one per behaviour, for a reader to take in:
/// each a configuration, a program, the bytes in and the verdict, target, bytes out and counter
/// that must come of them.
#[test]
fn fixture_rows() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/cases.txt");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let cases = parse_rows(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(cases.len() >= 20, "{path}: {} rows", cases.len());
    run_cases("fixture rows", &cases);
}

/// A failing case is reported as its row, what is wrong, and a seed for the fuzz target that
/// runs its program: the seed decodes to the case's configuration and packet.
#[test]
fn a_failure_prints_the_row_and_a_seed_for_the_fuzz_target() {
    let s = setup(common::config(4, ext_kinds()[1], &[3, 9], Unknown::Drop));
    let mut case = ingress_case("self-test", &s, Hook::Xdp, 9, &v6_base());
    case.output[ETH_LEN + 1] ^= 0x40;
    let report = row::failures("report test", &[&case]).expect("the case fails");
    assert!(report.contains(&case.row()), "the row:\n{report}");
    assert!(report.contains("wrong: bytes differ at [15]"), "{report}");
    let alone = "alone:     L3MP_CASE='ingress self-test v6 label 9 Xdp N=4 ethernet unknown=drop \
                 labels=3,9 l3mp_in_xdp' cargo test --test golden \
                 a_failure_prints_the_row_and_a_seed_for_the_fuzz_target";
    assert!(report.contains(alone), "{report}");
    let command = "cd fuzz && cargo fuzz run --sanitizer none ingress_xdp ";
    let (_, path) = report
        .split_once(command)
        .unwrap_or_else(|| panic!("no '{command}' in\n{report}"));
    let path = path.lines().next().expect("a path");
    let seed = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let decoded = l3mp::roundtrip::Case::from_bytes(&seed).expect("the seed decodes");
    assert_eq!(decoded.packet, case.input);
    assert_eq!(decoded.label, 9);
    let c = &decoded.cfg;
    assert_eq!(
        (c.label_bits, c.ext.kind, c.unknown, &c.macs),
        (4, s.cfg.ext.kind, Unknown::Drop, &s.cfg.macs)
    );
    assert!(report.contains(&format!(
        "fuzz seed: {}",
        row::spaced_hex(&seed[..4], false)
    )));
    // The target's programs do with the packet what the case's do.
    let theirs = Setup::new(decoded.cfg.clone());
    let (there, here) = (
        theirs.run(&case.program, &decoded.packet),
        s.run(&case.program, &case.input),
    );
    let outcome = |o: &vm::Outcome| (o.verdict, o.redirect.map(|r| r.ifindex), o.packet.clone());
    assert_eq!(outcome(&there), outcome(&here));
}
