//! How a replay's report is written: text lines (today's format) or one JSON document, streamed
//! packet by packet.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::Error;
use super::{describe, step, ReplayOptions, Show, Totals};
use crate::programs::Config;
use crate::roundtrip::{Trip, Violation};
use crate::vm::Engine;

/// The report being written.
pub struct Output<'o> {
    out: &'o mut dyn Write,
    show: Show,
    json: bool,
    /// Packets written so far (JSON needs commas between them).
    written: usize,
}

fn io(e: std::io::Error) -> Error {
    Error::new(format!("writing the report: {e}"))
}

impl<'o> Output<'o> {
    /// Starts the report (the JSON document's head: the capture and the options).
    pub fn new(
        out: &'o mut dyn Write,
        path: &Path,
        opts: &ReplayOptions,
    ) -> Result<Output<'o>, Error> {
        if opts.json {
            let head = json!({
                "file": path.display().to_string(),
                "label": opts.label,
                "label_bits": opts.label_bits,
                "ext_kind": if opts.ethernet { "ether" } else { "l3" },
                "engine": match opts.engine {
                    Engine::Interp => "interp",
                    Engine::Jit => "jit",
                },
                "show": match opts.show {
                    Show::Packets => "packets",
                    Show::Summary => "summary",
                    Show::Violations => "violations",
                },
            })
            .to_string();
            // The head's fields, then the packets array the document goes on with.
            write!(out, "{}, \"packets\": [", &head[..head.len() - 1]).map_err(io)?;
        }
        Ok(Output {
            out,
            show: opts.show,
            json: opts.json,
            written: 0,
        })
    }

    /// One packet's entry, made by [`entry`].
    pub fn packet(&mut self, entry: &str) -> Result<(), Error> {
        if self.json {
            let comma = if self.written == 0 { "" } else { "," };
            write!(self.out, "{comma}\n  {entry}").map_err(io)?;
        } else {
            self.out.write_all(entry.as_bytes()).map_err(io)?;
            self.out.write_all(b"\n").map_err(io)?;
        }
        self.written += 1;
        Ok(())
    }

    /// Ends the report with the totals (text: unless only violations are shown).
    pub fn finish(self, t: &Totals) -> Result<(), Error> {
        if self.json {
            let totals = json!({
                "packets": t.packets,
                "restored": t.restored,
                "not_marked": t.not_marked(),
                "violations": t.violations,
            });
            writeln!(self.out, "\n], \"totals\": {totals}}}").map_err(io)?;
        } else if self.show != Show::Violations {
            writeln!(
                self.out,
                "{} packets: {} marked and restored, {} not IP or malformed, {} violations",
                t.packets,
                t.restored,
                t.not_marked(),
                t.violations
            )
            .map_err(io)?;
        }
        self.out.flush().map_err(io)
    }
}

/// Appends the entry of packet `n` (from 1) in the report to `out`: a text line, or a JSON
/// object.
pub fn entry(
    out: &mut String,
    cfg: &Config,
    json: bool,
    n: usize,
    frame: &[u8],
    result: &Result<Trip, Violation>,
) {
    let fate = |trip: &Trip| {
        if trip.restored {
            "restored"
        } else {
            "not marked"
        }
    };
    if json {
        let named = |s| {
            let mut text = String::new();
            step(&mut text, cfg, s);
            text
        };
        let mut what = String::new();
        describe(&mut what, frame);
        let mut entry = json!({
            "packet": n,
            "bytes": frame.len(),
            "what": what,
        });
        match result {
            Ok(trip) => {
                entry["steps"] = json!(trip.steps.iter().map(named).collect::<Vec<_>>());
                entry["fate"] = json!(fate(trip));
            }
            Err(v) => {
                entry["fate"] = json!("violation");
                entry["violation"] = json!(v.0);
            }
        }
        return write!(out, "{entry}").expect("a String takes it");
    }
    write!(out, "#{:<4} {:>5} B  ", n, frame.len()).expect("a String takes it");
    // What it is, padded to 28 characters.
    let start = out.len();
    describe(out, frame);
    let width = out[start..].chars().count();
    out.extend(std::iter::repeat_n(' ', 28usize.saturating_sub(width) + 1));
    match result {
        Ok(trip) => {
            for s in &trip.steps {
                step(out, cfg, s);
                out.push_str("  ");
            }
            out.push_str(fate(trip));
        }
        Err(v) => {
            out.push_str("VIOLATION ");
            out.push_str(&v.0);
        }
    }
}
