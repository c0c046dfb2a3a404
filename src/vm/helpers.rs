//! Mocked kernel helpers. rbpf helpers are plain `fn`s, so the state they act on (the arena, the
//! DEVMAP contents, the redirect they record) lives in a thread-local set up for each run.

use std::cell::RefCell;
use std::rc::Rc;

use crate::programs::layout::*;
use crate::programs::Hook;

use super::memory::{COUNTERS_AT, CTX_AT, PACKET_AT, PEERS_AT, PROBES_AT};

/// Every mocked helper, by the helper it stands for.
pub const ALL: [(l3mp_asm::Helper, rbpf::ebpf::Helper); 6] = [
    (l3mp_asm::Helper::MapLookupElem, map_lookup_elem),
    (l3mp_asm::Helper::Redirect, redirect),
    (l3mp_asm::Helper::RedirectMap, redirect_map),
    (l3mp_asm::Helper::SkbChangeHead, skb_change_head),
    (l3mp_asm::Helper::XdpAdjustHead, xdp_adjust_head),
    (l3mp_asm::Helper::KtimeGetNs, ktime_get_ns),
];

/// Map "addresses" patched into the programs' map loads; the helpers recognise them.
pub const COUNTERS_ID: i64 = 1;
pub const LINKS_ID: i64 = 2;
pub const PEERS_ID: i64 = 3;
pub const PROBES_ID: i64 = 4;

/// What the mocked `bpf_ktime_get_ns` returns: the VM's clock stands still.
pub const VM_NOW_NS: u64 = 1_000_000_007;

/// Where a program redirected the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// The device it goes to (for a DEVMAP redirect, the entry's ifindex).
    pub ifindex: u32,
    /// The flags of the call: 0 from every program l3mp generates (out of the device, never
    /// `BPF_F_INGRESS`), and 0 for an XDP redirect.
    pub flags: u64,
}

/// DEVMAP contents: label → ifindex (labels are at most 6 bits).
#[derive(Clone, Copy, Debug)]
pub struct Devmap([Option<u32>; 64]);

impl Default for Devmap {
    fn default() -> Devmap {
        Devmap([None; 64])
    }
}

impl Devmap {
    pub fn insert(&mut self, label: u32, ifindex: u32) {
        self.0[label as usize] = Some(ifindex);
    }

    fn get(&self, key: u32) -> Option<u32> {
        self.0.get(key as usize).copied().flatten()
    }
}

/// What the helpers of one run see and record.
pub struct RunState {
    pub hook: Hook,
    /// Address of the arena's first byte.
    pub arena: u64,
    /// The machine's DEVMAP (shared, not copied for every run).
    pub devmap: Rc<Devmap>,
    /// Entries of the `peers` array, which lives in the arena at `PEERS_AT`.
    pub peers: u32,
    pub redirect: Option<Redirect>,
    /// A bit for each counter slot the program looked up.
    pub counters_looked_up: [u64; 3],
    /// A bit for each `probes` entry the program looked up.
    pub probes_looked_up: u64,
}

const _: () = assert!(
    COUNTER_SLOTS <= 3 * 64,
    "counters_looked_up has a bit per slot"
);
const _: () = assert!(PROBE_SLOTS <= 64, "probes_looked_up has a bit per entry");

thread_local! {
    pub static STATE: RefCell<Option<RunState>> = const { RefCell::new(None) };
}

fn with<T>(f: impl FnOnce(&mut RunState) -> T) -> T {
    STATE.with(|s| {
        f(s.borrow_mut()
            .as_mut()
            .expect("helper called outside a VM run"))
    })
}

const EINVAL: u64 = (-22i64) as u64;
const BPF_F_INGRESS: u64 = 1;

