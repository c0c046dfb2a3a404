//! `l3mp status --prometheus`: every instance's counters in the Prometheus text exposition
//! format (version 0.0.4), for node_exporter's textfile collector. Names start with `l3mp_`,
//! counters end in `_total`, and the labels are `ext` and `link`.

use std::fmt::Write;

use crate::run::probe::{FarEnd, FarEndState};
use crate::run::Counter;

use super::{Entry, InstanceStatus};

/// The samples of one family for one instance: the link label if any, and the value.
type Samples = Vec<(Option<String>, f64)>;

/// One metric family: its name, type and help, and how to read its samples off an instance
/// (label pairs after `ext`, and the value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: fn(&InstanceStatus) -> Samples,
}

/// A per-link counter: `(link, value)` for each link that has it (what a link received is
/// unknown while its namespace cannot be entered or its hidden end is not there).
macro_rules! per_link {
    ($dir:ident, $field:ident) => {
        |s: &InstanceStatus| {
            s.links
                .iter()
                .filter_map(|l| {
                    let counter = Option::<Counter>::from(l.$dir)?;
                    Some((Some(l.name.clone()), counter.$field as f64))
                })
                .collect()
        }
    };
}

/// A per-link gauge of the far end, where `value` has one for it (none where the far end is
/// unknown, and none with `--probe off`).
fn per_far_end(s: &InstanceStatus, value: fn(&FarEnd) -> Option<f64>) -> Samples {
    s.links
        .iter()
        .filter_map(|l| {
            let far = l.far_end.filter(|far| far.state != FarEndState::Off)?;
            Some((Some(l.name.clone()), value(&far)?))
        })
        .collect()
}

/// A counter that belongs to no link.
macro_rules! per_ext {
    ($counter:ident, $field:ident) => {
        |s: &InstanceStatus| vec![(None, s.counters.$counter.$field as f64)]
    };
}

