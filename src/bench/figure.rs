//! What the bench reports: figures (a measured value, the baseline it is judged against, their
//! ratio and a target) and observations (measured, with no target), and how a whole report is
//! printed as a table and written as JSON.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};

use crate::programs::Family;

/// The name of a family in figure names.
pub fn family_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// The parts of the bench, in the order the table shows them.
pub const PARTS: [&str; 4] = ["program", "end-to-end", "scale", "offline"];

/// How a figure is judged against its baseline: by the median over rounds of the difference
/// (`AtMostAbove`) or of the ratio of value to baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// `value - baseline <= limit` (in the figure's unit).
    AtMostAbove(f64),
    /// `value / baseline >= limit`.
    RatioAtLeast(f64),
    /// `value / baseline <= limit`.
    RatioAtMost(f64),
}

impl Target {
    /// Whether a figure `excess` above its baseline, or at `ratio` to it, meets the target.
    pub fn met(self, excess: f64, ratio: f64) -> bool {
        match self {
            Target::AtMostAbove(limit) => excess <= limit,
            Target::RatioAtLeast(limit) => ratio >= limit,
            Target::RatioAtMost(limit) => ratio <= limit,
        }
    }

    /// The target as the table prints it.
    pub fn text(self, unit: &str) -> String {
        match self {
            Target::AtMostAbove(limit) => format!("<= base + {limit} {unit}"),
            Target::RatioAtLeast(limit) => format!("ratio >= {limit}"),
            Target::RatioAtMost(limit) => format!("ratio <= {limit}"),
        }
    }

    fn json(self) -> Value {
        let (kind, limit) = match self {
            Target::AtMostAbove(l) => ("at_most_above_baseline", l),
            Target::RatioAtLeast(l) => ("ratio_at_least", l),
            Target::RatioAtMost(l) => ("ratio_at_most", l),
        };
        json!({"kind": kind, "limit": number(limit)})
    }
}

/// A median over rounds with the spread of the rounds around it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every round's value, in the order measured.
    pub values: Vec<f64>,
}

impl Sample {
    /// The median and range of `values` (at least one).
    pub fn of(values: &[f64]) -> Sample {
        if values.is_empty() {
            return Sample {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                values: Vec::new(),
            };
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Sample {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            values: values.to_vec(),
        }
    }

    /// The same with one more round's value.
    pub fn push(&mut self, value: f64) {
        let mut values = std::mem::take(&mut self.values);
        values.push(value);
        *self = Sample::of(&values);
    }

    /// `(max - min) / median`, the relative spread of the rounds.
    pub fn spread(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median
        }
    }

    fn json(&self) -> SampleJson {
        SampleJson {
            median: number(self.median),
            min: number(self.min),
            max: number(self.max),
            relative_spread: number(self.spread()),
            values: self.values.iter().map(|v| number(*v)).collect(),
        }
    }
}

/// One measured figure, judged against a baseline measured in the same run.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Which part of the bench: `program`, `end-to-end` or `scale`.
    pub part: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub value: Sample,
    /// What the baseline is, e.g. `TC floor ipv4 64 B`.
    pub baseline_name: String,
    pub baseline: Sample,
    /// `None` for a figure measured for information (no target was set for it).
    pub target: Option<Target>,
    /// How it was measured.
    pub method: String,
}

impl Figure {
    /// `value / baseline`: the median of the rounds' ratios when value and baseline were
    /// measured round by round (each round's pair back to back, so that what drifts between
    /// rounds cancels), else the ratio of the medians.
    pub fn ratio(&self) -> f64 {
        self.by_round(|v, b| v / b)
            .map_or(self.value.median / self.baseline.median, |r| r.median)
    }

    /// `value - baseline`, paired by round like [`Figure::ratio`].
    pub fn excess(&self) -> f64 {
        self.by_round(|v, b| v - b)
            .map_or(self.value.median - self.baseline.median, |r| r.median)
    }

    /// `f(value, baseline)` of every round, when both have one value per round.
    fn by_round(&self, f: impl Fn(f64, f64) -> f64) -> Option<Sample> {
        let (values, baselines) = (&self.value.values, &self.baseline.values);
        (!values.is_empty() && values.len() == baselines.len()).then(|| {
            let each: Vec<f64> = values
                .iter()
                .zip(baselines)
                .map(|(&v, &b)| f(v, b))
                .collect();
            Sample::of(&each)
        })
    }

    /// Whether the target is met; `None` without a target.
    pub fn meets_target(&self) -> Option<bool> {
        self.target.map(|t| t.met(self.excess(), self.ratio()))
    }

