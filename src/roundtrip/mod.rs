//! One frame through the programs in the offline VM, checked against the wire-format spec:
//! egress on the link with `label`, the guard and each ingress flavour on what egress sent, then
//! the guard and each ingress flavour on the frame as if it were ext's own or foreign traffic. Shared by `l3mp replay`, the fuzz
//! targets and the bounded fuzz test.

mod pool;
pub mod spec;

use crate::programs::layout::*;
use crate::programs::{self, Config, ExtKind, Family, Framing, Hook, Unknown};
use crate::vm::{Machine, Outcome, Skb};
use pool::Buf;

/// What one program did, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub program: String,
    /// The `__sk_buff` fields it ran with (TC).
    pub skb: Skb,
    /// What it did, but for the packet after the run: that was compared with the spec where
    /// it lay in the VM, and is not kept.
    pub outcome: Outcome,
}

/// A frame's trip: every program run, in order, and whether the round trip restored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trip {
    pub steps: Vec<Step>,
    /// Egress marked and redirected it, and both ingress flavours restored it (a far-end
    /// probe, which they record and drop, is not restored).
    pub restored: bool,
}

impl Trip {
    /// A trip with no steps yet.
    fn new() -> Trip {
        Trip {
            steps: pool::steps(),
            restored: false,
        }
    }

    /// Gives the trip's buffers back to this thread for the next check (optional: a caller
    /// checking many frames allocates nothing per frame once they have grown).
    pub fn recycle(self) {
        pool::recycle(self.steps);
    }
}

/// A way the programs departed from the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

/// What the spec says a program must do with a packet.
struct Expected<'a> {
    verdict: i32,
    redirect: Option<u32>,
    packet: Bytes<'a>,
    tc_index: u32,
    /// Where an IPv4 checksum the program may have rewritten sits in `packet`.
    csum_at: usize,
    /// The `probes` entry a far end's probe leaves: its label and word.
    probe: Option<(u8, [u8; 8])>,
}

