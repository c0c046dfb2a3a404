//! The state file a running instance keeps for `l3mp status`: what it runs on and how, and
//! where its counters are pinned. It is JSON (the shape is in the README, "Operating it").

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::programs::Unknown;

use super::datapath::IngressMode;

/// Names one instance among all on the machine: the pid of its process, and a serial number
/// for any further instance in the same process (the demo runs two) or with the same pid in
/// another PID namespace (see [`super::Registry::publish`]). Written `<pid>` or
/// `<pid>-<serial>` (the BPF filesystem refuses names with a dot); the state file and the pin
/// directory are named after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct InstanceId {
    pub pid: u32,
    pub serial: u32,
}

impl InstanceId {
    /// Reads `<pid>` or `<pid>-<serial>`.
    pub fn parse(text: &str) -> Option<InstanceId> {
        let (pid, serial) = match text.split_once('-') {
            Some((pid, serial)) => (pid, serial.parse().ok().filter(|&s| s > 0)?),
            None => (text, 0),
        };
        let pid = pid.parse().ok().filter(|&p| p > 0)?;
        Some(InstanceId { pid, serial })
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.serial {
            0 => write!(f, "{}", self.pid),
            serial => write!(f, "{}-{serial}", self.pid),
        }
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for InstanceId {
    type Error = String;

    fn try_from(text: String) -> Result<InstanceId, String> {
        InstanceId::parse(&text).ok_or_else(|| format!("{text:?} is not <pid> or <pid>-<n>"))
    }
}

/// A managed link as the state file records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateLink {
    /// The user's end.
    pub name: String,
    pub label: u8,
    /// The hidden end of the veth pair.
    pub hidden: String,
}

/// What a running instance publishes about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub id: InstanceId,
    /// The process running the instance.
    pub pid: u32,
    /// The inode of the network namespace of ext and the links.
    pub netns: u64,
    /// ext's name.
    pub ext: String,
    /// The ifindex of the ext the programs are attached to (they bake it in).
    pub ext_ifindex: u32,
    pub ingress: IngressMode,
    pub label_bits: u8,
    pub unknown: Unknown,
    /// Where the counters map is pinned.
    pub counters: PathBuf,
    /// Where the far ends' probes map is pinned (absent from an earlier l3mp's state file).
    #[serde(default)]
    pub probes: Option<PathBuf>,
    /// Whether the far-end check runs (`--probe`; absent from an earlier l3mp's).
    #[serde(default)]
    pub probe: Option<bool>,
    pub links: Vec<StateLink>,
    /// When the configuration was last loaded (absent from an earlier l3mp's state file).
    #[serde(default)]
    pub loaded: Option<Loaded>,
}

/// When, and from which file, an instance last loaded its configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaded {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// The `--config` file; `None` when the configuration came from the flags.
    pub file: Option<PathBuf>,
}

impl Loaded {
    /// Loaded now, from `file` (or the flags).
    pub fn now(file: Option<&std::path::Path>) -> Loaded {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Loaded {
            at,
            file: file.map(std::path::Path::to_path_buf),
        }
    }
}

impl State {
    /// The JSON text, one object on several lines.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers, paths and lists always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Reads the JSON text of a state file.
    pub fn from_json(text: &str) -> Result<State, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            id: InstanceId {
                pid: 4242,
                serial: 1,
            },
            pid: 4242,
            netns: 4_026_531_840,
            ext: "wg0".into(),
            ext_ifindex: 7,
            ingress: IngressMode::Xdp,
            label_bits: 4,
            unknown: Unknown::Drop,
            counters: "/sys/fs/bpf/l3mp/4242-1/counters".into(),
            probes: Some("/sys/fs/bpf/l3mp/4242-1/probes".into()),
            probe: Some(true),
            links: vec![StateLink {
                name: "a".into(),
                label: 1,
                hidden: "l3mp123456.1".into(),
            }],
            loaded: Some(Loaded {
                at: 1_800_000_000,
                file: Some("/etc/l3mp/wg0.toml".into()),
            }),
        }
    }

    #[test]
    fn state_round_trips_through_json() {
        let state = sample();
        assert_eq!(State::from_json(&state.to_json()), Ok(state));
    }

    #[test]
    fn state_json_has_the_documented_shape() {
        let value: serde_json::Value =
            serde_json::from_str(&sample().to_json()).expect("valid JSON");
        assert_eq!(value["id"], "4242-1");
        assert_eq!(value["ingress"], "xdp");
        assert_eq!(value["unknown"], "drop");
        assert_eq!(value["ext_ifindex"], 7);
        assert_eq!(value["links"][0]["hidden"], "l3mp123456.1");
        assert_eq!(value["counters"], "/sys/fs/bpf/l3mp/4242-1/counters");
        assert_eq!(value["loaded"]["at"], 1_800_000_000);
        assert_eq!(value["loaded"]["file"], "/etc/l3mp/wg0.toml");
        assert_eq!(value["probes"], "/sys/fs/bpf/l3mp/4242-1/probes");
        assert_eq!(value["probe"], true);
    }

    #[test]
    fn an_earlier_state_file_has_no_far_end_check() {
        let mut value: serde_json::Value =
            serde_json::from_str(&sample().to_json()).expect("valid JSON");
        let object = value.as_object_mut().expect("an object");
        object.remove("probes");
        object.remove("probe");
        let state = State::from_json(&value.to_string()).expect("reads");
        assert_eq!((state.probes, state.probe), (None, None));
    }

    #[test]
    fn broken_state_files_are_refused() {
        assert!(State::from_json("").is_err());
        assert!(State::from_json("{}").is_err());
        let bad_id = sample().to_json().replace("\"4242-1\"", "\"x\"");
        assert!(State::from_json(&bad_id).is_err());
    }

    #[test]
    fn ids_read_back_as_written() {
        for (text, pid, serial) in [("17", 17, 0), ("17-2", 17, 2)] {
            let id = InstanceId::parse(text).expect(text);
            assert_eq!((id.pid, id.serial), (pid, serial));
            assert_eq!(id.to_string(), text);
        }
        for bad in ["", "0", "x", "17-", "17-0", "17-x", "-1", "17-2-3", "17.2"] {
            assert_eq!(InstanceId::parse(bad), None, "{bad}");
        }
    }
}
