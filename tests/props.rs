//! Properties of the generated programs, run in the offline VM on random packets:
//! demux(mark(p, L)) is p with the label bits cleared and nothing else changed; arbitrary bytes
//! never make a program fail; what is not IP is never modified.

mod common;

use std::sync::OnceLock;

use common::packets::*;
use common::{
    ext_kinds, hidden_ifindex, hidden_mac, link_mac, variants, Setup, EXT_IFINDEX, EXT_MAC,
    PEER_MAC,
};
use l3mp::programs::layout::{EGRESS, EGRESS_DROP, PASS};
use l3mp::programs::{self, Hook, Unknown};
use l3mp::vm::{self, Outcome};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// Every label in use, for N = 1..6 and both ext kinds: index `(bits - 1) * 2 + ethernet`.
fn full_setups() -> &'static [Setup] {
    static SETUPS: OnceLock<Vec<Setup>> = OnceLock::new();
    SETUPS.get_or_init(|| every_width(Unknown::Pass))
}

/// Every label in use, for N = 1..6 and both ext kinds (L3 first), under `unknown`.
fn every_width(unknown: Unknown) -> Vec<Setup> {
    (1..=6u8)
        .flat_map(|bits| ext_kinds().map(|kind| Setup::all_labels(bits, kind, unknown)))
        .collect()
}

fn full_setup(bits: u8, ethernet: bool) -> &'static Setup {
    let s = &full_setups()[usize::from(bits - 1) * 2 + usize::from(ethernet)];
    assert_eq!((s.cfg.label_bits, s.ethernet()), (bits, ethernet));
    s
}

/// The shared variants (sparse labels, both unknown-label policies) and the full setups.
fn all_setups() -> &'static [Setup] {
    static SETUPS: OnceLock<Vec<Setup>> = OnceLock::new();
    SETUPS.get_or_init(|| {
        let mut out: Vec<Setup> = variants().into_iter().map(Setup::new).collect();
        out.extend(every_width(Unknown::Drop));
        out
    })
}

fn v4_strategy() -> impl Strategy<Value = Ip> {
    (
        (
            0u8..64,
            0u8..4,
            any::<u16>(),
            any::<bool>(),
            any::<bool>(),
            0u16..8192,
        ),
        (any::<u8>(), any::<u8>(), any::<[u8; 4]>(), any::<[u8; 4]>()),
        (0usize..=10).prop_flat_map(|words| prop::collection::vec(any::<u8>(), words * 4)),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |((dscp, ecn, id, df, mf, frag), (ttl, proto, src, dst), options, payload)| {
                Ip::V4(V4 {
                    dscp,
                    ecn,
                    identification: id,
                    dont_fragment: df,
                    more_fragments: mf,
                    fragment_offset: frag,
                    ttl,
                    protocol: proto,
                    source: src,
                    destination: dst,
                    options,
                    payload,
                })
            },
        )
}

fn v6_strategy() -> impl Strategy<Value = Ip> {
    (
        (any::<u8>(), 0u32..(1 << 20), any::<u8>(), any::<u8>()),
        (any::<[u8; 16]>(), any::<[u8; 16]>()),
        prop::option::of(
            (0usize..3).prop_flat_map(|k| prop::collection::vec(any::<u8>(), 6 + 8 * k)),
        ),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |((tc, flow, hops, proto), (src, dst), hop_by_hop, payload)| {
                Ip::V6(V6 {
                    traffic_class: tc,
                    flow_label: flow,
                    hop_limit: hops,
                    protocol: proto,
                    source: src,
                    destination: dst,
                    hop_by_hop,
                    payload,
                })
            },
        )
}

fn ip_strategy() -> impl Strategy<Value = Ip> {
    prop_oneof![v4_strategy(), v6_strategy()]
}

/// `(label bits, label)`, every width equally likely.
fn label_strategy() -> impl Strategy<Value = (u8, u8)> {
    (1u8..=6).prop_flat_map(|bits| (Just(bits), 1u8..=(1u8 << bits) - 1))
}

