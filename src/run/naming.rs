//! How l3mp names and marks what it creates, so that `ip link` shows the mapping and a later
//! start recognises what a killed instance left behind.
//!
//! The user end of a link carries the alias `l3mp ext=<ext> label=<label> pid=<pid>`; its hidden
//! peer carries the same alias followed by ` hidden` and a name derived from ext and the label.
//! The MACs of both ends are derived from ext and the label too. The pid is for people reading
//! `ip link`: whether the instance runs is told by its claim on ext (see [`super::lock`]), which
//! holds across PID namespaces.

use crate::programs::LinkMacs;

/// What an alias says about the link carrying it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub ext: String,
    pub label: u8,
    pub pid: u32,
    pub hidden: bool,
}

impl Mark {
    /// The alias text.
    pub fn alias(&self) -> String {
        let hidden = if self.hidden { " hidden" } else { "" };
        format!(
            "l3mp ext={} label={} pid={}{hidden}",
            self.ext, self.label, self.pid
        )
    }

    /// Reads an alias written by [`Mark::alias`]; `None` for anyone else's.
    pub fn parse(alias: &str) -> Option<Mark> {
        let mut words = alias.strip_prefix("l3mp ")?.split(' ');
        let ext = words.next()?.strip_prefix("ext=")?.to_string();
        let label = words.next()?.strip_prefix("label=")?.parse().ok()?;
        let pid = words.next()?.strip_prefix("pid=")?.parse().ok()?;
        let hidden = match words.next() {
            None => false,
            Some("hidden") => true,
            Some(_) => return None,
        };
        words.next().is_none().then_some(Mark {
            ext,
            label,
            pid,
            hidden,
        })
    }
}

/// The hidden end's name: `l3mp` + 24 bits of a hash of ext's name + `.` + label (at most 13
/// bytes), the same for every start with the same ext and label.
pub fn hidden_name(ext: &str, label: u8) -> String {
    format!("l3mp{:06x}.{label}", ext_hash(ext))
}

/// The MACs of the veth ends on `ext`: locally administered, the same 24-bit hash as the hidden
/// names, then 00 for a user end or 01 for a hidden end, then the label. The link with label 1
/// on an ext hashing to c0ffee is `02:c0:ff:ee:00:01`, its hidden end `02:c0:ff:ee:01:01`.
pub fn link_macs(ext: &str) -> LinkMacs {
    let [_, a, b, c] = ext_hash(ext).to_be_bytes();
    LinkMacs {
        user: [0x02, a, b, c, 0x00],
        hidden: [0x02, a, b, c, 0x01],
    }
}

/// 24 bits of the FNV-1a hash of ext's name: stable across builds and platforms.
fn ext_hash(ext: &str) -> u32 {
    let hash = ext.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash & 0xff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_round_trips() {
        for hidden in [false, true] {
            let m = Mark {
                ext: "wg0".into(),
                label: 3,
                pid: 42,
                hidden,
            };
            assert_eq!(Mark::parse(&m.alias()), Some(m));
        }
        assert_eq!(
            Mark {
                ext: "wg0".into(),
                label: 3,
                pid: 42,
                hidden: false
            }
            .alias(),
            "l3mp ext=wg0 label=3 pid=42"
        );
    }

    #[test]
    fn foreign_aliases_are_not_ours() {
        for alias in [
            "",
            "uplink",
            "l3mp",
            "l3mp ext=wg0",
            "l3mp ext=wg0 label=x pid=1",
            "l3mp ext=wg0 label=3 pid=1 extra",
        ] {
            assert_eq!(Mark::parse(alias), None, "{alias}");
        }
    }

    #[test]
    fn hidden_names_are_short_stable_and_distinct() {
        let a = hidden_name("wg0", 63);
        assert!(a.len() <= 15, "{a}");
        assert_eq!(a, hidden_name("wg0", 63));
        assert_ne!(a, hidden_name("wg1", 63));
        assert_ne!(hidden_name("wg0", 1), hidden_name("wg0", 11));
        assert!(super::super::options::valid_ifname(&hidden_name(
            "a-very-long-nam",
            63
        )));
    }

    #[test]
    fn link_macs_share_the_hidden_names_hash_and_end_in_the_label() {
        let macs = link_macs("wg0");
        let hash = hidden_name("wg0", 5)[4..10].to_string();
        let user = macs.user_end(5);
        let hidden = macs.hidden_end(5);
        assert_eq!(
            format!("{:02x}{:02x}{:02x}", user[1], user[2], user[3]),
            hash
        );
        assert_eq!((user[0], user[4], user[5]), (0x02, 0x00, 5));
        assert_eq!((hidden[0], hidden[4], hidden[5]), (0x02, 0x01, 5));
        assert_eq!(user[..4], hidden[..4]);
        assert_ne!(link_macs("wg1"), macs);
    }
}
