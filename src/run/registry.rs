//! Where running instances publish themselves for `l3mp status`: a state file
//! `/run/l3mp/<id>.json` and a pin directory `/sys/fs/bpf/l3mp/<id>/` holding the counters map.
//! An instance removes both when it stops; what a killed one left is removed by the next start
//! or `status`, which say so.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::programs::layout::{COUNTERS_MAP, PROBES_MAP};

use super::bpffs::BPFFS;
use super::lock::{holder_of, Lock};
use super::state::{InstanceId, State};
use super::Error;

/// Where the state files are.
const STATE_DIR: &str = "/run/l3mp";
/// Where, under the state directory, the locks on exts are.
const EXT_LOCKS: &str = "ext";

/// The directories instances publish into.
#[derive(Clone, Debug)]
pub struct Registry {
    state_dir: PathBuf,
    pin_root: PathBuf,
}

/// What a dead instance left behind.
#[derive(Default)]
struct Remains {
    files: Vec<PathBuf>,
    pins: Option<PathBuf>,
}

/// An instance in the registry: its state, or why its state file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    Running(State),
    Unreadable {
        id: InstanceId,
        path: PathBuf,
        reason: String,
    },
}

/// What an instance claims on its ext, in its network namespace (by the inode of that
/// namespace): ext's name, for the instance's whole life, and the device its programs are on,
/// while they are.
#[derive(Clone, Copy, Debug)]
pub enum Claim<'a> {
    Name { netns: u64, ext: &'a str },
    Device { netns: u64, ifindex: u32 },
}

impl Registry {
    /// The system's: state files in /run/l3mp, pins under `l3mp/` in the BPF filesystem.
    pub fn system() -> Registry {
        Registry::at(STATE_DIR, Path::new(BPFFS).join("l3mp"))
    }

    /// A registry with its state files in `state_dir` and its pin directories in `pin_root`.
    pub fn at(state_dir: impl Into<PathBuf>, pin_root: impl Into<PathBuf>) -> Registry {
        Registry {
            state_dir: state_dir.into(),
            pin_root: pin_root.into(),
        }
    }

    /// Takes the lock of `claim`; `Ok(Err(who))` when a running l3mp (`who`) holds it.
    pub fn claim(&self, claim: Claim<'_>) -> Result<Result<Lock, String>, Error> {
        let dir = self.state_dir.join(EXT_LOCKS);
        let path = dir.join(match claim {
            Claim::Name { netns, ext } => format!("{netns}.name.{ext}"),
            Claim::Device { netns, ifindex } => format!("{netns}.ifindex.{ifindex}"),
        });
        let taken = in_dirs(&[&self.state_dir, &dir], || Lock::take(&path))
            .map_err(|e| Error::new(format!("locking {}: {e}", path.display())))?;
        let prune = vec![dir, self.state_dir.clone()];
        Ok(taken
            .map(|lock| lock.pruning(prune))
            .ok_or_else(|| holder_of(&path)))
    }

    /// A new id for an instance of this process (`<pid>`, or `<pid>-<n>` when that is taken:
    /// by a further instance of this process, or by a process with the same pid in another
    /// PID namespace), locked for the instance's life, and its pin directory (a stale one of
    /// a dead instance with the same id is removed first). The state file is written with
    /// [`Published::write`]; all of it goes when the [`Published`] is dropped.
    pub fn publish(&self) -> Result<Published, Error> {
        let pid = std::process::id();
        let (id, lock) = (0..)
            .map(|serial| InstanceId { pid, serial })
            .find_map(|id| {
                let path = self.lock_of(id);
                match in_dirs(&[&self.state_dir], || Lock::try_take(&path)) {
                    Ok(Some(lock)) => Some(Ok((id, lock))),
                    Ok(None) => None,
                    Err(e) => Some(Err(Error::new(format!("locking {}: {e}", path.display())))),
                }
            })
            .expect("an id is free: serials are unbounded")?;
        let pins = self.pin_root.join(id.to_string());
        if pins.exists() {
            fs::remove_dir_all(&pins)
                .map_err(|e| Error::new(format!("removing the stale {}: {e}", pins.display())))?;
            log::info!(
                "removed {}, left by an earlier instance with id {id}",
                pins.display()
            );
        }
        in_dirs(&[&self.pin_root], || fs::create_dir(&pins))
            .map_err(|e| Error::new(format!("creating {}: {e}", pins.display())))?;
        Ok(Published {
            id,
            state_file: self.state_file(id),
            pins,
            registry: self.clone(),
            lock: Some(lock),
        })
    }

