//! A golden case as a row a reader takes in at a glance, as in Katran's fixtures: what it is,
//! the configuration and program, the bytes in, the verdict and redirect target, the bytes out
//! and the counter slot. The same text is the fixture file's format (`tests/golden/cases.txt`)
//! and what a failure prints. `L3MP_CASE=<text>` runs only the cases whose description,
//! configuration or program contains the text; a failing case is also written as a seed for
//! the fuzz target that runs its program, and the failure prints the command that runs it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;

use super::common::packets::*;
use super::common::{config, hidden_ifindex, Setup};
use l3mp::programs::layout::{
    EGRESS, EGRESS_DROP, FOREIGN, GUARDED, GUARD_NOT_IP, PASS, TOO_BIG, UNKNOWN,
};
use l3mp::programs::{self, ExtKind, Hook, Unknown};
use l3mp::roundtrip;
use l3mp::vm;

/// The verdicts of the spec, written out rather than taken from the generator.
pub const TC_UNSPEC: i32 = -1;
pub const TC_SHOT: i32 = 2;
pub const TC_REDIRECT: i32 = 7;
pub const XDP_DROP: i32 = 1;
pub const XDP_PASS: i32 = 2;
pub const XDP_REDIRECT: i32 = 4;

/// Verdict names per hook, as the row writes them.
const VERDICTS: [(Hook, &str, i32); 6] = [
    (Hook::Tc, "TC_ACT_UNSPEC", TC_UNSPEC),
    (Hook::Tc, "TC_ACT_SHOT", TC_SHOT),
    (Hook::Tc, "TC_ACT_REDIRECT", TC_REDIRECT),
    (Hook::Xdp, "XDP_PASS", XDP_PASS),
    (Hook::Xdp, "XDP_DROP", XDP_DROP),
    (Hook::Xdp, "XDP_REDIRECT", XDP_REDIRECT),
];

/// Counter slots by name; a link's egress slot is `EGRESS+<label>`.
const SLOTS: [(&str, u32); 7] = [
    ("PASS", PASS),
    ("UNKNOWN", UNKNOWN),
    ("FOREIGN", FOREIGN),
    ("GUARDED", GUARDED),
    ("GUARD_NOT_IP", GUARD_NOT_IP),
    ("EGRESS_DROP", EGRESS_DROP),
    ("TOO_BIG", TOO_BIG),
];

/// One golden case.
#[derive(Clone)]
pub struct Case {
    /// What the case shows, in words.
    pub name: String,
    pub setup: Rc<Setup>,
    pub program: String,
    pub input: Vec<u8>,
    pub verdict: i32,
    /// The ifindex the packet must be redirected to (flags 0), or no redirect at all.
    pub redirect: Option<u32>,
    pub output: Vec<u8>,
    /// The one counter slot that must count this packet; `None` for a packet delivered to a
    /// link (the link counts it) or a probe.
    pub slot: Option<u32>,
    /// The `__sk_buff` fields of a TC run, where they are not what the kernel derives from
    /// the bytes (a VLAN tag it holds, a protocol a tunnel gave the packet, GSO).
    pub skb: Option<vm::Skb>,
    /// A far-end probe the demux must record and drop: the `probes` entry it writes.
    pub probe: Option<Recorded>,
}

/// The `probes` entry a probe must leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub label: u8,
    pub word: [u8; 8],
}

/// The hook a program runs at (the XDP demux, or TC).
pub fn hook_of(program: &str) -> Hook {
    if program == programs::ingress_name(Hook::Xdp) {
        Hook::Xdp
    } else {
        Hook::Tc
    }
}

impl Case {
    fn hook(&self) -> Hook {
        hook_of(&self.program)
    }

    fn framed(&self) -> bool {
        programs::sees_frames(&self.setup.cfg, &self.program)
    }

    /// The `__sk_buff` the program runs with.
    fn effective_skb(&self) -> vm::Skb {
        self.skb
            .unwrap_or_else(|| vm::Skb::of(&self.input, self.framed()))
    }

    /// Whether `other` is this case: what the row of a case reads back as must be.
    fn same_as(&self, other: &Case) -> bool {
        (
            &self.name,
            &self.setup.cfg,
            &self.program,
            &self.input,
            &self.output,
        ) == (
            &other.name,
            &other.setup.cfg,
            &other.program,
            &other.input,
            &other.output,
        ) && (
            self.verdict,
            self.redirect,
            self.slot,
            self.effective_skb(),
            self.probe,
        ) == (
            other.verdict,
            other.redirect,
            other.slot,
            other.effective_skb(),
            other.probe,
        )
    }

