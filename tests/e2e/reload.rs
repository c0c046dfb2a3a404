//! The configuration file, metrics, waiting for ext and reloading, end to end: the real
//! `l3mp run --config FILE` on both hosts, reloaded with SIGHUP, read with
//! `l3mp status --prometheus` and checked by Prometheus's own `promtool`.
//!
//! `l3mp status` shows every instance on the machine and its metrics are labelled by ext and
//! link only, so each test here names its links after itself: concurrent tests' instances
//! (all on `ext0`) never share a series with them.

use std::io::Write;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use l3mp::lab::{
    ext_address, link_address, link_addresses, payload, send, AddressKind, ExtKind, Host,
    SendOptions, Side, UdpReceiver, EXT, LINK_TIMEOUT,
};

use l3mp::sys::netlink::format_mac;

use super::daemon::{link_status, run_to_exit, status, As, Daemon};
use super::far_end::far_end_becomes;
use super::inspect::tool;
use super::service::PROMPTLY;
use super::{lab, link_names, privileged, Running, Setup, SILENCE, WAIT};

/// A configuration file written for one host of one test, removed when dropped.
pub(crate) struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    /// Writes the file for `side` of `setup` with `links` (name, label) and `more` lines.
    pub fn write(test: &str, setup: Setup, side: Side, links: &[(&str, u8)], more: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "l3mp-{test}-{}-{serial}-{side}.toml",
            std::process::id()
        ));
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

/// The planned IPv4 address of the link with `label` on `side`.
fn ipv4(label: u8, side: Side) -> std::net::IpAddr {
    link_address(label, AddressKind::Ipv4, side).expect("an IPv4 address is planned")
}

/// Sends `count` datagrams over the link `name` (label `label`) from A to B; how many arrived.
fn send_over(r: &Running, name: &str, label: u8, count: usize) -> usize {
    let target = ipv4(label, Side::B);
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
/// own `promtool check metrics` accepts the text, the series of the links count what was
/// sent and received, per link and direction, and each link's far end is seen matching.
#[test]
fn metrics_pass_promtool_and_count_what_crossed() {
    let links = [("prom1", 1), ("prom2", 2)];
    let Some((r, _files)) = start_with_files("metrics", Setup::TunTc, &links) else {
        return;
    };
    let arrived = send_over(&r, "prom1", 1, 20);
    assert_eq!(arrived, 20, "datagrams over prom1");
    for (i, side) in Side::BOTH.into_iter().enumerate() {
        for (name, _) in links {
            far_end_becomes(r.host(side), r.daemons[i].pid(), name, "ok");
        }
    }

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
    for (name, label) in links {
        let far = |family: &str| series(&format!("l3mp_link_far_end_{family}"), name);
        assert_eq!(far("ok"), [1.0, 1.0], "{name}:\n{text}");
        assert_eq!(far("mismatch"), [0.0, 0.0], "{name}:\n{text}");
        assert_eq!(far("label"), [f64::from(label); 2], "{name}:\n{text}");
        assert_eq!(far("label_width"), [4.0, 4.0], "{name}:\n{text}");
        assert_eq!(far("probe_age_seconds").len(), 2, "{name}:\n{text}");
    }
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
    let names: Vec<String> = link_names(host);
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("brk") || n.starts_with("l3mp")),
        "{names:?}"
    );
}

/// How long a reload may take to be said done.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Datagrams numbered from 0, sent from A over one link to a socket on B's end of it, every
/// [`STREAM_INTERVAL`], and received, each on a thread of its own until stopped.
struct Stream {
    stop: Arc<AtomicBool>,
    sender: JoinHandle<u32>,
    receiver: JoinHandle<Vec<u32>>,
}

/// Between two datagrams of a [`Stream`].
const STREAM_INTERVAL: Duration = Duration::from_micros(500);