    /// Where instance `id`'s state file is.
    pub fn state_file(&self, id: InstanceId) -> PathBuf {
        self.state_dir.join(format!("{id}.json"))
    }

    /// The lock instance `id` holds while it runs.
    fn lock_of(&self, id: InstanceId) -> PathBuf {
        self.state_dir.join(format!("{id}.lock"))
    }

    /// Whether instance `id` is running: its lock is held. An instance of an earlier l3mp
    /// (still running after an upgrade) takes no lock: it runs if its process does, as that
    /// l3mp judged it (in this PID namespace).
    pub fn running(&self, id: InstanceId) -> bool {
        let lock = self.lock_of(id);
        match lock.try_exists() {
            Ok(false) => self.state_file(id).exists() && earlier_alive(id.pid),
            _ => Lock::held(&lock).unwrap_or(false),
        }
    }

    /// Every running instance, by id: its state, or why it cannot be read.
    pub fn live(&self) -> Result<Vec<Listed>, Error> {
        let mut listed = Vec::new();
        for (id, path) in entries(&self.state_dir, ".json")? {
            if !self.running(id) {
                continue;
            }
            let unreadable = |reason: String| Listed::Unreadable {
                id,
                path: path.clone(),
                reason,
            };
            listed.push(match fs::read_to_string(&path) {
                Ok(text) => State::from_json(&text).map_or_else(unreadable, Listed::Running),
                // It stopped since the directory was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => unreadable(e.to_string()),
            });
        }
        listed.sort_by_key(|l| match l {
            Listed::Running(state) => state.id,
            Listed::Unreadable { id, .. } => *id,
        });
        Ok(listed)
    }

    /// Removes the state files and pins of instances that no longer run (their lock is not
    /// held), and the locks on exts no one holds; returns one line per instance saying what
    /// was removed (or could not be).
    pub fn sweep_dead(&self) -> Vec<String> {
        let mut found: BTreeMap<InstanceId, Remains> = BTreeMap::new();
        let listed = [".json", ".tmp", ".lock"]
            .iter()
            .map(|suffix| entries(&self.state_dir, suffix))
            .chain([entries(&self.pin_root, "")]);
        let mut lines = Vec::new();
        for listing in listed {
            match listing {
                Ok(entries) => {
                    for (id, path) in entries {
                        let remains = found.entry(id).or_default();
                        if path.starts_with(&self.pin_root) {
                            remains.pins = Some(path);
                        } else if path.extension().is_some_and(|e| e != "lock") {
                            remains.files.push(path);
                        }
                    }
                }
                Err(e) => lines.push(e.to_string()),
            }
        }
        for (id, remains) in found {
            let path = self.lock_of(id);
            if !path.exists() && self.running(id) {
                continue;
            }
            match in_dirs(&[&self.state_dir], || Lock::try_take(&path)) {
                // Removed with what it guarded, once that is gone.
                Ok(Some(_dead)) => lines.extend(remove_remains(id, &remains)),
                Ok(None) => {}
                Err(e) => lines.push(format!("locking {}: {e}", path.display())),
            }
        }
        let ext_locks = self.state_dir.join(EXT_LOCKS);
        if let Ok(listing) = fs::read_dir(&ext_locks) {
            for entry in listing.flatten() {
                // Taken and dropped (which removes it) when its holder is gone.
                let _ = Lock::try_take(&entry.path());
            }
        }
        self.remove_empty_dirs();
        lines
    }

    /// Removes the directories if nothing is left in them (another instance may have just
    /// put something there: then they stay).
    fn remove_empty_dirs(&self) {
        for dir in [
            &self.state_dir.join(EXT_LOCKS),
            &self.state_dir,
            &self.pin_root,
        ] {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Whether the process `pid` of an instance of an earlier l3mp is alive: it exists and is not
/// a zombie (killed, not yet reaped, its resources already gone).
fn earlier_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state letter follows the command name, which is in parentheses and may itself
        // contain spaces and parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        !matches!(state, Some('Z' | 'X') | None)
    })
}