/// Every family, in the order printed.
const FAMILIES: &[Family] = &[
    Family {
        name: "l3mp_link_egress_packets_total",
        kind: "counter",
        help: "Packets a link sent, labelled, out of ext.",
        samples: per_link!(egress, packets),
    },
    Family {
        name: "l3mp_link_egress_bytes_total",
        kind: "counter",
        help: "Bytes a link sent out of ext, Ethernet header included.",
        samples: per_link!(egress, bytes),
    },
    Family {
        name: "l3mp_link_ingress_packets_total",
        kind: "counter",
        help: "Packets that arrived on ext with a link's label and were delivered to it (the \
               link's own count, from its creation on).",
        samples: per_link!(ingress, packets),
    },
    Family {
        name: "l3mp_link_ingress_bytes_total",
        kind: "counter",
        help: "Bytes delivered to a link, Ethernet header included.",
        samples: per_link!(ingress, bytes),
    },
    Family {
        name: "l3mp_pass_packets_total",
        kind: "counter",
        help:
            "Ingress packets passed to ext's own stack untouched (unlabelled, not IP, malformed).",
        samples: per_ext!(pass, packets),
    },
    Family {
        name: "l3mp_pass_bytes_total",
        kind: "counter",
        help: "Bytes of the ingress packets passed to ext's own stack untouched.",
        samples: per_ext!(pass, bytes),
    },
    Family {
        name: "l3mp_unknown_packets_total",
        kind: "counter",
        help: "Ingress packets with a label no link uses.",
        samples: per_ext!(unknown, packets),
    },
    Family {
        name: "l3mp_unknown_bytes_total",
        kind: "counter",
        help: "Bytes of the ingress packets with a label no link uses.",
        samples: per_ext!(unknown, bytes),
    },
    Family {
        name: "l3mp_drop_packets_total",
        kind: "counter",
        help: "Egress packets dropped (not IP, malformed or truncated).",
        samples: per_ext!(drop, packets),
    },
    Family {
        name: "l3mp_drop_bytes_total",
        kind: "counter",
        help: "Bytes of the egress packets dropped.",
        samples: per_ext!(drop, bytes),
    },
    Family {
        name: "l3mp_guard_packets_total",
        kind: "counter",
        help: "Packets of ext's own traffic whose label bits the guard cleared.",
        samples: per_ext!(guard, packets),
    },
    Family {
        name: "l3mp_guard_bytes_total",
        kind: "counter",
        help: "Bytes of ext's own traffic whose label bits the guard cleared.",
        samples: per_ext!(guard, bytes),
    },
    Family {
        name: "l3mp_foreign_packets_total",
        kind: "counter",
        help: "Ethernet ext: labelled ingress packets not from the peer's MAC, passed untouched.",
        samples: per_ext!(foreign, packets),
    },
    Family {
        name: "l3mp_foreign_bytes_total",
        kind: "counter",
        help: "Bytes of the labelled ingress packets not from the peer's MAC.",
        samples: per_ext!(foreign, bytes),
    },
    Family {
        name: "l3mp_guard_not_ip_packets_total",
        kind: "counter",
        help: "Packets of ext's own traffic the guard left alone (not IP, VLAN-tagged, malformed).",
        samples: per_ext!(guard_not_ip, packets),
    },
    Family {
        name: "l3mp_guard_not_ip_bytes_total",
        kind: "counter",
        help: "Bytes of ext's own traffic the guard left alone.",
        samples: per_ext!(guard_not_ip, bytes),
    },
    Family {
        name: "l3mp_too_big_packets_total",
        kind: "counter",
        help: "Egress packets dropped because they were longer than ext's MTU allows.",
        samples: per_ext!(too_big, packets),
    },
    Family {
        name: "l3mp_too_big_bytes_total",
        kind: "counter",
        help: "Bytes of the egress packets dropped as too big for ext.",
        samples: per_ext!(too_big, bytes),
    },
    Family {
        name: "l3mp_link_far_end_ok",
        kind: "gauge",
        help:
            "1 when the far end's probe arrives on the link with this end's label and label bits.",
        samples: |s| per_far_end(s, |f| Some(f64::from(u8::from(f.state == FarEndState::Ok)))),
    },
    Family {
        name: "l3mp_link_far_end_mismatch",
        kind: "gauge",
        help: "1 when the far end's probe arrives on the link with another label or label bits.",
        samples: |s| {
            per_far_end(s, |f| {
                Some(f64::from(u8::from(f.state == FarEndState::Mismatch)))
            })
        },
    },
    Family {
        name: "l3mp_link_far_end_probe_age_seconds",
        kind: "gauge",
        help: "Seconds since the far end's last probe arrived on the link (none: never).",
        samples: |s| per_far_end(s, |f| f.seen_ms_ago.map(|ms| ms as f64 / 1000.0)),
    },
    Family {
        name: "l3mp_link_far_end_label",
        kind: "gauge",
        help: "The label the far end's last probe on the link named.",
        samples: |s| per_far_end(s, |f| f.label.map(f64::from)),
    },
    Family {
        name: "l3mp_link_far_end_label_width",
        kind: "gauge",
        help: "The label width (label bits) the far end's last probe on the link named.",
        samples: |s| per_far_end(s, |f| f.label_bits.map(f64::from)),
    },
    Family {
        name: "l3mp_ext_attached",
        kind: "gauge",
        help: "1 when the programs are on ext as it is now, 0 while the instance waits for it.",
        samples: |s| match s.ext.attached {
            Some(attached) => vec![(None, f64::from(u8::from(attached)))],
            None => Vec::new(),
        },
    },
    Family {
        name: "l3mp_config_loaded_timestamp_seconds",
        kind: "gauge",
        help: "When the instance last loaded its configuration, in seconds since the epoch.",
        samples: |s| s.loaded.iter().map(|l| (None, l.at as f64)).collect(),
    },
];

/// The exposition text for `instances` (those whose state cannot be read have no samples).
pub fn prometheus(instances: &[Entry]) -> String {
    let running: Vec<&InstanceStatus> = instances
        .iter()
        .filter_map(|e| match e {
            Entry::Instance(i) => Some(i),
            Entry::Unreadable(_) => None,
        })
        .collect();
    let mut out = String::new();
    for family in FAMILIES {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for instance in &running {
            for (link, value) in (family.samples)(instance) {
                let mut labels = format!("ext=\"{}\"", escape(&instance.ext.name));
                if let Some(link) = link {
                    let _ = write!(labels, ",link=\"{}\"", escape(&link));
                }
                let _ = writeln!(out, "{}{{{labels}}} {value}", family.name);
            }
        }
    }
    out
}

