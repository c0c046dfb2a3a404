//! Named network namespaces, compatible with `ip netns`, without running `ip`.
//!
//! A namespace is kept alive by a bind mount of its nsfs file on
//! `/run/netns/<name>`, exactly as `ip netns add` does, so `ip netns exec`
//! and friends see the namespaces made here and the other way round.

use std::{
    fs::{self, File},
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::fs::{DirBuilderExt, OpenOptionsExt},
    },
    panic,
    path::{Path, PathBuf},
    sync::Mutex,
    thread,
};

use nix::{
    errno::Errno,
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
    sys::statfs::{fstatfs, NSFS_MAGIC},
};

use crate::sys::{
    error::{IoContext, NixContext},
    netlink::Netlink,
    SysError,
};

/// Where `ip netns` keeps its namespace files.
const NETNS_RUN_DIR: &str = "/run/netns";
/// Serialises the preparation of [`NETNS_RUN_DIR`] within this process.
static RUN_DIR_LOCK: Mutex<()> = Mutex::new(());

/// A named network namespace.
///
/// One made by [`NetNs::create`] is owned: it is deleted when the value is
/// dropped. One found by [`NetNs::open`] is left alone on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    path: PathBuf,
    file: File,
    owned: bool,
}

impl NetNs {
    /// Creates the namespace `name`, like `ip netns add name`.
    pub fn create(name: &str) -> Result<NetNs, SysError> {
        let path = namespace_path(name)?;
        prepare_run_dir()?;
        File::options()
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&path)
            .context_with(|| format!("creating network namespace file {}", path.display()))?;
        if let Err(error) = bind_new_namespace(&path) {
            if let Err(cleanup) = fs::remove_file(&path) {
                log::warn!("could not remove {}: {cleanup}", path.display());
            }
            return Err(error);
        }
        let mut netns = Self::open_path(name, path)?;
        netns.owned = true;
        Ok(netns)
    }

    /// Opens the existing namespace `name` (a file in `/run/netns`).
    pub fn open(name: &str) -> Result<NetNs, SysError> {
        Self::open_path(name, namespace_path(name)?)
    }

    /// The network namespace of process `pid` (`/proc/<pid>/ns/net`), named `pid <pid>`.
    pub fn of_process(pid: u32) -> Result<NetNs, SysError> {
        Self::open_path(
            &format!("pid {pid}"),
            PathBuf::from(format!("/proc/{pid}/ns/net")),
        )
    }

    /// The calling thread's network namespace, named `current`.
    pub fn of_current_thread() -> Result<NetNs, SysError> {
        Self::open_path("current", PathBuf::from("/proc/thread-self/ns/net"))
    }

    /// The names of the named namespaces (`ip netns list`), in no particular order.
    pub fn names() -> Result<Vec<String>, SysError> {
        let listing = match fs::read_dir(NETNS_RUN_DIR) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            listing => listing.context_with(|| format!("reading {NETNS_RUN_DIR}"))?,
        };
        Ok(listing
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect())
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's inode number, which tells namespaces apart (what `ip netns identify`
    /// and `lsns` compare).
    pub fn inode(&self) -> Result<u64, SysError> {
        let status = nix::sys::stat::fstat(self.file.as_raw_fd())
            .context_with(|| format!("reading network namespace {:?}", self.name))?;
        Ok(status.st_ino)
    }

    /// Deletes the namespace, like `ip netns delete`: unmounts and removes
    /// its file. It disappears once no process, socket or device keeps it.
    pub fn delete(mut self) -> Result<(), SysError> {
        self.owned = false;
        remove_namespace(&self.path)
    }

    /// Runs `f` in a new thread that has entered this namespace, waits for
    /// it and returns its result. Sockets, netlink handles and devices that
    /// `f` creates belong to this namespace. A panic in `f` is passed on.
    pub fn run<F, T>(&self, f: F) -> Result<T, SysError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        thread::scope(|scope| {
            let worker = thread::Builder::new()
                .name(format!("netns {}", self.name))
                .spawn_scoped(scope, || {
                    self.enter_current_thread()?;
                    Ok(f())
                })
                .context_with(|| {
                    format!("starting a thread for network namespace {:?}", self.name)
                })?;
            worker
                .join()
                .unwrap_or_else(|panic| panic::resume_unwind(panic))
        })
    }

    /// Moves the calling thread into this namespace (for long-lived
    /// threads; the rest of the process stays where it is).
    pub fn enter_current_thread(&self) -> Result<(), SysError> {
        setns(&self.file, CloneFlags::CLONE_NEWNET)
            .context_with(|| format!("entering network namespace {:?}", self.name))
    }

    /// Brings the loopback interface `lo` of this namespace up.
    pub fn bring_up_loopback(&self) -> Result<(), SysError> {
        self.run(|| {
            let netlink = Netlink::new()?;
            let lo = netlink.link("lo")?.ok_or_else(|| {
                SysError::other(
                    format!("bringing up lo in {:?}", self.name),
                    "there is no lo",
                )
            })?;
            netlink.set_up(lo.index)
        })?
    }

    fn open_path(name: &str, path: PathBuf) -> Result<NetNs, SysError> {
        let context = || format!("opening network namespace {name:?}");
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .context_with(context)?;
        if fstatfs(&file).context_with(context)?.filesystem_type() != NSFS_MAGIC {
            return Err(SysError::other(
                context(),
                format!("{} is not a namespace", path.display()),
            ));
        }
        Ok(NetNs {
            name: name.to_string(),
            path,
            file,
            owned: false,
        })
    }
}