/// Removes what instance `id` left and says what it was; `None` when it left nothing but its
/// lock.
fn remove_remains(id: InstanceId, remains: &Remains) -> Option<String> {
    if remains.files.is_empty() && remains.pins.is_none() {
        return None;
    }
    let ext = remains
        .files
        .iter()
        .find_map(|f| fs::read_to_string(f).ok())
        .and_then(|text| State::from_json(&text).ok())
        .map(|s| format!(" on {}", s.ext))
        .unwrap_or_default();
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for file in &remains.files {
        match fs::remove_file(file) {
            Ok(()) => removed.push(file.display().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => failed.push(format!("{}: {e}", file.display())),
        }
    }
    if let Some(pins) = &remains.pins {
        match fs::remove_dir_all(pins) {
            Ok(()) => removed.push(format!("{} (its pinned counters)", pins.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => failed.push(format!("{}: {e}", pins.display())),
        }
    }
    let mut line = format!("l3mp {id}{ext} is no longer running: removed ");
    if removed.is_empty() {
        line += "nothing";
    } else {
        line += &removed.join(" and ");
    }
    if !failed.is_empty() {
        line += &format!("; could not remove {}", failed.join(", "));
    }
    Some(line)
}

/// The entries of `dir` named `<id><suffix>`, with their paths; none if `dir` does not exist.
fn entries(dir: &Path, suffix: &str) -> Result<Vec<(InstanceId, PathBuf)>, Error> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::new(format!("reading {}: {e}", dir.display()))),
    };
    Ok(listing
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let id = InstanceId::parse(name.strip_suffix(suffix)?)?;
            Some((id, entry.path()))
        })
        .collect())
}

/// Runs `make` (which creates something in the last of `dirs`) after creating `dirs`; again
/// if one was removed in between by a stopping instance that found it empty.
fn in_dirs<T>(dirs: &[&Path], mut make: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    const ATTEMPTS: usize = 3;
    let create = || dirs.iter().try_for_each(fs::create_dir_all);
    for _ in 1..ATTEMPTS {
        create()?;
        match make() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            done => return done,
        }
    }
    create()?;
    make()
}

/// Where an instance's maps are pinned: programs loaded again for it find them there and keep
/// what they hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pins {
    pub counters: PathBuf,
    pub probes: PathBuf,
}

/// An instance's id, its lock, its state file and its pin directory, removed when dropped.
pub struct Published {
    id: InstanceId,
    state_file: PathBuf,
    pins: PathBuf,
    registry: Registry,
    /// Released last, once the rest is gone.
    lock: Option<Lock>,
}

impl Published {
    /// The instance's id.
    pub fn id(&self) -> InstanceId {
        self.id
    }

    /// Where the counters map is pinned.
    pub fn counters(&self) -> PathBuf {
        self.pins.join(COUNTERS_MAP)
    }

    /// Where the far end's probes map is pinned.
    pub fn probes(&self) -> PathBuf {
        self.pins.join(PROBES_MAP)
    }

    /// Where each pinned map is.
    pub fn pins(&self) -> Pins {
        Pins {
            counters: self.counters(),
            probes: self.probes(),
        }
    }