/// `bpf_map_lookup_elem(map, key)`: the counters slot, the `peers` or the `probes` entry, or
/// NULL.
pub fn map_lookup_elem(map: u64, key: u64, _: u64, _: u64, _: u64) -> u64 {
    // SAFETY: the verifier-checked program passes a pointer to its 4-byte stack key.
    let index = unsafe { (key as *const u32).read_unaligned() };
    with(|s| match map as i64 {
        COUNTERS_ID if index < COUNTER_SLOTS => {
            s.counters_looked_up[index as usize / 64] |= 1 << (index % 64);
            s.arena + COUNTERS_AT as u64 + u64::from(index * COUNTER_SIZE)
        }
        PEERS_ID if index < s.peers => s.arena + PEERS_AT as u64 + u64::from(index * 4),
        PROBES_ID if index < PROBE_SLOTS => {
            s.probes_looked_up |= 1 << index;
            s.arena + PROBES_AT as u64 + u64::from(index * PROBE_SIZE)
        }
        _ => 0,
    })
}

/// `bpf_ktime_get_ns()`: [`VM_NOW_NS`].
pub fn ktime_get_ns(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    VM_NOW_NS
}

/// `bpf_redirect(ifindex, flags)` from TC: like the kernel's, it drops the packet when `flags`
/// has any bit other than `BPF_F_INGRESS`.
pub fn redirect(ifindex: u64, flags: u64, _: u64, _: u64, _: u64) -> u64 {
    if flags & !BPF_F_INGRESS != 0 {
        return TC_ACT_SHOT as u64;
    }
    with(|s| {
        s.redirect = Some(Redirect {
            ifindex: ifindex as u32,
            flags,
        })
    });
    TC_ACT_REDIRECT as u64
}

/// `bpf_redirect_map(devmap, key, flags)` from XDP: the low bits of flags are the verdict when
/// the key has no entry.
pub fn redirect_map(map: u64, key: u64, flags: u64, _: u64, _: u64) -> u64 {
    with(|s| match s.devmap.get(key as u32) {
        Some(ifindex) if map as i64 == LINKS_ID => {
            s.redirect = Some(Redirect { ifindex, flags: 0 });
            XDP_REDIRECT as u64
        }
        _ => flags & 3,
    })
}

/// Moves the context's `data` pointer by `delta` (negative grows the packet at the head),
/// keeping it inside the buffer; returns false when it cannot.
fn move_data(s: &RunState, ctx: u64, delta: i64, min_len: u64) -> bool {
    let (data_off, end_off) = match s.hook {
        Hook::Tc => (SKB_DATA, SKB_DATA_END),
        Hook::Xdp => (XDP_DATA, XDP_DATA_END),
    };
    let field = |off: i16| (ctx + off as u64) as *mut u32;
    // SAFETY: ctx is the context in the arena, which the run set up; fields are 4-byte aligned.
    let (data, end) = unsafe { (field(data_off).read(), field(end_off).read()) };
    let new = i64::from(data) + delta;
    let floor = (s.arena + PACKET_AT as u64) as i64;
    if new < floor || new + min_len as i64 > i64::from(end) {
        return false;
    }
    // SAFETY: as above.
    unsafe { field(data_off).write(new as u32) };
    true
}

/// `bpf_skb_change_head(skb, len, flags)`: grows the packet by `len` zeroed bytes at its head.
pub fn skb_change_head(skb: u64, len: u64, flags: u64, _: u64, _: u64) -> u64 {
    with(|s| {
        if flags != 0 || skb != s.arena + CTX_AT as u64 || !move_data(s, skb, -(len as i64), 0) {
            return EINVAL;
        }
        // SAFETY: move_data checked the new head is inside the packet buffer.
        unsafe {
            let data = ((skb + SKB_DATA as u64) as *const u32).read();
            std::ptr::write_bytes(data as usize as *mut u8, 0, len as usize);
            let skb_len = (skb + SKB_LEN as u64) as *mut u32;
            skb_len.write(skb_len.read() + len as u32);
        }
        0
    })
}

/// `bpf_xdp_adjust_head(xdp, delta)`: moves the head; at least an Ethernet header must remain.
pub fn xdp_adjust_head(xdp: u64, delta: u64, _: u64, _: u64, _: u64) -> u64 {
    with(|s| {
        let ok = xdp == s.arena + CTX_AT as u64
            && move_data(s, xdp, delta as i32 as i64, ETH_HLEN as u64);
        if ok {
            0
        } else {
            EINVAL
        }
    })
}