impl Stream {
    fn start(r: &Running, label: u8) -> Stream {
        let target = ipv4(label, Side::B);
        let source = ipv4(label, Side::A);
        let (name, _) = LINKS_OF_STREAM;
        let receiver = UdpReceiver::bind(r.host(Side::B).end(name), target, 0).expect("bind");
        let port = receiver.port();
        let socket = r
            .host(Side::A)
            .run(|| UdpSocket::bind((source, 0)))
            .expect("enter the host")
            .expect("bind the sender");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let sender = thread::spawn(move || {
            let mut n: u32 = 0;
            while !stopped.load(Ordering::Relaxed) {
                socket
                    .send_to(&numbered(n), (target, port))
                    .expect("send a datagram");
                n += 1;
                thread::sleep(STREAM_INTERVAL);
            }
            n
        });
        // Until nothing more comes for a while after the stop.
        let stopped = Arc::clone(&stop);
        let receiver = thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match receiver.next(SILENCE).expect("receive") {
                    Some(datagram) => got.extend(number_of(&datagram)),
                    None if stopped.load(Ordering::Relaxed) => return got,
                    None => {}
                }
            }
        });
        Stream {
            stop,
            sender,
            receiver,
        }
    }

    /// Stops; how many were sent, and the numbers of those that arrived, in order of arrival.
    fn stop(self) -> (u32, Vec<u32>) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.join().expect("the sender thread");
        let arrived = self.receiver.join().expect("the receiver thread");
        (sent, arrived)
    }
}

/// The number of a datagram of a [`Stream`], if it is one.
fn number_of(datagram: &[u8]) -> Option<u32> {
    let n = datagram.strip_prefix(STREAM_TAG)?;
    Some(u32::from_be_bytes(n.try_into().ok()?))
}

/// What every datagram of a [`Stream`] starts with.
const STREAM_TAG: &[u8] = b"l3mp-stream-";

/// The datagram numbered `n`.
fn numbered(n: u32) -> Vec<u8> {
    let mut datagram = STREAM_TAG.to_vec();
    datagram.extend_from_slice(&n.to_be_bytes());
    datagram
}

/// The link the stream of the reload tests crosses, untouched by every reload.
const LINKS_OF_STREAM: (&str, u8) = ("rl1", 1);

/// Rewrites both hosts' files with the stream's link and `more` links, sends SIGHUP to both
/// and waits until each says it reloaded for the `n`th time.
fn reload_both(r: &mut Running, files: &[ConfigFile], setup: Setup, more: &[(&str, u8)], n: usize) {
    let mut links = vec![LINKS_OF_STREAM];
    links.extend_from_slice(more);
    for (side, file) in Side::BOTH.into_iter().zip(files) {
        file.rewrite(setup, side, &links, "");
    }
    for daemon in &r.daemons {
        daemon.hup();
    }
    for daemon in &mut r.daemons {
        assert!(
            daemon.wait_for_lines(": reloaded: ", n, RELOAD_TIMEOUT),
            "{setup:?}: reload {n} not said:\n{}",
            daemon.transcript()
        );
    }
}

/// The ifindex of `name` on `host`.
fn ifindex(host: &Host, name: &str) -> u32 {
    let links = host.links().expect("links");
    links
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no {name} on {}", host.side()))
        .index
}

