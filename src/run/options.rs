//! `l3mp run`'s options, checked before anything is created. Every failure is one line naming
//! the flag and the value and saying what to do instead.

use std::net::IpAddr;

use crate::programs::Unknown;

use super::Error;

/// The longest interface name the kernel takes (`IFNAMSIZ - 1`).
pub const MAX_IFNAME: usize = 15;

/// How ingress demux is attached to ext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressChoice {
    /// TC, except native XDP on a physical NIC whose driver has it.
    Auto,
    /// Native XDP; refused where the driver has none.
    Xdp,
    /// TC ingress.
    Tc,
}

/// Whether `run` sends the far-end probe on every link and checks the far end's (`--probe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// Send and check (the default).
    On,
    /// Send nothing and check nothing.
    Off,
}

/// One `--if NAME@LABEL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkArg {
    pub name: String,
    pub label: u8,
}

/// The options of one instance, checked for consistency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    pub ext: String,
    pub links: Vec<LinkArg>,
    pub label_bits: u8,
    pub ingress: IngressChoice,
    pub peer: Option<IpAddr>,
    pub unknown: Unknown,
    /// `--host-id`: what the links' MACs are derived from instead of the machine id and the
    /// network namespace (see [`super::Identity`]).
    pub host_id: Option<String>,
    /// `--probe`: the far-end check.
    pub probe: Probe,
}

/// Whether the kernel accepts `name` as an interface name.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// Parses `NAME@LABEL`.
pub fn parse_link(arg: &str) -> Result<LinkArg, Error> {
    let (name, label) = arg.rsplit_once('@').ok_or_else(|| {
        Error::new(format!(
            "--if {arg}: expected NAME@LABEL, for example --if bgp1@1"
        ))
    })?;
    if !valid_ifname(name) {
        return Err(Error::new(format!(
            "--if {arg}: '{name}' is not a valid interface name (1 to {MAX_IFNAME} bytes, no '/', ':' or spaces)"
        )));
    }
    let label = label.parse::<u8>().map_err(|_| {
        Error::new(format!(
            "--if {arg}: label '{label}' is not a number from 1 to 63"
        ))
    })?;
    Ok(LinkArg {
        name: name.to_string(),
        label,
    })
}

/// What a failed [`RunOptions::check`] concerns, so that the flags and the configuration file
/// can each name it their own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    LabelBits,
    Ext,
    HostId,
    /// There are no links at all.
    NoLinks,
    /// The name of the link at this index.
    LinkName(usize),
    /// The label of the link at this index.
    LinkLabel(usize),
}

/// A configuration that cannot run: what is wrong (`why`, without naming the flag or the key)
/// and what it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub subject: Subject,
    pub why: String,
}

impl RunOptions {
    /// Checks what can be checked without looking at the system; the error names the flag.
    pub fn check(&self) -> Result<(), Error> {
        self.check_values().map_err(|invalid| {
            let flag = match invalid.subject {
                Subject::LabelBits => format!("--label-bits {}", self.label_bits),
                Subject::Ext => format!("--ext {}", self.ext),
                Subject::HostId => {
                    return Error::new(format!("--host-id: {}, or leave the flag out", invalid.why))
                }
                Subject::NoLinks => {
                    return Error::new("no --if given: name at least one link, e.g. --if a@1")
                }
                Subject::LinkName(i) | Subject::LinkLabel(i) => {
                    format!("--if {}@{}", self.links[i].name, self.links[i].label)
                }
            };
            Error::new(format!("{flag}: {}", invalid.why))
        })
    }

