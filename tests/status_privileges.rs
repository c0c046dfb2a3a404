//! `l3mp status` without the privileges it needs says so in one line, as `run` does, rather
//! than stopping at the first pinned map it cannot open.

use std::process::Command;

#[test]
fn status_without_privileges_says_it_needs_root() {
    let binary = env!("CARGO_BIN_EXE_l3mp");
    let root = nix::unistd::geteuid().is_root();
    // As root, drop every capability first (util-linux's setpriv); otherwise run as we are.
    let out = if root {
        Command::new("setpriv")
            .args([
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
                binary,
                "status",
            ])
            .output()
    } else {
        Command::new(binary).arg("status").output()
    }
    .expect("l3mp status runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.starts_with("l3mp: status needs root: missing "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