/// A steady stream on one link while two other links are added and removed twenty times by
/// SIGHUP on both hosts: every datagram of the stream arrives on its link, none elsewhere (it
/// arrives on the socket bound to its link, once), and the link keeps its interface, addresses
/// and counters. Then a link added by a reload carries traffic within a second of the SIGHUP.
fn reload_under_traffic(setup: Setup) {
    let Some((mut r, files)) = start_with_files("reload_traffic", setup, &[LINKS_OF_STREAM]) else {
        return;
    };
    let (name, label) = LINKS_OF_STREAM;
    let before: Vec<u32> = Side::BOTH.map(|s| ifindex(r.host(s), name)).to_vec();
    let stream = Stream::start(&r, label);
    thread::sleep(Duration::from_millis(100));
    let mut reloads = 0;
    for _ in 0..20 {
        reloads += 1;
        reload_both(&mut r, &files, setup, &[("rl2", 2), ("rl3", 3)], reloads);
        reloads += 1;
        reload_both(&mut r, &files, setup, &[], reloads);
    }
    thread::sleep(Duration::from_millis(100));
    let (sent, arrived) = stream.stop();
    assert!(sent > 100, "{setup:?}: only {sent} sent");
    let mut distinct = arrived.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let missing: Vec<u32> = (0..sent)
        .filter(|n| distinct.binary_search(n).is_err())
        .collect();
    assert!(
        missing.is_empty() && arrived.len() == distinct.len(),
        "{setup:?}: of {sent} datagrams on {name} across {reloads} reloads, {} lost ({:?}...), \
         {} duplicated",
        missing.len(),
        &missing[..missing.len().min(10)],
        arrived.len() - distinct.len()
    );
    let after: Vec<u32> = Side::BOTH.map(|s| ifindex(r.host(s), name)).to_vec();
    assert_eq!(before, after, "{setup:?}: {name} was created again");
    let a = status(None, r.daemons[0].pid());
    let counted = link_status(&a, name)["egress"]["packets"]
        .as_u64()
        .expect("a count");
    assert!(
        counted >= u64::from(sent),
        "{setup:?}: counters lost: {counted} < {sent}"
    );
    for side in Side::BOTH {
        let names = link_names(r.host(side));
        assert!(
            !names.iter().any(|n| n == "rl2" || n == "rl3"),
            "{setup:?}: removed links left on {side}: {names:?}"
        );
    }

    // An added link carries a datagram within a second: the reload (SIGHUP to the line
    // saying it is done, on both hosts) and the crossing together, the test's own addressing
    // of the new interfaces in between left out.
    let hup = Instant::now();
    reloads += 1;
    reload_both(&mut r, &files, setup, &[("rl4", 4)], reloads);
    let reloading = hup.elapsed();
    for side in Side::BOTH {
        address(r.host(side), "rl4", 4);
    }
    let sent = Instant::now();
    let target = ipv4(4, Side::B);
    let receiver = UdpReceiver::bind(r.host(Side::B).end("rl4"), target, 0).expect("bind");
    let datagram = payload(64);
    send(
        r.host(Side::A).end("rl4"),
        target,
        receiver.port(),
        &datagram,
        SendOptions::default(),
    )
    .expect("send");
    let arrived = receiver.wait_for(&datagram, WAIT).expect("receive");
    let crossing = sent.elapsed();
    assert!(
        arrived.is_some(),
        "{setup:?}: nothing crossed the added rl4"
    );
    assert!(
        reloading + crossing <= Duration::from_secs(1),
        "{setup:?}: rl4 carried traffic after {reloading:?} of reload and {crossing:?} of crossing"
    );
}
for_each_setup!(reload_under_traffic);

/// A reload with a broken file, another ext, or another label width changes nothing: one error
/// line names the file and the problem, and the links keep their interfaces and carry traffic.
#[test]
fn a_refused_reload_changes_nothing() {
    let setup = Setup::TunTc;
    let Some((mut r, files)) = start_with_files("reload_refused", setup, &[LINKS_OF_STREAM]) else {
        return;
    };
    let (name, label) = LINKS_OF_STREAM;
    let before = ifindex(r.host(Side::A), name);
    let file = &files[0];
    let good = toml(setup, Side::A, &[LINKS_OF_STREAM, ("rl2", 2)], "");
    let cases = [
        (
            good.replace("label = 2", "label = 2\nlable = 3"),
            "unknown field `lable`",
        ),
        (
            good.replace(&format!("ext = \"{EXT}\""), "ext = \"ext9\""),
            "ext cannot change on a reload (ext0 to ext9)",
        ),
        (
            good.replace("ingress", "label_bits = 5\ningress"),
            "label_bits cannot change on a reload (4 to 5)",
        ),
    ];
    for (n, (text, problem)) in cases.iter().enumerate() {
        std::fs::write(&file.path, text).expect("write the file");
        r.daemons[0].hup();
        assert!(
            r.daemons[0].wait_for_lines("nothing changed", n + 1, RELOAD_TIMEOUT),
            "no error said:\n{}",
            r.daemons[0].transcript()
        );
        let lines = r.daemons[0].lines();
        let said: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("nothing changed"))
            .collect();
        let line = said[n];
        assert!(
            line.contains(&format!("{}:", file.arg())) && line.contains(problem),
            "{problem}: {line}"
        );
        assert_eq!(ifindex(r.host(Side::A), name), before, "{problem}");
        let names = link_names(r.host(Side::A));
        assert!(!names.iter().any(|n| n == "rl2"), "{problem}: {names:?}");
        assert_eq!(
            send_over(&r, name, label, 5),
            5,
            "{problem}: {name} carries nothing"
        );
    }
}