    /// Whether the output starts with an Ethernet header: what the program sees, or a frame it
    /// redirects into a link.
    fn output_framed(&self) -> bool {
        self.framed() || self.redirect.is_some()
    }

    /// `N=3 ethernet unknown=pass labels=1-7`.
    fn config_text(&self) -> String {
        let cfg = &self.setup.cfg;
        let kind = match cfg.ext.kind {
            ExtKind::L3 => "l3",
            ExtKind::Ethernet { .. } => "ethernet",
        };
        let unknown = match cfg.unknown {
            Unknown::Pass => "pass",
            Unknown::Drop => "drop",
        };
        let labels: Vec<u8> = cfg.links.iter().map(|l| l.label).collect();
        let contiguous = labels.windows(2).all(|w| w[1] == w[0] + 1);
        let labels = match labels.as_slice() {
            [first, .., last] if contiguous => format!("{first}-{last}"),
            _ => labels
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(","),
        };
        format!(
            "N={} {kind} unknown={unknown} labels={labels}",
            cfg.label_bits
        )
    }

    fn verdict_text(&self) -> String {
        VERDICTS
            .iter()
            .find(|(hook, _, v)| *hook == self.hook() && *v == self.verdict)
            .map_or_else(|| self.verdict.to_string(), |(_, name, _)| name.to_string())
    }

    fn slot_text(&self) -> String {
        let Some(slot) = self.slot else {
            return "-".to_string();
        };
        SLOTS
            .iter()
            .find(|(_, s)| *s == slot)
            .map(|(name, _)| name.to_string())
            .or_else(|| {
                (EGRESS..EGRESS + 64)
                    .contains(&slot)
                    .then(|| format!("EGRESS+{}", slot - EGRESS))
            })
            .unwrap_or_else(|| slot.to_string())
    }

    /// The `__sk_buff` fields that differ from what the kernel derives from the bytes.
    fn skb_text(&self) -> Option<String> {
        let skb = self.skb?;
        let derived = vm::Skb::of(&self.input, self.framed());
        let mut out = Vec::new();
        if skb.protocol != derived.protocol {
            out.push(format!("protocol={:04x}", u16::from_be_bytes(skb.protocol)));
        }
        if let Some(tci) = skb.vlan_tci {
            out.push(format!("vlan={tci}"));
        }
        if skb.tc_index != derived.tc_index {
            out.push(format!("tc_index={}", skb.tc_index));
        }
        if skb.gso_size != derived.gso_size {
            out.push(format!("gso={}", skb.gso_size));
        }
        Some(out.join(" ")).filter(|s| !s.is_empty())
    }

    /// The row, as the fixture file holds it.
    pub fn row(&self) -> String {
        let mut out = format!("{}\n", self.name);
        let mut line = |key: &str, value: &str| {
            writeln!(out, "    {key:<8} {value}").expect("write to String");
        };
        line("config", &self.config_text());
        line("program", &self.program);
        if let Some(skb) = self.skb_text() {
            line("skb", &skb);
        }
        line("in", &spaced_hex(&self.input, self.framed()));
        line("verdict", &self.verdict_text());
        line(
            "target",
            &self.redirect.map_or_else(|| "-".into(), |i| i.to_string()),
        );
        let output = if self.output == self.input {
            "same".to_string()
        } else {
            spaced_hex(&self.output, self.output_framed())
        };
        line("out", &output);
        line("counted", &self.slot_text());
        if let Some(r) = self.probe {
            let word: String = r.word.iter().map(|b| format!("{b:02x}")).collect();
            line("probe", &format!("label={} word={word}", r.label));
        }
        out
    }

    /// The text `L3MP_CASE` is matched against.
    fn filter_text(&self) -> String {
        format!("{} {} {}", self.name, self.config_text(), self.program)
    }

    /// The fuzz target that runs this case's program, and its input for this case: the
    /// configuration header of `l3mp::roundtrip::Case` (label under test: the egress label,
    /// or the link the packet goes to, or the first link) and the packet.
    fn fuzz_input(&self) -> (&'static str, Vec<u8>) {
        let cfg = &self.setup.cfg;
        let egress = cfg
            .links
            .iter()
            .find(|l| programs::egress_name(l.label) == self.program);
        let delivered = cfg
            .links
            .iter()
            .find(|l| Some(hidden_ifindex(l.label)) == self.redirect);
        let label = egress.or(delivered).unwrap_or(&cfg.links[0]).label;
        let target = match (egress, self.hook()) {
            (Some(_), _) => "egress",
            (None, Hook::Tc) => "ingress_tc",
            (None, Hook::Xdp) => "ingress_xdp",
        };
        let flags = u8::from(matches!(cfg.ext.kind, ExtKind::Ethernet { .. }))
            | u8::from(cfg.unknown == Unknown::Drop) << 1;
        let data = roundtrip::Case::to_bytes(cfg.label_bits, label, label, flags, &self.input);
        (target, data)
    }

