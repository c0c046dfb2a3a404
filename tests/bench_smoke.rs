//! As root: `l3mp bench --quick --json` runs to the end and prints a well-formed JSON document
//! in which every figure has its value, unit, baseline, ratio, target and `meets_target`, and
//! every check passed. No timed assertion: the quick figures are rough, and whether they meet
//! their targets is not tested. Also, without root, the offline part (`--offline`).

use std::collections::BTreeMap;
use std::process::Command;

use l3mp::sys::caps::{missing_capabilities, Cap};

/// A JSON value, as much of it as the test looks at.
#[derive(Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

/// A strict JSON parser (RFC 8259, no extensions): the whole input must be one value.
struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = p.value()?;
        p.space();
        if p.at != p.bytes.len() {
            return Err(format!("trailing data at byte {}", p.at));
        }
        Ok(value)
    }

    fn space(&mut self) {
        while self.at < self.bytes.len() && b" \t\r\n".contains(&self.bytes[self.at]) {
            self.at += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.space();
        let Some(&c) = self.bytes.get(self.at) else {
            return Err("unexpected end".into());
        };
        match c {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string().map(Json::String),
            _ if self.eat("null") => Ok(Json::Null),
            _ if self.eat("true") => Ok(Json::Bool(true)),
            _ if self.eat("false") => Ok(Json::Bool(false)),
            _ => self.number(),
        }
    }

    fn object(&mut self) -> Result<Json, String> {
        self.at += 1;
        let mut map = BTreeMap::new();
        self.space();
        if self.eat("}") {
            return Ok(Json::Object(map));
        }
        loop {
            self.space();
            let key = self.string()?;
            self.space();
            if !self.eat(":") {
                return Err(format!("expected ':' at byte {}", self.at));
            }
            map.insert(key, self.value()?);
            self.space();
            if self.eat("}") {
                return Ok(Json::Object(map));
            }
            if !self.eat(",") {
                return Err(format!("expected ',' or '}}' at byte {}", self.at));
            }
        }
    }

    fn array(&mut self) -> Result<Json, String> {
        self.at += 1;
        let mut items = Vec::new();
        self.space();
        if self.eat("]") {
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.space();
            if self.eat("]") {
                return Ok(Json::Array(items));
            }
            if !self.eat(",") {
                return Err(format!("expected ',' or ']' at byte {}", self.at));
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if !self.eat("\"") {
            return Err(format!("expected a string at byte {}", self.at));
        }
        let mut out = String::new();
        loop {
            let Some(&c) = self.bytes.get(self.at) else {
                return Err("unterminated string".into());
            };
            self.at += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = *self.bytes.get(self.at).ok_or("unterminated escape")?;
                    self.at += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e as char),
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let hex = self.bytes.get(self.at..self.at + 4).ok_or("short \\u")?;
                            let code = u32::from_str_radix(
                                std::str::from_utf8(hex).map_err(|e| e.to_string())?,
                                16,
                            )
                            .map_err(|e| e.to_string())?;
                            out.push(char::from_u32(code).ok_or("bad \\u")?);
                            self.at += 4;
                        }
                        _ => return Err(format!("bad escape at byte {}", self.at)),
                    }
                }
                c if c < 0x20 => return Err(format!("control byte in a string at {}", self.at)),
                _ => {
                    // Copy one UTF-8 character whole.
                    let start = self.at - 1;
                    let len = match c {
                        0x00..=0x7f => 1,
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        _ => 4,
                    };
                    let end = (start + len).min(self.bytes.len());
                    out.push_str(
                        std::str::from_utf8(&self.bytes[start..end]).map_err(|e| e.to_string())?,
                    );
                    self.at = end;
                }
            }
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        while self.at < self.bytes.len() && b"+-0123456789.eE".contains(&self.bytes[self.at]) {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).map_err(|e| e.to_string())?;
        let body = text.strip_prefix('-').unwrap_or(text);
        let digit = |c: char| c.is_ascii_digit();
        let leading_zero = body.len() > 1 && body.starts_with('0') && !body.starts_with("0.");
        let ok = body.starts_with(digit) && body.ends_with(digit) && !leading_zero;
        match text.parse::<f64>() {
            Ok(v) if ok => Ok(Json::Number(v)),
            _ => Err(format!("bad value {text:?} at byte {start}")),
        }
    }
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(map) => map.get(key),
            _ => None,
        }
    }

    fn items(&self) -> &[Json] {
        match self {
            Json::Array(items) => items,
            _ => &[],
        }
    }
}

