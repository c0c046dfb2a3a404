//! Part 2: TCP throughput and small-packet UDP rate between two hosts (network namespaces)
//! joined by a veth ext, over five ways, all set up side by side in their own labs and
//! measured in turn, round by round:
//!
//! - *plain*: ext itself, nothing attached, offloads as the kernel sets them;
//! - *plain, tx csum off*: the same with transmit checksum offload off on both ext0 (what
//!   native XDP on a veth needs), the baseline of the XDP way;
//! - *muxed, TC ingress*: link `a` of an l3mp instance on each host, `--ingress tc`;
//! - *muxed, XDP ingress*: the same with `--ingress xdp`, tx checksum offload off;
//! - *VXLAN*: a VXLAN device over ext0 in the plain lab.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::Error;
use crate::lab::{
    ext_address, link_addresses, AddressKind, ExtKind, Host, Lab, Side, EXT, LINK_TIMEOUT,
};
use crate::programs::Unknown;
use crate::run::{IngressChoice, Instance, LinkArg, Probe, RunOptions};
use crate::sys::netlink::Netlink;

use super::figure::{Figure, Report, Sample, Target};
use super::testrun::RuntimeStats;
use super::traffic;
use super::Settings;

/// Target for TCP: at least this share of plain.
pub const TCP_TARGET: f64 = 0.97;
/// Target for small-packet UDP: at least this share of plain.
pub const UDP_TARGET: f64 = 0.90;

/// The muxed link on both hosts.
const LINK: (&str, u8) = ("a", 1);
/// The VXLAN device on both hosts, and its VNI.
const VXLAN: &str = "vx0";
const VNI: u32 = 42;

/// A way between host A and host B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Plain,
    PlainTxOff,
    MuxTc,
    MuxXdp,
    Vxlan,
}

impl Way {
    const ALL: [Way; 5] = [
        Way::Plain,
        Way::PlainTxOff,
        Way::MuxTc,
        Way::MuxXdp,
        Way::Vxlan,
    ];

    fn name(self) -> &'static str {
        match self {
            Way::Plain => "plain ext",
            Way::PlainTxOff => "plain ext, tx csum off",
            Way::MuxTc => "muxed, TC ingress",
            Way::MuxXdp => "muxed, XDP ingress",
            Way::Vxlan => "VXLAN over ext",
        }
    }

    /// Host B's address (in `lab`, this way's) that traffic from host A takes this way to.
    fn destination(self, kind: AddressKind, lab: &Lab) -> Result<IpAddr, Error> {
        Ok(match self {
            Way::Plain | Way::PlainTxOff => ext_address(kind, Side::B),
            Way::MuxTc | Way::MuxXdp => lab.host(Side::B).link_address(LINK.0, LINK.1, kind)?,
            Way::Vxlan => vxlan_address(kind, Side::B),
        })
    }
}

/// What is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Traffic {
    Tcp(AddressKind),
    Udp(AddressKind),
}

impl Traffic {
    const ALL: [Traffic; 4] = [
        Traffic::Tcp(AddressKind::Ipv4),
        Traffic::Tcp(AddressKind::Ipv6),
        Traffic::Udp(AddressKind::Ipv4),
        Traffic::Udp(AddressKind::Ipv6),
    ];

    fn name(self) -> String {
        match self {
            Traffic::Tcp(kind) => format!("TCP {kind}"),
            Traffic::Udp(kind) => format!("UDP {kind} {} B", traffic::UDP_PAYLOAD),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Traffic::Tcp(_) => "Gbit/s",
            Traffic::Udp(_) => "Mpps",
        }
    }

    fn target(self) -> f64 {
        match self {
            Traffic::Tcp(_) => TCP_TARGET,
            Traffic::Udp(_) => UDP_TARGET,
        }
    }

    fn kind(self) -> AddressKind {
        match self {
            Traffic::Tcp(kind) | Traffic::Udp(kind) => kind,
        }
    }
}

/// The VXLAN device's address of `kind` on `side`.
fn vxlan_address(kind: AddressKind, side: Side) -> IpAddr {
    let n = if side == Side::A { 1 } else { 2 };
    match kind {
        AddressKind::Ipv4 => Ipv4Addr::new(10, 3, 0, n).into(),
        _ => Ipv6Addr::new(0xfd00, 3, 0, 0, 0, 0, 0, n.into()).into(),
    }
}

/// Every lab, with the instances running in them. Fields drop in order: instances first.
struct Labs {
    _instances: Vec<Instance>,
    plain: Lab,
    tx_off: Lab,
    tc: Lab,
    xdp: Lab,
}