    /// How to run this case's packet again outside the test: the fuzz seed, written to a file,
    /// and the command that runs the target on it.
    fn reproduction(&self, stem: &str) -> String {
        let test = std::thread::current()
            .name()
            .map_or_else(String::new, |t| format!(" {t}"));
        let filter = self.filter_text().replace('\'', "'\\''");
        let mut out = format!("alone:     L3MP_CASE='{filter}' cargo test --test golden{test}\n");
        let (target, data) = self.fuzz_input();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("golden");
        let path = dir.join(format!("{stem}-{target}.seed"));
        let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &data));
        writeln!(
            out,
            "fuzz seed: {} | {}",
            spaced_hex(&data[..roundtrip::CASE_HEADER], false),
            spaced_hex(&data[roundtrip::CASE_HEADER..], self.framed())
        )
        .expect("write to String");
        match written {
            Ok(()) => writeln!(
                out,
                "run it:    cd fuzz && cargo fuzz run --sanitizer none {target} {}",
                path.display()
            ),
            Err(e) => writeln!(out, "(could not write {}: {e})", path.display()),
        }
        .expect("write to String");
        if let Some(skb) = self.skb_text() {
            writeln!(
                out,
                "(the target derives the __sk_buff from the bytes; this case sets {skb})"
            )
            .expect("write to String");
        }
        out
    }
}

/// Hex, an Ethernet header (when `framed`) as destination, source and EtherType, the rest in
/// groups of four bytes.
pub fn spaced_hex(bytes: &[u8], framed: bool) -> String {
    let group = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (head, rest) = if framed && bytes.len() >= ETH_LEN {
        bytes.split_at(ETH_LEN)
    } else {
        (&[][..], bytes)
    };
    let head = head.chunks(6).map(group);
    let body = rest.chunks(4).map(group);
    head.chain(body).collect::<Vec<_>>().join(" ")
}

/// Bytes from hex, white space anywhere.
fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err("an odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|p| {
            let pair: String = p.iter().collect();
            u8::from_str_radix(&pair, 16).map_err(|_| format!("'{pair}' is not hex"))
        })
        .collect()
}

/// The setup a row's `config` names (`N=3 ethernet unknown=pass labels=1-7` or `labels=1,4`).
fn parse_config(text: &str) -> Result<Setup, String> {
    let mut fields = HashMap::new();
    let mut kind = None;
    for word in text.split_whitespace() {
        match word.split_once('=') {
            Some((k, v)) => {
                fields.insert(k, v);
            }
            None => kind = Some(word),
        }
    }
    let field = |k: &str| fields.get(k).copied().ok_or(format!("no {k}= in '{text}'"));
    let bits: u8 = field("N")?.parse().map_err(|e| format!("N: {e}"))?;
    let kind = match kind {
        Some("l3") => super::common::ext_kinds()[0],
        Some("ethernet") => super::common::ext_kinds()[1],
        other => return Err(format!("ext kind {other:?} is not l3 or ethernet")),
    };
    let unknown = match field("unknown")? {
        "pass" => Unknown::Pass,
        "drop" => Unknown::Drop,
        other => return Err(format!("unknown={other} is not pass or drop")),
    };
    let label = |s: &str| s.parse::<u8>().map_err(|e| format!("label '{s}': {e}"));
    let labels: Vec<u8> = match field("labels")?.split_once('-') {
        Some((first, last)) => (label(first)?..=label(last)?).collect(),
        None => field("labels")?
            .split(',')
            .map(label)
            .collect::<Result<_, _>>()?,
    };
    Ok(Setup::new(config(bits, kind, &labels, unknown)))
}

