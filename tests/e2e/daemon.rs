//! The real `l3mp` binary, run inside a lab host.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use l3mp::lab::Host;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long `l3mp run` may take to come up, or any invocation to exit.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `l3mp run` may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Which stream a line of output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Everything a finished invocation said, and how it ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// A running `l3mp`; killed (SIGKILL) if dropped while running.
pub struct Daemon {
    child: Child,
    lines: Receiver<(Stream, String)>,
    seen: Vec<(Stream, String)>,
}

/// Starts `l3mp <args>` on `host`, with its output captured.
fn spawn(host: &Host, args: &[String]) -> Daemon {
    let mut command = Command::new(env!("CARGO_BIN_EXE_l3mp"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = host
        .spawn(command)
        .unwrap_or_else(|e| panic!("host {}: spawning l3mp {args:?}: {e}", host.side()));
    let (sender, lines) = channel();
    let stdout = child
        .stdout
        .take()
        .map(|s| (Stream::Stdout, Box::new(s) as Box<dyn Read + Send>));
    let stderr = child
        .stderr
        .take()
        .map(|s| (Stream::Stderr, Box::new(s) as Box<dyn Read + Send>));
    for (stream, pipe) in [stdout, stderr].into_iter().flatten() {
        let sender = sender.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if sender.send((stream, line)).is_err() {
                    return;
                }
            }
        });
    }
    Daemon {
        child,
        lines,
        seen: Vec::new(),
    }
}

/// Runs `l3mp <args>` on `host` to its end (at most [`START_TIMEOUT`]).
pub fn run_to_exit(host: &Host, args: &[&str]) -> Finished {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut daemon = spawn(host, &args);
    let status = daemon
        .wait(START_TIMEOUT)
        .unwrap_or_else(|| panic!("l3mp {args:?} did not exit within {START_TIMEOUT:?}"));
    daemon.finish(status)
}

impl Daemon {
    /// Starts `l3mp run <args>` on `host` and waits until it reports every link of `links`
    /// up, with `mode` ("TC" or "XDP") ingress. Panics with its output if it exits instead.
    pub fn start(host: &Host, args: &[&str], links: &[&str], mode: &str) -> Daemon {
        let mut all = vec!["run".to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let mut daemon = spawn(host, &all);
        let deadline = Instant::now() + START_TIMEOUT;
        let ready = |seen: &[(Stream, String)], link: &str| {
            seen.iter().any(|(_, l)| {
                l.contains(&format!("] {link} label ")) && l.contains(&format!("({mode} ingress)"))
            })
        };
        while !links.iter().all(|link| ready(&daemon.seen, link)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match daemon.lines.recv_timeout(left) {
                Ok(line) => daemon.seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "host {}: l3mp {all:?} not ready within {START_TIMEOUT:?}:\n{}",
                    host.side(),
                    daemon.transcript()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = daemon.wait(STOP_TIMEOUT);
                    panic!(
                        "host {}: l3mp {all:?} exited ({status:?}) instead of starting:\n{}",
                        host.side(),
                        daemon.transcript()
                    )
                }
            }
        }
        daemon
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit (at most [`STOP_TIMEOUT`]).
    pub fn stop(mut self) -> Finished {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, Signal::SIGTERM).expect("SIGTERM to l3mp");
        let status = self
            .wait(STOP_TIMEOUT)
            .unwrap_or_else(|| panic!("l3mp did not stop within {STOP_TIMEOUT:?} of SIGTERM"));
        self.finish(status)
    }

    /// The exit status, once the process exits within `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for l3mp") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Collects the rest of the output of the exited process.
    fn finish(mut self, status: ExitStatus) -> Finished {
        // The readers end when the pipes close, which the exit did.
        while let Ok(line) = self.lines.recv_timeout(STOP_TIMEOUT) {
            self.seen.push(line);
        }
        let of = |stream| {
            self.seen
                .iter()
                .filter(|(s, _)| *s == stream)
                .map(|(_, l)| l.clone())
                .collect()
        };
        Finished {
            status,
            stdout: of(Stream::Stdout),
            stderr: of(Stream::Stderr),
        }
    }

    fn transcript(&self) -> String {
        self.seen.iter().map(|(_, l)| format!("  {l}\n")).collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
