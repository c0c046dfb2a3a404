//! The BPF filesystem the counters are pinned in. l3mp mounts it where nothing is mounted yet
//! (systemd mounts it at boot; a bare machine or container may not have it) and leaves it
//! mounted: it is the system's, like `/sys` itself.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{statfs, BPF_FS_MAGIC};

use super::Error;

/// Where the BPF filesystem lives.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Whether a BPF filesystem is mounted at `dir`.
fn is_bpffs(dir: &Path) -> Result<bool, Error> {
    statfs(dir)
        .map(|fs| fs.filesystem_type() == BPF_FS_MAGIC)
        .map_err(|e| Error::new(format!("looking at {}: {e}", dir.display())))
}

/// Mounts a BPF filesystem at `dir` unless one is there, and says so when it does. Two
/// instances starting at once take turns (a lock on the directory), so that the second does
/// not mount a second filesystem over the first's pins.
pub fn ensure_bpffs(dir: &Path) -> Result<(), Error> {
    if is_bpffs(dir)? {
        return Ok(());
    }
    let handle =
        File::open(dir).map_err(|e| Error::new(format!("opening {}: {e}", dir.display())))?;
    let _lock = Flock::lock(handle, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::new(format!("locking {}: {e}", dir.display())))?;
    if is_bpffs(dir)? {
        return Ok(());
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("bpf"), dir, Some("bpf"), flags, Some("mode=0700")).map_err(|e| {
        Error::new(format!(
            "no BPF filesystem at {0} and mounting one failed ({e}); \
             mount it (mount -t bpf bpf {0}) or grant CAP_SYS_ADMIN",
            dir.display()
        ))
    })?;
    // Under `ip netns exec` (or any private mount namespace) the mount is seen there alone
    // and goes with the namespace; in the system's, it outlives l3mp.
    let shared = same_mount_namespace_as_init();
    log::info!(
        "mounted the BPF filesystem at {} (nothing was mounted there) for the pinned counters, {}",
        dir.display(),
        if shared {
            "in the system's mount namespace, where it stays mounted"
        } else {
            "in a mount namespace of this process's own (as under ip netns exec), which alone \
             sees it"
        }
    );
    Ok(())
}

/// Whether this process shares the mount namespace of pid 1 (the system's).
fn same_mount_namespace_as_init() -> bool {
    use std::os::unix::fs::MetadataExt;
    let ns = |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/mnt")).map(|m| m.ino());
    matches!((ns("self"), ns("1")), (Ok(a), Ok(b)) if a == b)
}
