//! How l3mp names and marks what it creates, so that `ip link` shows the mapping and a later
//! start recognises what a killed instance left behind.
//!
//! The user end of a link carries the alias `l3mp ext=<ext> label=<label> pid=<pid>`; its hidden
//! peer carries the same alias followed by ` hidden` and a name derived from ext and the label.
//! The MACs of both ends are derived from this end's [`Identity`] and the label. The pid is for
//! people reading `ip link`: whether the instance runs is told by its claim on ext (see
//! [`super::lock`]), which holds across PID namespaces.

use std::fmt;

use crate::programs::LinkMacs;
use crate::sys::netns::NetNs;
use crate::sys::SysError;

use super::Error;

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

/// The hidden end's name: `l3mp` + 24 bits of a hash of ext's name + `_` + label (at most 13
/// bytes), the same for every start with the same ext and label. (No dot: a dotted name reads
/// as a VLAN subinterface and breaks sysctl's dotted keys.)
pub fn hidden_name(ext: &str, label: u8) -> String {
    format!("l3mp{:06x}_{label}", ext_hash(ext))
}

/// Whether `name` is the hidden end's name for `ext` and some label, as l3mp names it now or
/// named it before 2026-11 (`l3mp<hash>.<label>`), so that what an older l3mp left is found.
pub fn is_hidden_name(ext: &str, name: &str) -> bool {
    let prefix = format!("l3mp{:06x}", ext_hash(ext));
    let label = name
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_prefix('_').or_else(|| rest.strip_prefix('.')));
    // The label as l3mp writes it: 1 to 63, no leading zero.
    label.is_some_and(|text| (1..=63u8).any(|l| l.to_string() == text))
}

/// 24 bits of the FNV-1a hash of ext's name: stable across builds and platforms.
fn ext_hash(ext: &str) -> u32 {
    let hash = ext.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash & 0xff_ffff
}

/// What the MACs of this end's links, and so their EUI-64 link-local addresses, are derived
/// from: the host, the network namespace and ext. Both ends of a tunnel run the same command,
/// so the host and the namespace are what tells their links apart; all three are stable across
/// restarts, SIGKILL, ext being recreated and reboots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `--host-id`'s value, else the machine id (`/etc/machine-id`), else the host name.
    pub host: Source,
    /// The name of the network namespace as `ip netns` names it; empty for an unnamed one
    /// (ignored with `--host-id`).
    pub netns: String,
    pub ext: String,
}

/// Where [`Identity::host`] comes from, and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    HostId(String),
    MachineId(String),
    Hostname(String),
}

/// The machine id's file (systemd's, also written by dbus and by container managers).
const MACHINE_ID: &str = "/etc/machine-id";
/// The host name (of the UTS namespace).
const HOSTNAME: &str = "/proc/sys/kernel/hostname";

impl Identity {
    /// This end's identity for `ext`: `host_id` if given (`--host-id`), else the machine id, or
    /// the host name where there is none, and the name of the calling thread's network
    /// namespace.
    pub fn of_this_end(host_id: Option<&str>, ext: &str) -> Result<Identity, Error> {
        let (host, netns) = match host_id {
            Some(id) => (Source::HostId(id.to_string()), String::new()),
            None => (host_source()?, netns_name()?),
        };
        Ok(Identity {
            host,
            netns,
            ext: ext.to_string(),
        })
    }

    /// 32 bits of the FNV-1a hash of the identity: stable across builds and platforms.
    fn hash(&self) -> u32 {
        let (kind, value) = match &self.host {
            Source::HostId(v) => ("host-id", v),
            Source::MachineId(v) => ("machine-id", v),
            Source::Hostname(v) => ("hostname", v),
        };
        // NUL separates the fields: none of them can contain one.
        [kind, value, &self.netns, &self.ext]
            .iter()
            .flat_map(|field| field.bytes().chain([0]))
            .fold(0x811c_9dc5u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            })
    }

    /// The MACs of the veth ends: locally administered unicast, `02` for a user end and `06`
    /// for a hidden end, then the identity's 32-bit hash, then the label. The link with label
    /// 1 of an identity hashing to c0ffee11 is `02:c0:ff:ee:11:01`, its hidden end
    /// `06:c0:ff:ee:11:01`; its link-local address is `fe80::c0:ffff:feee:1101`.
    pub fn link_macs(&self) -> LinkMacs {
        let [a, b, c, d] = self.hash().to_be_bytes();
        LinkMacs {
            user: [0x02, a, b, c, d],
            hidden: [0x06, a, b, c, d],
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Source::HostId(id) => write!(f, "--host-id {id:?}")?,
            Source::MachineId(id) => write!(f, "machine id {id} ({MACHINE_ID})")?,
            Source::Hostname(name) => write!(f, "host name {name:?} (no {MACHINE_ID})")?,
        }
        match (&self.host, self.netns.as_str()) {
            (Source::HostId(_), _) => {}
            (_, "") => f.write_str(", unnamed network namespace")?,
            (_, netns) => write!(f, ", network namespace {netns:?}")?,
        }
        write!(f, ", ext {}", self.ext)
    }
}

