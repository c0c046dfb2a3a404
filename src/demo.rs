//! `l3mp demo`: two hosts in network namespaces joined by an emulated tunnel, an l3mp instance
//! on each with the links a@1 and b@2, traffic over every link in both directions, a table of
//! what crossed where and the datapath's counters; then everything is removed.

use std::net::IpAddr;
use std::time::Duration;

use crate::lab::{
    self, ext_address, link_addresses, AddressKind, End, ExtKind, Lab, Side, UdpReceiver, EXT,
    LINK_TIMEOUT,
};
use crate::programs::Unknown;
use crate::run::{Counter, IngressChoice, Instance, LinkArg, Probe, RunOptions};
use crate::sys::caps::{missing_capabilities, Cap};

crate::error::line_error!(
    /// A demo that could not be run or whose traffic did not cross, as one line.
    from crate::run::Error, crate::lab::Error
);

/// The demo's links: name and label.
const LINKS: [(&str, u8); 2] = [("a", 1), ("b", 2)];
/// Datagrams and echo requests per row of the table.
const PER_ROW: usize = 3;
/// How long a datagram or an echo reply may take.
const WAIT: Duration = Duration::from_secs(2);
/// Payload bytes of the demo's datagrams.
const DATAGRAM: usize = 100;

/// One row of the traffic table.
struct Row {
    link: String,
    kind: AddressKind,
    from: Side,
    traffic: String,
    sent: usize,
    received: usize,
}

/// Runs the demo: builds the hosts (joined by TUN + relay, or by veth with `ethernet`), starts
/// l3mp on both with `ingress`, sends traffic, prints what crossed, and removes everything.
/// Fails when anything expected did not cross.
pub fn demo(ethernet: bool, ingress: IngressChoice) -> Result<(), Error> {
    let missing = missing_capabilities(&[Cap::NetAdmin, Cap::Bpf, Cap::SysAdmin]);
    if !missing.is_empty() {
        return Err(Error::new(format!(
            "the demo creates network namespaces and loads BPF programs: missing {}; run it as root",
            missing.join(", ")
        )));
    }
    if ingress == IngressChoice::Xdp && !ethernet {
        return Err(Error::new(
            "--ingress xdp needs --ethernet: the TUN ext has no native XDP",
        ));
    }
    let kind = if ethernet {
        ExtKind::Veth
    } else {
        ExtKind::Tun
    };
    let lab = Lab::new("l3mp-demo", kind)?;
    println!(
        "hosts A ({}) and B ({}) joined by {EXT}: {kind}",
        lab.host(Side::A).name(),
        lab.host(Side::B).name()
    );
    let rows = {
        let instances = start(&lab, ingress)?;
        let rows = traffic(&lab)?;
        print_rows(&rows);
        for (side, instance) in Side::BOTH.iter().zip(&instances) {
            print_counters(*side, instance)?;
        }
        if let Some(relay) = lab.relay_stats() {
            println!(
                "\nrelay: {} packets A->B, {} B->A, {} dropped",
                relay.a_to_b, relay.b_to_a, relay.dropped
            );
        }
        rows
    };
    drop(lab);
    println!("\nstopped both instances, deleted the namespaces and everything in them");
    let expected: usize = rows.iter().map(|r| r.sent).sum();
    let missed: usize = rows.iter().map(|r| r.sent - r.received).sum();
    if missed > 0 {
        return Err(Error::new(format!(
            "{missed} of {expected} packets did not cross (see the table above)"
        )));
    }
    println!("all {expected} packets crossed where they should");
    Ok(())
}