#[test]
fn the_parser_is_strict() {
    assert!(Parser::parse("{\"a\": [1, 2.5, -3e2, true, null, \"x\\n\"]}").is_ok());
    for bad in ["{", "{\"a\" 1}", "[1,]", "01", "\"\u{1}\"", "{} x", "nan"] {
        assert!(Parser::parse(bad).is_err(), "{bad}");
    }
}

/// Whether the test `name` can run the bench's root parts (says so when it cannot).
fn as_root(name: &str) -> bool {
    let missing = missing_capabilities(&[Cap::NetAdmin, Cap::Bpf, Cap::SysAdmin]);
    if !missing.is_empty() {
        eprintln!("skipped {name}: needs {}", missing.join(", "));
    }
    missing.is_empty()
}

/// `l3mp -q bench ARGS --json`, which must succeed, parsed.
fn bench_json(args: &[&str]) -> Json {
    let out = Command::new(env!("CARGO_BIN_EXE_l3mp"))
        .args(["-q", "bench"])
        .args(args)
        .arg("--json")
        .output()
        .expect("l3mp runs");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        out.status.success(),
        "l3mp bench {args:?} failed (--offline needs tcpdump): {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Parser::parse(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}"))
}

#[test]
fn quick_bench_prints_every_field() {
    if !as_root("quick_bench_prints_every_field") {
        return;
    }
    let doc = bench_json(&["--quick"]);
    for key in [
        "machine",
        "mode",
        "all_targets_met",
        "figures",
        "programs",
        "checks",
        "notes",
    ] {
        assert!(doc.get(key).is_some(), "no {key}");
    }
    let figures = doc.get("figures").expect("figures").items();
    for part in ["program", "end-to-end", "scale"] {
        let n = figures
            .iter()
            .filter(|f| f.get("part") == Some(&Json::String(part.into())))
            .count();
        assert!(n > 0, "no {part} figures");
    }
    // The per-packet scale figures, like the per-program ones: a round per load (3 with
    // --quick).
    let per_packet_scale = figures.iter().filter(|f| {
        f.get("part") == Some(&Json::String("scale".into()))
            && matches!(f.get("name"), Some(Json::String(n)) if n.contains("63 links, label 63"))
    });
    let mut scale_figures = 0;
    for f in per_packet_scale {
        scale_figures += 1;
        let rounds = f.get("value_rounds").and_then(|r| r.get("values"));
        assert_eq!(rounds.expect("values").items().len(), 3, "{f:?}");
        assert!(
            matches!(f.get("method"), Some(Json::String(m)) if m.ends_with("loaded anew")),
            "{f:?}"
        );
    }
    assert_eq!(scale_figures, 4, "TC and XDP, primed and single");
    for f in figures {
        let number = |key: &str| matches!(f.get(key), Some(Json::Number(_)));
        assert!(
            number("value") && number("baseline") && number("ratio"),
            "{f:?}"
        );
        for key in ["name", "unit", "baseline_name", "method"] {
            assert!(
                matches!(f.get(key), Some(Json::String(s)) if !s.is_empty()),
                "{key}: {f:?}"
            );
        }
        for key in ["value_rounds", "baseline_rounds"] {
            let rounds = f.get(key).unwrap_or_else(|| panic!("{key}: {f:?}"));
            assert!(
                !rounds.get("values").expect("values").items().is_empty(),
                "{f:?}"
            );
        }
        match (f.get("target"), f.get("meets_target")) {
            (Some(Json::Null), Some(Json::Null)) => {}
            (Some(target @ Json::Object(_)), Some(Json::Bool(_))) => {
                assert!(matches!(target.get("kind"), Some(Json::String(_))), "{f:?}");
                assert!(
                    matches!(target.get("limit"), Some(Json::Number(_))),
                    "{f:?}"
                );
            }
            other => panic!("target and meets_target: {other:?} in {f:?}"),
        }
    }
    for program in doc.get("programs").expect("programs").items() {
        for key in ["insns", "xlated_insns", "verified_insns", "jited_bytes"] {
            assert!(
                matches!(program.get(key), Some(Json::Number(n)) if *n > 0.0),
                "{key}: {program:?}"
            );
        }
    }
    for check in doc.get("checks").expect("checks").items() {
        assert_eq!(check.get("passed"), Some(&Json::Bool(true)), "{check:?}");
    }
}

