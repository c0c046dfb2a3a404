//! l3mp acts on what is its own, and only on that, end to end: one instance per ext whatever
//! the races and renames; instances in PID namespaces of their own (containers) that neither
//! delete a live instance's links nor are blocked by a dead one's; ext and links followed by
//! name, namespace and mark when they are moved away or renamed, so that nothing is
//! redirected into someone else's device and nothing of someone else's is deleted.

use std::fs::File;
use std::net::{IpAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use l3mp::lab::{
    ext_addresses, link_addresses, payload, AddressKind, Host, Side, EXT, LINK_TIMEOUT,
};
use l3mp::programs::{ingress_name, Hook, GUARD};
use l3mp::run::{ensure_bpffs, hidden_name, BPFFS};
use l3mp::sys::netlink::{LinkInfo, Netlink};
use l3mp::sys::netns::NetNs;
use nix::fcntl::{Flock, FlockArg};

use super::daemon::{run_in, spawn_with, status, As, Daemon, Finished};
use super::inspect::{self, tool};
use super::service::{link_works, said_adoptions, PROMPTLY};
use super::sniff::Sniffer;
use super::tc_attach::tcx;
use super::{lab, link_names, planned, privileged, refusal, run_args, start, Setup, LINKS};

/// How long to watch for traffic that must not arrive.
const WATCH: Duration = Duration::from_millis(500);

/// `ip <args>` in the network namespace `netns` (by its name).
fn ip(netns: &str, args: &[&str]) {
    let mut all = vec!["-n", netns];
    all.extend(args);
    tool("ip", &all);
}

/// A third network namespace beside a lab's, deleted (with what is in it) when dropped.
fn elsewhere(host: &Host) -> NetNs {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("{}-c{}", host.name(), NEXT.fetch_add(1, Ordering::Relaxed));
    let netns = NetNs::create(&name).unwrap_or_else(|e| panic!("{e}"));
    netns.bring_up_loopback().unwrap_or_else(|e| panic!("{e}"));
    netns
}

/// The links of the network namespace `netns`.
fn links_in(netns: &NetNs) -> Vec<LinkInfo> {
    netns
        .run(|| Netlink::new()?.links())
        .and_then(|links| links)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The link called `name` on `host`.
fn link(host: &Host, name: &str) -> LinkInfo {
    host.links()
        .expect("links")
        .into_iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

/// The names of the programs on `device` on `host`, sorted.
fn programs_on(host: &Host, device: &str) -> Vec<String> {
    let mut names: Vec<String> = inspect::attached(host.netns(), device)
        .into_iter()
        .map(|p| p.name)
        .collect();
    names.sort();
    names
}

/// What one instance attaches to ext with TC ingress, sorted.
fn one_set() -> Vec<String> {
    let mut names = vec![ingress_name(Hook::Tc).to_string(), GUARD.to_string()];
    names.sort();
    names
}

/// Renames `from` to `to` on `host` (down, renamed, up: the kernel renames only a device
/// that is down).
fn rename(host: &Host, from: &str, to: &str) {
    ip(host.name(), &["link", "set", "dev", from, "down"]);
    ip(host.name(), &["link", "set", "dev", from, "name", to]);
    ip(host.name(), &["link", "set", "dev", to, "up"]);
}

/// Two starts on one ext at the same moment, round after round: exactly one runs, the other
/// is refused in one line naming the one that runs, and the links are only the one's.
#[test]
fn simultaneous_starts_give_one_instance() {
    let setup = Setup::TunTc;
    if !privileged("simultaneous_starts_give_one_instance", setup.kind()) {
        return;
    }
    let lab = lab(setup);
    let host = lab.host(Side::A);
    for round in 0..6 {
        let first = ["--ext", EXT, "--if", "a@1", "--ingress", "tc"];
        let second = ["--ext", EXT, "--if", "c@3", "--ingress", "tc"];
        let launched = [
            Daemon::launch(host, As::Root, &first),
            Daemon::launch(host, As::Root, &second),
        ];
        let [one, other] = launched;
        let outcomes = [one.ready(&["a"], "TC"), other.ready(&["c"], "TC")];
        let (running, refused): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(Result::is_ok);
        let exited: Vec<&Finished> = refused.iter().filter_map(|o| o.as_ref().err()).collect();
        assert_eq!(
            (running.len(), refused.len()),
            (1, 1),
            "round {round}: not exactly one instance: {exited:#?}"
        );
        let daemon = running
            .into_iter()
            .next()
            .and_then(Result::ok)
            .expect("one");
        let out = refused
            .into_iter()
            .next()
            .and_then(Result::err)
            .expect("one");
        let line = refusal(&out);
        assert!(
            line.starts_with(&format!(
                "l3mp: --ext {EXT}: l3mp (pid {}) already runs on it",
                daemon.pid()
            )),
            "round {round}: {line}"
        );
        let (link, label) = if link_names(host).contains(&"a".to_string()) {
            ("a", 1)
        } else {
            ("c", 3)
        };
        let mut expected = vec![
            EXT.to_string(),
            hidden_name(EXT, label),
            link.into(),
            "lo".into(),
        ];
        expected.sort();
        assert_eq!(link_names(host), expected, "round {round}");
        assert_eq!(programs_on(host, EXT), one_set(), "round {round}");
        assert!(daemon.stop().status.success());
        assert_eq!(link_names(host), [EXT, "lo"], "round {round}: left behind");
    }
}

/// ext renamed under a running instance: the instance takes its programs off it and says so;
/// a second instance on the new name then runs alone on the device. Renamed back while the
/// second still runs, the device goes from one to the other, never carrying both, and the
/// first one's links work again.
#[test]
fn a_renamed_ext_never_carries_two_instances() {
    let setup = Setup::VethTc;
    let Some(mut r) = start("a_renamed_ext_never_carries_two_instances", setup) else {
        return;
    };
    let host = r.lab.host(Side::A);
    rename(host, EXT, "other");
    let said = r.daemons[0].wait_for_line(&format!("{EXT} (ifindex"), PROMPTLY);
    assert!(
        programs_on(host, "other").is_empty(),
        "left on the renamed ext"
    );
    assert!(
        said.as_deref().is_some_and(|l| l.contains("is gone")
            && l.contains("renamed to other")
            && l.contains("programs are off it")),
        "{said:?}:\n{}",
        r.daemons[0].transcript()
    );
    let peer = super::ext_address(AddressKind::Ipv4, Side::B).to_string();
    let second = [
        "--ext",
        "other",
        "--if",
        "c@3",
        "--ingress",
        "tc",
        "--peer",
        &peer,
    ];
    let mut other = Daemon::start(host, &second, &["c"], "TC");
    assert_eq!(programs_on(host, "other"), one_set());

    // Back under its name while the second runs on it: it changes hands.
    rename(host, "other", EXT);
    let gone = other.wait_for_line(&format!("renamed to {EXT}"), PROMPTLY);
    assert!(gone.is_some(), "{}", other.transcript());
    let back = r.daemons[0].wait_for_line("): re-attached", 3 * PROMPTLY);
    assert!(back.is_some(), "{}", r.daemons[0].transcript());
    assert_eq!(programs_on(host, EXT), one_set());
    for from in Side::BOTH {
        let (name, label) = LINKS[0];
        link_works(&r, name, label, from, "ext renamed back");
    }
    assert!(other.stop().status.success());
}

/// An instance started in a PID namespace of its own (where the first instance's pid means
/// nothing) is refused, names the running one as in another PID namespace, and leaves its
/// links alone; `status` from such a namespace lists the running one, and sweeps nothing of
/// it.
#[test]
fn a_container_never_touches_a_live_instance() {
    let setup = Setup::TunTc;
    let Some(r) = start("a_container_never_touches_a_live_instance", setup) else {
        return;
    };
    ensure_bpffs(Path::new(BPFFS)).expect("the BPF filesystem");
    let host = r.host(Side::A);
    let pid = r.daemons[0].pid();
    let before = link_names(host);
    let out = run_in(
        Some(host),
        &["run", "--ext", EXT, "--if", "c@3", "--ingress", "tc"],
        As::Pid1,
    );
    let line = refusal(&out);
    assert!(
        line.contains(&format!(
            "l3mp (pid {pid} in another PID namespace) already runs on it"
        )),
        "{line}"
    );
    assert_eq!(link_names(host), before, "the links were touched");

    let listed = run_in(Some(host), &["status", "--json"], As::Pid1);
    // 3: another test's instance may be between a removed and a restored ext.
    assert!(matches!(listed.status.code(), Some(0 | 3)), "{listed:#?}");
    let all: serde_json::Value = serde_json::from_str(&listed.stdout.join("\n")).expect("JSON");
    assert!(
        all.as_array()
            .expect("an array")
            .iter()
            .any(|i| i["pid"] == pid),
        "not listed from a container: {all:#}"
    );
    assert_eq!(status(None, pid)["ext"]["attached"], true);
    let (name, label) = LINKS[0];
    link_works(&r, name, label, Side::A, "after the container's attempts");
}

/// An instance that was pid 1 of its container, killed: the next one, pid 1 of a new
/// container, removes what it left (saying so) and runs; stopped, it leaves nothing.
#[test]
fn a_killed_pid_1_never_blocks_the_next_start() {
    let setup = Setup::TunTc;
    if !privileged("a_killed_pid_1_never_blocks_the_next_start", setup.kind()) {
        return;
    }
    ensure_bpffs(Path::new(BPFFS)).expect("the BPF filesystem");
    let lab = lab(setup);
    let host = lab.host(Side::A);
    let args = [
        "--ext",
        EXT,
        "--if",
        "a@1",
        "--if",
        "b@2",
        "--ingress",
        "tc",
    ];
    let first = Daemon::start_as(host, As::Pid1, &args, &["a", "b"], "TC");
    assert!(
        first.kill().status.code().is_some(),
        "unshare reports the kill"
    );
    assert!(
        link_names(host).contains(&"a".to_string()),
        "nothing left to clean"
    );

    let mut second = Daemon::try_start(host, As::Pid1, &args, &["a", "b"], "TC")
        .unwrap_or_else(|out| panic!("refused after a killed pid 1: {out:#?}"));
    said_adoptions(&second.lines(), &LINKS, 1);
    assert_eq!(programs_on(host, EXT), one_set());
    assert!(second.stop().status.success());
    assert_eq!(link_names(host), [EXT, "lo"], "left behind");
}

/// A link's user end moved to another namespace, and a foreign veth made with its freed
/// ifindex: l3mp says the link left, never takes the foreign one for its own (no MAC
/// warning), and its stop deletes its own pair (through the hidden end, which takes the end
/// that moved) and leaves the foreign pair alone. The next start is not refused.
#[test]
fn stop_never_deletes_a_foreign_interface() {
    let setup = Setup::TunTc;
    let Some(mut r) = start("stop_never_deletes_a_foreign_interface", setup) else {
        return;
    };
    let host = r.lab.host(Side::A);
    let away = elsewhere(host);
    let (name, label) = LINKS[0];
    let index = link(host, name).index;
    ip(
        host.name(),
        &["link", "set", "dev", name, "netns", away.name()],
    );
    let said = r.daemons[0].wait_for_line(
        &format!("{name} (label {label}, ifindex {index}) left this network namespace"),
        PROMPTLY,
    );
    let index = index.to_string();
    ip(
        host.name(),
        &[
            "link", "add", "foreign", "index", &index, "type", "veth", "peer", "name", "foreign2",
        ],
    );
    ip(
        host.name(),
        &[
            "link",
            "set",
            "dev",
            "foreign",
            "address",
            "02:00:00:00:00:09",
            "up",
        ],
    );

    let finished = r.daemons.remove(0).stop();
    assert!(finished.status.success(), "{finished:#?}");
    assert_eq!(link_names(host), [EXT, "foreign", "foreign2", "lo"]);
    assert!(said.is_some(), "{finished:#?}");
    let about_foreign: Vec<&String> = finished
        .stderr
        .iter()
        .filter(|l| l.contains("foreign") || l.contains("MAC"))
        .collect();
    assert!(about_foreign.is_empty(), "{about_foreign:?}");
    assert_eq!(link_names(host), [EXT, "foreign", "foreign2", "lo"]);
    let there: Vec<String> = links_in(&away).into_iter().map(|l| l.name).collect();
    assert_eq!(there, ["lo"], "the moved end stays");

    let args = run_args(setup, Side::A);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let names: Vec<&str> = LINKS.iter().map(|(n, _)| *n).collect();
    let restarted = Daemon::start(host, &args, &names, "TC");
    assert!(restarted.stop().status.success());
    assert_eq!(link_names(host), [EXT, "foreign", "foreign2", "lo"]);
}

/// ext moved to another namespace, where a veth has the ifindex of a link's hidden end:
/// l3mp says ext is gone and its programs came off it, and what the far end sends over the
/// link never appears on that veth. Moved back and set up again, ext is attached again and
/// the link works. Then a link's user end is moved there, where a veth has ext's ifindex:
/// what the moved end sends never appears on that veth either.
#[test]
fn moved_devices_redirect_nothing_elsewhere() {
    let setup = Setup::VethTc;
    let Some(mut r) = start("moved_devices_redirect_nothing_elsewhere", setup) else {
        return;
    };
    let host = r.lab.host(Side::A);
    let away = elsewhere(host);
    let (name, label) = LINKS[0];
    let hidden = link(host, &hidden_name(EXT, label)).index.to_string();
    let trap = |index: &str, peer_index: &str| {
        ip(
            away.name(),
            &[
                "link", "add", "trap", "index", index, "type", "veth", "peer", "name", "trap2",
                "index", peer_index,
            ],
        );
        ip(away.name(), &["link", "set", "dev", "trap", "up"]);
        ip(away.name(), &["link", "set", "dev", "trap2", "up"]);
    };
    trap(&hidden, "1000");
    ip(
        host.name(),
        &["link", "set", "dev", EXT, "netns", away.name()],
    );
    let said = r.daemons[0].wait_for_line(&format!("{EXT} (ifindex"), PROMPTLY);
    ip(away.name(), &["link", "set", "dev", EXT, "up"]);
    let caught = Sniffer::open_in(&away, "trap2");
    let target = planned(label, AddressKind::Ipv4, Side::A);
    let sender = r
        .host(Side::B)
        .run(|| UdpSocket::bind((planned(label, AddressKind::Ipv4, Side::B), 0)))
        .expect("enter B")
        .expect("bind");
    let marker = payload(48);
    for _ in 0..5 {
        sender.send_to(&marker, (target, 9)).expect("send");
    }
    assert_eq!(caught.seen(&[&marker], WATCH), [false], "delivered to trap");
    assert!(
        inspect::attached(&away, EXT).is_empty(),
        "programs went along"
    );
    assert!(
        said.as_deref().is_some_and(|l| l.contains("is gone")
            && l.contains("moved to another network namespace")
            && l.contains("programs are off it")),
        "{said:?}:\n{}",
        r.daemons[0].transcript()
    );

    ip(
        away.name(),
        &["link", "set", "dev", EXT, "netns", host.name()],
    );
    host.configure_link(EXT, &ext_addresses(Side::A), LINK_TIMEOUT)
        .expect("ext back");
    let back = r.daemons[0].wait_for_line("): re-attached", 3 * PROMPTLY);
    assert!(back.is_some(), "{}", r.daemons[0].transcript());
    link_works(&r, name, label, Side::A, "ext moved back");
    link_works(&r, name, label, Side::B, "ext moved back");

    // A link's user end moved to where a veth has ext's ifindex.
    ip(away.name(), &["link", "del", "trap"]);
    let ext_index = link(host, EXT).index.to_string();
    trap(&ext_index, "1001");
    let (moved, moved_label) = LINKS[1];
    ip(
        host.name(),
        &["link", "set", "dev", moved, "netns", away.name()],
    );
    // The lifecycle line names the ifindex too (a probe's line about the link does not).
    let said =
        r.daemons[0].wait_for_line(&format!("{moved} (label {moved_label}, ifindex"), PROMPTLY);
    assert!(
        said.as_deref()
            .is_some_and(|l| l.contains("left this network namespace")),
        "{said:?}:\n{}",
        r.daemons[0].transcript()
    );
    assert!(
        inspect::attached(&away, moved).is_empty(),
        "its program went along"
    );
    let source = planned(moved_label, AddressKind::Ipv4, Side::A);
    ip(
        away.name(),
        &["addr", "add", &format!("{source}/24"), "dev", moved],
    );
    ip(away.name(), &["link", "set", "dev", moved, "up"]);
    let caught = Sniffer::open_in(&away, "trap2");
    let far: IpAddr = planned(moved_label, AddressKind::Ipv4, Side::B);
    let marker = payload(48);
    away.run(|| {
        let socket = UdpSocket::bind((source, 0)).expect("bind in the other namespace");
        for _ in 0..5 {
            socket.send_to(&marker, (far, 9)).expect("send");
        }
    })
    .expect("enter the other namespace");
    assert_eq!(
        caught.seen(&[&marker], WATCH),
        [false],
        "redirected to trap"
    );
    // The link that stayed still works.
    let (stayed, stayed_label) = LINKS[0];
    link_works(
        &r,
        stayed,
        stayed_label,
        Side::A,
        "the other link moved away",
    );
}

/// A state file and its lock, standing for a running instance whose state file cannot be
/// read (written by another version, say); removed when dropped.
struct Unreadable {
    state_file: PathBuf,
    lock: PathBuf,
    _held: Flock<File>,
}

impl Unreadable {
    fn new(id: &str, text: &str) -> Unreadable {
        let dir = Path::new("/run/l3mp");
        std::fs::create_dir_all(dir).expect("the state directory");
        let lock = dir.join(format!("{id}.lock"));
        let file = File::create(&lock).expect("a lock file");
        let held = Flock::lock(file, FlockArg::LockExclusive).expect("its lock");
        let state_file = dir.join(format!("{id}.json"));
        std::fs::write(&state_file, text).expect("a state file");
        Unreadable {
            state_file,
            lock,
            _held: held,
        }
    }
}

impl Drop for Unreadable {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.state_file);
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// A running instance's state file that does not parse hides no other: `status` lists the
/// running instance, says which file cannot be read and why, and exits 3 (an instance it
/// cannot read is not known to be attached); `--json` too.
#[test]
fn status_shows_every_readable_instance() {
    let Some(r) = start("status_shows_every_readable_instance", Setup::TunTc) else {
        return;
    };
    let host = r.host(Side::A);
    let pid = r.daemons[0].pid();
    let id = format!("{}-77", std::process::id());
    let bad = Unreadable::new(&id, "{\"id\": \"1\"}\n");
    let out = run_in(Some(host), &["status"], As::Root);
    assert_eq!(out.status.code(), Some(3), "{out:#?}");
    let text = out.stdout.join("\n");
    assert!(
        text.contains(&format!("l3mp {pid} on {EXT}")),
        "the running one is missing:\n{text}"
    );
    let said = format!(
        "l3mp {id}: running, but {} cannot be read: missing field `pid`",
        bad.state_file.display()
    );
    assert!(text.contains(&said), "{said:?} not said:\n{text}");
    let listed = status(Some(host), pid);
    assert_eq!(listed["ext"]["attached"], true, "{listed:#}");
    let out = run_in(Some(host), &["status", "--json"], As::Root);
    let all: serde_json::Value = serde_json::from_str(&out.stdout.join("\n")).expect("JSON");
    let entry = all
        .as_array()
        .expect("an array")
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {all:#}"));
    assert_eq!(entry["state_file"], bad.state_file.display().to_string());
    assert!(
        entry["unreadable"]
            .as_str()
            .is_some_and(|r| r.starts_with("missing field `pid`")),
        "{entry:#}"
    );
}

/// How l3mp's stderr is broken.
#[derive(Clone, Copy, Debug)]
enum Stderr {
    /// A pipe whose reader is gone (a journal stream that closed).
    Closed,
    /// A full pipe no one reads (journald stalled).
    Full,
}

/// With stderr a pipe whose reader is gone, or a full pipe no one reads, l3mp starts (its
/// links up, programs on, listed by `status`), follows ext away and back, and stops on
/// SIGTERM removing everything.
#[test]
fn a_broken_stderr_never_takes_it_down() {
    let setup = Setup::TunTc;
    let Some(mut r) = start("a_broken_stderr_never_takes_it_down", setup) else {
        return;
    };
    // Only A's instance is replaced; B's carries on.
    drop(r.daemons.remove(0));
    let args = run_args(setup, Side::A);
    let mut all = vec!["run".to_string()];
    all.extend(args);
    for broken in [Stderr::Closed, Stderr::Full] {
        let host = r.lab.host(Side::A);
        let (reader, writer) = nix::unistd::pipe().expect("a pipe");
        let _reader = match broken {
            Stderr::Closed => {
                drop(reader);
                None
            }
            Stderr::Full => {
                fill(&writer);
                Some(reader)
            }
        };
        let daemon = spawn_with(Some(host), &all, As::Root, Stdio::from(writer));
        let pid = daemon.pid();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = run_in(Some(host), &["status", "--json"], As::Root);
            let all: serde_json::Value =
                serde_json::from_str(&out.stdout.join("\n")).unwrap_or_default();
            let listed = all
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["pid"] == pid);
            if listed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{broken:?}: not started within 10 s"
            );
            thread::sleep(Duration::from_millis(50));
        }
        r.daemons.insert(0, daemon);
        for (name, label) in LINKS {
            host.configure_link(name, &link_addresses(label, Side::A), LINK_TIMEOUT)
                .expect("address the link");
        }
        for (name, label) in LINKS {
            link_works(&r, name, label, Side::A, &format!("{broken:?}"));
        }
        let finished = r.daemons.remove(0).stop();
        assert!(finished.status.success(), "{broken:?}: {finished:#?}");
        assert_eq!(link_names(r.lab.host(Side::A)), [EXT, "lo"], "{broken:?}");
    }
}

/// Fills the pipe whose write end is `writer` (made as small as the kernel allows first),
/// leaving it blocking.
fn fill(writer: &OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    fcntl(writer.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(4096)).expect("shrink the pipe");
    fcntl(writer.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("non-blocking");
    let chunk = [b'x'; 512];
    while nix::unistd::write(writer, &chunk).is_ok() {}
    fcntl(writer.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty())).expect("blocking again");
}

/// Killed (SIGKILL) at many points of its start-up, evenly spread from its launch to the
/// moment a start is ready here: every time, the next start runs (saying what it removed),
/// has one set of programs on ext, and once stopped leaves no link, state file, pin or lock.
#[test]
fn a_sigkill_anywhere_in_start_up_blocks_nothing() {
    let setup = Setup::TunTc;
    if !privileged(
        "a_sigkill_anywhere_in_start_up_blocks_nothing",
        setup.kind(),
    ) {
        return;
    }
    ensure_bpffs(Path::new(BPFFS)).expect("the BPF filesystem");
    let lab = lab(setup);
    let host = lab.host(Side::A);
    const NAMES: [&str; 4] = ["a", "b", "c", "d"];
    let mut args = vec!["--ext", EXT, "--ingress", "tc"];
    let links: Vec<String> = NAMES
        .iter()
        .zip(1..)
        .map(|(name, label)| format!("{name}@{label}"))
        .collect();
    for link in &links {
        args.extend(["--if", link.as_str()]);
    }
    let began = Instant::now();
    let first = Daemon::start(host, &args, &NAMES, "TC");
    let start_up = began.elapsed();
    assert!(first.stop().status.success());

    const POINTS: u32 = 24;
    for point in 0..=POINTS {
        let at = start_up * point / POINTS;
        let killed = Daemon::launch(host, As::Root, &args);
        let pid = killed.pid();
        thread::sleep(at);
        killed.kill();
        let next = Daemon::try_start(host, As::Root, &args, &NAMES, "TC").unwrap_or_else(|out| {
            panic!("killed {at:?} into its start-up, the next start is refused: {out:#?}")
        });
        assert_eq!(programs_on(host, EXT), one_set(), "killed at {at:?}");
        let left = inspect::published(pid);
        assert!(left.is_empty(), "killed at {at:?}, left: {left:?}");
        let next_pid = next.pid();
        assert!(next.stop().status.success(), "killed at {at:?}");
        assert_eq!(
            link_names(host),
            [EXT, "lo"],
            "killed at {at:?}: left behind"
        );
        let left = inspect::published(next_pid);
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// An instance in a container with a /run of its own sees none of the running instance's
/// claims or state: the kernel's attachments (tcx programs live as long as their process)
/// still tell it that the links and ext are a running instance's. It is refused and touches
/// nothing.
#[test]
fn a_container_with_its_own_run_never_touches_a_live_instance() {
    if !tcx("a_container_with_its_own_run_never_touches_a_live_instance") {
        return;
    }
    let setup = Setup::TunTc;
    let Some(r) = start(
        "a_container_with_its_own_run_never_touches_a_live_instance",
        setup,
    ) else {
        return;
    };
    ensure_bpffs(Path::new(BPFFS)).expect("the BPF filesystem");
    let host = r.host(Side::A);
    let before = link_names(host);
    let index = link(host, EXT).index;
    for links in [["--if", "a@1"], ["--if", "c@3"]] {
        let mut args = vec!["run", "--ext", EXT, "--ingress", "tc"];
        args.extend(links);
        let out = run_in(Some(host), &args, As::Pid1OwnRun);
        let line = refusal(&out);
        let expected = format!(
            "l3mp: --ext {EXT}: {EXT} (ifindex {index}) carries the programs of a running l3mp \
             whose claim on it is not seen here"
        );
        assert!(line.starts_with(&expected), "{line}");
        assert_eq!(link_names(host), before, "the links were touched");
        assert_eq!(programs_on(host, EXT), one_set());
    }
    let (name, label) = LINKS[0];
    link_works(&r, name, label, Side::A, "after the container's attempts");
}

/// A half-made pair an older l3mp left (hidden end named with a dot, as it named them, and no
/// alias) is recognised, removed and said to be, and the start goes on.
#[test]
fn an_older_l3mps_half_made_pair_is_removed() {
    let setup = Setup::TunTc;
    if !privileged("an_older_l3mps_half_made_pair_is_removed", setup.kind()) {
        return;
    }
    let lab = lab(setup);
    let host = lab.host(Side::A);
    let old = hidden_name(EXT, 1).replace('_', ".");
    ip(
        host.name(),
        &["link", "add", &old, "type", "veth", "peer", "name", "x1"],
    );
    let args = ["--ext", EXT, "--if", "a@1", "--ingress", "tc"];
    let mut daemon = Daemon::start(host, &args, &["a"], "TC");
    let said = daemon.lines();
    assert!(
        said.iter()
            .any(|l| l.contains(&format!("removing {old} and its peer"))),
        "{said:#?}"
    );
    let names = link_names(host);
    assert!(
        !names.contains(&old) && !names.contains(&"x1".to_string()),
        "{names:?}"
    );
    assert!(daemon.stop().status.success());
}