impl Labs {
    fn create() -> Result<Labs, Error> {
        let plain = Lab::new("l3mp-bench-plain", ExtKind::Veth)?;
        for side in Side::BOTH {
            add_vxlan(plain.host(side))?;
        }
        let tx_off = Lab::new("l3mp-bench-txoff", ExtKind::Veth)?;
        let tc = Lab::new("l3mp-bench-tc", ExtKind::Veth)?;
        let xdp = Lab::new("l3mp-bench-xdp", ExtKind::Veth)?;
        for side in Side::BOTH {
            tx_off.host(side).set_tx_checksum(EXT, false)?;
            xdp.host(side).set_tx_checksum(EXT, false)?;
        }
        let mut instances = Vec::new();
        for (lab, ingress) in [(&tc, IngressChoice::Tc), (&xdp, IngressChoice::Xdp)] {
            for side in Side::BOTH {
                instances.push(start(lab.host(side), ingress)?);
            }
            for side in Side::BOTH {
                lab.host(side).configure_link(
                    LINK.0,
                    &link_addresses(LINK.1, side),
                    LINK_TIMEOUT,
                )?;
            }
        }
        Ok(Labs {
            _instances: instances,
            plain,
            tx_off,
            tc,
            xdp,
        })
    }

    fn lab(&self, way: Way) -> &Lab {
        match way {
            Way::Plain | Way::Vxlan => &self.plain,
            Way::PlainTxOff => &self.tx_off,
            Way::MuxTc => &self.tc,
            Way::MuxXdp => &self.xdp,
        }
    }
}

/// An l3mp instance on `host`'s ext with the one link, `ingress` as asked.
pub fn start_instance(
    host: &Host,
    links: &[(String, u8)],
    label_bits: u8,
    ingress: IngressChoice,
) -> Result<Instance, Error> {
    let opts = RunOptions {
        ext: EXT.to_string(),
        links: links
            .iter()
            .map(|(name, label)| LinkArg {
                name: name.clone(),
                label: *label,
            })
            .collect(),
        label_bits,
        ingress,
        peer: Some(ext_address(AddressKind::Ipv4, host.side().other())),
        unknown: Unknown::Pass,
        host_id: None,
        // Nothing of l3mp's own among the measured packets.
        probe: Probe::Off,
    };
    host.run(|| Instance::start(&opts))?
        .map_err(|e| Error::new(format!("host {}: {e}", host.side())))
}

fn start(host: &Host, ingress: IngressChoice) -> Result<Instance, Error> {
    start_instance(host, &[(LINK.0.to_string(), LINK.1)], 4, ingress)
}

/// A VXLAN device over ext0 to the other host, addressed and up.
fn add_vxlan(host: &Host) -> Result<(), Error> {
    let side = host.side();
    let local = ext_address(AddressKind::Ipv4, side);
    let remote = ext_address(AddressKind::Ipv4, side.other());
    host.run(|| -> Result<(), crate::sys::SysError> {
        let netlink = Netlink::new()?;
        let ext = netlink.link(EXT)?.ok_or_else(|| {
            crate::sys::SysError::other(format!("looking up {EXT}"), "it does not exist")
        })?;
        netlink.create_vxlan(VXLAN, VNI, ext.index, local, remote)
    })?
    .map_err(|e| Error::new(format!("host {side}: {e}")))?;
    let addresses: Vec<(IpAddr, u8)> = [AddressKind::Ipv4, AddressKind::Ipv6]
        .iter()
        .map(|&kind| (vxlan_address(kind, side), kind.prefix_len()))
        .collect();
    Ok(host.configure_link(VXLAN, &addresses, LINK_TIMEOUT)?)
}

/// Mean ns per run of every l3mp program that ran during a UDP flood from host A to `to` in
/// `lab`, from the BPF runtime statistics (on only for this run, which is not a figure):
/// the time the programs take at their hooks on real traffic. Sorted by name, with the runs.
fn hook_times(lab: &Lab, to: IpAddr, secs: f64) -> Result<Vec<(String, f64, u64)>, Error> {
    let snapshot = || -> Result<Vec<(u32, String, u64, u64)>, Error> {
        let mut out = Vec::new();
        for info in aya::programs::loaded_programs() {
            let info = info.map_err(|e| Error::new(format!("listing BPF programs: {e}")))?;
            let name = info.name_as_str().unwrap_or_default().to_string();
            if name.starts_with("l3mp_") {
                let ns = info.run_time().as_nanos() as u64;
                out.push((info.id(), name, info.run_count(), ns));
            }
        }
        Ok(out)
    };
    let stats = RuntimeStats::enable()?;
    let before = snapshot()?;
    traffic::udp(lab.host(Side::A), lab.host(Side::B), to, secs)?;
    let after = snapshot()?;
    drop(stats);
    // Per name, the program of that name that ran most: the one attached in this lab (the
    // other labs' programs of the same names see at most a stray neighbour packet).
    let mut totals: Vec<(String, u64, u64)> = Vec::new();
    for (id, name, runs, ns) in after {
        let (runs0, ns0) = before
            .iter()
            .find(|(i, ..)| *i == id)
            .map_or((0, 0), |(_, _, r, n)| (*r, *n));
        let (runs, ns) = (runs - runs0, ns - ns0);
        match totals.iter_mut().find(|(n, ..)| *n == name) {
            Some(most) if most.1 < runs => *most = (name, runs, ns),
            Some(_) => {}
            None => totals.push((name, runs, ns)),
        }
    }
    // Programs of this lab not on the path (the TC lab's XDP demux) see strays only.
    let busiest = totals.iter().map(|(_, runs, _)| *runs).max().unwrap_or(0);
    totals.retain(|(_, runs, _)| *runs > busiest / 2);
    totals.sort();
    Ok(totals
        .into_iter()
        .map(|(name, runs, ns)| (name, ns as f64 / runs as f64, runs))
        .collect())
}