/// The bytes a program must leave: `head`, then `tail`, bytes it was given. Only the headers
/// a program may change are written out; the rest is compared where it lies.
struct Bytes<'a> {
    head: Buf,
    tail: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Exactly the bytes it was given.
    fn given(bytes: &'a [u8]) -> Bytes<'a> {
        Bytes {
            head: Buf::new(),
            tail: bytes,
        }
    }

    /// `head` (written by `write`), then `ip` from [`spec::label_span`] on: a packet whose label
    /// `write` changed.
    fn labelled(family: Family, ip: &'a [u8], write: impl FnOnce(&mut Buf)) -> Bytes<'a> {
        let mut head = Buf::new();
        write(&mut head);
        Bytes {
            head,
            tail: &ip[spec::label_span(family)..],
        }
    }

    fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// Whether `got` is these bytes.
    fn is(&self, got: &[u8]) -> bool {
        got.len() == self.len() && {
            let (head, tail) = got.split_at(self.head.len());
            *head == self.head[..] && tail == self.tail
        }
    }

    /// All of them in one buffer (for a report).
    fn whole(&self) -> Vec<u8> {
        [&self.head[..], self.tail].concat()
    }
}

/// Runs `frame` (an Ethernet frame as the link with `label` sends it) through egress, both
/// ingress flavours on what egress sent, and both ingress flavours on the frame as if it came
/// from elsewhere.
pub fn check(m: &Machine, label: u8, frame: &[u8]) -> Result<Trip, Violation> {
    scanned(m, || {
        let cfg = m.cfg();
        let mut trip = egress(m, label, frame)?;
        let foreign = match cfg.ext.kind {
            ExtKind::L3 => frame.get(ETH_HLEN as usize..).unwrap_or_default(),
            ExtKind::Ethernet { .. } => frame,
        };
        guard_into(&mut trip, m, foreign, 0)?;
        for hook in [Hook::Tc, Hook::Xdp] {
            ingress_into(&mut trip, m, hook, foreign)?;
        }
        Ok(trip)
    })
}

/// Runs `trip` with the maps scanned once at its end for writes no run looked up (see
/// [`Machine::batched`]), which are a violation.
fn scanned(m: &Machine, trip: impl FnOnce() -> Result<Trip, Violation>) -> Result<Trip, Violation> {
    m.batched(trip).map_err(|strays| {
        Violation(format!(
            "a program wrote {strays}, none of which it looked up"
        ))
    })?
}

/// Egress on the link with `label`, then, when egress redirected the frame, both ingress
/// flavours on what arrives at the far ext: they must restore it with the label cleared (or,
/// for the far-end probe, record it and drop it).
pub fn egress(m: &Machine, label: u8, frame: &[u8]) -> Result<Trip, Violation> {
    scanned(m, || egress_trip(m, label, frame))
}

fn egress_trip(m: &Machine, label: u8, frame: &[u8]) -> Result<Trip, Violation> {
    let cfg = m.cfg();
    let link = cfg
        .link(label)
        .ok_or_else(|| Violation(format!("no link has label {label}")))?;
    let mut trip = Trip::new();
    let name = programs::egress_name(label);
    let expected = expect_egress(cfg, label, frame);
    // What egress sent, for the far end.
    let mut sent_packet = Buf::new();
    let skb = from_link(cfg, frame);
    run_checked(
        &mut trip,
        m,
        &name,
        frame,
        skb,
        &expected,
        Some(&mut sent_packet),
    )?;
    let out = last(&trip);
    if out.verdict != TC_ACT_REDIRECT {
        return Ok(trip);
    }
    let tc_index = out.tc_index;
    // What leaves ext: an L3 ext carries no MAC header.
    let ethernet = matches!(cfg.ext.kind, ExtKind::Ethernet { .. });
    let at = if ethernet { 0 } else { ETH_HLEN as usize };
    guard_into(&mut trip, m, &sent_packet[at..], tc_index)?;
    // What arrives on the far ext: on an Ethernet ext the far end is this configuration
    // mirrored (its MAC our peer's, its peer's ours), so this end's demux stands in for it on
    // the frame with the MACs swapped (in place: nothing reads the sent frame after).
    if ethernet {
        swap_macs(&mut sent_packet);
    }
    let arriving = &sent_packet[at..];
    let ip = &frame[ETH_HLEN as usize..];
    let family = spec::family(ip).expect("egress redirects only well-formed IP");
    // This end's probe: the far end records it under the label and drops it, its label
    // bits cleared where it lies. Anything else is restored on the link.
    let probe = spec::probe(family, ip);
    let packet = match probe {
        Some(_) => {
            let (before, ip) = arriving.split_at(if ethernet { ETH_HLEN as usize } else { 0 });
            Bytes::labelled(family, ip, |head| {
                head.extend_from_slice(before);
                spec::label_head_into(family, ip, cfg.label_bits, 0, head);
            })
        }
        None => Bytes::labelled(family, ip, |head| {
            head.extend_from_slice(&cfg.macs.user_end(link.label));
            head.extend_from_slice(&cfg.macs.hidden_end(link.label));
            head.extend_from_slice(&frame[12..14]);
            spec::label_head_into(family, ip, cfg.label_bits, 0, head);
        }),
    };
    let mut expected = Expected {
        verdict: 0,
        redirect: probe.is_none().then_some(link.peer_ifindex),
        packet,
        tc_index: 0,
        csum_at: FRAMED_IPV4_CSUM,
        probe: probe.map(|word| (link.label, word)),
    };
    for hook in [Hook::Tc, Hook::Xdp] {
        let program = programs::ingress_name(hook);
        let skb = Skb::of(arriving, programs::sees_frames(cfg, program));
        expected.verdict = match probe {
            Some(_) => hook.drop(),
            None => hook.redirected(),
        };
        run_checked(&mut trip, m, program, arriving, skb, &expected, None)?;
    }
    trip.restored = probe.is_none();
    Ok(trip)
}

/// A frame this end sends out of an Ethernet ext, as this end's demux would see it if it were
/// the far end: the far end is this configuration mirrored (its MAC our peer's, its peer's
/// ours), so the frame's two MACs change places.
pub fn at_the_mirror(frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    swap_macs(&mut out);
    out
}

/// Swaps the destination and source MACs of `frame` (nothing if it is shorter than both).
fn swap_macs(frame: &mut [u8]) {
    if let Some(macs) = frame.get_mut(..12) {
        let (destination, source) = macs.split_at_mut(6);
        destination.swap_with_slice(source);
    }
}

/// The guard on a packet leaving ext (as it leaves: without a MAC header on an L3 ext) whose
/// `skb->tc_index` is `tc_index`: from a managed link it keeps its label and the marker is
/// reset; otherwise its label bits are cleared. On an L3 ext the same bytes are also sent as
/// MPLS, which the guard must leave alone.
pub fn guard(m: &Machine, wire: &[u8], tc_index: u32) -> Result<Trip, Violation> {
    scanned(m, || {
        let mut trip = Trip::new();
        guard_into(&mut trip, m, wire, tc_index)?;
        Ok(trip)
    })
}

/// Like [`guard`], adding the steps to `trip`.
fn guard_into(trip: &mut Trip, m: &Machine, wire: &[u8], tc_index: u32) -> Result<(), Violation> {
    let mut untagged = Vec::new();
    for skb in kernel_and_other(m.cfg(), Hook::Tc, wire, &mut untagged).1 {
        let skb = Skb { tc_index, ..skb };
        guard_with(trip, m, wire, skb)?;
    }
    Ok(())
}

fn guard_with(trip: &mut Trip, m: &Machine, wire: &[u8], skb: Skb) -> Result<(), Violation> {
    let cfg = m.cfg();
    let mut expected = Expected {
        verdict: TC_ACT_UNSPEC,
        redirect: None,
        packet: Bytes::given(wire),
        tc_index: 0,
        csum_at: FRAMED_IPV4_CSUM,
        probe: None,
    };
    if skb.tc_index != FROM_LINK as u32 {
        expected.tc_index = skb.tc_index;
        if let Some((family, ip)) = classify(cfg, Hook::Tc, wire, &skb) {
            let at = wire.len() - ip.len();
            expected.packet = Bytes::labelled(family, ip, |head| {
                head.extend_from_slice(&wire[..at]);
                spec::label_head_into(family, ip, cfg.label_bits, 0, head);
            });
            expected.csum_at = at + IPV4_CSUM as usize;
        }
    }
    run_checked(trip, m, programs::GUARD, wire, skb, &expected, None)
}

/// The ingress flavour of `hook` on a packet arriving on ext (starting at the IP header on an
/// L3 ext, at the Ethernet header otherwise), with the `__sk_buff` the kernel gives it: at TC
/// on an Ethernet ext a VLAN tag is taken off first. On an L3 ext at TC, the same bytes are
/// also received as MPLS, which the demux must leave alone.
pub fn ingress(m: &Machine, hook: Hook, wire: &[u8]) -> Result<Trip, Violation> {
    scanned(m, || {
        let mut trip = Trip::new();
        ingress_into(&mut trip, m, hook, wire)?;
        Ok(trip)
    })
}

/// Like [`ingress`], adding the steps to `trip`.
fn ingress_into(trip: &mut Trip, m: &Machine, hook: Hook, wire: &[u8]) -> Result<(), Violation> {
    let cfg = m.cfg();
    let mut untagged = Buf::new();
    let (data, skbs) = kernel_and_other(cfg, hook, wire, &mut untagged);
    for skb in skbs {
        let expected = expect_ingress(cfg, hook, data, &skb);
        run_checked(
            trip,
            m,
            programs::ingress_name(hook),
            data,
            skb,
            &expected,
            None,
        )?;
        if let (ExtKind::Ethernet { mac, peer_mac }, Some(_)) = (cfg.ext.kind, last(trip).redirect)
        {
            if data[..6] != mac || data[6..12] != peer_mac {
                return Err(Violation(format!(
                    "{}: redirected a frame from {:02x?} to {:02x?}, not from the peer to ext",
                    programs::ingress_name(hook),
                    &data[6..12],
                    &data[..6]
                )));
            }
        }
    }
    Ok(())
}

/// The data the program at ext's `hook` sees of `wire`, and the `__sk_buff` the kernel gives
/// it, and on an L3 ext at TC also one where the tunnel says the packet is MPLS (whatever its
/// first byte reads as). At TC on an Ethernet ext the kernel takes a VLAN tag off: the data is
/// then the rest of the frame, written into `untagged`.
fn kernel_and_other<'a>(
    cfg: &Config,
    hook: Hook,
    wire: &'a [u8],
    untagged: &'a mut Vec<u8>,
) -> (&'a [u8], impl Iterator<Item = Skb>) {
    let (data, kernel, other) = match (hook, cfg.ext.kind) {
        (Hook::Tc, ExtKind::Ethernet { .. }) => {
            let (data, skb) = Skb::received_in(wire, untagged);
            (data, skb, None)
        }
        (Hook::Tc, ExtKind::L3) => (
            wire,
            Skb::of(wire, false),
            Some(Skb {
                protocol: ETH_P_MPLS,
                ..Skb::default()
            }),
        ),
        (Hook::Xdp, _) => (wire, Skb::default(), None),
    };
    (data, std::iter::once(kernel).chain(other))
}