/// The rows of a fixture file: blocks separated by blank lines, `#` comments.
pub fn parse_rows(text: &str) -> Result<Vec<Case>, String> {
    let mut setups: HashMap<String, Rc<Setup>> = HashMap::new();
    let mut cases = Vec::new();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    for block in lines.split(|l| l.trim().is_empty()) {
        let Some((name, fields)) = block.split_first() else {
            continue;
        };
        let fields: HashMap<&str, &str> = fields
            .iter()
            .map(|l| {
                let l = l.trim();
                l.split_once(char::is_whitespace)
                    .map_or((l, ""), |(k, v)| (k, v.trim()))
            })
            .collect();
        let case = (|| {
            let field = |k: &str| fields.get(k).copied().ok_or(format!("no '{k}'"));
            let config = field("config")?;
            let setup = match setups.get(config) {
                Some(s) => s.clone(),
                None => {
                    let s = Rc::new(parse_config(config)?);
                    setups.insert(config.to_string(), s.clone());
                    s
                }
            };
            let program = field("program")?.to_string();
            let hook = hook_of(&program);
            let verdict = field("verdict")?;
            let verdict = VERDICTS
                .iter()
                .find(|(h, name, _)| *h == hook && *name == verdict)
                .map(|(_, _, v)| *v)
                .ok_or(format!("verdict {verdict} is not one of {hook:?}'s"))?;
            let redirect = match field("target")? {
                "-" => None,
                ifindex => Some(ifindex.parse().map_err(|e| format!("target: {e}"))?),
            };
            let input = from_hex(field("in")?)?;
            let output = match field("out")? {
                "same" => input.clone(),
                hex => from_hex(hex)?,
            };
            let slot = field("counted")?;
            let slot = match slot.split_once('+') {
                _ if slot == "-" => None,
                Some(("EGRESS", l)) => Some(EGRESS + l.parse::<u32>().map_err(|e| e.to_string())?),
                _ => Some(
                    SLOTS
                        .iter()
                        .find(|(name, _)| *name == slot)
                        .map(|(_, s)| *s)
                        .ok_or(format!("no counter slot {slot}"))?,
                ),
            };
            let framed = programs::sees_frames(&setup.cfg, &program);
            let skb = match fields.get("skb") {
                None => None,
                Some(text) => Some(parse_skb(text, vm::Skb::of(&input, framed))?),
            };
            let probe = match fields.get("probe") {
                None => None,
                Some(text) => Some(parse_probe(text)?),
            };
            Ok::<_, String>(Case {
                name: name.to_string(),
                setup,
                program,
                input,
                verdict,
                redirect,
                output,
                slot,
                skb,
                probe,
            })
        })()
        .map_err(|e| format!("row '{name}': {e}"))?;
        cases.push(case);
    }
    Ok(cases)
}

/// `label=9 word=0904000001020304`: the probes entry.
fn parse_probe(text: &str) -> Result<Recorded, String> {
    let fields: HashMap<&str, &str> = text
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect();
    let field = |k: &str| fields.get(k).copied().ok_or(format!("probe: no {k}="));
    let word: [u8; 8] = from_hex(field("word")?)?
        .try_into()
        .map_err(|_| "probe: the word is not 8 bytes".to_string())?;
    Ok(Recorded {
        label: field("label")?
            .parse()
            .map_err(|e| format!("probe label: {e}"))?,
        word,
    })
}

/// `protocol=8847 vlan=100 tc_index=1 gso=1448` over what the kernel derives.
fn parse_skb(text: &str, mut skb: vm::Skb) -> Result<vm::Skb, String> {
    for word in text.split_whitespace() {
        let (k, v) = word.split_once('=').ok_or(format!("skb: '{word}'"))?;
        let bad = |e: std::num::ParseIntError| format!("skb {k}: {e}");
        match k {
            "protocol" => skb.protocol = u16::from_str_radix(v, 16).map_err(bad)?.to_be_bytes(),
            "vlan" => skb.vlan_tci = Some(v.parse().map_err(bad)?),
            "tc_index" => skb.tc_index = v.parse().map_err(bad)?,
            "gso" => skb.gso_size = v.parse().map_err(bad)?,
            _ => return Err(format!("skb: no field {k}")),
        }
    }
    Ok(skb)
}