fn hook_strategy() -> impl Strategy<Value = Hook> {
    prop_oneof![Just(Hook::Tc), Just(Hook::Xdp)]
}

/// Bits of the IP header at `at` that may change: DSCP (and the IPv4 checksum).
fn changeable_mask(family_v4: bool, at: usize) -> u8 {
    match (family_v4, at) {
        (true, 1) => 0xfc,
        (true, 10 | 11) => 0xff,
        (false, 0) => 0x0f,
        (false, 1) => 0xc0,
        _ => 0,
    }
}

/// Fails unless `after` equals `before` outside the DSCP bits and the IPv4 checksum.
fn only_dscp_and_checksum_differ(before: &[u8], after: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(before.len(), after.len(), "length changed");
    let v4 = before[0] >> 4 == 4;
    for at in differing_bytes(before, after) {
        let keep = !changeable_mask(v4, at);
        prop_assert_eq!(
            before[at] & keep,
            after[at] & keep,
            "byte {} changed outside DSCP/checksum: {:02x} -> {:02x}",
            at,
            before[at],
            after[at]
        );
    }
    Ok(())
}

/// Fails unless no counter slot counted anything: what the demux delivers, the link counts.
fn counted_nowhere(out: &Outcome) -> Result<(), TestCaseError> {
    for (i, &c) in out.counters().iter().enumerate() {
        prop_assert_eq!(c, [0, 0], "counter slot {}", i);
    }
    Ok(())
}

/// Fails unless exactly `slot` counted one packet of `len` bytes.
fn counted_once(out: &Outcome, slot: u32, len: usize) -> Result<(), TestCaseError> {
    for (i, &c) in out.counters().iter().enumerate() {
        let want = if i as u32 == slot {
            [1, len as u64]
        } else {
            [0, 0]
        };
        prop_assert_eq!(c, want, "counter slot {}", i);
    }
    Ok(())
}

/// The verdicts of a redirect, from the spec.
fn redirected(hook: Hook) -> i32 {
    match hook {
        Hook::Tc => 7,
        Hook::Xdp => 4,
    }
}

/// Marks `ip` on the egress of `label`, carries it over ext as the kernel would, demuxes it at
/// `hook`; checks both steps. Returns the IP packet the link receives.
fn round_trip(
    s: &Setup,
    label: u8,
    hook: Hook,
    ip: &[u8],
    ethertype: u16,
) -> Result<Vec<u8>, TestCaseError> {
    let frame = ether(GATEWAY_MAC, link_mac(label), ethertype, ip);
    let eg = s.run(&programs::egress_name(label), &frame);
    prop_assert_eq!(eg.verdict, 7, "egress verdict");
    prop_assert_eq!(
        eg.redirect.map(|r| (r.ifindex, r.flags)),
        Some((EXT_IFINDEX, 0))
    );
    counted_once(&eg, EGRESS + u32::from(label), frame.len())?;
    prop_assert_eq!(eg.packet.len(), frame.len());
    let (dst, src) = if s.ethernet() {
        (PEER_MAC, EXT_MAC)
    } else {
        (GATEWAY_MAC, link_mac(label))
    };
    prop_assert_eq!(&eg.packet[..ETH_LEN], &ether(dst, src, ethertype, &[])[..]);
    let marked = &eg.packet[ETH_LEN..];
    only_dscp_and_checksum_differ(ip, marked)?;
    let mask = (1u8 << s.cfg.label_bits) - 1;
    let (dscp_in, ecn_in) = dscp_ecn(ip).expect("a header etherparse reads");
    let (dscp_marked, ecn_marked) = dscp_ecn(marked).expect("still a header");
    prop_assert_eq!(dscp_marked, (dscp_in & !mask) | label, "label in DSCP");
    prop_assert_eq!(ecn_marked, ecn_in, "ECN on the wire");

    // An L3 ext: the kernel strips the MAC header on the redirect. An Ethernet ext: the far
    // end's MAC is our peer's, and the other way round.
    let wire = if s.ethernet() {
        l3mp::roundtrip::at_the_mirror(&eg.packet)
    } else {
        marked.to_vec()
    };
    let name = programs::ingress_name(hook);
    let back = s.run(name, &wire);
    prop_assert_eq!(back.verdict, redirected(hook), "ingress verdict");
    prop_assert_eq!(
        back.redirect.map(|r| (r.ifindex, r.flags)),
        Some((hidden_ifindex(label), 0))
    );
    // Not counted: the link counts what it receives.
    counted_nowhere(&back)?;
    prop_assert_eq!(
        &back.packet[..ETH_LEN],
        &ether(link_mac(label), hidden_mac(label), ethertype, &[])[..]
    );
    let delivered = back.packet[ETH_LEN..].to_vec();
    only_dscp_and_checksum_differ(ip, &delivered)?;
    let (dscp_out, ecn_out) = dscp_ecn(&delivered).expect("still a header");
    prop_assert_eq!(
        dscp_out,
        dscp_in & !mask,
        "label bits cleared, rest of DSCP kept"
    );
    prop_assert_eq!(ecn_out, ecn_in, "ECN after the round trip");
    Ok(delivered)
}

