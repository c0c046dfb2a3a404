//! Part 1: what each hot-path program costs per packet, against the floor of its hook, with
//! BPF_PROG_TEST_RUN.
//!
//! Two timings (see [`super::testrun`]): *repeat* (10^6 runs back to back on one packet,
//! the kernel's mean) and *single* (10^6 test runs of one run each on a fresh copy of the
//! packet, timed by the BPF runtime statistics). Egress is idempotent, so its repeats are
//! faithful. A demux is not (its first run clears the label); it is timed with repeats only
//! *primed* (see [`super::primed`]) and with single runs. Every figure comes with a check that
//! the runs took the path claimed, read from the programs' own counters.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use l3mp_asm::{Assembled, Section};

use super::Error;
use crate::programs::layout::{
    EGRESS, FOREIGN, PASS, TC_ACT_REDIRECT, TC_ACT_UNSPEC, UNKNOWN, XDP_REDIRECT,
};
use crate::programs::{self, egress_name, ingress_name, Config, Family, Framing, Hook, Unknown};
use crate::roundtrip::at_the_mirror;
use crate::run::point_links;

use super::figure::family_name;
use super::figure::{Check, Figure, Report, Sample, Target};
use super::floor;
use super::primed::{primed, restores_all, restoring};
use super::testrun::{Loaded, RuntimeStats};
use super::Settings;
use crate::packets::{udp_frame, SIZES};

/// The target: at most this many ns above the floor of the hook.
pub const OVER_FLOOR_NS: f64 = 12.0;

/// Where test runs redirect to: `lo`, which exists in every namespace.
pub const LOOPBACK: u32 = 1;

/// The label the figures run on.
const LABEL: u8 = 1;

/// A configuration for test runs: labels `labels`, every hidden end at `lo`.
pub fn test_config(label_bits: u8, ethernet: bool, labels: &[u8]) -> Config {
    let links: Vec<(String, u8)> = labels.iter().map(|&l| (format!("l{l}"), l)).collect();
    let framing = if ethernet {
        Framing::Ethernet
    } else {
        Framing::Ip
    };
    let mut cfg = Config::offline(label_bits, framing, &links, Unknown::Pass);
    for link in &mut cfg.links {
        link.peer_ifindex = LOOPBACK;
    }
    cfg
}

/// The programs of `cfg`, loaded, with the link maps filled (every hidden end at `lo`).
pub fn load(cfg: &Config) -> Result<(Loaded, programs::Bundle), Error> {
    let bundle = programs::build(cfg).map_err(|e| Error::new(e.to_string()))?;
    let elf = bundle.elf().map_err(|e| Error::new(e.to_string()))?;
    Ok((
        Loaded::load(&elf, |ebpf| Ok(point_links(ebpf, cfg)?))?,
        bundle,
    ))
}

/// What a demux returns for a packet it delivers.
pub fn redirect_verdict(hook: Hook) -> u32 {
    match hook {
        Hook::Tc => TC_ACT_REDIRECT as u32,
        Hook::Xdp => XDP_REDIRECT as u32,
    }
}

/// How a measurement is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// One test run with `repeat` = runs.
    Repeat,
    /// `runs` test runs of one run each, timed by the runtime statistics.
    Single,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Repeat => "repeat",
            Method::Single => "single",
        }
    }

    /// How a figure timed this way was measured.
    pub fn describe(self, settings: &Settings) -> String {
        match self {
            Method::Repeat => format!(
                "BPF_PROG_TEST_RUN with repeat {}, the kernel's mean per run; median of {} rounds",
                settings.runs, settings.rounds
            ),
            Method::Single => format!(
                "{} BPF_PROG_TEST_RUN calls with repeat 1 (a fresh packet each), BPF runtime \
                 stats run_time_ns / run_cnt, in {SLICES} slices alternating with the \
                 baseline's; median of the slices, median of {} rounds",
                settings.runs, settings.rounds
            ),
        }
    }
}