    fn json(&self) -> FigureJson<'_> {
        FigureJson {
            part: self.part,
            name: &self.name,
            unit: self.unit,
            value: number(self.value.median),
            value_rounds: self.value.json(),
            baseline_name: &self.baseline_name,
            baseline: number(self.baseline.median),
            baseline_rounds: self.baseline.json(),
            ratio: number(self.ratio()),
            ratio_rounds: self.by_round(|v, b| v / b).map(|rounds| rounds.json()),
            excess: number(self.excess()),
            target: self.target.map(Target::json),
            meets_target: self.meets_target(),
            method: &self.method,
        }
    }
}

/// Facts about one loaded program, as the kernel reports them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramFacts {
    pub name: String,
    /// Instructions the generator emitted.
    pub insns: usize,
    /// Instructions after the verifier's rewrites (`xlated_prog_len / 8`).
    pub xlated_insns: u32,
    /// Instructions the verifier walked (all paths).
    pub verified_insns: u32,
    /// Bytes of JIT-compiled machine code.
    pub jited_bytes: u32,
}

/// A check that a measurement measured what it claims (e.g. that every run of a demux took
/// the demux path), with what was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub what: String,
    pub passed: bool,
    pub detail: String,
}

/// Everything one `l3mp bench` run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Where it ran: kernel, CPU, cores.
    pub machine: String,
    pub mode: String,
    pub figures: Vec<Figure>,
    pub programs: Vec<ProgramFacts>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

impl Report {
    /// The report as a JSON document.
    pub fn json(&self) -> String {
        let doc = ReportJson {
            machine: &self.machine,
            mode: &self.mode,
            all_targets_met: self.all_targets_met(),
            figures: self.figures.iter().map(Figure::json).collect(),
            programs: &self.programs,
            checks: &self.checks,
            notes: &self.notes,
        };
        // Strings, numbers, booleans and lists always serialise.
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    }

    /// Whether every figure with a target meets it and every check passed.
    pub fn all_targets_met(&self) -> bool {
        self.figures.iter().all(|f| f.meets_target() != Some(false))
            && self.checks.iter().all(|c| c.passed)
    }

    /// The report as tables for a terminal.
    pub fn table(&self) -> String {
        let mut out = format!("l3mp bench ({}) on {}\n", self.mode, self.machine);
        let name_w = self.figures.iter().map(|f| f.name.len()).max().unwrap_or(0);
        let base_w = self
            .figures
            .iter()
            .map(|f| f.baseline_name.len())
            .max()
            .unwrap_or(0);
        let mut part = "";
        let ordered = PARTS
            .iter()
            .flat_map(|p| self.figures.iter().filter(move |f| f.part == *p));
        for f in ordered {
            if f.part != part {
                part = f.part;
                let _ = write!(
                    out,
                    "\n{part}\n{:<name_w$} {:>12} {:>7}   {:<base_w$} {:>12} {:>7} {:>7}  {:<18} met\n",
                    "figure", "value", "spread", "baseline", "value", "spread", "ratio", "target",
                );
            }
            let met = match f.meets_target() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            let _ = writeln!(
                out,
                "{:<name_w$} {:>12} {:>6.1}%   {:<base_w$} {:>12} {:>6.1}% {:>7.3}  {:<18} {met}",
                f.name,
                format!("{} {}", short(f.value.median), f.unit),
                f.value.spread() * 100.0,
                f.baseline_name,
                format!("{} {}", short(f.baseline.median), f.unit),
                f.baseline.spread() * 100.0,
                f.ratio(),
                f.target.map_or("-".into(), |t| t.text(f.unit)),
            );
        }
        if !self.programs.is_empty() {
            let _ = write!(
                out,
                "\nprograms as loaded\n{:<22} {:>6} {:>7} {:>9} {:>11}\n",
                "program", "insns", "xlated", "verified", "JIT bytes"
            );
            for p in &self.programs {
                let _ = writeln!(
                    out,
                    "{:<22} {:>6} {:>7} {:>9} {:>11}",
                    p.name, p.insns, p.xlated_insns, p.verified_insns, p.jited_bytes
                );
            }
        }
        if !self.checks.is_empty() {
            out.push_str("\nchecks\n");
            for c in &self.checks {
                let verdict = if c.passed { "ok  " } else { "FAIL" };
                let _ = writeln!(out, "{verdict} {}: {}", c.what, c.detail);
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "\nnote: {note}");
        }
        let _ = writeln!(
            out,
            "\nall targets met: {}",
            if self.all_targets_met() { "yes" } else { "no" }
        );
        out
    }
}