/// The MPLS unicast EtherType.
pub const ETH_P_MPLS: [u8; 2] = [0x88, 0x47];

/// The `__sk_buff` egress gets for `frame` from a link. A frame longer than ext's MTU allows
/// comes from a link only as a GSO packet (a link's MTU is never above ext's, and a capture
/// shows a GSO packet whole), which the kernel cuts later into segments that fit.
fn from_link(cfg: &Config, frame: &[u8]) -> Skb {
    let longest = cfg.ext.mtu as usize + ETH_HLEN as usize;
    let gso_size = if frame.len() > longest {
        cfg.ext.mtu.saturating_sub(TCP_IPV6_HEADERS)
    } else {
        0
    };
    Skb {
        gso_size,
        ..Skb::of(frame, true)
    }
}

/// The IPv6 and TCP headers a segment of a GSO packet carries besides its payload.
const TCP_IPV6_HEADERS: u32 = 60;

/// Runs `program` on `packet` and compares what it did with `expected`, adding the step to
/// `trip` (and the packet after the run to `keep`, if given).
fn run_checked(
    trip: &mut Trip,
    m: &Machine,
    program: &str,
    packet: &[u8],
    skb: Skb,
    expected: &Expected,
    keep: Option<&mut Buf>,
) -> Result<(), Violation> {
    let mut step = pool::step();
    m.run_then(program, packet, skb, &mut step.outcome, |got, after| {
        if let Some(keep) = keep {
            keep.extend_from_slice(after);
        }
        compare(program, got, after, expected)
    })
    .map_err(|e| Violation(format!("{program}: VM error: {e}")))??;
    step.program.clear();
    step.program.push_str(program);
    step.skb = skb;
    trip.steps.push(step);
    Ok(())
}