/// `l3mp run` on an ext that does not exist yet says once that it waits, creates its links and
/// attaches when ext appears, and carries traffic; one stopped by SIGTERM while it waits
/// exits cleanly, having created nothing.
#[test]
fn run_waits_for_ext() {
    let setup = Setup::TunTc;
    if !privileged("run_waits_for_ext", setup.kind()) {
        return;
    }
    let mut lab = lab(setup);
    lab.remove_ext().unwrap_or_else(|e| panic!("{e}"));
    let links = [("wt1", 1)];
    let mut daemons = Vec::new();
    let mut files = Vec::new();
    for side in Side::BOTH {
        let file = ConfigFile::write("waits", setup, side, &links, "");
        let mut daemon = Daemon::launch(lab.host(side), As::Root, &["--config", file.arg()]);
        let said = daemon.wait_for_line("does not exist yet", WAIT);
        assert!(said.is_some(), "not said:\n{}", daemon.transcript());
        daemons.push(daemon);
        files.push(file);
    }
    thread::sleep(Duration::from_millis(300));
    for (side, daemon) in Side::BOTH.into_iter().zip(&mut daemons) {
        let names = link_names(lab.host(side));
        assert!(
            !names.iter().any(|n| n == "wt1"),
            "created before ext: {names:?}"
        );
        let waiting = daemon
            .lines()
            .iter()
            .filter(|l| l.contains("does not exist yet"))
            .count();
        assert_eq!(waiting, 1, "said more than once:\n{}", daemon.transcript());
    }
    lab.restore_ext().unwrap_or_else(|e| panic!("{e}"));
    let daemons: Vec<Daemon> = daemons
        .into_iter()
        .map(|d| d.ready(&["wt1"], "TC").unwrap_or_else(|f| panic!("{f:#?}")))
        .collect();
    let r = Running { daemons, lab };
    for side in Side::BOTH {
        address(r.host(side), "wt1", 1);
    }
    assert_eq!(send_over(&r, "wt1", 1, 5), 5, "wt1 carries nothing");

    // Stopped while it waits.
    let mut waiting = Daemon::launch(
        r.host(Side::A),
        As::Root,
        &["--ext", "nosuch0", "--if", "ws1@5"],
    );
    assert!(
        waiting.wait_for_line("does not exist yet", WAIT).is_some(),
        "{}",
        waiting.transcript()
    );
    let finished = waiting.stop();
    assert!(finished.status.success(), "{finished:#?}");
    assert!(
        finished
            .stderr
            .iter()
            .any(|l| l.contains("while waiting for nosuch0: nothing was created")),
        "{finished:#?}"
    );
    let names = link_names(r.host(Side::A));
    assert!(!names.iter().any(|n| n == "ws1"), "{names:?}");
}

