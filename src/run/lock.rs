//! Locks the kernel releases when their holder dies: `flock` on a file under /run/l3mp. An
//! instance claims its ext and its id with them before it creates anything, and holds them for
//! life; whoever cannot take a lock knows its holder still runs. This holds whatever PID
//! namespace either process is in (a pid may mean another process there, or nothing), as long
//! as both see the same /run (a container with a /run of its own sees only its own locks).
//!
//! A lock file is removed by its holder (on a clean stop) or by whoever takes it after its
//! holder died. Taking one checks that the file locked is still the one at the path, so that a
//! file removed meanwhile is never taken for the lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// How long a lock may be held by someone only looking (a sweep of a dead holder's files)
/// before a taker decides it is held for good.
const LOOKERS: Duration = Duration::from_millis(100);

/// A lock held by this process; released (and its file removed) when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    /// Directories removed after the file if that leaves them empty, innermost first.
    prune: Vec<PathBuf>,
    _file: Flock<File>,
}

impl Lock {
    /// Takes the lock at `path` (creating the file) and writes this process into it;
    /// `Ok(None)` when a running process holds it.
    pub fn take(path: &Path) -> io::Result<Option<Lock>> {
        let deadline = Instant::now() + LOOKERS;
        loop {
            match Lock::try_take(path)? {
                Some(lock) => return Ok(Some(lock)),
                None if Instant::now() >= deadline => return Ok(None),
                None => thread::sleep(LOOKERS / 10),
            }
        }
    }

    /// Like [`Lock::take`], without waiting for someone only looking.
    pub fn try_take(path: &Path) -> io::Result<Option<Lock>> {
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)?;
            let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, e)) => return Err(e.into()),
            };
            // Removed (and perhaps made again) by a previous holder between the open and the
            // lock: the lock is on a file no one else will look at; take the one there now.
            let same = match fs::metadata(path) {
                Ok(there) => {
                    let mine = locked.metadata()?;
                    (there.dev(), there.ino()) == (mine.dev(), mine.ino())
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            };
            if !same {
                continue;
            }
            locked.set_len(0)?;
            locked.write_all(Holder::me().to_string().as_bytes())?;
            return Ok(Some(Lock {
                path: path.to_path_buf(),
                prune: Vec::new(),
                _file: locked,
            }));
        }
    }

    /// This lock, removing `dirs` (innermost first) when dropped if that leaves them empty.
    pub fn pruning(mut self, dirs: Vec<PathBuf>) -> Lock {
        self.prune = dirs;
        self
    }

    /// Whether a running process holds the lock at `path` (a file that is not there is not
    /// held). Takes it for an instant when it is free.
    pub fn held(path: &Path) -> io::Result<bool> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_) => Ok(false),
            Err((_, Errno::EWOULDBLOCK)) => Ok(true),
            Err((_, e)) => Err(e.into()),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still held: a taker that opened it meanwhile finds it gone and
        // makes a new one.
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("could not remove {}: {e}", self.path.display());
            }
        }
        // Someone may have just put something there: then they stay.
        for dir in &self.prune {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Who holds a lock, as its holder wrote it: its pid in its own PID namespace, and that
/// namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub pidns: u64,
}

impl Holder {
    /// This process.
    pub fn me() -> Holder {
        Holder {
            pid: std::process::id(),
            pidns: pid_namespace(),
        }
    }

    /// What the holder of the lock at `path` wrote; `None` if it cannot be read (yet).
    pub fn of(path: &Path) -> Option<Holder> {
        Holder::parse(&fs::read_to_string(path).ok()?)
    }

    fn parse(text: &str) -> Option<Holder> {
        let (pid, pidns) = text.trim().split_once(' ')?;
        Some(Holder {
            pid: pid.strip_prefix("pid=")?.parse().ok()?,
            pidns: pidns.strip_prefix("pidns=")?.parse().ok()?,
        })
    }

    /// "pid 42", or "pid 42 in another PID namespace" when its pid means nothing here.
    pub fn describe(&self) -> String {
        if self.pidns == pid_namespace() {
            format!("pid {}", self.pid)
        } else {
            format!("pid {} in another PID namespace", self.pid)
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "pid={} pidns={}", self.pid, self.pidns)
    }
}

/// The inode of this process's PID namespace (0 if it cannot be read).
fn pid_namespace() -> u64 {
    fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// "l3mp (pid 42)" for the holder of the lock at `path`, or "another l3mp" when it has not
/// said who it is yet.
pub fn holder_of(path: &Path) -> String {
    Holder::of(path).map_or("another l3mp".into(), |h| {
        format!("l3mp ({})", h.describe())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("l3mp-lock-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    #[test]
    fn a_held_lock_is_refused_and_free_again_once_dropped() {
        let dir = scratch("held");
        let path = dir.join("x.lock");
        assert!(!Lock::held(&path).expect("look"));
        let lock = Lock::try_take(&path).expect("take").expect("free");
        assert!(Lock::held(&path).expect("look"));
        // flock is per open file: a second take in the same process is refused too.
        assert!(Lock::try_take(&path).expect("take again").is_none());
        assert!(Lock::take(&path).expect("take again").is_none());
        assert_eq!(Holder::of(&path), Some(Holder::me()));
        assert_eq!(
            holder_of(&path),
            format!("l3mp (pid {})", std::process::id())
        );
        drop(lock);
        assert!(!path.exists(), "the lock file stays");
        assert!(!Lock::held(&path).expect("look"));
        let again = Lock::try_take(&path)
            .expect("take")
            .expect("free after the drop");
        drop(again);
        fs::remove_dir_all(dir).expect("clean up");
    }

    #[test]
    fn a_file_left_by_a_dead_holder_is_taken() {
        let dir = scratch("stale");
        let path = dir.join("x.lock");
        fs::write(&path, "pid=1 pidns=1\n").expect("a dead holder's file");
        assert!(!Lock::held(&path).expect("look"));
        let lock = Lock::try_take(&path).expect("take").expect("free");
        assert_eq!(Holder::of(&path), Some(Holder::me()));
        drop(lock);
        fs::remove_dir_all(dir).expect("clean up");
    }

    #[test]
    fn holders_in_other_pid_namespaces_are_said_to_be() {
        let here = Holder::me();
        assert_eq!(here.describe(), format!("pid {}", here.pid));
        let there = Holder {
            pid: 1,
            pidns: here.pidns + 1,
        };
        assert_eq!(there.describe(), "pid 1 in another PID namespace");
        assert_eq!(Holder::parse(&there.to_string()), Some(there));
        assert_eq!(Holder::parse(""), None);
        assert_eq!(Holder::parse("pid=x pidns=1"), None);
    }
}