/// What the runs of a measurement must have done, checked on the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// A floor: only the verdict is checked.
    Floor,
    /// Egress of `label`: every run marked and redirected, and repeats left the packet as
    /// one run does.
    Egress(u8),
    /// A demux: every run delivered to a link, none passed.
    Demux,
}

/// One program on one packet, timed one way.
pub struct Timed<'a> {
    pub loaded: &'a Loaded,
    pub program: String,
    pub input: Vec<u8>,
    pub method: Method,
    pub verdict: u32,
    pub path: Path,
    /// What the checks call it.
    pub what: String,
}

impl Timed<'_> {
    /// Times the runs and checks they took the path claimed. `stats` must be on for
    /// [`Method::Single`] and should be off for [`Method::Repeat`].
    pub fn measure(&self, runs: u32, stats: Option<&RuntimeStats>) -> Result<(f64, Check), Error> {
        let before = self.counters()?;
        let (ns, output_ok) = match (self.method, stats) {
            (Method::Repeat, _) => {
                let once = self.loaded.run(&self.program, &self.input, 1)?;
                let out = self.loaded.run(&self.program, &self.input, runs)?;
                if out.verdict != self.verdict {
                    return Err(Error::new(format!(
                        "{}: returned {} instead of {}",
                        self.what, out.verdict as i32, self.verdict as i32
                    )));
                }
                (f64::from(out.duration_ns), out.packet == once.packet)
            }
            (Method::Single, Some(stats)) => (
                self.loaded
                    .single_runs(&self.program, &self.input, runs, self.verdict, stats)?,
                true,
            ),
            (Method::Single, None) => {
                return Err(Error::new("single runs need the runtime statistics on"))
            }
        };
        let after = self.counters()?;
        let delta = |slot: u32| match (&before, &after) {
            (Some(b), Some(a)) => a[slot as usize].packets - b[slot as usize].packets,
            _ => 0,
        };
        // A repeat measurement also ran once more, to compare the output.
        let expected = u64::from(runs) + u64::from(self.method == Method::Repeat);
        let (passed, detail) = match self.path {
            Path::Floor => (
                true,
                format!("{runs} runs, every one returned {}", self.verdict),
            ),
            Path::Egress(label) => {
                let marked = delta(EGRESS + u32::from(label));
                (
                    marked == expected && output_ok,
                    format!(
                        "{runs} runs, egress counter +{marked}, output {} a single run's",
                        if output_ok {
                            "equal to"
                        } else {
                            "DIFFERENT from"
                        }
                    ),
                )
            }
            Path::Demux => {
                // The verdict was checked above (every single run's, a repeat's last); a run
                // that did not deliver would have counted on one of these.
                let passed = delta(PASS) + delta(UNKNOWN) + delta(FOREIGN);
                (
                    passed == 0,
                    format!(
                        "{runs} runs, every one redirected, pass, unknown and foreign counters \
                         +{passed}"
                    ),
                )
            }
        };
        let check = Check {
            what: format!(
                "{} ({}): every run took the path",
                self.what,
                self.method.name()
            ),
            passed,
            detail,
        };
        Ok((ns, check))
    }

    fn counters(&self) -> Result<Option<Vec<crate::run::Counter>>, Error> {
        match self.path {
            Path::Floor => Ok(None),
            _ => self.loaded.counters().map(Some),
        }
    }
}

/// A figure to be: a program against its baseline (a floor, or the same program in another
/// configuration), measured the same way.
pub struct Case<'a> {
    pub part: &'static str,
    pub name: String,
    pub timed: Timed<'a>,
    pub baseline_name: String,
    pub baseline: Timed<'a>,
    /// `None` for a figure given for information.
    pub target: Option<Target>,
}

/// Single runs of a program and of its baseline alternate in this many slices of a round, so
/// that a drift of the machine (another process, the clock, the caches a syscall leaves)
/// weighs on both alike. A round's value is the median of its slices' means: a slice that an
/// interrupt or the hypervisor hit (measured here: slices of 60 to 100 ns among slices of 45)
/// does not move it.
const SLICES: u32 = 20;