    /// Writes (or replaces) the state file; a reader sees the old or the new one, whole.
    pub fn write(&self, state: &State) -> Result<(), Error> {
        let partial = self.state_file.with_extension("tmp");
        in_dirs(&[&self.registry.state_dir], || {
            fs::write(&partial, state.to_json())?;
            fs::rename(&partial, &self.state_file)
        })
        .map_err(|e| Error::new(format!("writing {}: {e}", self.state_file.display())))
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.state_file) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("could not remove {}: {e}", self.state_file.display());
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.pins) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("could not remove {}: {e}", self.pins.display());
            }
        }
        self.lock.take();
        self.registry.remove_empty_dirs();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::Unknown;
    use crate::run::datapath::IngressMode;

    /// A registry in a fresh directory of its own under the system's temporary directory.
    fn scratch(test: &str) -> (PathBuf, Registry) {
        let root = std::env::temp_dir().join(format!("l3mp-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("scratch directory");
        let registry = Registry::at(root.join("run"), root.join("bpf/l3mp"));
        (root, registry)
    }

    fn state(id: InstanceId, counters: PathBuf) -> State {
        State {
            id,
            pid: id.pid,
            netns: 1,
            ext: "wg0".into(),
            ext_ifindex: 3,
            ingress: IngressMode::Tc,
            label_bits: 4,
            unknown: Unknown::Pass,
            counters,
            probes: None,
            probe: None,
            links: Vec::new(),
            loaded: None,
        }
    }

    /// A pid no process has: above the kernel's largest (2^22).
    const DEAD: u32 = 4_000_000_000;

    #[test]
    fn published_state_is_listed_and_removed_on_drop() {
        let (root, registry) = scratch("publish");
        let published = registry.publish().expect("publish");
        let id = published.id();
        assert_eq!(id.pid, std::process::id());
        let counters = published.counters();
        assert!(counters.starts_with(root.join("bpf/l3mp")));
        fs::write(&counters, "pin").expect("a stand-in for the pinned map");
        published
            .write(&state(id, counters.clone()))
            .expect("write");
        let live = registry.live().expect("list");
        assert_eq!(live, vec![Listed::Running(state(id, counters))]);
        assert!(registry.running(id));
        // A second instance of the process gets an id of its own.
        let second = registry.publish().expect("publish again");
        assert_eq!((second.id().pid, second.id().serial), (id.pid, 1));
        drop(second);
        drop(published);
        assert!(!registry.running(id));
        assert!(registry.live().expect("list").is_empty());
        assert!(
            !root.join("run").exists(),
            "the empty state directory stays"
        );
        assert!(!root.join("bpf/l3mp").exists(), "the empty pin root stays");
        fs::remove_dir_all(root).expect("clean up");
    }

    #[test]
    fn what_dead_instances_left_is_swept_and_named() {
        let (root, registry) = scratch("sweep");
        let dead = InstanceId {
            pid: DEAD,
            serial: 0,
        };
        let kept = registry.publish().expect("publish");
        let alive = kept.id();
        kept.write(&state(alive, kept.counters())).expect("write");
        let run = root.join("run");
        fs::write(
            run.join(format!("{dead}.json")),
            state(dead, PathBuf::new()).to_json(),
        )
        .expect("a dead instance's state file");
        fs::write(run.join(format!("{dead}.tmp")), "half").expect("a half-written one");
        fs::write(run.join(format!("{dead}.lock")), "pid=1 pidns=1").expect("its lock");
        let pins = root.join(format!("bpf/l3mp/{dead}"));
        fs::create_dir_all(&pins).expect("its pin directory");
        fs::write(pins.join("counters"), "pin").expect("its pin");
        fs::write(run.join("notes.txt"), "not ours").expect("a foreign file");

        let lines = registry.sweep_dead();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(
            line.starts_with(&format!(
                "l3mp {DEAD} on wg0 is no longer running: removed "
            )),
            "{line}"
        );
        for gone in [format!("{dead}.json"), format!("{dead}.tmp")] {
            assert!(line.contains(&gone), "{line}");
            assert!(!run.join(gone).exists());
        }
        assert!(!run.join(format!("{dead}.lock")).exists());
        assert!(line.contains("(its pinned counters)"), "{line}");
        assert!(!pins.exists());
        assert!(run.join("notes.txt").exists(), "a foreign file was removed");
        assert_eq!(registry.live().expect("list").len(), 1, "the live one went");
        assert!(registry.sweep_dead().is_empty(), "nothing left to sweep");
        drop(kept);
        fs::remove_dir_all(root).expect("clean up");
    }

    /// An instance in another PID namespace has a pid that means nothing (or another
    /// process) here: what it published stays as long as it holds its lock.
    #[test]
    fn an_instance_is_judged_by_its_lock_not_its_pid() {
        let (root, registry) = scratch("pidns");
        let elsewhere = InstanceId {
            pid: DEAD,
            serial: 0,
        };
        fs::create_dir_all(root.join("run")).expect("state directory");
        let lock = Lock::try_take(&registry.lock_of(elsewhere))
            .expect("lock")
            .expect("free");
        let file = root.join(format!("run/{elsewhere}.json"));
        fs::write(&file, state(elsewhere, PathBuf::new()).to_json()).expect("its state");
        assert!(registry.sweep_dead().is_empty());
        assert!(file.exists(), "a running instance's state file was swept");
        assert_eq!(
            registry.live().expect("list"),
            vec![Listed::Running(state(elsewhere, PathBuf::new()))]
        );
        drop(lock);
        assert_eq!(registry.sweep_dead().len(), 1);
        assert!(!file.exists());
        fs::remove_dir_all(root).expect("clean up");
    }

    /// An earlier l3mp, still running after an upgrade, took no lock: its state file is
    /// judged by its process, as that l3mp did.
    #[test]
    fn an_earlier_instance_without_a_lock_is_judged_by_its_process() {
        let (root, registry) = scratch("earlier");
        fs::create_dir_all(root.join("run")).expect("state directory");
        let running = InstanceId {
            pid: std::process::id(),
            serial: 5,
        };
        let dead = InstanceId {
            pid: DEAD,
            serial: 0,
        };
        for id in [running, dead] {
            let file = root.join(format!("run/{id}.json"));
            fs::write(file, state(id, PathBuf::new()).to_json()).expect("its state");
        }
        let lines = registry.sweep_dead();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with(&format!("l3mp {DEAD} ")), "{lines:?}");
        assert_eq!(
            registry.live().expect("list"),
            vec![Listed::Running(state(running, PathBuf::new()))]
        );
        assert!(!root.join(format!("run/{running}.lock")).exists());
        fs::remove_dir_all(root).expect("clean up");
    }

    #[test]
    fn an_unreadable_state_file_is_listed_with_the_reason() {
        let (root, registry) = scratch("unreadable");
        let good = registry.publish().expect("publish");
        good.write(&state(good.id(), good.counters()))
            .expect("write");
        let bad = registry.publish().expect("publish");
        fs::write(root.join(format!("run/{}.json", bad.id())), "{\"id\": 1}").expect("bad");
        let listed = registry.live().expect("list");
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert_eq!(
            listed[0],
            Listed::Running(state(good.id(), good.counters()))
        );
        match &listed[1] {
            Listed::Unreadable { id, path, reason } => {
                assert_eq!(*id, bad.id());
                assert!(path.ends_with(format!("{}.json", bad.id())));
                assert!(reason.contains("invalid type"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        drop((good, bad));
        fs::remove_dir_all(root).expect("clean up");
    }

    #[test]
    fn ext_claims_exclude_each_other_until_dropped() {
        let (root, registry) = scratch("claims");
        let name = Claim::Name {
            netns: 7,
            ext: "wg0",
        };
        let first = registry.claim(name).expect("claim").expect("free");
        let again = registry.claim(name).expect("claim");
        assert_eq!(
            again.expect_err("held"),
            format!("l3mp (pid {})", std::process::id())
        );
        // Another namespace, another name, a device: all claims of their own.
        let others = [
            Claim::Name {
                netns: 8,
                ext: "wg0",
            },
            Claim::Name {
                netns: 7,
                ext: "wg1",
            },
            Claim::Device {
                netns: 7,
                ifindex: 3,
            },
        ];
        let held: Vec<Lock> = others
            .iter()
            .map(|&c| registry.claim(c).expect("claim").expect("free"))
            .collect();
        drop(first);
        let back = registry
            .claim(name)
            .expect("claim")
            .expect("free once dropped");
        drop((back, held));
        assert!(registry.sweep_dead().is_empty());
        assert!(!root.join("run").exists(), "lock files stay");
        fs::remove_dir_all(root).expect("clean up");
    }

    #[test]
    fn a_stale_pin_directory_of_the_same_id_is_replaced() {
        let (root, registry) = scratch("stale");
        let id = InstanceId {
            pid: std::process::id(),
            serial: 0,
        };
        let stale = root.join(format!("bpf/l3mp/{id}"));
        fs::create_dir_all(&stale).expect("stale directory");
        fs::write(stale.join("counters"), "old").expect("stale pin");
        let published = registry.publish().expect("publish");
        assert_eq!(published.id(), id);
        assert!(!published.counters().exists(), "the old pin is still there");
        drop(published);
        fs::remove_dir_all(root).expect("clean up");
    }
}
