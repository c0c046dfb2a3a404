//! The real `l3mp` binary, run inside a lab host.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use l3mp::lab::Host;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long `l3mp run` may take to come up, or any invocation to exit (times [`slow`]).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `l3mp run` may take to stop after SIGTERM (times [`slow`]).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// A factor for the timeouts above, for an emulated CPU (the old-kernel guest sets it).
pub const SLOW_ENV: &str = "L3MP_TEST_SLOW";

/// `timeout` times the factor in [`SLOW_ENV`] (1 when unset).
fn slow(timeout: Duration) -> Duration {
    let factor = std::env::var(SLOW_ENV).ok().and_then(|f| f.parse().ok());
    timeout * factor.unwrap_or(1)
}

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

/// A running `l3mp`; stopped (SIGTERM, then SIGKILL) if dropped while running.
pub struct Daemon {
    child: Child,
    /// l3mp's own process, as the test sees it (in a PID namespace of its own, the child of
    /// `unshare`).
    l3mp: Pid,
    lines: Receiver<(Stream, String)>,
    seen: Vec<(Stream, String)>,
}

/// How l3mp is started.
#[derive(Clone, Copy, Debug)]
pub enum As<'a> {
    /// As root.
    Root,
    /// As root limited to these capabilities (e.g. `+net_admin,+bpf`), through util-linux's
    /// setpriv, which execs l3mp in the same process.
    Confined(&'a str),
    /// As pid 1 of a PID namespace of its own, with its own /proc (a container), through
    /// util-linux's `unshare --pid --fork --mount-proc`.
    Pid1,
    /// Like [`As::Pid1`], with a /run of its own (an empty tmpfs): it sees none of the other
    /// instances' state files or claims.
    Pid1OwnRun,
}

/// Starts `l3mp <args>` on `host` (or, with `None`, in the test's own namespace), started
/// `how`, with its output captured.
fn spawn(host: Option<&Host>, args: &[String], how: As<'_>) -> Daemon {
    spawn_with(host, args, how, Stdio::piped())
}

/// Like [`spawn`], with stderr going to `stderr` (not captured unless piped).
pub fn spawn_with(host: Option<&Host>, args: &[String], how: As<'_>, stderr: Stdio) -> Daemon {
    spawn_with_env(host, args, how, stderr, &[])
}

/// `l3mp run <args>` on `host` with `env` added to its environment, not waited for.
pub fn run_with_env(host: &Host, args: &[&str], env: &[(&str, &str)]) -> Daemon {
    let mut all = vec!["run".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    spawn_with_env(Some(host), &all, As::Root, Stdio::piped(), env)
}

/// Like [`spawn_with`], with `env` added to l3mp's environment.
fn spawn_with_env(
    host: Option<&Host>,
    args: &[String],
    how: As<'_>,
    stderr: Stdio,
    env: &[(&str, &str)],
) -> Daemon {
    let binary = env!("CARGO_BIN_EXE_l3mp");
    let mut command = match how {
        As::Root => Command::new(binary),
        As::Confined(caps) => {
            let mut setpriv = Command::new("setpriv");
            setpriv.args([
                "--reuid=0",
                "--inh-caps=-all",
                &format!("--bounding-set=-all,{caps}"),
                "--",
                binary,
            ]);
            setpriv
        }
        As::Pid1 => {
            let mut unshare = Command::new("unshare");
            unshare.args(["--pid", "--fork", "--mount-proc", "--", binary]);
            unshare
        }
        As::Pid1OwnRun => {
            let mut unshare = Command::new("unshare");
            let script = format!("mount -t tmpfs tmpfs /run && exec {binary} \"$@\"");
            unshare.args([
                "--pid",
                "--fork",
                "--mount-proc",
                "--",
                "sh",
                "-c",
                &script,
                "l3mp",
            ]);
            unshare
        }
    };
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let spawned = match host {
        Some(host) => host.spawn(command),
        None => command.spawn(),
    };
    let where_ = host.map_or("outside the lab".to_string(), |h| {
        format!("host {}", h.side())
    });
    let mut child = spawned.unwrap_or_else(|e| panic!("{where_}: spawning l3mp {args:?}: {e}"));
    let l3mp = match how {
        As::Pid1 | As::Pid1OwnRun => forked_child(child.id()),
        _ => Pid::from_raw(child.id() as i32),
    };
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
        l3mp,
        lines,
        seen: Vec::new(),
    }
}