/// What the last program run did.
fn last(trip: &Trip) -> &Outcome {
    &trip.steps.last().expect("a step ran").outcome
}

/// The IP header inside an Ethernet frame, if the EtherType and the header agree.
fn framed_ip(frame: &[u8]) -> Option<(Family, &[u8])> {
    let family = spec::ethertype_family(frame)?;
    let ip = &frame[ETH_HLEN as usize..];
    (spec::family(ip)? == family).then_some((family, ip))
}

fn expect_egress<'a>(cfg: &Config, label: u8, frame: &'a [u8]) -> Expected<'a> {
    let Some((family, ip)) = framed_ip(frame) else {
        return Expected {
            verdict: TC_ACT_SHOT,
            redirect: None,
            packet: Bytes::given(frame),
            tc_index: 0,
            csum_at: FRAMED_IPV4_CSUM,
            probe: None,
        };
    };
    let packet = Bytes::labelled(family, ip, |head| {
        head.extend_from_slice(&frame[..ETH_HLEN as usize]);
        if let ExtKind::Ethernet { mac, peer_mac } = cfg.ext.kind {
            head[..6].copy_from_slice(&peer_mac);
            head[6..12].copy_from_slice(&mac);
        }
        spec::label_head_into(family, ip, cfg.label_bits, label, head);
    });
    Expected {
        verdict: TC_ACT_REDIRECT,
        redirect: Some(cfg.ext.ifindex),
        packet,
        tc_index: FROM_LINK as u32,
        csum_at: FRAMED_IPV4_CSUM,
        probe: None,
    }
}