/// A number with three significant figures or more, for the table.
fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The JSON document of a [`Report`], its fields in this order.
#[derive(Serialize)]
struct ReportJson<'r> {
    machine: &'r str,
    mode: &'r str,
    all_targets_met: bool,
    figures: Vec<FigureJson<'r>>,
    programs: &'r [ProgramFacts],
    checks: &'r [Check],
    notes: &'r [String],
}

/// A [`Figure`] in the JSON document: its medians, their rounds, and how it is judged.
#[derive(Serialize)]
struct FigureJson<'f> {
    part: &'f str,
    name: &'f str,
    unit: &'f str,
    value: Value,
    value_rounds: SampleJson,
    baseline_name: &'f str,
    baseline: Value,
    baseline_rounds: SampleJson,
    ratio: Value,
    ratio_rounds: Option<SampleJson>,
    excess: Value,
    target: Option<Value>,
    meets_target: Option<bool>,
    method: &'f str,
}

/// A [`Sample`] in the JSON document.
#[derive(Serialize)]
struct SampleJson {
    median: Value,
    min: Value,
    max: Value,
    relative_spread: Value,
    values: Vec<Value>,
}

/// A JSON number to four decimals, whole ones without a fraction (non-finite values become
/// `null`).
fn number(v: f64) -> Value {
    let rounded = (v * 1e4).round() / 1e4;
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        json!(rounded as i64)
    } else {
        json!(rounded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spreads() {
        let s = Sample::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.values, vec![3.0, 1.0, 2.0]);
        assert!(Sample::of(&[]).median.is_nan());
        assert_eq!(Sample::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert_eq!(s.spread(), 1.0);
    }

    #[test]
    fn targets_judge_against_the_baseline() {
        assert!(Target::AtMostAbove(12.0).met(12.0, 1.5));
        assert!(!Target::AtMostAbove(12.0).met(12.5, 1.0));
        assert!(Target::RatioAtLeast(0.97).met(-3.0, 0.97));
        assert!(!Target::RatioAtMost(1.05).met(6.0, 1.06));
    }

    fn figure(values: &[f64], baselines: &[f64], target: Target) -> Figure {
        Figure {
            part: "scale",
            name: "x".into(),
            unit: "ns",
            value: Sample::of(values),
            baseline_name: "y".into(),
            baseline: Sample::of(baselines),
            target: Some(target),
            method: String::new(),
        }
    }

    #[test]
    fn figures_measured_round_by_round_are_judged_by_round() {
        // Both drift together between rounds; each round's ratio is 1.02.
        let f = figure(
            &[51.0, 102.0, 81.6],
            &[50.0, 100.0, 80.0],
            Target::RatioAtMost(1.05),
        );
        assert!((f.ratio() - 1.02).abs() < 1e-9, "{}", f.ratio());
        assert_eq!(f.meets_target(), Some(true));
        // One round slow for both, one slow for the value only: the rounds say 3 above; the
        // medians (60 against 48) would say 12.
        let f = figure(
            &[100.0, 50.0, 60.0],
            &[97.0, 48.0, 40.0],
            Target::AtMostAbove(5.0),
        );
        assert_eq!(f.excess(), 3.0);
        assert_eq!(f.meets_target(), Some(true));
        let f = figure(
            &[100.0, 50.0, 60.0],
            &[90.0, 40.0, 40.0],
            Target::AtMostAbove(5.0),
        );
        assert_eq!((f.excess(), f.meets_target()), (10.0, Some(false)));
        // Without one value per round on both sides: the medians.
        let f = figure(&[60.0, 50.0], &[50.0], Target::RatioAtMost(1.05));
        assert_eq!(f.ratio(), 55.0 / 50.0);
        assert_eq!(f.excess(), 5.0);
    }

    #[test]
    fn json_escapes_and_numbers() {
        let report = Report {
            notes: vec!["a\"b\\c\n".into()],
            ..Report::default()
        };
        let doc: Value = serde_json::from_str(&report.json()).expect("JSON");
        assert_eq!(doc["notes"][0], "a\"b\\c\n");
        assert_eq!(number(1.5).to_string(), "1.5");
        assert_eq!(number(2.0).to_string(), "2");
        assert_eq!(number(0.0).to_string(), "0");
        assert_eq!(number(-0.00001).to_string(), "0");
        assert_eq!(number(1.23456).to_string(), "1.2346");
        assert_eq!(number(f64::NAN), Value::Null);
    }
}
