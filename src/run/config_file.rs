//! `l3mp run --config FILE`: the options in a TOML file, whose keys mirror the flags. Every
//! problem is one line naming the file, the line and the key.

use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::programs::Unknown;

use super::options::{IngressChoice, LinkArg, Probe, RunOptions, Subject};
use super::Error;

/// The label width when the file gives none (as `--label-bits`).
const DEFAULT_LABEL_BITS: u8 = 4;

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    ext: Spanned<String>,
    label_bits: Option<Spanned<u8>>,
    ingress: Option<IngressChoice>,
    unknown: Option<Unknown>,
    peer: Option<IpAddr>,
    host_id: Option<Spanned<String>>,
    probe: Option<Probe>,
    #[serde(default)]
    link: Vec<FileLink>,
}

/// One `[[link]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLink {
    name: Spanned<String>,
    label: Spanned<u8>,
}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<RunOptions, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    parse(&text, path)
}

/// The options `text` (the contents of `path`) gives, checked as `l3mp run` checks its flags.
pub fn parse(text: &str, path: &Path) -> Result<RunOptions, Error> {
    let at = |span: Option<Range<usize>>, key: Option<&str>, what: &str| {
        let mut line = path.display().to_string();
        if let Some(span) = span {
            line += &format!(":{}", line_of(text, span.start));
        }
        if let Some(key) = key {
            line += &format!(": {key}");
        }
        Error::new(format!("{line}: {what}"))
    };
    let file: File = toml::from_str(text).map_err(|e| {
        let key = e.span().and_then(|span| key_at(text, span.start));
        at(e.span(), key.as_deref(), e.message().trim_end())
    })?;
    let opts = RunOptions {
        ext: file.ext.get_ref().clone(),
        links: file
            .link
            .iter()
            .map(|l| LinkArg {
                name: l.name.get_ref().clone(),
                label: *l.label.get_ref(),
            })
            .collect(),
        label_bits: file
            .label_bits
            .as_ref()
            .map_or(DEFAULT_LABEL_BITS, |b| *b.get_ref()),
        ingress: file.ingress.unwrap_or(IngressChoice::Auto),
        peer: file.peer,
        unknown: file.unknown.unwrap_or(Unknown::Pass),
        host_id: file.host_id.as_ref().map(|id| id.get_ref().clone()),
        probe: file.probe.unwrap_or(Probe::On),
    };
    opts.check_values().map_err(|invalid| {
        let (span, key) = match invalid.subject {
            Subject::LabelBits => (file.label_bits.as_ref().map(Spanned::span), "label_bits"),
            Subject::Ext => (Some(file.ext.span()), "ext"),
            Subject::HostId => (file.host_id.as_ref().map(Spanned::span), "host_id"),
            Subject::NoLinks => {
                return at(
                    None,
                    None,
                    "no [[link]] given: name at least one link (name = \"a\", label = 1)",
                )
            }
            Subject::LinkName(i) => (Some(file.link[i].name.span()), "link.name"),
            Subject::LinkLabel(i) => (Some(file.link[i].label.span()), "link.label"),
        };
        at(span, Some(key), &invalid.why)
    })?;
    Ok(opts)
}

/// The line (from 1) of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The key written on the line of byte `offset`, prefixed by the table it is in (`link.label`).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    // The table: the last header before the line.
    let table = text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    });
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"# l3mp on wg0
ext = "wg0"
label_bits = 5
unknown = "drop"

[[link]]
name = "bgp1"
label = 1