    /// Checks the values, saying what is wrong in words the flags and the file share (the
    /// caller names the flag or the key).
    pub fn check_values(&self) -> Result<(), Invalid> {
        let invalid = |subject, why: String| Err(Invalid { subject, why });
        if !(1..=6).contains(&self.label_bits) {
            return invalid(
                Subject::LabelBits,
                "must be 1 to 6 (DSCP has six bits)".into(),
            );
        }
        if !valid_ifname(&self.ext) {
            return invalid(Subject::Ext, "not a valid interface name".into());
        }
        if self
            .host_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return invalid(
                Subject::HostId,
                "empty; give a string naming this end, e.g. its router id".into(),
            );
        }
        if self.links.is_empty() {
            return invalid(Subject::NoLinks, "no link given".into());
        }
        let max = (1u16 << self.label_bits) - 1;
        for (i, link) in self.links.iter().enumerate() {
            if !valid_ifname(&link.name) {
                return invalid(
                    Subject::LinkName(i),
                    format!(
                        "'{}' is not a valid interface name (1 to {MAX_IFNAME} bytes, no '/', ':' or spaces)",
                        link.name
                    ),
                );
            }
            if link.label == 0 || u16::from(link.label) > max {
                return invalid(
                    Subject::LinkLabel(i),
                    format!(
                        "label must be 1 to {max} with {} label bits (0 means not multiplexed)",
                        self.label_bits
                    ),
                );
            }
            if link.name == self.ext {
                return invalid(
                    Subject::LinkName(i),
                    format!("{} is the ext interface", link.name),
                );
            }
            if let Some(other) = self.links[..i].iter().find(|l| l.name == link.name) {
                return invalid(
                    Subject::LinkName(i),
                    format!(
                        "the name {} is already given to label {}",
                        link.name, other.label
                    ),
                );
            }
            if let Some(other) = self.links[..i].iter().find(|l| l.label == link.label) {
                return invalid(
                    Subject::LinkLabel(i),
                    format!("label {} is already used by {}", link.label, other.name),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(links: &[&str], bits: u8) -> RunOptions {
        RunOptions {
            ext: "wg0".into(),
            links: links.iter().map(|l| parse_link(l).unwrap()).collect(),
            label_bits: bits,
            ingress: IngressChoice::Auto,
            peer: None,
            unknown: Unknown::Pass,
            host_id: None,
            probe: Probe::On,
        }
    }

    fn err(o: RunOptions) -> String {
        o.check().unwrap_err().to_string()
    }

    #[test]
    fn parses_name_at_label() {
        assert_eq!(
            parse_link("bgp-1@12").unwrap(),
            LinkArg {
                name: "bgp-1".into(),
                label: 12
            }
        );
    }

    #[test]
    fn rejects_malformed_links() {
        assert!(parse_link("a")
            .unwrap_err()
            .to_string()
            .contains("NAME@LABEL"));
        assert!(parse_link("a@x").unwrap_err().to_string().contains("'x'"));
        assert!(parse_link("a@300")
            .unwrap_err()
            .to_string()
            .contains("'300'"));
        let long = parse_link("abcdefghijklmnop@1").unwrap_err().to_string();
        assert!(
            long.contains("abcdefghijklmnop") && long.contains("15 bytes"),
            "{long}"
        );
        assert!(parse_link("a/b@1").is_err());
        assert!(parse_link("a b@1").is_err());
        assert!(parse_link("@1").is_err());
    }

    #[test]
    fn accepts_a_good_configuration() {
        opts(&["a@1", "b@2", "c@15"], 4).check().unwrap();
        opts(&["a@63"], 6).check().unwrap();
    }

    #[test]
    fn label_range_depends_on_label_bits() {
        assert!(err(opts(&["a@0"], 4)).contains("label must be 1 to 15"));
        assert!(err(opts(&["a@16"], 4)).contains("--if a@16"));
        assert!(err(opts(&["a@2"], 1)).contains("1 to 1"));
        assert!(err(opts(&["a@1"], 7)).contains("--label-bits 7"));
        assert!(err(opts(&["a@1"], 0)).contains("--label-bits 0"));
    }

    #[test]
    fn duplicates_are_refused() {
        assert!(err(opts(&["a@1", "a@2"], 4)).contains("name a is already given"));
        assert!(err(opts(&["a@1", "b@1"], 4)).contains("label 1 is already used by a"));
        assert!(err(opts(&["wg0@1"], 4)).contains("wg0 is the ext interface"));
        assert!(err(opts(&[], 4)).contains("no --if"));
    }

    #[test]
    fn an_empty_host_id_is_refused() {
        let mut o = opts(&["a@1"], 4);
        o.host_id = Some(" ".into());
        assert!(err(o.clone()).contains("--host-id: empty"));
        o.host_id = Some("r1".into());
        o.check().unwrap();
    }
}
