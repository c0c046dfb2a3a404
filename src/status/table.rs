//! `l3mp status` for people: per instance a heading, ext's state, a table of the links and
//! their traffic, and the counters that belong to no link.

use std::fmt::Write;

use crate::programs::Unknown;
use crate::run::Counter;

use super::{Device, Entry, InstanceStatus};

/// The text for `instances`.
pub fn table(instances: &[Entry]) -> String {
    if instances.is_empty() {
        return "no l3mp instance is running\n".to_string();
    }
    let mut out = String::new();
    for (i, entry) in instances.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match entry {
            Entry::Instance(instance) => render(&mut out, instance),
            Entry::Unreadable(u) => {
                let _ = writeln!(
                    out,
                    "l3mp {}: running, but {} cannot be read: {}",
                    u.id,
                    u.state_file.display(),
                    u.unreadable
                );
            }
        }
    }
    out
}

fn render(out: &mut String, s: &InstanceStatus) {
    let ext = &s.ext;
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "l3mp {} on {} (netns {}): {} ingress, {} label bits, unknown labels {}",
        s.id,
        ext.name,
        s.netns_name.clone().unwrap_or_else(|| s.netns.to_string()),
        s.ingress,
        s.label_bits,
        match s.unknown {
            Unknown::Pass => "pass",
            Unknown::Drop => "drop",
        }
    );
    let state = match (ext.attached, ext.device.exists) {
        (None, _) => "state unknown (its network namespace could not be entered)".to_string(),
        (Some(true), _) => format!("attached, {}", device(&ext.device)),
        (Some(false), Some(true)) => {
            format!("back ({}), not attached yet: waiting", device(&ext.device))
        }
        (Some(false), _) => format!(
            "gone (was ifindex {}): links kept, waiting for it",
            ext.attached_ifindex
        ),
    };
    let _ = writeln!(out, "  {}: {state}", ext.name);
    let mut rows = vec![[
        "link",
        "label",
        "state",
        "mtu",
        "egress pkts",
        "bytes",
        "ingress pkts",
        "bytes",
        "far end",
        "link-local",
    ]
    .map(str::to_string)];
    for link in &s.links {
        let opt = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
        rows.push([
            link.name.clone(),
            link.label.to_string(),
            link_state(&link.device).to_string(),
            opt(link.device.mtu),
            link.egress.packets.to_string(),
            link.egress.bytes.to_string(),
            link.ingress
                .map_or("?".to_string(), |c| c.packets.to_string()),
            link.ingress
                .map_or("?".to_string(), |c| c.bytes.to_string()),
            link.far_end.map_or("?".to_string(), |far| far.describe()),
            match &link.link_local {
                None => "?".to_string(),
                Some(list) if list.is_empty() => "-".to_string(),
                Some(list) => {
                    let list: Vec<String> = list.iter().map(ToString::to_string).collect();
                    list.join(" ")
                }
            },
        ]);
    }
    columns(
        out,
        &rows,
        &[
            false, true, false, true, true, true, true, true, false, false,
        ],
    );
    let c = &s.counters;
    let _ = writeln!(
        out,
        "  other traffic: pass {}, unknown {}, drop {}, guard {}, foreign {}, guard not IP {}, \
         too big {}",
        traffic(c.pass),
        traffic(c.unknown),
        traffic(c.drop),
        traffic(c.guard),
        traffic(c.foreign),
        traffic(c.guard_not_ip),
        traffic(c.too_big)
    );
    if let Some(loaded) = &s.loaded {
        let from = loaded
            .file
            .as_ref()
            .map_or("the command line".to_string(), |f| f.display().to_string());
        let _ = writeln!(out, "  configuration loaded {} from {from}", utc(loaded.at));
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// "ifindex 7, up, MTU 1500".
fn device(d: &Device) -> String {
    let up = match d.up {
        Some(true) => "up",
        Some(false) => "down",
        None => "?",
    };
    let index = d.ifindex.map_or("?".to_string(), |i| i.to_string());
    let mtu = d.mtu.map_or("?".to_string(), |m| m.to_string());
    format!("ifindex {index}, {up}, MTU {mtu}")
}

fn link_state(d: &Device) -> &'static str {
    match (d.exists, d.up) {
        (None, _) => "?",
        (Some(false), _) => "missing",
        (Some(true), Some(true)) => "up",
        (Some(true), _) => "down",
    }
}

