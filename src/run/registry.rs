//! Where running instances publish themselves for `l3mp status`: a state file
//! `/run/l3mp/<id>.json` and a pin directory `/sys/fs/bpf/l3mp/<id>/` holding the counters map.
//! An instance removes both when it stops; what a killed one left is removed by the next start
//! or `status`, which say so.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::programs::layout::COUNTERS_MAP;

use super::bpffs::BPFFS;
use super::naming::alive;
use super::state::{InstanceId, State};
use super::Error;

/// Where the state files are.
const STATE_DIR: &str = "/run/l3mp";

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

    /// Creates the pin directory of `id` (a stale one of a dead process that had the same pid
    /// is removed first). The state file is written with [`Published::write`]; both go when
    /// the [`Published`] is dropped.
    pub fn publish(&self, id: InstanceId) -> Result<Published, Error> {
        let pins = self.pin_root.join(id.to_string());
        if pins.exists() {
            fs::remove_dir_all(&pins)
                .map_err(|e| Error::new(format!("removing the stale {}: {e}", pins.display())))?;
            log::info!(
                "removed {}, left by an earlier process with pid {}",
                pins.display(),
                id.pid
            );
        }
        in_dir(&self.pin_root, || fs::create_dir(&pins))
            .map_err(|e| Error::new(format!("creating {}: {e}", pins.display())))?;
        Ok(Published {
            state_file: self.state_dir.join(format!("{id}.json")),
            pins,
            registry: self.clone(),
        })
    }

    /// Whether instance `id`'s state file is there (it is removed first when it stops).
    pub fn lists(&self, id: InstanceId) -> bool {
        self.state_dir.join(format!("{id}.json")).exists()
    }

    /// The state of every instance whose process is alive, by id.
    pub fn live(&self) -> Result<Vec<State>, Error> {
        let mut states = Vec::new();
        for (id, path) in entries(&self.state_dir, ".json")? {
            if !alive(id.pid) {
                continue;
            }
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                // It stopped since the directory was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::new(format!("reading {}: {e}", path.display()))),
            };
            let state = State::from_json(&text)
                .map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
            states.push(state);
        }
        states.sort_by_key(|s| s.id);
        Ok(states)
    }

    /// Removes the state files and pins of instances whose process is gone; returns one line
    /// per instance saying what was removed (or could not be).
    pub fn sweep_dead(&self) -> Vec<String> {
        let mut dead: BTreeMap<InstanceId, Remains> = BTreeMap::new();
        let listed = [".json", ".tmp"]
            .iter()
            .map(|suffix| entries(&self.state_dir, suffix))
            .chain([entries(&self.pin_root, "")]);
        let mut lines = Vec::new();
        for listing in listed {
            let found = match listing {
                Ok(found) => found,
                Err(e) => {
                    lines.push(e.to_string());
                    continue;
                }
            };
            for (id, path) in found.into_iter().filter(|(id, _)| !alive(id.pid)) {
                let remains = dead.entry(id).or_default();
                if path.starts_with(&self.pin_root) {
                    remains.pins = Some(path);
                } else {
                    remains.files.push(path);
                }
            }
        }
        for (id, remains) in dead {
            lines.push(remove_remains(id, &remains));
        }
        self.remove_empty_dirs();
        lines
    }

    /// Removes the two directories if nothing is left in them (another instance may have
    /// just put something there: then they stay).
    fn remove_empty_dirs(&self) {
        for dir in [&self.state_dir, &self.pin_root] {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Removes what instance `id` left and says what it was.
fn remove_remains(id: InstanceId, remains: &Remains) -> String {
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
    line
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

/// Runs `make` (which creates something in `dir`) after creating `dir`; again if `dir` was
/// removed in between by a stopping instance that found it empty.
fn in_dir<T>(dir: &Path, mut make: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    const ATTEMPTS: usize = 3;
    for _ in 1..ATTEMPTS {
        fs::create_dir_all(dir)?;
        match make() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            done => return done,
        }
    }
    fs::create_dir_all(dir)?;
    make()
}

/// An instance's state file and pin directory, removed when dropped.
pub struct Published {
    state_file: PathBuf,
    pins: PathBuf,
    registry: Registry,
}

impl Published {
    /// Where the counters map is pinned.
    pub fn counters(&self) -> PathBuf {
        self.pins.join(COUNTERS_MAP)
    }

    /// Writes (or replaces) the state file; a reader sees the old or the new one, whole.
    pub fn write(&self, state: &State) -> Result<(), Error> {
        let partial = self.state_file.with_extension("tmp");
        in_dir(&self.registry.state_dir, || {
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
            links: Vec::new(),
        }
    }

    /// A pid no process has: above the kernel's largest (2^22).
    const DEAD: u32 = 4_000_000_000;

    #[test]
    fn published_state_is_listed_and_removed_on_drop() {
        let (root, registry) = scratch("publish");
        let id = InstanceId::next();
        let published = registry.publish(id).expect("publish");
        let counters = published.counters();
        assert!(counters.starts_with(root.join("bpf/l3mp")));
        fs::write(&counters, "pin").expect("a stand-in for the pinned map");
        published
            .write(&state(id, counters.clone()))
            .expect("write");
        let live = registry.live().expect("list");
        assert_eq!(live, vec![state(id, counters)]);
        assert!(registry.lists(id));
        drop(published);
        assert!(!registry.lists(id));
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
        let alive = InstanceId::next();
        let kept = registry.publish(alive).expect("publish");
        kept.write(&state(alive, kept.counters())).expect("write");
        let run = root.join("run");
        fs::write(
            run.join(format!("{dead}.json")),
            state(dead, PathBuf::new()).to_json(),
        )
        .expect("a dead instance's state file");
        fs::write(run.join(format!("{dead}.tmp")), "half").expect("a half-written one");
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
        assert!(line.contains("(its pinned counters)"), "{line}");
        assert!(!pins.exists());
        assert!(run.join("notes.txt").exists(), "a foreign file was removed");
        assert_eq!(registry.live().expect("list").len(), 1, "the live one went");
        assert!(registry.sweep_dead().is_empty(), "nothing left to sweep");
        drop(kept);
        fs::remove_dir_all(root).expect("clean up");
    }

    #[test]
    fn a_stale_pin_directory_of_the_same_id_is_replaced() {
        let (root, registry) = scratch("stale");
        let id = InstanceId::next();
        let stale = root.join(format!("bpf/l3mp/{id}"));
        fs::create_dir_all(&stale).expect("stale directory");
        fs::write(stale.join("counters"), "old").expect("stale pin");
        let published = registry.publish(id).expect("publish");
        assert!(!published.counters().exists(), "the old pin is still there");
        drop(published);
        fs::remove_dir_all(root).expect("clean up");
    }
}
