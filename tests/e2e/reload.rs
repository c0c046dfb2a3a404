//! The configuration file, metrics, waiting for ext and reloading, end to end: the real
//! `l3mp run --config FILE` on both hosts, reloaded with SIGHUP, read with
//! `l3mp status --prometheus` and checked by Prometheus's own `promtool`.
//!
//! `l3mp status` shows every instance on the machine and its metrics are labelled by ext and
//! link only, so each test here names its links after itself: concurrent tests' instances
//! (all on `ext0`) never share a series with them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use l3mp::lab::{
    ext_address, link_address, link_addresses, payload, send, AddressKind, ExtKind, Host,
    SendOptions, Side, UdpReceiver, EXT, LINK_TIMEOUT,
};

use super::daemon::{run_to_exit, Daemon};
use super::{lab, privileged, Running, Setup, WAIT};

/// A configuration file written for one host of one test, removed when dropped.
pub(crate) struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    /// Writes the file for `side` of `setup` with `links` (name, label) and `more` lines.
    pub fn write(test: &str, setup: Setup, side: Side, links: &[(&str, u8)], more: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("l3mp-{test}-{}-{side}.toml", std::process::id()));
        let file = ConfigFile { path };
        file.rewrite(setup, side, links, more);
        file
    }

    /// Writes the file again with `links` and `more`.
    pub fn rewrite(&self, setup: Setup, side: Side, links: &[(&str, u8)], more: &str) {
        std::fs::write(&self.path, toml(setup, side, links, more))
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()));
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().expect("a UTF-8 path")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The TOML text for `side` of `setup` with `links` and `more` lines.
pub(crate) fn toml(setup: Setup, side: Side, links: &[(&str, u8)], more: &str) -> String {
    let mut text = format!("ext = \"{EXT}\"\ningress = \"{}\"\n", setup.ingress().0);
    if setup.kind() == ExtKind::Veth {
        let peer = ext_address(AddressKind::Ipv4, side.other());
        text += &format!("peer = \"{peer}\"\n");
    }
    text += more;
    for (name, label) in links {
        text += &format!("\n[[link]]\nname = \"{name}\"\nlabel = {label}\n");
    }
    text
}

/// Both hosts of a new lab running `l3mp run --config` with `links`, addressed; the files
/// alongside. `None` when skipped.
pub(crate) fn start_with_files(
    test: &str,
    setup: Setup,
    links: &[(&str, u8)],
) -> Option<(Running, Vec<ConfigFile>)> {
    if !privileged(test, setup.kind()) {
        return None;
    }
    let lab = lab(setup);
    let names: Vec<&str> = links.iter().map(|(n, _)| *n).collect();
    let mut files = Vec::new();
    let mut daemons = Vec::new();
    for side in Side::BOTH {
        let file = ConfigFile::write(test, setup, side, links, "");
        let args = ["--config", file.arg()];
        daemons.push(Daemon::start(
            lab.host(side),
            &args,
            &names,
            setup.ingress().1,
        ));
        files.push(file);
    }
    let running = Running { daemons, lab };
    for side in Side::BOTH {
        for (name, label) in links {
            address(running.host(side), name, *label);
        }
    }
    Some((running, files))
}

/// Gives the link `name` (label `label`) on `host` the addresses of the plan, and brings it up.
pub(crate) fn address(host: &Host, name: &str, label: u8) {
    host.configure_link(name, &link_addresses(label, host.side()), LINK_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Sends `count` datagrams over the link `name` (label `label`) from A to B; how many arrived.
fn send_over(r: &Running, name: &str, label: u8, count: usize) -> usize {
    let target = link_address(label, AddressKind::Ipv4, Side::B);
    let receiver = UdpReceiver::bind(r.host(Side::B).end(name), target, 0).expect("bind");
    let sent: Vec<Vec<u8>> = (0..count).map(|_| payload(100)).collect();
    for datagram in &sent {
        send(
            r.host(Side::A).end(name),
            target,
            receiver.port(),
            datagram,
            SendOptions::default(),
        )
        .expect("send");
    }
    let expected: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
    receiver.count(&expected, WAIT).expect("receive")
}

/// The values of the samples of `series` (name and labels, as printed) in `text`: one per
/// instance whose ext and link have those names.
fn samples(text: &str, series: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .collect()
}

/// `l3mp status --prometheus` while two instances run and traffic crosses one link: Prometheus's
/// own `promtool check metrics` accepts the text, and the series of the links count what was
/// sent and received, per link and direction.
#[test]
fn metrics_pass_promtool_and_count_what_crossed() {
    let links = [("prom1", 1), ("prom2", 2)];
    let Some((r, _files)) = start_with_files("metrics", Setup::TunTc, &links) else {
        return;
    };
    let arrived = send_over(&r, "prom1", 1, 20);
    assert_eq!(arrived, 20, "datagrams over prom1");

    let out = run_to_exit(r.host(Side::A), &["status", "--prometheus"]);
    assert!(out.status.success(), "{out:?}");
    let text = out.stdout.join("\n") + "\n";

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool: {e} (install Debian's prometheus package, as .ci/run does)")
        });
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics refused it: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let series = |name: &str, link: &str| {
        samples(&text, &format!("{name}{{ext=\"{EXT}\",link=\"{link}\"}}"))
    };
    // Both hosts' instances have a prom1 on ext0: A's egress counts the datagrams, B's
    // ingress too; prom2 carries only what the kernel sends by itself, far fewer.
    let most = |values: Vec<f64>| {
        assert_eq!(values.len(), 2, "one per instance:\n{text}");
        values.into_iter().fold(0.0, f64::max)
    };
    assert!(most(series("l3mp_link_egress_packets_total", "prom1")) >= 20.0);
    assert!(most(series("l3mp_link_ingress_packets_total", "prom1")) >= 20.0);
    assert!(most(series("l3mp_link_egress_packets_total", "prom2")) < 20.0);
    assert!(
        text.contains(&format!("l3mp_ext_attached{{ext=\"{EXT}\"}} 1\n")),
        "{text}"
    );
    assert!(
        text.contains("l3mp_config_loaded_timestamp_seconds{"),
        "{text}"
    );
}

/// A broken file is one line naming the file, the line and the key, and nothing is created.
#[test]
fn a_broken_file_is_one_line_and_creates_nothing() {
    let setup = Setup::TunTc;
    if !privileged("a_broken_file", setup.kind()) {
        return;
    }
    let lab = lab(setup);
    let host = lab.host(Side::A);
    let file = ConfigFile::write("broken", setup, Side::A, &[("brk1", 1), ("brk2", 1)], "");
    let out = run_to_exit(host, &["run", "--config", file.arg()]);
    assert!(!out.status.success(), "{out:?}");
    let expected = format!(
        "l3mp: {}:{}: link.label: label 1 is already used by brk1",
        file.arg(),
        toml(setup, Side::A, &[("brk1", 1), ("brk2", 1)], "")
            .lines()
            .position(|l| l == "label = 1")
            .map(|first| first + 5)
            .expect("two labels")
    );
    assert_eq!(out.stderr, [expected], "{out:?}");
    let names: Vec<String> = host
        .links()
        .expect("links")
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("brk") || n.starts_with("l3mp")),
        "{names:?}"
    );
}