/// Measures every case once, as round `round` of its figure (all repeats first, then all
/// single runs with the statistics on); adds the figures and, in round 0, the checks (and any
/// failure in any round) to `report`. The round decides which of a value and its baseline goes
/// first, so that over the rounds each goes first in turn. Repeats measure each baseline once
/// however many cases share it. Single runs, whose figures two clock reads around each run make
/// sensitive to any drift, measure each case against a baseline of its own, alternating with
/// it slice by slice.
pub fn run_round<'a>(
    cases: &'a [Case<'a>],
    settings: &Settings,
    round: usize,
    report: &mut Report,
) -> Result<(), Error> {
    let key = |t: &Timed<'_>, case: usize| {
        let mut input = DefaultHasher::new();
        t.input.hash(&mut input);
        let owner = match t.method {
            Method::Repeat => String::new(),
            Method::Single => format!("/case {case}"),
        };
        format!(
            "{:p}/{}/{:x}/{}{owner}",
            t.loaded,
            t.program,
            input.finish(),
            t.method.name()
        )
    };
    // Each measurement's value in this round, by key.
    let mut samples: HashMap<String, f64> = HashMap::new();
    let mut checked = |t: &Timed<'_>, check: Check| {
        if (round == 0 && t.path != Path::Floor) || !check.passed {
            report.checks.push(check);
        }
    };
    // Each value next to its baseline, in turns first and second, so that neither always runs
    // on a warmer (or colder) machine.
    let pair = |c: &'a Case<'a>, turn: usize| match turn % 2 {
        0 => [&c.baseline, &c.timed],
        _ => [&c.timed, &c.baseline],
    };
    for (i, case) in cases.iter().enumerate() {
        let repeats = pair(case, round).into_iter();
        for t in repeats.filter(|t| t.method == Method::Repeat) {
            let k = key(t, i);
            if samples.contains_key(&k) {
                continue;
            }
            let (ns, check) = t.measure(settings.runs, None)?;
            checked(t, check);
            samples.insert(k, ns);
        }
    }
    let stats = RuntimeStats::enable()?;
    let slice = (settings.runs / SLICES).max(1);
    for (i, case) in cases.iter().enumerate() {
        if case.timed.method != Method::Single {
            continue;
        }
        let mut slices = [Vec::new(), Vec::new()];
        for turn in 0..SLICES as usize {
            for t in pair(case, round + turn) {
                let (ns, check) = t.measure(slice, Some(&stats))?;
                if turn == 0 || !check.passed {
                    checked(t, check);
                }
                slices[usize::from(std::ptr::eq(t, &case.timed))].push(ns);
            }
        }
        samples.insert(key(&case.baseline, i), Sample::of(&slices[0]).median);
        samples.insert(key(&case.timed, i), Sample::of(&slices[1]).median);
    }
    for (i, case) in cases.iter().enumerate() {
        report.figures.push(Figure {
            part: case.part,
            name: case.name.clone(),
            unit: "ns",
            value: Sample::of(&[samples[&key(&case.timed, i)]]),
            baseline_name: case.baseline_name.clone(),
            baseline: Sample::of(&[samples[&key(&case.baseline, i)]]),
            target: case.target,
            method: case.timed.method.describe(settings),
        });
    }
    Ok(())
}

/// Everything part 1 loads.
struct Objects {
    eth: Loaded,
    l3: Loaded,
    floors: Loaded,
    primed: Loaded,
}

/// One (family, size) combination: the frame a link hands to egress, what egress puts on
/// each kind of ext, and the names of its primed programs.
struct Packet {
    what: String,
    frame: Vec<u8>,
    eth_wire: Vec<u8>,
    l3_wire: Vec<u8>,
    primed: [(Hook, String, String); 2],
}

/// Measures every hot-path program and both floors, adding figures, facts and checks to
/// `report`: `settings.rounds` rounds, each on everything loaded anew (see
/// [`on_fresh_loads`]; the rounds of one load agree within 1 to 3 ns, measured here on
/// 2026-11-30, likely where the JIT puts the code and where the maps land).
pub fn measure(settings: &Settings, report: &mut Report) -> Result<(), Error> {
    on_fresh_loads(settings.rounds, report, |round, one| {
        measure_one_load(settings, round, one)
    })
}