fn expect_ingress<'a>(cfg: &Config, hook: Hook, wire: &'a [u8], skb: &Skb) -> Expected<'a> {
    let untouched = |verdict| Expected {
        verdict,
        redirect: None,
        packet: Bytes::given(wire),
        tc_index: 0,
        csum_at: FRAMED_IPV4_CSUM,
        probe: None,
    };
    let Some((family, ip)) = classify(cfg, hook, wire, skb) else {
        return untouched(hook.pass());
    };
    let label = spec::label(family, ip, cfg.label_bits);
    if label == 0 {
        return untouched(hook.pass());
    }
    if let ExtKind::Ethernet { mac, peer_mac } = cfg.ext.kind {
        if wire[..6] != mac || wire[6..12] != peer_mac {
            return untouched(hook.pass());
        }
    }
    let Some(link) = cfg.link(label) else {
        return untouched(match cfg.unknown {
            Unknown::Pass => hook.pass(),
            Unknown::Drop => hook.drop(),
        });
    };
    if let Some(word) = spec::probe(family, ip) {
        // Recorded and dropped, its label bits cleared in place.
        let packet = Bytes::labelled(family, ip, |head| {
            head.extend_from_slice(&wire[..wire.len() - ip.len()]);
            spec::label_head_into(family, ip, cfg.label_bits, 0, head);
        });
        return Expected {
            verdict: hook.drop(),
            redirect: None,
            packet,
            tc_index: 0,
            csum_at: FRAMED_IPV4_CSUM,
            probe: Some((label, word)),
        };
    }
    let ethertype = match family {
        Family::V4 => [0x08, 0x00],
        Family::V6 => [0x86, 0xdd],
    };
    let packet = Bytes::labelled(family, ip, |head| {
        head.extend_from_slice(&cfg.macs.user_end(link.label));
        head.extend_from_slice(&cfg.macs.hidden_end(link.label));
        head.extend_from_slice(&ethertype);
        spec::label_head_into(family, ip, cfg.label_bits, 0, head);
    });
    Expected {
        verdict: hook.redirected(),
        redirect: Some(link.peer_ifindex),
        packet,
        tc_index: 0,
        csum_at: FRAMED_IPV4_CSUM,
        probe: None,
    }
}

/// The IP packet on ext, if it is one to l3mp: on an Ethernet ext behind an agreeing EtherType
/// and, at TC, with no VLAN tag held by the kernel; on an L3 ext at its start, at TC of the
/// family the tunnel gave it (XDP has only the bytes).
fn classify<'w>(cfg: &Config, hook: Hook, wire: &'w [u8], skb: &Skb) -> Option<(Family, &'w [u8])> {
    match (cfg.ext.kind, hook) {
        (ExtKind::Ethernet { .. }, Hook::Tc) if skb.vlan_tci.is_some() => None,
        (ExtKind::Ethernet { .. }, _) => framed_ip(wire),
        (ExtKind::L3, Hook::Tc) => {
            let family = spec::family(wire)?;
            let said = match family {
                Family::V4 => [0x08, 0x00],
                Family::V6 => [0x86, 0xdd],
            };
            (skb.protocol == said).then_some((family, wire))
        }
        (ExtKind::L3, Hook::Xdp) => spec::family(wire).map(|f| (f, wire)),
    }
}

/// Where a rewritten IPv4 checksum sits in an Ethernet frame: 10 bytes into the IP header.
const FRAMED_IPV4_CSUM: usize = (ETH_HLEN + IPV4_CSUM) as usize;

