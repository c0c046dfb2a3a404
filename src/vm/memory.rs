//! Memory the VM runs in. The kernel's contexts hold 32-bit `data`/`data_end` fields, so the
//! packet must sit below 4 GiB for a pointer loaded from them to be the real address: the arena
//! is one `mmap(MAP_32BIT)` per thread, holding the context, the counters and the packet, and the
//! programs run on their exact bytes (no rewrite of the context loads).

use std::cell::RefCell;
use std::ptr::NonNull;

use super::VmError;

/// Size of the arena: context, counters, the `peers` and `probes` arrays, and a packet buffer
/// with headroom.
pub const ARENA: usize = 192 * 1024;
/// Where the context (`__sk_buff` or `xdp_md`) lives.
pub const CTX_AT: usize = 0;
/// `sizeof(struct __sk_buff)`; an `xdp_md` is smaller.
pub const CTX_LEN: usize = 192;
/// Where the counters (one `{packets, bytes}` per slot) live.
pub const COUNTERS_AT: usize = 4096;
/// Where the `peers` array (label → hidden end's ifindex, 4 bytes per label) lives.
pub const PEERS_AT: usize = 7168;
/// Where the `probes` array (label → `{word, at_ns}`, 16 bytes per label) lives.
pub const PROBES_AT: usize = 8192;
/// Where the packet buffer starts; the packet starts `HEADROOM` bytes later.
pub const PACKET_AT: usize = 9216;
/// Room in front of the packet for a pushed Ethernet header.
pub const HEADROOM: usize = 256;
/// The largest packet the arena holds.
pub const MAX_PACKET: usize = ARENA - PACKET_AT - HEADROOM;

/// A zeroed, page-aligned arena below 4 GiB.
pub struct Arena {
    base: NonNull<u8>,
}

impl Arena {
    /// Maps a fresh arena.
    pub fn new() -> std::io::Result<Arena> {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ARENA,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(std::io::Error::last_os_error)?;
        Ok(Arena { base })
    }

    /// The address of byte `at`; it fits 32 bits.
    pub fn addr(&self, at: usize) -> u64 {
        self.base.as_ptr() as u64 + at as u64
    }

    /// The arena as bytes.
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is ARENA bytes long, readable and writable, and owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), ARENA) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), ARENA) };
    }
}

thread_local! {
    static THIS_THREAD: RefCell<Option<Arena>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's arena, mapped on first use. One arena per thread, not per
/// machine: the space below 2 GiB that `MAP_32BIT` draws from holds about ten thousand
/// arenas, fewer than the configurations a fuzzer makes machines for.
pub fn with_arena<T>(f: impl FnOnce(&mut Arena) -> Result<T, VmError>) -> Result<T, VmError> {
    THIS_THREAD.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(Arena::new().map_err(|e| VmError(format!("mmap: {e}")))?);
        }
        f(cell.as_mut().expect("arena just made"))
    })
}