/// `rounds` rounds of the figures `one_load` measures (given the round, for [`run_round`]),
/// each on everything it loads anew: a single run's cost moves by several ns from one load of
/// the programs to the next, so a figure is the median of `rounds` loads, not the luck of one.
pub fn on_fresh_loads(
    rounds: usize,
    report: &mut Report,
    mut one_load: impl FnMut(usize, &mut Report) -> Result<(), Error>,
) -> Result<(), Error> {
    let ours = report.figures.len();
    for round in 0..rounds {
        let mut loaded = Report::default();
        one_load(round, &mut loaded)?;
        if round == 0 {
            // The first load gives the facts, the notes, the checks and the figures...
            report.programs.extend(loaded.programs);
            report.notes.extend(loaded.notes);
            report.checks.extend(loaded.checks);
            for mut figure in loaded.figures {
                figure.method += ", each on the programs loaded anew";
                report.figures.push(figure);
            }
        } else {
            // ...every later one a round of each figure, and any check that failed.
            report
                .checks
                .extend(loaded.checks.into_iter().filter(|c| !c.passed));
            for (figure, again) in report.figures[ours..].iter_mut().zip(loaded.figures) {
                figure.value.push(again.value.median);
                figure.baseline.push(again.baseline.median);
            }
        }
    }
    Ok(())
}

/// Round `round` of [`measure`], on everything loaded once.
fn measure_one_load(settings: &Settings, round: usize, report: &mut Report) -> Result<(), Error> {
    let eth_cfg = test_config(4, true, &[1, 2]);
    let l3_cfg = test_config(4, false, &[1, 2]);
    let (eth, eth_bundle) = load(&eth_cfg)?;
    let (l3, l3_bundle) = load(&l3_cfg)?;
    let floors = Loaded::load(&floor::elf(LOOPBACK)?, |ebpf| floor::point(ebpf, LOOPBACK))?;
    facts(report, &eth, &eth_bundle, "eth")?;
    facts(report, &l3, &l3_bundle, "L3")?;
    report
        .programs
        .push(floors.facts(floor::TC, floor::program(Hook::Tc, LOOPBACK)?.len())?);
    report
        .programs
        .push(floors.facts(floor::XDP, floor::program(Hook::Xdp, LOOPBACK)?.len())?);

    // The frames, and the primed programs built on what demux changes in them.
    let mut packets = Vec::new();
    let mut primed_programs = Vec::new();
    for family in Family::ALL {
        for size in SIZES {
            let frame = udp_frame(family, size);
            let egress = egress_name(LABEL);
            let eth_wire = at_the_mirror(&eth.run(&egress, &frame, 1)?.packet);
            let l3_wire = l3.run(&egress, &frame, 1)?.packet[14..].to_vec();
            let tag = format!("{}_{size}", if family == Family::V4 { 4 } else { 6 });
            let restore = restoring(&eth_wire)?;
            let mut names = Vec::new();
            for hook in [Hook::Tc, Hook::Xdp] {
                let h = if hook == Hook::Tc { "tc" } else { "xdp" };
                let demux = format!("p{h}{tag}");
                let floor_name = format!("f{h}{tag}");
                let primed_demux = primed_demux(&demux, hook, &eth_bundle, &eth, &eth_wire)?;
                primed_programs.push((hook.section(), primed_demux));
                let floor_body = floor::program(hook, LOOPBACK)?;
                primed_programs.push((
                    hook.section(),
                    primed(&floor_name, hook, &restore, &floor_body)?,
                ));
                names.push((hook, demux, floor_name));
            }
            let primed: [(Hook, String, String); 2] =
                names.try_into().map_err(|_| Error::new("two hooks"))?;
            packets.push(Packet {
                what: format!("{} {size} B", family_name(family)),
                frame,
                eth_wire,
                l3_wire,
                primed,
            });
        }
    }
    let primed = load_primed(&primed_programs, &eth_bundle, &eth_cfg)?;
    let objects = Objects {
        eth,
        l3,
        floors,
        primed,
    };
    let cases = cases(&objects, &packets);
    run_round(&cases, settings, round, report)?;
    naive_demux_note(&objects.eth, &packets[0], settings, report)?;
    Ok(())
}

