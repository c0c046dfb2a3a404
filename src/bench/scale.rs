//! Part 3: what more links cost. Per packet: the demux with 63 links (N = 6), on the highest
//! label, against the demux with one link; egress does not depend on the number of links (each link's egress has its own label baked in). At start-up: the time
//! `l3mp run` (`Instance::start`) takes until every link exists, is up and has its programs.

use std::time::Instant;

use super::Error;
use crate::lab::{ExtKind, Lab, Side};
use crate::programs::{egress_name, ingress_name, Family, Hook};
use crate::roundtrip::at_the_mirror;
use crate::run::IngressChoice;

use super::figure::family_name;
use super::figure::{Check, Figure, Report, Sample, Target};
use super::program_cost::{
    load, load_primed, on_fresh_loads, primed_demux, redirect_verdict, run_round, test_config,
    Case, Method, Path, Timed,
};
use super::testrun::Loaded;
use super::throughput::start_instance;
use super::Settings;
use crate::packets::udp_frame;

/// Label width for the scale figures.
const LABEL_BITS: u8 = 6;
/// The most links `LABEL_BITS` allows.
const MANY: u8 = 63;
/// The target: 63 links cost at most this ratio of one link, per packet.
pub const SCALE_TARGET: f64 = 1.05;
/// The target: 63 links start in at most this ratio of one link's start-up time.
pub const START_UP_TARGET: f64 = 3.0;
/// The frame the figures run on.
const FRAME: (Family, usize) = (Family::V4, 64);

/// Per-packet demux cost, 1 link against 63, primed repeats and single runs.
pub fn per_packet(settings: &Settings, report: &mut Report) -> Result<(), Error> {
    on_fresh_loads(settings.scale_rounds, report, |round, one| {
        per_packet_one_load(settings, round, one)
    })
}

/// Round `round` of [`per_packet`], on both configurations' programs loaded once.
fn per_packet_one_load(
    settings: &Settings,
    round: usize,
    report: &mut Report,
) -> Result<(), Error> {
    let all: Vec<u8> = (1..=MANY).collect();
    let configs = [
        (1u8, test_config(LABEL_BITS, true, &[1])),
        (MANY, test_config(LABEL_BITS, true, &all)),
    ];
    let frame = udp_frame(FRAME.0, FRAME.1);
    let mut objects = Vec::new();
    for (label, cfg) in &configs {
        let (loaded, bundle) = load(cfg)?;
        let wire = at_the_mirror(&loaded.run(&egress_name(*label), &frame, 1)?.packet);
        let mut primed = Vec::new();
        for hook in [Hook::Tc, Hook::Xdp] {
            let name = primed_name(hook);
            let program = primed_demux(&name, hook, &bundle, &loaded, &wire)?;
            primed.push((hook.section(), program));
        }
        let primed = load_primed(&primed, &bundle, cfg)?;
        objects.push((*label, loaded, primed, wire));
    }
    let what = format!("{} {} B", family_name(FRAME.0), FRAME.1);
    let mut cases = Vec::new();
    for hook in [Hook::Tc, Hook::Xdp] {
        for method in [Method::Repeat, Method::Single] {
            let how = match method {
                Method::Repeat => "repeat, primed",
                Method::Single => "single",
            };
            cases.push(Case {
                part: "scale",
                name: format!(
                    "{} demux {what}, 63 links, label 63 ({how})",
                    hook_name(hook)
                ),
                timed: timed(&objects[1], hook, method),
                baseline_name: "1 link, label 1".into(),
                baseline: timed(&objects[0], hook, method),
                target: Some(Target::RatioAtMost(SCALE_TARGET)),
            });
        }
    }
    run_round(&cases, settings, round, report)
}

/// Start-up time, 1 link against 63, in a lab with a veth ext, TC ingress.
pub fn start_up(settings: &Settings, report: &mut Report) -> Result<(), Error> {
    let lab = Lab::new("l3mp-bench-start", ExtKind::Veth)?;
    let host = lab.host(Side::A);
    let link_set = |n: u8| -> Vec<(String, u8)> { (1..=n).map(|l| (format!("l{l}"), l)).collect() };
    // The first start resolves --peer; later ones find it in the neighbour table.
    drop(start_instance(
        host,
        &link_set(1),
        LABEL_BITS,
        IngressChoice::Tc,
    )?);
    let mut times: Vec<(u8, Vec<f64>)> = vec![(1, Vec::new()), (MANY, Vec::new())];
    for start in 0..settings.starts {
        // In turns 1 then 63 links, and 63 then 1.
        let order: [usize; 2] = if start % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (n, samples) = &mut times[i];
            let links = link_set(*n);
            let started = Instant::now();
            let instance = start_instance(host, &links, LABEL_BITS, IngressChoice::Tc)?;
            samples.push(started.elapsed().as_secs_f64() * 1e3);
            let up = host
                .links()?
                .iter()
                .filter(|l| l.up && links.iter().any(|(name, _)| *name == l.name))
                .count();
            if up != links.len() || instance.links().len() != links.len() {
                report.checks.push(Check {
                    what: format!("start-up with {n} links: every link up"),
                    passed: false,
                    detail: format!("{up} of {} links up", links.len()),
                });
            }
            drop(instance);
        }
    }
    report.checks.push(Check {
        what: "start-up: every link up when Instance::start returned".into(),
        passed: !report
            .checks
            .iter()
            .any(|c| c.what.starts_with("start-up with")),
        detail: format!("{} starts of 1 and of 63 links", settings.starts),
    });
    report.figures.push(Figure {
        part: "scale",
        name: "start-up to all links ready, 63 links".into(),
        unit: "ms",
        value: Sample::of(&times[1].1),
        baseline_name: "1 link".into(),
        baseline: Sample::of(&times[0].1),
        target: Some(Target::RatioAtMost(START_UP_TARGET)),
        method: format!(
            "Instance::start in a namespace with a veth ext (TC ingress, --peer known) until it \
             returns with every link created, up and attached; median of {} starts, \
             alternating",
            settings.starts
        ),
    });
    Ok(())
}

/// One link count's objects: the label measured, the plain and the primed programs, and
/// the packet on the wire.
type Objects = (u8, Loaded, Loaded, Vec<u8>);

/// The demux of `hook` in `objects`, timed by `method`.
fn timed(objects: &Objects, hook: Hook, method: Method) -> Timed<'_> {
    let (label, loaded, primed, wire) = objects;
    let (object, program) = match method {
        Method::Repeat => (primed, primed_name(hook)),
        Method::Single => (loaded, ingress_name(hook).to_string()),
    };
    Timed {
        loaded: object,
        program,
        input: wire.clone(),
        method,
        verdict: redirect_verdict(hook),
        path: Path::Demux,
        what: format!(
            "{} demux, {} links, label {label}",
            hook_name(hook),
            links(*label)
        ),
    }
}

fn primed_name(hook: Hook) -> String {
    format!("p{}", hook_name(hook).to_lowercase())
}

fn hook_name(hook: Hook) -> &'static str {
    match hook {
        Hook::Tc => "TC",
        Hook::Xdp => "XDP",
    }
}

fn links(label: u8) -> u8 {
    if label == 1 {
        1
    } else {
        MANY
    }
}