/// Measures every traffic kind over every way, `settings.traffic_rounds` times in turn, and
/// adds the figures.
pub fn measure(settings: &Settings, report: &mut Report) -> Result<(), Error> {
    let labs = Labs::create()?;
    let mut samples: Vec<((Way, Traffic), Vec<f64>)> = Vec::new();
    for round in 0..settings.traffic_rounds {
        for traffic in Traffic::ALL {
            // The ways one after the other, in turns forwards and backwards.
            let mut ways = Way::ALL;
            if round % 2 == 1 {
                ways.reverse();
            }
            for way in ways {
                let lab = labs.lab(way);
                let (a, b) = (lab.host(Side::A), lab.host(Side::B));
                let to = way.destination(traffic.kind(), lab)?;
                let value = match traffic {
                    Traffic::Tcp(_) => traffic::tcp(a, b, to, settings.traffic_secs),
                    Traffic::Udp(_) => traffic::udp(a, b, to, settings.traffic_secs),
                }
                .map_err(|e| Error::new(format!("{} over {}: {e}", traffic.name(), way.name())))?;
                match samples.iter_mut().find(|(k, _)| *k == (way, traffic)) {
                    Some((_, v)) => v.push(value),
                    None => samples.push(((way, traffic), vec![value])),
                }
                // Let the last transfer's leftovers drain before the next.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let sample = |way: Way, traffic: Traffic| {
        Sample::of(
            samples
                .iter()
                .find(|(k, _)| *k == (way, traffic))
                .map_or(&[][..], |(_, v)| v.as_slice()),
        )
    };
    for way in [Way::MuxTc, Way::MuxXdp] {
        let kind = AddressKind::Ipv4;
        let lab = labs.lab(way);
        let times = hook_times(lab, way.destination(kind, lab)?, settings.traffic_secs)?;
        let traffic = Traffic::Udp(kind);
        let per_packet = |w: Way| 1e3 / sample(w, traffic).median;
        let base = if way == Way::MuxXdp {
            Way::PlainTxOff
        } else {
            Way::Plain
        };
        let total: f64 = times.iter().map(|(_, ns, _)| ns).sum();
        let each: Vec<String> = times
            .iter()
            .map(|(name, ns, runs)| format!("{name} {ns:.0} ns ({runs} runs)"))
            .collect();
        report.notes.push(format!(
            "{} over {}, in an extra run with the BPF runtime statistics on: {}; together \
             {total:.0} ns per packet, of the {:.0} ns per packet this way costs more than {} \
             ({:.0} against {:.0} ns per packet)",
            traffic.name(),
            way.name(),
            each.join(", "),
            per_packet(way) - per_packet(base),
            base.name(),
            per_packet(way),
            per_packet(base),
        ));
    }
    let method = format!(
        "{} s of traffic from Rust sockets, sender on CPU 0, receiver on CPU 1, rate at the \
         receiver; median of {} rounds, the ways interleaved",
        settings.traffic_secs, settings.traffic_rounds
    );
    for traffic in Traffic::ALL {
        let figure = |way: Way, base: Way, target: Option<Target>| Figure {
            part: "end-to-end",
            name: format!("{}: {}", traffic.name(), way.name()),
            unit: traffic.unit(),
            value: sample(way, traffic),
            baseline_name: base.name().to_string(),
            baseline: sample(base, traffic),
            target,
            method: method.clone(),
        };
        let share = Some(Target::RatioAtLeast(traffic.target()));
        let ahead = Some(Target::RatioAtLeast(1.0));
        report.figures.extend([
            figure(Way::MuxTc, Way::Plain, share),
            figure(Way::MuxXdp, Way::PlainTxOff, share),
            figure(Way::MuxTc, Way::Vxlan, ahead),
            figure(Way::MuxXdp, Way::Vxlan, ahead),
            figure(Way::Vxlan, Way::Plain, None),
            figure(Way::PlainTxOff, Way::Plain, None),
        ]);
    }
    Ok(())
}