/// A label value as the text format writes it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::super::{Device, ExtCounters, ExtStatus, LinkStatus};
    use super::*;
    use crate::programs::Unknown;
    use crate::run::probe::FarEnd;
    use crate::run::{Counter, IngressMode, InstanceId, Loaded};

    fn instance(ext: &str, attached: Option<bool>) -> InstanceStatus {
        InstanceStatus {
            id: InstanceId { pid: 7, serial: 0 },
            pid: 7,
            netns: 1,
            netns_name: None,
            ext: ExtStatus {
                name: ext.into(),
                attached_ifindex: 3,
                attached,
                device: Device::default(),
            },
            ingress: IngressMode::Tc,
            label_bits: 4,
            unknown: Unknown::Pass,
            probe: Some(true),
            links: vec![LinkStatus {
                name: "bgp\"1".into(),
                label: 1,
                hidden: "l3mp000000.1".into(),
                device: Device::default(),
                link_local: None,
                egress: Counter {
                    packets: 5,
                    bytes: 490,
                },
                // What a link received is unknown when its namespace cannot be entered.
                ingress: attached.filter(|&a| a).map(|_| Counter {
                    packets: 3,
                    bytes: 300,
                }),
                far_end: Some(FarEnd {
                    state: FarEndState::Mismatch,
                    seen_ms_ago: Some(1250),
                    label: Some(9),
                    label_bits: Some(4),
                }),
            }],
            counters: ExtCounters {
                unknown: Counter {
                    packets: 2,
                    bytes: 120,
                },
                ..ExtCounters::default()
            },
            loaded: Some(Box::new(Loaded {
                at: 1_795_987_201,
                file: None,
            })),
        }
    }

    #[test]
    fn every_family_is_declared_once_and_sampled_per_instance() {
        let text = prometheus(&[
            Entry::Instance(instance("wg0", Some(true))),
            Entry::Instance(instance("wg1", Some(false))),
        ]);
        for family in FAMILIES {
            assert!(family.name.starts_with("l3mp_"), "{}", family.name);
            assert_eq!(
                family.kind == "counter",
                family.name.ends_with("_total"),
                "{}",
                family.name
            );
            let typed = format!("# TYPE {} {}\n", family.name, family.kind);
            assert_eq!(text.matches(&typed).count(), 1, "{text}");
        }
        for line in [
            "l3mp_link_egress_packets_total{ext=\"wg0\",link=\"bgp\\\"1\"} 5\n",
            "l3mp_link_ingress_bytes_total{ext=\"wg0\",link=\"bgp\\\"1\"} 300\n",
            "l3mp_unknown_bytes_total{ext=\"wg0\"} 120\n",
            "l3mp_ext_attached{ext=\"wg0\"} 1\n",
            "l3mp_ext_attached{ext=\"wg1\"} 0\n",
            "l3mp_config_loaded_timestamp_seconds{ext=\"wg1\"} 1795987201\n",
            "l3mp_link_far_end_ok{ext=\"wg0\",link=\"bgp\\\"1\"} 0\n",
            "l3mp_link_far_end_mismatch{ext=\"wg0\",link=\"bgp\\\"1\"} 1\n",
            "l3mp_link_far_end_probe_age_seconds{ext=\"wg0\",link=\"bgp\\\"1\"} 1.25\n",
            "l3mp_link_far_end_label{ext=\"wg0\",link=\"bgp\\\"1\"} 9\n",
            "l3mp_link_far_end_label_width{ext=\"wg0\",link=\"bgp\\\"1\"} 4\n",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
        // wg1's namespace could not be entered: what its link received is unknown, not 0.
        assert!(
            !text.contains("l3mp_link_ingress_packets_total{ext=\"wg1\""),
            "{text}"
        );
    }

    #[test]
    fn a_far_end_never_seen_or_not_checked_has_only_what_is_known() {
        let mut never = instance("wg0", Some(true));
        never.links[0].far_end = Some(FarEnd {
            state: FarEndState::NotSeen,
            seen_ms_ago: None,
            label: None,
            label_bits: None,
        });
        let text = prometheus(&[Entry::Instance(never.clone())]);
        assert!(
            text.contains("l3mp_link_far_end_ok{ext=\"wg0\",link=\"bgp\\\"1\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("l3mp_link_far_end_label{"), "{text}");
        assert!(
            !text.contains("l3mp_link_far_end_probe_age_seconds{"),
            "{text}"
        );
        never.links[0].far_end.as_mut().expect("set").state = FarEndState::Off;
        let text = prometheus(&[Entry::Instance(never)]);
        assert!(!text.contains("l3mp_link_far_end_ok{"), "{text}");
    }

    #[test]
    fn an_unknown_attachment_has_no_sample() {
        let text = prometheus(&[Entry::Instance(instance("wg0", None))]);
        assert!(!text.contains("l3mp_ext_attached{"), "{text}");
    }
}