/// As root: `l3mp bench --programs --quick --json` gives the per-program figures and nothing
/// else, every check passed (the demux's: every run redirected, none counted as passed), and
/// each figure with one value per round (3 with `--quick`), each round on a load of its own.
#[test]
fn programs_bench_gives_only_the_program_figures() {
    if !as_root("programs_bench_gives_only_the_program_figures") {
        return;
    }
    let doc = bench_json(&["--programs", "--quick"]);
    let figures = doc.get("figures").expect("figures").items();
    let name = |f: &Json| match f.get("name") {
        Some(Json::String(s)) => s.clone(),
        other => panic!("name: {other:?}"),
    };
    assert!(figures
        .iter()
        .all(|f| f.get("part") == Some(&Json::String("program".into()))));
    for f in figures {
        for key in ["value_rounds", "baseline_rounds"] {
            let rounds = f.get(key).and_then(|r| r.get("values")).expect("values");
            assert_eq!(rounds.items().len(), 3, "{key}: {f:?}");
        }
        assert!(
            matches!(f.get("method"), Some(Json::String(m)) if m.ends_with("loaded anew")),
            "{f:?}"
        );
    }
    for hook in ["TC", "XDP"] {
        let singles = figures
            .iter()
            .filter(|f| name(f).starts_with(&format!("{hook} demux (eth ext) ipv4")))
            .filter(|f| name(f).ends_with("(single)"))
            .count();
        assert_eq!(singles, 2, "{hook}: one per frame size");
    }
    let checks = doc.get("checks").expect("checks").items();
    let demux_checks = checks
        .iter()
        .filter(|c| matches!(c.get("what"), Some(Json::String(w)) if w.contains("demux")))
        .filter(|c| {
            matches!(c.get("detail"), Some(Json::String(d))
                if d.contains("every one redirected, pass, unknown and foreign counters +0"))
        })
        .count();
    assert!(demux_checks >= 8, "{demux_checks} demux checks: {checks:?}");
    for check in checks {
        assert_eq!(check.get("passed"), Some(&Json::Bool(true)), "{check:?}");
    }
}

/// Without root: `l3mp bench --offline --quick --json` replays a generated capture on both
/// engines against `tcpdump -nr` (which CI installs) and reports each engine's wall time, CPU
/// time and rate with tcpdump's as the baseline; the fast engine's wall time has the target.
#[test]
fn offline_bench_reports_both_engines_against_tcpdump() {
    let doc = bench_json(&["--offline", "--quick"]);
    let figures = doc.get("figures").expect("figures").items();
    let names: Vec<String> = figures
        .iter()
        .map(|f| match f.get("name") {
            Some(Json::String(s)) => s.clone(),
            other => panic!("name: {other:?}"),
        })
        .collect();
    let mut want = Vec::new();
    for engine in ["interp", "jit"] {
        for what in ["wall time", "CPU time", "rate"] {
            want.push(format!("replay --engine {engine}, {what}"));
        }
    }
    assert_eq!(names, want);
    for f in figures {
        assert_eq!(
            f.get("part"),
            Some(&Json::String("offline".into())),
            "{f:?}"
        );
        let name = match f.get("name") {
            Some(Json::String(s)) => s.as_str(),
            _ => unreachable!("checked above"),
        };
        assert!(
            matches!(f.get("baseline_name"), Some(Json::String(b)) if b.starts_with("tcpdump -nr")),
            "{f:?}"
        );
        assert!(
            matches!(f.get("value"), Some(Json::Number(v)) if *v > 0.0),
            "{f:?}"
        );
        let targeted = name == "replay --engine jit, wall time";
        assert_eq!(
            matches!(f.get("target"), Some(Json::Object(_))),
            targeted,
            "{f:?}"
        );
    }
}