/// `programs` (primed ones) in one object with the maps of `bundle` and the floors' DEVMAP,
/// loaded, every DEVMAP entry at `lo`.
pub fn load_primed(
    programs: &[(Section, Assembled)],
    bundle: &programs::Bundle,
    cfg: &Config,
) -> Result<Loaded, Error> {
    let refs: Vec<(Section, &Assembled)> = programs.iter().map(|(s, p)| (*s, p)).collect();
    let mut maps = bundle.maps.clone();
    maps.push(floor::devmap());
    let elf = l3mp_asm::write_elf(&refs, &maps, "GPL")
        .map_err(|e| Error::new(format!("primed programs: {e}")))?;
    Loaded::load(&elf, |ebpf| {
        point_links(ebpf, cfg)?;
        floor::point(ebpf, LOOPBACK)
    })
}

/// The demux of `hook` from `bundle`, primed (under `name`) to restore `wire`'s IP header,
/// after checking (in `loaded`) that this restores everything one run of it changes.
pub fn primed_demux(
    name: &str,
    hook: Hook,
    bundle: &programs::Bundle,
    loaded: &Loaded,
    wire: &[u8],
) -> Result<Assembled, Error> {
    let demuxed = loaded.run(ingress_name(hook), wire, 1)?.packet;
    let body = bundle
        .program(ingress_name(hook))
        .ok_or_else(|| Error::new("demux missing from the bundle"))?;
    if !restores_all(wire, &demuxed) {
        return Err(Error::new(format!(
            "{}: changes more than the prologue restores",
            ingress_name(hook)
        )));
    }
    primed(name, hook, &restoring(wire)?, body)
}

/// The kernel's facts about every program of `bundle` but the second egress and NAPI pass.
fn facts(
    report: &mut Report,
    loaded: &Loaded,
    bundle: &programs::Bundle,
    ext: &str,
) -> Result<(), Error> {
    for (_, prog) in &bundle.programs {
        if prog.name == egress_name(2) || prog.name == programs::NAPI_PASS {
            continue;
        }
        let mut facts = loaded.facts(&prog.name, prog.len())?;
        facts.name = format!("{} ({ext} ext)", facts.name);
        report.programs.push(facts);
    }
    Ok(())
}