/// 256 cases per property, unless `PROPTEST_CASES` asks for another number.
fn proptest_config() -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            256
        },
        // Failures are printed, shrunk; no regression files are written into the tree.
        failure_persistence: None,
        ..default
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// demux(mark(p, L)) = p with the label bits cleared, built independently; checksum valid.
    #[test]
    fn demux_of_mark_clears_only_the_label(
        ip in ip_strategy(),
        (bits, label) in label_strategy(),
        ethernet in any::<bool>(),
        hook in hook_strategy(),
    ) {
        let s = full_setup(bits, ethernet);
        let bytes = ip.bytes();
        if let Ip::V4(_) = ip {
            prop_assert!(ipv4_checksum_valid(&bytes), "the builder makes valid checksums");
        }
        let delivered = round_trip(s, label, hook, &bytes, ip.ethertype())?;
        let expected = ip.with_label(bits, 0).bytes();
        prop_assert_eq!(
            &delivered,
            &expected,
            "differs at {:?}",
            differing_bytes(&delivered, &expected)
        );
        if let Ip::V4(_) = ip {
            prop_assert!(ipv4_checksum_valid(&delivered), "checksum after the round trip");
        }
    }

    /// A far end's probe (IPv6 UDP to port 19507, payload `l3mprobe` and a word) with any
    /// addresses, traffic class and word, marked on the egress of L, is dropped by the far
    /// demux, counted nowhere (it is not delivered, and the demux counts nothing it delivers), and its word
    /// recorded in L's `probes` entry; and the round-trip spec says the same. With `extra`
    /// bytes after the word it is not a probe (a probe's length is exact): delivered, nothing
    /// recorded.
    #[test]
    fn a_probe_is_recorded_under_its_label_and_dropped(
        (tc, src, dst, word) in (any::<u8>(), any::<[u8; 16]>(), any::<[u8; 16]>(), any::<[u8; 8]>()),
        extra in prop::collection::vec(any::<u8>(), 0..16),
        (bits, label) in label_strategy(),
        ethernet in any::<bool>(),
        hook in hook_strategy(),
    ) {
        let s = full_setup(bits, ethernet);
        let mut udp = [&40_000u16.to_be_bytes()[..], &19507u16.to_be_bytes()[..]].concat();
        udp.extend_from_slice(&((8 + 16 + extra.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(b"l3mprobe");
        udp.extend_from_slice(&word);
        udp.extend_from_slice(&extra);
        let ip = Ip::V6(V6 {
            traffic_class: tc,
            protocol: 17,
            source: src,
            destination: dst,
            payload: udp,
            ..V6::default()
        });
        let frame = ether(GATEWAY_MAC, link_mac(label), ip.ethertype(), &ip.bytes());
        let eg = s.run(&programs::egress_name(label), &frame);
        prop_assert_eq!(eg.verdict, 7, "egress verdict");
        let wire = if s.ethernet() {
            l3mp::roundtrip::at_the_mirror(&eg.packet)
        } else {
            eg.packet[ETH_LEN..].to_vec()
        };
        let back = s.run(programs::ingress_name(hook), &wire);
        let (dropped, redirected) = match hook {
            Hook::Tc => (2, 7),
            Hook::Xdp => (1, 4),
        };
        let machine = vm::Machine::new(&s.bundle, &s.cfg, vm::Engine::Interp)
            .expect("a machine");
        let trip = l3mp::roundtrip::egress(&machine, label, &frame)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        counted_nowhere(&back)?;
        if extra.is_empty() {
            prop_assert_eq!(back.verdict, dropped, "ingress verdict");
            prop_assert_eq!(back.redirect, None);
            prop_assert_eq!(back.probes, vec![(u32::from(label), word, vm::VM_NOW_NS)]);
            prop_assert!(!trip.restored, "a probe is not delivered");
        } else {
            prop_assert_eq!(back.verdict, redirected, "ingress verdict");
            prop_assert_eq!(back.probes, vec![]);
            prop_assert!(trip.restored, "a longer datagram is delivered");
        }
    }

    /// With a wrong IPv4 checksum in, the checksum stays exactly as wrong (RFC 1624 updates
    /// preserve the header sum up to the two zeros of one's complement).
    #[test]
    fn a_wrong_ipv4_checksum_stays_as_wrong(
        ip in v4_strategy(),
        error in 1u16..,
        (bits, label) in label_strategy(),
        ethernet in any::<bool>(),
        hook in hook_strategy(),
    ) {
        let s = full_setup(bits, ethernet);
        let mut bytes = ip.bytes();
        let csum = u16::from_be_bytes([bytes[10], bytes[11]]) ^ error;
        bytes[10..12].copy_from_slice(&csum.to_be_bytes());
        let zero = |sum: u16| if sum == 0xffff { 0 } else { sum };
        let sum_in = zero(ipv4_header_sum(&bytes));
        let delivered = round_trip(s, label, hook, &bytes, ip.ethertype())?;
        prop_assert_eq!(zero(ipv4_header_sum(&delivered)), sum_in);
        let mut expected = ip.with_label(bits, 0).bytes();
        expected[10..12].copy_from_slice(&delivered[10..12]);
        prop_assert_eq!(&delivered, &expected);
    }

    /// Arbitrary bytes through any program of any variant: no VM error, a verdict of the hook,
    /// one counter slot bumped; whatever is not redirected is left untouched.
    #[test]
    fn arbitrary_bytes_never_break_a_program(
        which in any::<prop::sample::Index>(),
        // 0: an egress, 1: TC ingress, 2: XDP ingress, 3: the NAPI pass program, 4: any
        // program of the bundle (only the first two checks apply to it).
        role in prop_oneof![
            3 => Just(0u8),
            3 => Just(1u8),
            3 => Just(2u8),
            1 => Just(3u8),
            1 => Just(4u8),
        ],
        any_program in any::<prop::sample::Index>(),
        label_pick in any::<prop::sample::Index>(),
        mut bytes in prop::collection::vec(any::<u8>(), 0..120),
        // (EtherType, version nibble) written over the random bytes: mostly a coherent IPv4
        // or IPv6 start, so that the deeper paths are reached; sometimes mismatched or raw.
        (ethertype, version) in prop_oneof![
            3 => Just((Some(ETHERTYPE_IPV4), Some(4u8))),
            3 => Just((Some(ETHERTYPE_IPV6), Some(6u8))),
            1 => (
                prop_oneof![Just(ETHERTYPE_IPV4), Just(ETHERTYPE_IPV6), any::<u16>()],
                0u8..16,
            )
                .prop_map(|(t, v)| (Some(t), Some(v))),
            1 => Just((None, None)),
        ],
        // On an Ethernet ext, mostly a frame from the peer to ext, as the far l3mp sends.
        from_peer in prop::bool::weighted(0.75),
    ) {
        let s = which.get(all_setups());
        let egress_label = label_pick.get(&s.cfg.links).label;
        let name = match role {
            0 => programs::egress_name(egress_label),
            1 => programs::ingress_name(Hook::Tc).to_string(),
            2 => programs::ingress_name(Hook::Xdp).to_string(),
            3 => programs::NAPI_PASS.to_string(),
            _ => any_program.get(&s.bundle.programs).1.name.clone(),
        };
        let (section, prog) = s
            .bundle
            .programs
            .iter()
            .find(|(_, p)| p.name == name)
            .expect("the bundle has the program");
        let hook = vm::hook_of(*section);
        // Make the interesting paths likely: an IP EtherType, an IP version nibble.
        if let (Some(t), true) = (ethertype, bytes.len() >= ETH_LEN) {
            bytes[12..14].copy_from_slice(&t.to_be_bytes());
        }
        if from_peer && s.ethernet() && role != 0 && bytes.len() >= 12 {
            bytes[..12].copy_from_slice(&[EXT_MAC, PEER_MAC].concat());
        }
        let ip_at = if role == 0 || s.ethernet() { ETH_LEN } else { 0 };
        if let (Some(v), true) = (version, bytes.len() > ip_at) {
            bytes[ip_at] = v << 4 | (bytes[ip_at] & 15);
        }
        let out = vm::run(&s.bundle, &s.cfg, &prog.name, &bytes)
            .map_err(|e| TestCaseError::fail(format!("{}: VM error {e}", prog.name)))?;
        prop_assert!(
            hook.verdicts().contains(&out.verdict),
            "{}: verdict {} not one of {:?}",
            prog.name,
            out.verdict,
            hook.verdicts()
        );
        if role == 4 {
            return Ok(());
        }
        if prog.name == programs::NAPI_PASS {
            prop_assert_eq!(out.verdict, 2);
            prop_assert!(out.counted.is_empty());
            return Ok(());
        }
        let counted: Vec<u32> = out.counted.iter().map(|(slot, _)| *slot).collect();
        // What a demux delivers the link counts, and a probe it records is not counted;
        // everything else is counted once: a redirected frame as it leaves, the rest as it came.
        let delivered_or_probe = role != 0 && (out.verdict == redirected(hook) || !out.probes.is_empty());
        if delivered_or_probe {
            prop_assert!(counted.is_empty(), "{}: slots {:?}", prog.name, counted);
        } else {
            prop_assert_eq!(counted.len(), 1, "{}: slots {:?}", prog.name, counted);
            let counted_bytes = if out.verdict == redirected(hook) { out.packet.len() } else { bytes.len() };
            prop_assert_eq!(out.counter(counted[0]), [1, counted_bytes as u64]);
        }
        if out.verdict == redirected(hook) {
            // Only the label, the checksum and the MAC header may change, and as the spec says.
            let egress = role == 0;
            let ip_in = &bytes[ip_at..];
            let (dscp_in, _) = dscp_ecn(ip_in).expect("a redirected packet has an IP header");
            let label = if egress { egress_label } else { dscp_in & s.cfg.label_mask() };
            let (to, macs) = if !egress {
                prop_assert!(s.cfg.link(label).is_some(), "label {} delivered", label);
                if s.ethernet() {
                    prop_assert_eq!(&bytes[..12], &[EXT_MAC, PEER_MAC].concat()[..], "only the peer's frames to ext are delivered");
                }
                (hidden_ifindex(label), [link_mac(label), hidden_mac(label)].concat())
            } else if s.ethernet() {
                (EXT_IFINDEX, [PEER_MAC, EXT_MAC].concat())
            } else {
                (EXT_IFINDEX, bytes[..12].to_vec())
            };
            prop_assert_eq!(out.redirect.map(|r| (r.ifindex, r.flags)), Some((to, 0)));
            prop_assert_eq!(&out.packet[..12], &macs[..], "MAC header");
            let ethertype = if ip_at == ETH_LEN {
                u16::from_be_bytes([bytes[12], bytes[13]])
            } else if ip_in[0] >> 4 == 4 {
                ETHERTYPE_IPV4
            } else {
                ETHERTYPE_IPV6
            };
            prop_assert_eq!(&out.packet[12..ETH_LEN], &ethertype.to_be_bytes()[..], "EtherType");
            let ip_out = &out.packet[ETH_LEN..];
            only_dscp_and_checksum_differ(ip_in, ip_out)?;
            if ip_in[0] >> 4 == 4 && ipv4_checksum_valid(ip_in) {
                prop_assert!(ipv4_checksum_valid(ip_out), "{}: checksum broken", prog.name);
            }
            let (dscp_out, _) = dscp_ecn(ip_out).expect("still a header");
            let want = if egress { label } else { 0 };
            prop_assert_eq!(dscp_out & s.cfg.label_mask(), want, "label bits");
        } else {
            prop_assert_eq!(out.redirect, None);
            prop_assert_eq!(&out.packet, &bytes, "{}: not redirected yet modified", prog.name);
        }
    }

    /// A frame that is not IPv4/IPv6 leaves every program unmodified: egress drops it, ingress
    /// passes it.
    #[test]
    fn non_ip_is_never_modified(
        which in any::<prop::sample::Index>(),
        label_pick in any::<prop::sample::Index>(),
        mut bytes in prop::collection::vec(any::<u8>(), 0..120),
        hook in hook_strategy(),
    ) {
        let s = which.get(all_setups());
        let label = label_pick.get(&s.cfg.links).label;
        // Not IP: on Ethernet the EtherType says so, on an L3 ext the version nibble.
        if bytes.len() >= ETH_LEN && matches!(u16::from_be_bytes([bytes[12], bytes[13]]), ETHERTYPE_IPV4 | ETHERTYPE_IPV6) {
            bytes[12] ^= 0x40;
        }
        let frame = bytes.clone();
        let eg = s.run(&programs::egress_name(label), &frame);
        prop_assert_eq!(eg.verdict, 2, "egress drops what is not IP");
        prop_assert_eq!(&eg.packet, &frame);
        prop_assert_eq!(eg.redirect, None);
        counted_once(&eg, EGRESS_DROP, frame.len())?;

        let mut input = bytes;
        if !s.ethernet() && !input.is_empty() && matches!(input[0] >> 4, 4 | 6) {
            input[0] ^= 0x80;
        }
        let pass = match hook { Hook::Tc => -1, Hook::Xdp => 2 };
        let ing = s.run(programs::ingress_name(hook), &input);
        prop_assert_eq!(ing.verdict, pass, "ingress passes what is not IP");
        prop_assert_eq!(&ing.packet, &input);
        prop_assert_eq!(ing.redirect, None);
        counted_once(&ing, PASS, input.len())?;
    }
}

/// The byte comparison can fail: a change outside DSCP/checksum, or in the ECN bits, is caught.
#[test]
fn byte_checks_can_fail() {
    let v4 = V4::default().bytes();
    let v6 = V6::default().bytes();
    let mut ok4 = v4.clone();
    ok4[1] ^= 0xfc;
    ok4[10] ^= 0xff;
    let mut ok6 = v6.clone();
    ok6[0] ^= 0x0f;
    ok6[1] ^= 0xc0;
    assert!(only_dscp_and_checksum_differ(&v4, &ok4).is_ok());
    assert!(only_dscp_and_checksum_differ(&v6, &ok6).is_ok());
    for (base, at, bit) in [
        (&v4, 1, 0x01),
        (&v4, 0, 0x01),
        (&v4, 12, 0x80),
        (&v4, v4.len() - 1, 1),
        (&v6, 0, 0x10),
        (&v6, 1, 0x10),
        (&v6, 1, 0x20),
        (&v6, 2, 1),
    ] {
        let mut bad = base.clone();
        bad[at] ^= bit;
        assert!(
            only_dscp_and_checksum_differ(base, &bad).is_err(),
            "change at {at} ({bit:#x}) not caught"
        );
    }
}
