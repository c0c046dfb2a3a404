//! Memory the VM runs in. The kernel's contexts hold 32-bit `data`/`data_end` fields, so the
//! packet must sit below 4 GiB for a pointer loaded from them to be the real address: the arena
//! is one mapping below 4 GiB per thread, holding the context, the counters and the packet, and
//! the programs run on their exact bytes (no rewrite of the context loads). On x86_64 the
//! kernel places it there (`MAP_32BIT`); elsewhere (arm64 has no such flag) it is asked for at
//! low addresses one after another until one is free.

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
        #[cfg(target_arch = "x86_64")]
        let base = map_32bit()?;
        #[cfg(not(target_arch = "x86_64"))]
        let base = map_low()?;
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

/// An anonymous private read-write mapping of [`ARENA`] bytes with `flags`, at `hint` if the
/// kernel takes it.
fn map(hint: usize, flags: libc::c_int) -> std::io::Result<NonNull<u8>> {
    // SAFETY: an anonymous private mapping; the address is a hint or, with
    // MAP_FIXED_NOREPLACE, taken only if nothing is mapped there. The result is checked.
    let p = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            ARENA,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(std::io::Error::last_os_error)
}

/// An arena the kernel places in the low 2 GiB (x86_64's `MAP_32BIT`).
#[cfg(target_arch = "x86_64")]
fn map_32bit() -> std::io::Result<NonNull<u8>> {
    map(0, libc::MAP_32BIT)
}

/// An arena below 4 GiB without `MAP_32BIT`: the first free place among low addresses, from
/// 256 MiB up in 16 MiB steps. `MAP_FIXED_NOREPLACE` never replaces a mapping; a kernel older
/// than 4.17 takes it for a hint, so a place elsewhere is given back and the next one tried.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn map_low() -> std::io::Result<NonNull<u8>> {
    const LOW: u64 = 1 << 32;
    for hint in (0x1000_0000..LOW - ARENA as u64).step_by(0x100_0000) {
        let base = match map(hint as usize, libc::MAP_FIXED_NOREPLACE) {
            Ok(base) => base,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        };
        if base.as_ptr() as u64 + ARENA as u64 <= LOW {
            return Ok(base);
        }
        // SAFETY: unmapping exactly the mapping just made.
        unsafe { libc::munmap(base.as_ptr().cast(), ARENA) };
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::OutOfMemory,
        "no free place below 4 GiB for the VM's arena",
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The way arm64 maps its arenas, tried here too: below 4 GiB, readable and writable, and
    /// a second one elsewhere.
    #[test]
    fn arenas_mapped_without_map_32bit_are_below_4_gib() {
        let (a, b) = (map_low().expect("an arena"), map_low().expect("another"));
        for base in [a, b] {
            assert!(base.as_ptr() as u64 + ARENA as u64 <= 1 << 32, "{base:p}");
            let mut arena = Arena { base };
            arena.bytes()[ARENA - 1] = 0x5a;
            assert_eq!(arena.bytes()[ARENA - 1], 0x5a);
        }
        assert_ne!(a, b);
    }
}