/// Starts an instance on each host and addresses the links.
fn start(lab: &Lab, ingress: IngressChoice) -> Result<Vec<Instance>, Error> {
    if lab.kind() == ExtKind::Veth && ingress == IngressChoice::Xdp {
        // Native XDP on a veth sees what the sender left to checksum offload.
        for side in Side::BOTH {
            lab.host(side).set_tx_checksum(EXT, false)?;
        }
        println!("tx checksum offload off on both {EXT} (native XDP on veth needs it)");
    }
    let mut instances = Vec::new();
    for side in Side::BOTH {
        let host = lab.host(side);
        let opts = RunOptions {
            ext: EXT.to_string(),
            links: LINKS
                .iter()
                .map(|&(name, label)| LinkArg {
                    name: name.to_string(),
                    label,
                })
                .collect(),
            label_bits: 4,
            ingress,
            peer: (lab.kind() == ExtKind::Veth)
                .then(|| ext_address(AddressKind::Ipv4, side.other())),
            unknown: Unknown::Pass,
            host_id: None,
            probe: Probe::On,
        };
        let instance = host
            .run(|| Instance::start(&opts))?
            .map_err(|e| Error::new(format!("host {side}: {e}")))?;
        println!(
            "host {side}: l3mp on {EXT} ({} ingress), links {}",
            instance.mode(),
            LINKS
                .iter()
                .map(|(name, label)| format!("{name}@{label}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        instances.push(instance);
    }
    for side in Side::BOTH {
        for (name, label) in LINKS {
            lab.host(side)
                .configure_link(name, &link_addresses(label, side), LINK_TIMEOUT)?;
        }
    }
    Ok(instances)
}

/// UDP and echo over every link, every kind of address, both directions; then UDP over ext
/// itself, which is not l3mp's, unlabelled and with a link's label.
fn traffic(lab: &Lab) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    for (name, label) in LINKS {
        for kind in AddressKind::ALL {
            for from in Side::BOTH {
                let to = lab.host(from.other()).link_address(name, label, kind)?;
                rows.push(udp(lab, name, kind, from, to, None)?);
                rows.push(echo(lab, name, kind, from, to)?);
            }
        }
    }
    // ext's own traffic, even with a link's label in DSCP, stays ext's: the guard clears it.
    let label = LINKS[0].1;
    for kind in [AddressKind::Ipv4, AddressKind::Ipv6] {
        for from in Side::BOTH {
            let to = ext_address(kind, from.other());
            rows.push(udp(lab, EXT, kind, from, to, None)?);
            rows.push(udp(lab, EXT, kind, from, to, Some(label))?);
        }
    }
    Ok(rows)
}

/// UDP datagrams from `from` on `device` to `to`, with `label` in DSCP if given.
fn udp(
    lab: &Lab,
    device: &str,
    kind: AddressKind,
    from: Side,
    to: IpAddr,
    label: Option<u8>,
) -> Result<Row, Error> {
    let receiver = UdpReceiver::bind(lab.host(from.other()).end(device), to, 0)?;
    let payloads: Vec<Vec<u8>> = (0..PER_ROW).map(|_| lab::payload(DATAGRAM)).collect();
    let sender = lab.host(from).end(device);
    let how = lab::SendOptions {
        tos: label.map(|l| l << 2),
        ..lab::SendOptions::default()
    };
    for payload in &payloads {
        lab::send(sender, to, receiver.port(), payload, how)?;
    }
    let expected: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    Ok(Row {
        link: device.to_string(),
        kind,
        from,
        traffic: match label {
            None => "UDP".to_string(),
            Some(l) => format!("UDP dscp={l}"),
        },
        sent: PER_ROW,
        received: receiver.count(&expected, WAIT)?,
    })
}

fn echo(lab: &Lab, device: &str, kind: AddressKind, from: Side, to: IpAddr) -> Result<Row, Error> {
    let sender: End<'_> = lab.host(from).end(device);
    let mut received = 0;
    for _ in 0..PER_ROW {
        received += usize::from(lab::echo(sender, to, WAIT)?);
    }
    Ok(Row {
        link: device.to_string(),
        kind,
        from,
        traffic: "ICMP echo".to_string(),
        sent: PER_ROW,
        received,
    })
}

fn print_rows(rows: &[Row]) {
    println!(
        "\n{:<6} {:<16} {:<9} {:<10} {:>5} {:>9}",
        "link", "addresses", "direction", "traffic", "sent", "received"
    );
    for row in rows {
        let verdict = if row.received == row.sent {
            ""
        } else {
            "  <-- MISSING"
        };
        println!(
            "{:<6} {:<16} {:<9} {:<10} {:>5} {:>9}{verdict}",
            row.link,
            row.kind.to_string(),
            format!("{} -> {}", row.from, row.from.other()),
            row.traffic,
            row.sent,
            row.received
        );
    }
}

fn print_counters(side: Side, instance: &Instance) -> Result<(), Error> {
    let counters = instance.counters()?;
    let received = instance.received()?;
    let show = |c: Counter| format!("{} pkts {} B", c.packets, c.bytes);
    println!(
        "\nhost {side} counters ({} ingress on {EXT}):",
        instance.mode()
    );
    for link in instance.links() {
        println!(
            "  {:<4} label {:<2}  egress {:<22} ingress {}",
            link.user.name,
            link.label,
            show(counters.egress(link.label)),
            received
                .get(&link.label)
                .map_or("its hidden end is gone".to_string(), |c| show(*c))
        );
    }
    println!(
        "  to {EXT}'s own stack, unlabelled:    {}",
        show(counters.pass())
    );
    println!(
        "  to {EXT}'s own stack, unknown label: {}",
        show(counters.unknown())
    );
    println!(
        "  {EXT}'s own traffic, label cleared:  {}",
        show(counters.guard())
    );
    println!(
        "  dropped on egress (not IP):         {}",
        show(counters.drop())
    );
    Ok(())
}
