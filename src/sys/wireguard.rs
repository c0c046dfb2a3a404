//! How many peers a userspace WireGuard (wireguard-go, boringtun) has on an interface, asked over
//! its UAPI socket (`/var/run/wireguard/<name>.sock`). The socket's path names no network
//! namespace, so an answer is taken only from a daemon that runs in the caller's.

use std::io::{BufRead, BufReader, Write};
use std::os::linux::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// Where userspace WireGuard implementations put their sockets.
const SOCKET_DIR: &str = "/var/run/wireguard";
/// How long the daemon may take to answer.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The number of peers of the userspace WireGuard interface `name` in this thread's network
/// namespace; `None` when no userspace WireGuard serves that name, `Some(Err)` when one may but
/// cannot be asked (the reason).
pub fn peers(name: &str) -> Option<Result<usize, String>> {
    let path = Path::new(SOCKET_DIR).join(format!("{name}.sock"));
    path.exists().then(|| ask(&path))
}

fn ask(path: &PathBuf) -> Result<usize, String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what} {}: {e}", path.display());
    let mut stream = UnixStream::connect(path).map_err(|e| fail("connecting to", &e))?;
    let pid = getsockopt(&stream, PeerCredentials)
        .map_err(|e| fail("reading the peer of", &e))?
        .pid();
    let netns = |of: &str| std::fs::metadata(format!("/proc/{of}/ns/net")).map(|m| m.st_ino());
    match (netns(&pid.to_string()), netns("thread-self")) {
        (Ok(theirs), Ok(ours)) if theirs == ours => {}
        (Ok(_), Ok(_)) => {
            return Err(format!(
                "{} belongs to a WireGuard in another network namespace (pid {pid})",
                path.display()
            ))
        }
        _ => {
            return Err(format!(
                "cannot tell the network namespace of the WireGuard behind {} (pid {pid})",
                path.display()
            ))
        }
    }
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.write_all(b"get=1\n\n"))
        .map_err(|e| fail("asking", &e))?;
    let mut peers = 0;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| fail("reading from", &e))?;
        if line.is_empty() {
            return Ok(peers);
        }
        if let Some(errno) = line.strip_prefix("errno=").filter(|e| *e != "0") {
            return Err(format!("{} answered errno {errno}", path.display()));
        }
        peers += usize::from(line.starts_with("public_key="));
    }
    Err(format!("{} closed before its answer ended", path.display()))
}