impl AsFd for NetNs {
    /// The namespace's file descriptor (for `setns` or `IFLA_NET_NS_FD`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if self.owned {
            if let Err(error) = remove_namespace(&self.path) {
                log::warn!("{error}");
            }
        }
    }
}

/// `/run/netns/<name>`, if `name` is a plain file name.
fn namespace_path(name: &str) -> Result<PathBuf, SysError> {
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && name.len() <= 255;
    if !valid {
        return Err(SysError::other(
            format!("naming network namespace {name:?}"),
            "the name must be a non-empty file name without '/' or NUL",
        ));
    }
    Ok(Path::new(NETNS_RUN_DIR).join(name))
}

/// Makes sure `/run/netns` exists and, like `ip netns`, is a shared mount
/// point so that namespace mounts propagate between mount namespaces. If it
/// cannot be made shared, a plain directory is used (with a warning).
fn prepare_run_dir() -> Result<(), SysError> {
    let _guard = RUN_DIR_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(NETNS_RUN_DIR)
        .context_with(|| format!("creating {NETNS_RUN_DIR}"))?;
    if let Err(error) = make_run_dir_shared() {
        log::warn!("{error}; namespaces will still work, without mount propagation");
    }
    Ok(())
}

fn make_run_dir_shared() -> Result<(), SysError> {
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    let context = || format!("making {NETNS_RUN_DIR} a shared mount");
    match mount(
        None::<&str>,
        NETNS_RUN_DIR,
        Some("none"),
        shared,
        None::<&str>,
    ) {
        // Not a mount point yet: bind-mount it onto itself, then retry.
        Err(Errno::EINVAL) => {
            let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                Some("none"),
                bind,
                None::<&str>,
            )
            .context_with(context)?;
            mount(
                None::<&str>,
                NETNS_RUN_DIR,
                Some("none"),
                shared,
                None::<&str>,
            )
            .context_with(context)
        }
        other => other.context_with(context),
    }
}

/// In a throw-away thread: unshares a new network namespace and binds it
/// onto `path`, which keeps it alive after the thread ends.
fn bind_new_namespace(path: &Path) -> Result<(), SysError> {
    let context = || format!("creating network namespace {}", path.display());
    thread::scope(|scope| {
        let worker = thread::Builder::new()
            .name("netns create".to_string())
            .spawn_scoped(scope, || -> nix::Result<()> {
                unshare(CloneFlags::CLONE_NEWNET)?;
                let flags = MsFlags::MS_BIND;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    Some("none"),
                    flags,
                    None::<&str>,
                )
            })
            .context_with(context)?;
        let outcome = worker
            .join()
            .unwrap_or_else(|panic| panic::resume_unwind(panic));
        outcome.context_with(context)
    })
}