/// The machine id, or the host name where there is none (a container, say).
fn host_source() -> Result<Source, Error> {
    let id = std::fs::read_to_string(MACHINE_ID).unwrap_or_default();
    let id = id.trim();
    if !id.is_empty() {
        return Ok(Source::MachineId(id.to_string()));
    }
    let name = std::fs::read_to_string(HOSTNAME)
        .map_err(|e| Error::new(format!("reading the host name ({HOSTNAME}): {e}")))?;
    Ok(Source::Hostname(name.trim().to_string()))
}

/// The name `ip netns` gives the calling thread's network namespace (the file in /run/netns
/// whose namespace it is), or "" for an unnamed one.
fn netns_name() -> Result<String, Error> {
    let fail = |e: SysError| Error::new(format!("identifying the network namespace: {e}"));
    let own = NetNs::of_current_thread()
        .and_then(|netns| netns.inode())
        .map_err(fail)?;
    let mut names = NetNs::names().map_err(fail)?;
    names.sort();
    // A namespace may have several names: the first in order is taken, the same every time.
    Ok(names
        .into_iter()
        .find(|name| NetNs::open(name).and_then(|n| n.inode()).ok() == Some(own))
        .unwrap_or_default())
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
    fn old_and_new_hidden_names_are_recognised() {
        assert!(is_hidden_name("wg0", &hidden_name("wg0", 7)));
        let old = hidden_name("wg0", 7).replace('_', ".");
        assert!(is_hidden_name("wg0", &old), "{old}");
        assert!(!is_hidden_name("wg1", &hidden_name("wg0", 7)));
        for other in ["l3mp", "wg0", "l3mpzzzzzz_1"] {
            assert!(!is_hidden_name("wg0", other), "{other}");
        }
        let stem = &hidden_name("wg0", 1)[..10];
        for bad in ["_0", "_64", "_x", "_01", "-1", ""] {
            assert!(!is_hidden_name("wg0", &format!("{stem}{bad}")), "{bad}");
        }
    }

    #[test]
    fn hidden_names_are_short_stable_and_distinct() {
        assert!(!hidden_name("wg0", 5).contains('.'));
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

    fn identity(host: Source, netns: &str, ext: &str) -> Identity {
        Identity {
            host,
            netns: netns.into(),
            ext: ext.into(),
        }
    }

    #[test]
    fn link_macs_are_locally_administered_and_end_in_the_label() {
        let macs = identity(Source::MachineId("m".into()), "", "wg0").link_macs();
        let (user, hidden) = (macs.user_end(5), macs.hidden_end(5));
        assert_eq!((user[0], hidden[0]), (0x02, 0x06));
        for mac in [user, hidden] {
            // Locally administered, unicast.
            assert_eq!(mac[0] & 0x03, 0x02, "{mac:02x?}");
            assert_eq!(mac[5], 5);
        }
        assert_eq!(user[1..5], hidden[1..5]);
        assert_ne!(macs.user_end(1), macs.user_end(2));
    }

    #[test]
    fn link_macs_tell_hosts_namespaces_and_exts_apart() {
        let m = |id: &str| Source::MachineId(id.into());
        let base = identity(m("0123"), "", "wg0");
        let others = [
            identity(m("0124"), "", "wg0"),
            identity(m("0123"), "ns-a", "wg0"),
            identity(m("0123"), "", "wg1"),
            identity(Source::Hostname("0123".into()), "", "wg0"),
            identity(Source::HostId("0123".into()), "", "wg0"),
            // The fields are separated: moving a byte from one to the next changes the hash.
            identity(m("0123n"), "s-a", "wg0"),
        ];
        let mut prefixes = vec![base.link_macs().user];
        for other in others {
            let user = other.link_macs().user;
            assert!(!prefixes.contains(&user), "{other:?} collides");
            prefixes.push(user);
        }
        assert_eq!(base.link_macs(), base.clone().link_macs());
    }

    #[test]
    fn link_macs_do_not_change_between_builds() {
        // An operator's routing configuration names the link-local address derived from this:
        // FNV-1a over "machine-id\0abc\0ns\0wg0\0", as fixed when it was introduced.
        let macs = identity(Source::MachineId("abc".into()), "ns", "wg0").link_macs();
        // The value was computed apart from this code (a few lines of Python).
        assert_eq!(macs.user_end(1), [0x02, 0x5b, 0x62, 0xec, 0xeb, 1]);
    }

    #[test]
    fn this_end_has_a_stable_identity() {
        let first = Identity::of_this_end(None, "wg0").expect("identity");
        assert_eq!(Identity::of_this_end(None, "wg0").expect("identity"), first);
        assert!(!matches!(first.host, Source::HostId(_)));
        let chosen = Identity::of_this_end(Some("r1"), "wg0").expect("identity");
        assert_eq!(chosen.host, Source::HostId("r1".into()));
        assert_eq!(chosen.to_string(), "--host-id \"r1\", ext wg0");
    }
}
