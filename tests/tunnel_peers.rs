//! As root, with Debian's wireguard-go and wireguard-tools: `l3mp run` on a real userspace
//! WireGuard interface warns when it has more than one peer (a labelled packet from any of
//! them would enter a link), and does not when it has one.

mod common;

#[path = "e2e/daemon.rs"]
#[allow(dead_code)] // shared with the e2e tests, which use more of it
mod daemon;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use l3mp::lab::{Host, Side};

use daemon::Daemon;

/// A network namespace of the test's own and the wireguard-go in it; both gone on drop.
struct WireGuard {
    namespace: String,
    name: String,
    daemon: Option<Child>,
}

impl Drop for WireGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.name));
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
    }
}

/// `command` with `args` on `host`, `input` on its standard input; its standard output.
fn run(host: &Host, command: &str, args: &[&str], input: &[u8]) -> String {
    let mut cmd = Command::new(command);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = host.spawn(cmd).expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{command} {args:?}: {out:?}");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

fn keypair(host: &Host) -> (String, String) {
    let private = run(host, "wg", &["genkey"], b"");
    let public = run(host, "wg", &["pubkey"], private.as_bytes());
    (private, public)
}

fn usable(test: &str) -> bool {
    if !common::can_build_hosts(test) {
        return false;
    }
    for tool in ["wireguard-go", "wg"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            eprintln!(
                "skipped {test}: needs {tool} (apt-get install wireguard-go wireguard-tools)"
            );
            return false;
        }
    }
    true
}

#[test]
fn more_than_one_wireguard_peer_is_warned_about() {
    if !usable("more_than_one_wireguard_peer_is_warned_about") {
        return;
    }
    let id = std::process::id() % 100_000;
    let mut wg = WireGuard {
        namespace: format!("l3mp-wgpeers-{id}"),
        name: format!("wgp{id}"),
        daemon: None,
    };
    let status = Command::new("ip")
        .args(["netns", "add", &wg.namespace])
        .status()
        .expect("ip");
    assert!(status.success());
    let host = Host::open(&wg.namespace, Side::A).expect("the namespace");
    let mut go = Command::new("wireguard-go");
    go.arg(&wg.name)
        .env("WG_PROCESS_FOREGROUND", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    wg.daemon = Some(host.spawn(go).expect("wireguard-go starts"));
    let socket = format!("/var/run/wireguard/{}.sock", wg.name);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::path::Path::new(&socket).exists() {
        assert!(Instant::now() < deadline, "wireguard-go made no {socket}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (private, _) = keypair(&host);
    let key_file = std::env::temp_dir().join(format!("l3mp-wgpeers-{id}.key"));
    std::fs::write(&key_file, &private).expect("key file");
    let (_, first) = keypair(&host);
    let (_, second) = keypair(&host);
    let key = key_file.to_string_lossy().to_string();
    run(
        &host,
        "wg",
        &[
            "set",
            &wg.name,
            "private-key",
            &key,
            "peer",
            &first,
            "allowed-ips",
            "10.9.0.1/32",
            "peer",
            &second,
            "allowed-ips",
            "10.9.0.2/32",
        ],
        b"",
    );
    std::fs::remove_file(&key_file).expect("remove the key file");
    let up = Command::new("ip")
        .args(["-n", &wg.namespace, "link", "set", &wg.name, "up"])
        .status()
        .expect("ip");
    assert!(up.success());

    let args = ["--ext", wg.name.as_str(), "--if", "a@1"];
    let warning = format!("{} has 2 WireGuard peers", wg.name);
    let mut l3mp = Daemon::start(&host, &args, &["a"], "TC");
    let said = l3mp.lines();
    assert!(said.iter().any(|l| l.contains(&warning)), "{said:#?}");
    assert!(l3mp.stop().status.success());

    run(
        &host,
        "wg",
        &["set", &wg.name, "peer", &second, "remove"],
        b"",
    );
    let mut l3mp = Daemon::start(&host, &args, &["a"], "TC");
    let said = l3mp.lines();
    assert!(
        !said.iter().any(|l| l.contains("WireGuard peer")),
        "{said:#?}"
    );
    assert!(l3mp.stop().status.success());
}