[[link]]
name = "bgp2"
label = 17
"#;

    fn error(text: &str) -> String {
        parse(text, Path::new("/etc/l3mp/wg0.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_file_gives_the_options_its_keys_name() {
        let opts = parse(GOOD, Path::new("wg0.toml")).unwrap();
        assert_eq!(opts.ext, "wg0");
        assert_eq!(opts.label_bits, 5);
        assert_eq!(opts.unknown, Unknown::Drop);
        assert_eq!(opts.ingress, IngressChoice::Auto);
        assert_eq!(opts.peer, None);
        assert_eq!(opts.probe, Probe::On);
        let off = parse(
            &GOOD.replace("unknown = ", "probe = \"off\"\nunknown = "),
            Path::new("x"),
        );
        assert_eq!(off.unwrap().probe, Probe::Off);
        let links: Vec<(&str, u8)> = opts
            .links
            .iter()
            .map(|l| (l.name.as_str(), l.label))
            .collect();
        assert_eq!(links, [("bgp1", 1), ("bgp2", 17)]);
        let ether = parse(
            "ext = \"eth1\"\ningress = \"xdp\"\npeer = \"192.0.2.2\"\n[[link]]\nname = \"a\"\nlabel = 1\n",
            Path::new("eth1.toml"),
        )
        .unwrap();
        assert_eq!(ether.ingress, IngressChoice::Xdp);
        assert_eq!(ether.peer, Some("192.0.2.2".parse().unwrap()));
        assert_eq!(ether.label_bits, DEFAULT_LABEL_BITS);
    }

    #[test]
    fn an_unknown_key_names_the_file_the_line_and_the_key() {
        let text = GOOD.replace("name = \"bgp2\"", "name = \"bgp2\"\nlable = 2");
        let e = error(&text);
        assert!(
            e.starts_with("/etc/l3mp/wg0.toml:12: link.lable: unknown field `lable`"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        let e = error(&GOOD.replace("unknown = ", "unknwon = "));
        assert!(e.starts_with("/etc/l3mp/wg0.toml:4: unknwon: "), "{e}");
    }

    #[test]
    fn a_wrong_type_names_the_line_and_the_key() {
        let e = error(&GOOD.replace("label = 1\n", "label = \"one\"\n"));
        assert!(e.starts_with("/etc/l3mp/wg0.toml:8: link.label: "), "{e}");
        assert!(e.contains("string"), "{e}");
        let e = error(&GOOD.replace("label_bits = 5", "label_bits = 500"));
        assert!(e.starts_with("/etc/l3mp/wg0.toml:3: label_bits: "), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn a_bad_value_names_the_line_and_the_key() {
        let e = error(&GOOD.replace("label_bits = 5", "label_bits = 4"));
        assert_eq!(
            e,
            "/etc/l3mp/wg0.toml:12: link.label: label must be 1 to 15 with 4 label bits (0 means not multiplexed)"
        );
        let e = error(&GOOD.replace("label = 17", "label = 1"));
        assert_eq!(
            e,
            "/etc/l3mp/wg0.toml:12: link.label: label 1 is already used by bgp1"
        );
        let e = error(&GOOD.replace("\"bgp2\"", "\"wg0\""));
        assert!(
            e.starts_with("/etc/l3mp/wg0.toml:11: link.name: wg0 is the ext"),
            "{e}"
        );
        let e = error(&GOOD.replace("unknown = \"drop\"", "unknown = \"keep\""));
        assert!(e.starts_with("/etc/l3mp/wg0.toml:4: unknown: "), "{e}");
        let e = error(&GOOD.replace("label_bits = 5", "label_bits = 7"));
        assert!(
            e.starts_with("/etc/l3mp/wg0.toml:3: label_bits: must be 1 to 6"),
            "{e}"
        );
        let e = error(&GOOD.replace("unknown = \"drop\"", "host_id = \" \""));
        assert!(e.starts_with("/etc/l3mp/wg0.toml:4: host_id: empty"), "{e}");
        let e = error(&GOOD.replace("unknown = \"drop\"", "probe = \"no\""));
        assert!(e.starts_with("/etc/l3mp/wg0.toml:4: probe: "), "{e}");
        let e = error("ext = \"wg0\"\npeer = \"not an address\"\n");
        assert!(e.starts_with("/etc/l3mp/wg0.toml:2: peer: "), "{e}");
    }

    #[test]
    fn a_file_without_ext_or_links_says_what_is_missing() {
        let e = error("[[link]]\nname = \"a\"\nlabel = 1\n");
        assert!(e.contains("ext"), "{e}");
        let e = error("ext = \"wg0\"\n");
        assert!(
            e.starts_with("/etc/l3mp/wg0.toml: no [[link]] given"),
            "{e}"
        );
    }
}