/// Every assertion on one case; the list of what does not hold.
pub fn check(case: &Case) -> Vec<String> {
    let mut bad = Vec::new();
    let (bundle, cfg) = (&case.setup.bundle, &case.setup.cfg);
    let run = match case.skb {
        Some(skb) => vm::run_skb(bundle, cfg, &case.program, &case.input, skb),
        None => vm::run(bundle, cfg, &case.program, &case.input),
    };
    let out = match run {
        Ok(out) => out,
        Err(e) => return vec![format!("VM error: {e}")],
    };
    if out.verdict != case.verdict {
        bad.push(format!(
            "verdict {} != expected {}",
            out.verdict, case.verdict
        ));
    }
    let redirect = out.redirect.map(|r| (r.ifindex, r.flags));
    if redirect != case.redirect.map(|i| (i, 0)) {
        bad.push(format!(
            "redirect (ifindex, flags) {redirect:?} != expected {:?}",
            case.redirect.map(|i| (i, 0))
        ));
    }
    if out.packet != case.output {
        bad.push(format!(
            "bytes differ at {:?}\n         got      {}\n         expected {}",
            differing_bytes(&out.packet, &case.output),
            spaced_hex(&out.packet, case.output_framed()),
            spaced_hex(&case.output, case.output_framed())
        ));
    }
    let probes: Vec<(u32, [u8; 8], u64)> = case
        .probe
        .iter()
        .map(|r| (u32::from(r.label), r.word, vm::VM_NOW_NS))
        .collect();
    if out.probes != probes {
        bad.push(format!(
            "probes entries (label, word, at) {:?} != expected {probes:?}",
            out.probes
        ));
    }
    // A link's egress counts frames as the link sends them: what the redirect puts out;
    // anything else is counted as it came. What the demux delivers, nothing counts here.
    let bytes = match case.redirect {
        Some(_) => case.output.len(),
        None => case.input.len(),
    };
    for (slot, &counter) in out.counters().iter().enumerate() {
        let want = if Some(slot as u32) == case.slot {
            [1, bytes as u64]
        } else {
            [0, 0]
        };
        if counter != want {
            bad.push(format!(
                "counter slot {slot}: {{packets, bytes}} {counter:?} != expected {want:?}"
            ));
        }
    }
    // A packet that leaves with an IP header: its checksum and ECN, read by etherparse.
    if case.redirect.is_some() && out.packet.len() >= ETH_LEN {
        let ip = &out.packet[ETH_LEN..];
        let ethertype = u16::from_be_bytes([out.packet[12], out.packet[13]]);
        if ethertype == ETHERTYPE_IPV4 && ipv4_header(ip).is_some() && !ipv4_checksum_valid(ip) {
            bad.push("IPv4 header checksum invalid after the program".into());
        }
        let in_ip = if case.framed() {
            &case.input[ETH_LEN..]
        } else {
            &case.input[..]
        };
        if let (Some((_, ecn_in)), Some((_, ecn_out))) = (dscp_ecn(in_ip), dscp_ecn(ip)) {
            if ecn_in != ecn_out {
                bad.push(format!("ECN {ecn_in} became {ecn_out}"));
            }
        }
    }
    bad
}

/// The cases `L3MP_CASE` selects (all without it).
fn selected(cases: &[Case]) -> Vec<&Case> {
    let filter = std::env::var("L3MP_CASE").ok();
    cases
        .iter()
        .filter(|c| filter.as_ref().is_none_or(|f| c.filter_text().contains(f)))
        .collect()
}

/// Runs every selected case; fails listing (up to 20 of) the cases that do not hold, each as
/// its row, what is wrong, and how to run its packet again.
pub fn run_cases(group: &str, cases: &[Case]) {
    assert!(!cases.is_empty(), "{group}: no cases");
    let chosen = selected(cases);
    eprintln!("{group}: {} of {} cases run", chosen.len(), cases.len());
    if let Some(report) = failures(group, &chosen) {
        panic!("{report}");
    }
}

/// Checks `cases`, after making sure each one's row reads back as the case (what a failure
/// prints is the case itself); the report of those that fail, if any.
pub fn failures(group: &str, cases: &[&Case]) -> Option<String> {
    let rows: String = cases.iter().map(|c| c.row() + "\n").collect();
    let back = parse_rows(&rows).unwrap_or_else(|e| panic!("{group}: {e}"));
    assert_eq!(back.len(), cases.len(), "{group}: rows read back");
    for (case, back) in cases.iter().zip(&back) {
        assert!(
            case.same_as(back),
            "{group}: the row reads back otherwise:\n{}",
            case.row()
        );
    }
    let failing: Vec<(&Case, Vec<String>)> = cases
        .iter()
        .map(|&case| (case, check(case)))
        .filter(|(_, bad)| !bad.is_empty())
        .collect();
    if failing.is_empty() {
        return None;
    }
    let stem: String = group
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let shown: Vec<String> = failing
        .iter()
        .take(20)
        .enumerate()
        .map(|(i, (case, bad))| {
            format!(
                "{}  wrong: {}\n{}",
                case.row(),
                bad.join("\n         "),
                case.reproduction(&format!("{stem}-{i}"))
            )
        })
        .collect();
    Some(format!(
        "{group}: {} of {} cases fail (each with the command that runs it alone):\n\n{}",
        failing.len(),
        cases.len(),
        shown.join("\n")
    ))
}