/// The link-local addresses of `name` on `host` (the kernel's: the plan has none), as `ip`
/// shows them, once there is one (at most [`WAIT`]).
fn kernel_link_local(host: &Host, name: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = tool(
            "ip",
            &[
                "-n",
                host.name(),
                "-6",
                "-o",
                "addr",
                "show",
                "dev",
                name,
                "scope",
                "link",
            ],
        );
        let found: Vec<String> = out
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .filter_map(|w| w.split_once('/').map(|(a, _)| a.to_string()))
            .collect();
        if !found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A link someone deletes while l3mp runs (`ip link del`) is created again at once, with the
/// same MAC and the same kernel-made link-local address, and l3mp says so; addressed again, it
/// carries traffic.
#[test]
fn a_deleted_link_is_created_again() {
    let setup = Setup::TunTc;
    let Some((mut r, _files)) = start_with_files("recreated", setup, &[("rc1", 1)]) else {
        return;
    };
    let host = r.host(Side::A);
    let find = |host: &Host| {
        host.links()
            .expect("links")
            .into_iter()
            .find(|l| l.name == "rc1")
    };
    let before = find(host).expect("rc1");
    let local = kernel_link_local(host, "rc1");
    assert_eq!(local.len(), 1, "{local:?}");

    tool("ip", &["-n", host.name(), "link", "del", "rc1"]);
    let said = r.daemons[0].wait_for_line("was deleted by someone else", PROMPTLY);
    let said = said.unwrap_or_else(|| panic!("not said:\n{}", r.daemons[0].transcript()));
    let host = r.host(Side::A);
    let after = host.wait_link("rc1", WAIT).expect("rc1 back");
    assert_ne!(after.index, before.index, "rc1 was not deleted");
    assert_eq!(after.mac, before.mac, "rc1's MAC");
    let mac = format_mac(&before.mac.expect("a MAC"));
    assert!(said.contains(&mac) && said.contains(&local[0]), "{said}");
    assert_eq!(
        kernel_link_local(host, "rc1"),
        local,
        "rc1's link-local address"
    );
    assert!(
        r.daemons[0]
            .wait_for_line("rc1 (label 1) is back", PROMPTLY)
            .is_some(),
        "{}",
        r.daemons[0].transcript()
    );
    address(r.host(Side::A), "rc1", 1);
    assert_eq!(
        send_over(&r, "rc1", 1, 5),
        5,
        "rc1 carries nothing once back"
    );
}

/// A label that passes to another link on a reload (cz2 removed, cz3 added with its label)
/// counts from nothing for the new link: what the old one carried is not the new one's.
#[test]
fn a_link_added_by_a_reload_counts_from_nothing() {
    let setup = Setup::TunTc;
    let links = [("cz1", 1), ("cz2", 2)];
    let Some((mut r, files)) = start_with_files("counts_anew", setup, &links) else {
        return;
    };
    assert_eq!(send_over(&r, "cz2", 2, 20), 20, "cz2 carries nothing");
    let egress = |r: &Running, name: &str| {
        let a = status(None, r.daemons[0].pid());
        link_status(&a, name)["egress"]["packets"]
            .as_u64()
            .expect("a count")
    };
    assert!(egress(&r, "cz2") >= 20);
    for (side, file) in Side::BOTH.into_iter().zip(&files) {
        file.rewrite(setup, side, &[("cz1", 1), ("cz3", 2)], "");
    }
    for daemon in &r.daemons {
        daemon.hup();
    }
    for daemon in &mut r.daemons {
        let said = daemon.wait_for_line(": reloaded: ", RELOAD_TIMEOUT);
        assert!(
            said.is_some_and(|l| l.contains("added cz3 (label 2); removed cz2 (label 2)")),
            "{}",
            daemon.transcript()
        );
    }
    // The kernel's own few packets (router solicitations, MLD) may count, not cz2's 20.
    let counted = egress(&r, "cz3");
    assert!(counted < 20, "cz3 starts with {counted} packets, cz2's");
}

/// `probe` follows the file: turned off on A by a reload, A says so and its status says the
/// check is off, and B stops seeing A (not seen); turned on again, B sees A again.
#[test]
fn the_far_end_check_follows_a_reload() {
    let setup = Setup::TunTc;
    let links = [("fz1", 1)];
    let Some((mut r, files)) = start_with_files("probe_reload", setup, &links) else {
        return;
    };
    let (pid_a, pid_b) = (r.daemons[0].pid(), r.daemons[1].pid());
    far_end_becomes(r.host(Side::B), pid_b, "fz1", "ok");
    for (more, said, a_state, b_state) in [
        (
            "probe = \"off\"\n",
            "far-end probe now off",
            "off",
            "not_seen",
        ),
        ("", "far-end probe now on", "ok", "ok"),
    ] {
        files[0].rewrite(setup, Side::A, &links, more);
        r.daemons[0].hup();
        let line = r.daemons[0].wait_for_line(said, RELOAD_TIMEOUT);
        assert!(line.is_some(), "{}", r.daemons[0].transcript());
        far_end_becomes(r.host(Side::A), pid_a, "fz1", a_state);
        far_end_becomes(r.host(Side::B), pid_b, "fz1", b_state);
        let probe = status(None, pid_a)["probe"].clone();
        assert_eq!(probe, a_state != "off", "A's status");
    }
}