/// The child `unshare --fork` (process `parent`) started, once it has.
fn forked_child(parent: u32) -> Pid {
    let deadline = Instant::now() + slow(START_TIMEOUT);
    let children = format!("/proc/{parent}/task/{parent}/children");
    loop {
        let listed = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = listed.split_whitespace().next() {
            return Pid::from_raw(pid.parse().expect("a pid"));
        }
        assert!(
            Instant::now() < deadline,
            "unshare {parent} started no child"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `l3mp <args>` on `host` to its end (at most [`START_TIMEOUT`]).
pub fn run_to_exit(host: &Host, args: &[&str]) -> Finished {
    run_in(Some(host), args, As::Root)
}

/// Runs `l3mp <args>` on `host` to its end, as root limited to `caps` (see [`As`]).
pub fn run_confined_to_exit(host: &Host, caps: &str, args: &[&str]) -> Finished {
    run_in(Some(host), args, As::Confined(caps))
}

/// Runs `l3mp <args>` on `host` (or in the test's own namespace), started `how`, to its end.
pub fn run_in(host: Option<&Host>, args: &[&str], how: As<'_>) -> Finished {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut daemon = spawn(host, &args, how);
    let status = daemon.wait(slow(START_TIMEOUT)).unwrap_or_else(|| {
        panic!(
            "l3mp {args:?} did not exit within {:?}",
            slow(START_TIMEOUT)
        )
    });
    daemon.finish(status)
}

impl Daemon {
    /// Starts `l3mp run <args>` on `host` and waits until it reports every link of `links`
    /// up, with `mode` ("TC" or "XDP") ingress. Panics with its output if it exits instead.
    pub fn start(host: &Host, args: &[&str], links: &[&str], mode: &str) -> Daemon {
        Daemon::start_as(host, As::Root, args, links, mode)
    }

    /// Like [`Daemon::start`], waiting for the links its `--if NAME@LABEL` arguments name.
    pub fn start_owned(host: &Host, args: &[String], mode: &str) -> Daemon {
        let links: Vec<&str> = args
            .windows(2)
            .filter(|w| w[0] == "--if")
            .filter_map(|w| w[1].split_once('@').map(|(name, _)| name))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::start(host, &args, &links, mode)
    }

    /// Like [`Daemon::start`], as root limited to the capabilities `caps` (see [`spawn`]).
    pub fn start_confined(
        host: &Host,
        caps: &str,
        args: &[&str],
        links: &[&str],
        mode: &str,
    ) -> Daemon {
        Daemon::start_as(host, As::Confined(caps), args, links, mode)
    }

    /// Starts `l3mp run <args>` on `host`, started `how`, and waits until it reports every
    /// link of `links` up, with `mode` ("TC" or "XDP") ingress. Panics with its output if it
    /// exits instead.
    pub fn start_as(host: &Host, how: As<'_>, args: &[&str], links: &[&str], mode: &str) -> Daemon {
        match Daemon::try_start(host, how, args, links, mode) {
            Ok(daemon) => daemon,
            Err(finished) => panic!(
                "host {}: l3mp run {args:?} exited instead of starting: {finished:#?}",
                host.side()
            ),
        }
    }

    /// Like [`Daemon::start_as`]; what it said and how it ended if it exits instead.
    pub fn try_start(
        host: &Host,
        how: As<'_>,
        args: &[&str],
        links: &[&str],
        mode: &str,
    ) -> Result<Daemon, Finished> {
        Daemon::launch(host, how, args).ready(links, mode)
    }

    /// Starts `l3mp run <args>` on `host`, started `how`, without waiting for anything.
    pub fn launch(host: &Host, how: As<'_>, args: &[&str]) -> Daemon {
        let mut all = vec!["run".to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        spawn(Some(host), &all, how)
    }

    /// Waits until l3mp reports every link of `links` up with `mode` ingress; what it said
    /// and how it ended if it exits instead.
    pub fn ready(mut self, links: &[&str], mode: &str) -> Result<Daemon, Finished> {
        let deadline = Instant::now() + slow(START_TIMEOUT);
        let ready = |seen: &[(Stream, String)], link: &str| {
            seen.iter().any(|(_, l)| {
                l.contains(&format!(" {link} label ")) && l.contains(&format!("({mode} ingress)"))
            })
        };
        while !links.iter().all(|link| ready(&self.seen, link)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "l3mp not ready within {:?}:\n{}",
                        slow(START_TIMEOUT),
                        self.transcript()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait(slow(STOP_TIMEOUT)).expect("l3mp exits");
                    return Err(self.finish(status));
                }
            }
        }
        Ok(self)
    }

    /// l3mp's process id, as the test sees it.
    pub fn pid(&self) -> u32 {
        self.l3mp.as_raw() as u32
    }

    /// The first line of output containing `needle`, among those said so far or within
    /// `timeout`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, line)) = self.seen.iter().find(|(_, l)| l.contains(needle)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line);
        }
    }

    /// Waits until `n` lines of output contain `needle` (counting those said so far), at most
    /// `timeout`; whether they did.
    pub fn wait_for_lines(&mut self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.seen.iter().filter(|(_, l)| l.contains(needle)).count() >= n {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return false,
            }
        }
    }

    /// Sends SIGHUP (a reload).
    pub fn hup(&self) {
        kill(self.l3mp, Signal::SIGHUP).expect("SIGHUP to l3mp");
    }

    /// Every line of output so far.
    pub fn lines(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().map(|(_, l)| l.clone()).collect()
    }

    /// Kills the process (SIGKILL: no cleanup) and waits for it.
    pub fn kill(mut self) -> Finished {
        kill(self.l3mp, Signal::SIGKILL).expect("SIGKILL to l3mp");
        let status = self.wait(slow(STOP_TIMEOUT)).unwrap_or_else(|| {
            panic!(
                "l3mp did not die within {:?} of SIGKILL",
                slow(STOP_TIMEOUT)
            )
        });
        self.finish(status)
    }

    /// Sends SIGTERM and waits for the exit (at most [`STOP_TIMEOUT`]).
    pub fn stop(mut self) -> Finished {
        kill(self.l3mp, Signal::SIGTERM).expect("SIGTERM to l3mp");
        let status = self.wait(slow(STOP_TIMEOUT)).unwrap_or_else(|| {
            panic!(
                "l3mp did not stop within {:?} of SIGTERM",
                slow(STOP_TIMEOUT)
            )
        });
        self.finish(status)
    }

    /// Sends `signal` and waits for the exit (at most [`STOP_TIMEOUT`]).
    pub fn signal(mut self, signal: Signal) -> Finished {
        kill(self.l3mp, signal).unwrap_or_else(|e| panic!("{signal} to l3mp: {e}"));
        let status = self
            .wait(STOP_TIMEOUT)
            .unwrap_or_else(|| panic!("l3mp did not exit within {STOP_TIMEOUT:?} of {signal}"));
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
        while let Ok(line) = self.lines.recv_timeout(slow(STOP_TIMEOUT)) {
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

    /// The output so far, indented, for a failure message.
    pub fn transcript(&self) -> String {
        self.seen.iter().map(|(_, l)| format!("  {l}\n")).collect()
    }
}

impl Drop for Daemon {
    /// Stops a still running l3mp as a test that ends early would want: SIGTERM, so that it
    /// removes what it created (its state file and pins are outside the lab's namespaces),
    /// and SIGKILL if it does not stop in time.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(self.l3mp, Signal::SIGTERM);
            if self.wait(slow(STOP_TIMEOUT)).is_none() {
                let _ = kill(self.l3mp, Signal::SIGKILL);
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// `l3mp status --json` on `host` (or, with `None`, from the test's own namespace, outside
/// every lab host): the object of the instance with process id `pid`. Panics with the output
/// if the command fails or lists no such instance.
pub fn status(host: Option<&Host>, pid: u32) -> serde_json::Value {
    status_with(host, pid, &[])
}

/// Like [`status`], with more arguments to `l3mp status` (`--ext NAME`).
pub fn status_with(host: Option<&Host>, pid: u32, more: &[&str]) -> serde_json::Value {
    let mut args = vec!["status", "--json"];
    args.extend(more);
    let out = run_in(host, &args, As::Root);
    let all: serde_json::Value = serde_json::from_str(&out.stdout.join("\n"))
        .unwrap_or_else(|e| panic!("l3mp status --json: {e}: {out:?}"));
    let listed = all.as_array().expect("an array of instances");
    // The exit status says whether every instance shown is on its ext: 0 if so, 3 if not.
    let all_attached = listed.iter().all(|i| i["ext"]["attached"] == true);
    let expected = if all_attached { 0 } else { 3 };
    assert_eq!(out.status.code(), Some(expected), "l3mp status: {out:?}");
    listed
        .iter()
        .find(|i| i["pid"] == pid)
        .cloned()
        .unwrap_or_else(|| panic!("l3mp status lists no pid {pid}: {all:#}"))
}

/// The object of the link called `name` in an instance's status.
pub fn link_status<'a>(instance: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    instance["links"]
        .as_array()
        .and_then(|links| links.iter().find(|l| l["name"] == name))
        .unwrap_or_else(|| panic!("no link {name} in {instance:#}"))
}