/// Unmounts (lazily) and removes a namespace file.
fn remove_namespace(path: &Path) -> Result<(), SysError> {
    let context = || format!("deleting network namespace {}", path.display());
    match umount2(path, MntFlags::MNT_DETACH) {
        // Not mounted (already unmounted or never bound): just remove it.
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(errno) => return Err(errno).context_with(context),
    }
    match fs::remove_file(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        removed => removed.context_with(context),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::sys::test_support::{privileged, test_namespace};

    #[test]
    fn unusable_names_are_refused() {
        for name in ["", ".", "..", "a/b", "a\0b"] {
            assert!(namespace_path(name).is_err(), "{name:?}");
        }
        let path = namespace_path("blue").expect("valid name");
        assert_eq!(path, Path::new("/run/netns/blue"));
    }

    #[test]
    fn created_namespace_is_separate_and_removed_on_drop() {
        if !privileged("created_namespace_is_separate_and_removed_on_drop") {
            return;
        }
        let netns = test_namespace("drop");
        let path = Path::new(NETNS_RUN_DIR).join(netns.name());
        assert!(path.exists());
        let reopened = NetNs::open(netns.name()).expect("open the namespace by name");
        let names = NetNs::names().expect("list the namespaces");
        assert!(names.iter().any(|n| n == netns.name()), "{names:?}");
        let inode =
            |fd: BorrowedFd<'_>| nix::sys::stat::fstat(fd.as_raw_fd()).expect("fstat").st_ino;
        assert_eq!(inode(reopened.as_fd()), inode(netns.as_fd()));
        let own = File::open("/proc/thread-self/ns/net").expect("own namespace");
        assert_ne!(inode(own.as_fd()), inode(netns.as_fd()));
        let inside = netns
            .run(|| File::open("/proc/thread-self/ns/net").map(|file| inode(file.as_fd())))
            .expect("enter the namespace")
            .expect("read the namespace inside");
        assert_eq!(inside, inode(netns.as_fd()));
        assert_eq!(reopened.inode().expect("inode"), inode(netns.as_fd()));
        let current = NetNs::of_current_thread().expect("own namespace");
        let process = NetNs::of_process(std::process::id()).expect("the process's namespace");
        assert_eq!(current.inode().expect("inode"), inode(own.as_fd()));
        assert_eq!(process.inode().expect("inode"), inode(own.as_fd()));
        drop(reopened);
        drop(netns);
        assert!(!path.exists(), "{} left behind", path.display());
    }

    #[test]
    fn loopback_comes_up_and_links_are_private() {
        if !privileged("loopback_comes_up_and_links_are_private") {
            return;
        }
        let netns = test_namespace("lo");
        netns.bring_up_loopback().expect("bring lo up");
        let links = netns
            .run(|| Netlink::new()?.links())
            .expect("enter")
            .expect("list links");
        let names: Vec<&str> = links.iter().map(|link| link.name.as_str()).collect();
        assert_eq!(names, vec!["lo"], "a new namespace holds only lo");
        assert!(links[0].up, "lo should be up");
    }

    #[test]
    fn explicit_delete_removes_the_file_and_open_fails_after() {
        if !privileged("explicit_delete_removes_the_file_and_open_fails_after") {
            return;
        }
        let netns = test_namespace("del");
        let name = netns.name().to_string();
        netns.delete().expect("delete");
        let error = NetNs::open(&name).expect_err("the namespace is gone");
        assert_eq!(error.errno(), Some(libc::ENOENT), "{error}");
        assert!(
            NetNs::create(&name).and_then(NetNs::delete).is_ok(),
            "the name is free again"
        );
    }
}