fn traffic(c: Counter) -> String {
    format!("{} pkts {} B", c.packets, c.bytes)
}

/// Rows as aligned columns, indented by two spaces; `right[i]` right-aligns column i.
fn columns<const N: usize>(out: &mut String, rows: &[[String; N]], right: &[bool; N]) {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for ((cell, width), right) in row.iter().zip(widths).zip(right) {
            line.push_str("  ");
            if *right {
                let _ = write!(line, "{cell:>width$}");
            } else {
                let _ = write!(line, "{cell:<width$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ExtCounters, ExtStatus, LinkStatus, Unreadable};
    use super::*;
    use crate::run::probe::{FarEnd, FarEndState};
    use crate::run::{IngressMode, InstanceId, Loaded};

    fn sample(attached: Option<bool>, ext_exists: Option<bool>) -> InstanceStatus {
        let known = |exists| Device {
            exists,
            ifindex: exists.map(|_| 7),
            up: exists.map(|_| true),
            mtu: exists.map(|_| 1420),
        };
        InstanceStatus {
            id: InstanceId {
                pid: 4242,
                serial: 0,
            },
            pid: 4242,
            netns: 4_026_531_840,
            netns_name: None,
            ext: ExtStatus {
                name: "wg0".into(),
                attached_ifindex: 7,
                attached,
                device: known(ext_exists),
            },
            ingress: IngressMode::Tc,
            label_bits: 4,
            unknown: Unknown::Pass,
            probe: Some(true),
            links: vec![LinkStatus {
                name: "bgp1".into(),
                label: 1,
                hidden: "l3mp000000_1".into(),
                device: known(attached.map(|_| true)),
                link_local: attached
                    .map(|_| vec!["fe80::1c:aff:fe5e:5701".parse().expect("literal")]),
                egress: Counter {
                    packets: 7,
                    bytes: 1_274,
                },
                ingress: attached.map(|_| Counter {
                    packets: 4,
                    bytes: 392,
                }),
                far_end: Some(FarEnd {
                    state: FarEndState::Ok,
                    seen_ms_ago: Some(812),
                    label: Some(1),
                    label_bits: Some(4),
                }),
            }],
            counters: ExtCounters {
                guard: Counter {
                    packets: 2,
                    bytes: 168,
                },
                foreign: Counter {
                    packets: 3,
                    bytes: 300,
                },
                ..ExtCounters::default()
            },
            loaded: Some(Box::new(Loaded {
                at: 1_795_987_201,
                file: Some("/etc/l3mp/wg0.toml".into()),
            })),
        }
    }

    #[test]
    fn the_table_shows_state_and_traffic() {
        let text = table(&[Entry::Instance(sample(Some(true), Some(true)))]);
        let expected = "\
l3mp 4242 on wg0 (netns 4026531840): TC ingress, 4 label bits, unknown labels pass
  wg0: attached, ifindex 7, up, MTU 1420
  link  label  state   mtu  egress pkts  bytes  ingress pkts  bytes  far end                          link-local
  bgp1      1  up     1420            7   1274             4    392  seen 0.8 s ago, label 1, bits 4  fe80::1c:aff:fe5e:5701
  other traffic: pass 0 pkts 0 B, unknown 0 pkts 0 B, drop 0 pkts 0 B, guard 2 pkts 168 B, \
foreign 3 pkts 300 B, guard not IP 0 pkts 0 B, too big 0 pkts 0 B
  configuration loaded 2026-11-29 21:20:01 UTC from /etc/l3mp/wg0.toml
";
        assert_eq!(text, expected);
    }

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_825_599), "2000-02-29 11:59:59 UTC");
        assert_eq!(utc(4_102_444_800), "2100-01-01 00:00:00 UTC");
    }

    #[test]
    fn ext_away_or_unknown_is_said() {
        let gone = table(&[Entry::Instance(sample(Some(false), Some(false)))]);
        assert!(
            gone.contains("wg0: gone (was ifindex 7): links kept, waiting for it"),
            "{gone}"
        );
        let back = table(&[Entry::Instance(sample(Some(false), Some(true)))]);
        assert!(
            back.contains("wg0: back (ifindex 7, up, MTU 1420)"),
            "{back}"
        );
        let unknown = table(&[Entry::Instance(sample(None, None))]);
        assert!(unknown.contains("wg0: state unknown"), "{unknown}");
        assert!(unknown.contains("bgp1      1  ?"), "{unknown}");
        // What the link received is unknown too (its hidden end's counters could not be read).
        assert!(unknown.contains("1274             ?      ?"), "{unknown}");
        assert_eq!(table(&[]), "no l3mp instance is running\n");
    }

    #[test]
    fn json_names_every_field() {
        let value: serde_json::Value =
            serde_json::from_str(&super::super::json(&[Entry::Instance(sample(
                Some(true),
                Some(true),
            ))]))
            .expect("valid JSON");
        let i = &value[0];
        assert_eq!(i["id"], "4242");
        assert_eq!(i["ingress"], "tc");
        assert_eq!(i["unknown"], "pass");
        assert_eq!(i["ext"]["name"], "wg0");
        assert_eq!(i["ext"]["attached"], true);
        assert_eq!(i["links"][0]["ingress"]["bytes"], 392);
        assert_eq!(i["ext"]["attached_ifindex"], 7);
        assert_eq!(i["ext"]["exists"], true);
        assert_eq!(i["ext"]["mtu"], 1420);
        assert_eq!(i["links"][0]["label"], 1);
        assert_eq!(i["links"][0]["up"], true);
        assert_eq!(i["links"][0]["link_local"][0], "fe80::1c:aff:fe5e:5701");
        assert_eq!(i["links"][0]["egress"]["packets"], 7);
        assert_eq!(i["links"][0]["egress"]["bytes"], 1274);
        assert_eq!(i["counters"]["guard"]["packets"], 2);
        assert_eq!(i["counters"]["foreign"]["bytes"], 300);
        assert_eq!(i["counters"]["guard_not_ip"]["packets"], 0);
        assert_eq!(i["probe"], true);
        let far = &i["links"][0]["far_end"];
        assert_eq!(far["state"], "ok");
        assert_eq!(far["seen_ms_ago"], 812);
        assert_eq!((&far["label"], &far["label_bits"]), (&1.into(), &4.into()));
        let parsed: Vec<InstanceStatus> = serde_json::from_value(value).expect("reads back");
        assert_eq!(parsed, vec![sample(Some(true), Some(true))]);
    }

    #[test]
    fn an_unreadable_instance_is_said_beside_the_others() {
        let unreadable = Entry::Unreadable(Unreadable {
            id: InstanceId { pid: 17, serial: 1 },
            state_file: "/run/l3mp/17-1.json".into(),
            unreadable: "missing field `pid`".into(),
        });
        let both = [Entry::Instance(sample(Some(true), Some(true))), unreadable];
        let text = table(&both);
        assert!(text.starts_with("l3mp 4242 on wg0"), "{text}");
        assert!(
            text.ends_with(
                "\nl3mp 17-1: running, but /run/l3mp/17-1.json cannot be read: missing field `pid`\n"
            ),
            "{text}"
        );
        let value: serde_json::Value =
            serde_json::from_str(&super::super::json(&both)).expect("valid JSON");
        assert_eq!(value[0]["id"], "4242");
        assert_eq!(value[1]["id"], "17-1");
        assert_eq!(value[1]["state_file"], "/run/l3mp/17-1.json");
        assert_eq!(value[1]["unreadable"], "missing field `pid`");
        let parsed: Vec<Entry> = serde_json::from_value(value).expect("reads back");
        assert_eq!(parsed, both);
    }
}