/// Compares an outcome with the spec; the IPv4 checksum field may differ only between the two
/// ones'-complement zeros (0x0000 and 0xffff), which incremental updates (RFC 1624) and a
/// computation from scratch may choose differently for a header whose checksum was 0xffff.
fn compare(
    program: &str,
    got: &Outcome,
    packet: &[u8],
    expected: &Expected,
) -> Result<(), Violation> {
    if got.verdict != expected.verdict {
        return Err(Violation(format!(
            "{program}: verdict {} where the spec says {}",
            got.verdict, expected.verdict
        )));
    }
    let target = got.redirect.map(|r| r.ifindex);
    if target != expected.redirect {
        return Err(Violation(format!(
            "{program}: redirect to {target:?} where the spec says {:?}",
            expected.redirect
        )));
    }
    let recorded: Vec<(u8, [u8; 8])> = got
        .probes
        .iter()
        .map(|&(label, word, _)| (label as u8, word))
        .collect();
    if recorded != expected.probe.into_iter().collect::<Vec<_>>() {
        return Err(Violation(format!(
            "{program}: recorded the probes {recorded:?} where the spec says {:?}",
            expected.probe
        )));
    }
    if got.tc_index != expected.tc_index {
        return Err(Violation(format!(
            "{program}: tc_index {:#x} where the spec says {:#x}",
            got.tc_index, expected.tc_index
        )));
    }
    if expected.packet.is(packet) {
        return Ok(());
    }
    let expected_packet = expected.packet.whole();
    if !same_bytes(&expected_packet, packet, expected.csum_at) {
        let at = expected_packet
            .iter()
            .zip(packet)
            .position(|(a, b)| a != b)
            .unwrap_or(expected_packet.len().min(packet.len()));
        return Err(Violation(format!(
            "{program}: output differs from the spec at byte {at} (lengths {} and {})",
            packet.len(),
            expected_packet.len()
        )));
    }
    Ok(())
}

fn same_bytes(expected: &[u8], got: &[u8], csum_at: usize) -> bool {
    if expected == got {
        return true;
    }
    if expected.len() != got.len() {
        return false;
    }
    let csum = csum_at..csum_at + 2;
    let elsewhere_equal = (0..got.len())
        .filter(|i| !csum.contains(i))
        .all(|i| expected[i] == got[i]);
    elsewhere_equal
        && got.len() >= csum.end
        && matches!(
            (&expected[csum.clone()], &got[csum]),
            ([0, 0], [0xff, 0xff]) | ([0xff, 0xff], [0, 0])
        )
}

/// A fuzz case: a configuration, the label under test and a packet, decoded from arbitrary
/// bytes. Byte 0 picks the label width (1 + b % 6), byte 1 the label under test and byte 2 a
/// second link's label (each 1 + b % max), byte 3 the ext kind (bit 0: Ethernet) and the
/// unknown-label policy (bit 1: drop); the rest is the packet. Shared by the fuzz targets,
/// their seed corpus and the differential test.
#[derive(Clone, Debug)]
pub struct Case {
    pub cfg: Config,
    pub label: u8,
    pub packet: Vec<u8>,
}

/// Bytes of a [`Case`] before the packet.
pub const CASE_HEADER: usize = 4;

impl Case {
    /// Decodes a case; `None` when there are fewer than [`CASE_HEADER`] bytes.
    pub fn from_bytes(data: &[u8]) -> Option<Case> {
        let (head, packet) = data.split_at_checked(CASE_HEADER)?;
        let bits = 1 + head[0] % 6;
        let max = (1u8 << bits) - 1;
        let label = 1 + head[1] % max;
        let mut links = vec![("a".to_string(), label)];
        let other = 1 + head[2] % max;
        if other != label {
            links.push(("b".to_string(), other));
        }
        let unknown = if head[3] & 2 != 0 {
            Unknown::Drop
        } else {
            Unknown::Pass
        };
        let framing = if head[3] & 1 != 0 {
            Framing::Ethernet
        } else {
            Framing::Ip
        };
        Some(Case {
            cfg: Config::offline(bits, framing, &links, unknown),
            label,
            packet: packet.to_vec(),
        })
    }

    /// The bytes that decode to this case with `packet` (label bits, labels and flags given).
    pub fn to_bytes(bits: u8, label: u8, other: u8, flags: u8, packet: &[u8]) -> Vec<u8> {
        let mut out = vec![bits - 1, label - 1, other - 1, flags];
        out.extend(packet);
        out
    }
}