/// Every figure of part 1.
fn cases<'a>(o: &'a Objects, packets: &[Packet]) -> Vec<Case<'a>> {
    let tc = TC_ACT_REDIRECT as u32;
    let xdp = XDP_REDIRECT as u32;
    let timed = |loaded, program: &str, input: &[u8], method, verdict, path, what: String| Timed {
        loaded,
        program: program.to_string(),
        input: input.to_vec(),
        method,
        verdict,
        path,
        what,
    };
    let mut cases = Vec::new();
    for p in packets {
        // Floors read nothing: one input per size serves both families.
        let floor_input = udp_frame(Family::V4, p.frame.len());
        let floor = |hook: Hook, method: Method| {
            let input = &floor_input;
            let (name, verdict) = match hook {
                Hook::Tc => (floor::TC, tc),
                Hook::Xdp => (floor::XDP, xdp),
            };
            timed(
                &o.floors,
                name,
                input,
                method,
                verdict,
                Path::Floor,
                name.into(),
            )
        };
        let floor_name = |hook: Hook, method: Method| {
            let h = if hook == Hook::Tc { "TC" } else { "XDP" };
            format!("{h} floor {} B ({})", p.frame.len(), method.name())
        };
        let egress = egress_name(LABEL);
        let mut case = |name: String, timed: Timed<'a>, hook: Hook, floor: Timed<'a>| {
            let baseline_name = floor_name(hook, timed.method);
            cases.push(Case {
                part: "program",
                name,
                timed,
                baseline_name,
                baseline: floor,
                target: Some(Target::AtMostAbove(OVER_FLOOR_NS)),
            });
        };
        for (ext, loaded) in [("eth", &o.eth), ("L3", &o.l3)] {
            let what = format!("egress ({ext} ext) {}", p.what);
            case(
                format!("{what} (repeat)"),
                timed(
                    loaded,
                    &egress,
                    &p.frame,
                    Method::Repeat,
                    tc,
                    Path::Egress(LABEL),
                    what,
                ),
                Hook::Tc,
                floor(Hook::Tc, Method::Repeat),
            );
        }
        for (hook, demux, floor_primed) in &p.primed {
            let h = if *hook == Hook::Tc { "TC" } else { "XDP" };
            let verdict = redirect_verdict(*hook);
            let what = format!("{h} demux (eth ext) {}", p.what);
            cases.push(Case {
                part: "program",
                name: format!("{what} (repeat, primed)"),
                timed: timed(
                    &o.primed,
                    demux,
                    &p.eth_wire,
                    Method::Repeat,
                    verdict,
                    Path::Demux,
                    format!("{what} primed"),
                ),
                baseline_name: format!("{h} floor {} B (repeat, primed)", p.frame.len()),
                baseline: timed(
                    &o.primed,
                    floor_primed,
                    &p.eth_wire,
                    Method::Repeat,
                    verdict,
                    Path::Floor,
                    floor_primed.clone(),
                ),
                target: Some(Target::AtMostAbove(OVER_FLOOR_NS)),
            });
            let name = ingress_name(*hook);
            let mut single = |what: String, loaded: &'a Loaded, name: &str, wire: &[u8], target| {
                cases.push(Case {
                    part: "program",
                    name: format!("{what} (single)"),
                    timed: timed(
                        loaded,
                        name,
                        wire,
                        Method::Single,
                        verdict,
                        Path::Demux,
                        what,
                    ),
                    baseline_name: floor_name(*hook, Method::Single),
                    baseline: floor(*hook, Method::Single),
                    target,
                });
            };
            single(
                what.clone(),
                &o.eth,
                name,
                &p.eth_wire,
                Some(Target::AtMostAbove(OVER_FLOOR_NS)),
            );
            if *hook == Hook::Xdp {
                // On an L3 ext the demux pushes an Ethernet header on every run: only single
                // runs are faithful. No target: l3mp never attaches it (layer-3 devices have
                // no native XDP, and l3mp never uses generic XDP). A TC test run always
                // presents an Ethernet frame, so TC demux on an L3 ext cannot be test-run.
                single(
                    format!("XDP demux (L3 ext) {}", p.what),
                    &o.l3,
                    name,
                    &p.l3_wire,
                    None,
                );
            }
        }
    }
    cases
}

/// Shows, with numbers, why a plain repeated test run of a demux measures the wrong thing.
fn naive_demux_note(
    eth: &Loaded,
    p: &Packet,
    settings: &Settings,
    report: &mut Report,
) -> Result<(), Error> {
    let before = eth.counters()?;
    let out = eth.run(ingress_name(Hook::Tc), &p.eth_wire, settings.runs)?;
    let after = eth.counters()?;
    let delta = |i: u32| after[i as usize].packets - before[i as usize].packets;
    report.notes.push(format!(
        "a plain repeated test run of {} (repeat {}, {}) reports {} ns per run and returns \
         {} ({}), and its pass counter shows {} of the runs passed: the first repeat clears \
         the label in place and every later one takes the label-0 path; demux figures are \
         therefore primed or single",
        ingress_name(Hook::Tc),
        settings.runs,
        p.what,
        out.duration_ns,
        out.verdict as i32,
        if out.verdict as i32 == TC_ACT_UNSPEC {
            "pass"
        } else {
            "not pass"
        },
        delta(PASS)
    ));
    Ok(())
}
