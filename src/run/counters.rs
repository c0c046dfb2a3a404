//! The per-CPU `counters` map as userspace reads it: every slot summed over CPUs, from the
//! running datapath or from the map pinned under bpffs (which is how `l3mp status` reads
//! another process's counters).

use std::path::Path;

use aya::maps::{Map, MapData, PerCpuArray, PerCpuValues};
use aya::{Ebpf, Pod};
use serde::{Deserialize, Serialize};

use crate::programs::layout::{
    COUNTERS_MAP, COUNTER_SLOTS, EGRESS, EGRESS_DROP, FOREIGN, GUARDED, GUARD_NOT_IP, PASS,
    TOO_BIG, UNKNOWN,
};

use super::Error;
use crate::sys::netlink::Sent;

/// One counter slot as the programs write it (and its sum over CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

// SAFETY: two u64 fields, no padding; any bit pattern is valid.
unsafe impl Pod for Counter {}

/// What a link sent, as the kernel counts it: what its hidden end sent is what the link
/// received.
impl From<Sent> for Counter {
    fn from(sent: Sent) -> Counter {
        Counter {
            packets: sent.packets,
            bytes: sent.bytes,
        }
    }
}

/// Every slot of the counters map, summed over CPUs, indexed by slot number
/// (see [`crate::programs::layout`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub Vec<Counter>);

impl Counters {
    /// Reads every slot of `map`. A map with fewer slots (pinned by an instance of an older
    /// l3mp, which counted less) reads as zero in the slots it lacks.
    pub fn read<T: std::borrow::Borrow<MapData>>(
        map: &PerCpuArray<T, Counter>,
    ) -> Result<Counters, Error> {
        (0..COUNTER_SLOTS.min(map.len()))
            .map(|slot| {
                let per_cpu = map.get(&slot, 0).map_err(|e| {
                    Error::new(format!("reading counter slot {slot}: {}", with_causes(&e)))
                })?;
                Ok(per_cpu.iter().fold(Counter::default(), |sum, c| Counter {
                    packets: sum.packets + c.packets,
                    bytes: sum.bytes + c.bytes,
                }))
            })
            .collect::<Result<Vec<_>, Error>>()
            .map(Counters)
    }

    /// Reads the counters map of the programs loaded in `ebpf`.
    pub fn of(ebpf: &Ebpf) -> Result<Counters, Error> {
        let map: PerCpuArray<_, Counter> = ebpf
            .map(COUNTERS_MAP)
            .ok_or_else(|| Error::new(format!("map {COUNTERS_MAP} missing from the object")))?
            .try_into()
            .map_err(|e| Error::new(format!("map {COUNTERS_MAP}: {e}")))?;
        Counters::read(&map)
    }

    /// Reads the counters map pinned at `path`.
    pub fn read_pinned(path: &Path) -> Result<Counters, Error> {
        let what = format!("reading the counters pinned at {}", path.display());
        Counters::read(&open_pinned(path, &what)?)
    }

    /// Zeroes the egress slot of the link with `label` (every CPU) in the counters map pinned
    /// at `path`: a link added by a reload counts from nothing, whatever a link that had its
    /// label before counted. (What it receives, its own new interface counts.)
    pub fn reset_link(path: &Path, label: u8) -> Result<(), Error> {
        let what = format!(
            "zeroing the counters of label {label} pinned at {}",
            path.display()
        );
        let mut map = open_pinned(path, &what)?;
        let fail = |e: &dyn std::error::Error| Error::new(format!("{what}: {}", with_causes(e)));
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| fail(&e))?;
        let zero = PerCpuValues::try_from(vec![Counter::default(); cpus]).map_err(|e| fail(&e))?;
        map.set(EGRESS + u32::from(label), zero, 0)
            .map_err(|e| fail(&e))
    }

    fn slot(&self, slot: u32) -> Counter {
        self.0.get(slot as usize).copied().unwrap_or_default()
    }

    /// What egress sent out of ext for the link with `label`.
    pub fn egress(&self, label: u8) -> Counter {
        self.slot(EGRESS + u32::from(label))
    }

    /// Ingress packets passed to ext's own stack untouched (unlabelled, not IP, VLAN-tagged,
    /// malformed).
    pub fn pass(&self) -> Counter {
        self.slot(PASS)
    }

    /// Ingress packets with a label no link uses.
    pub fn unknown(&self) -> Counter {
        self.slot(UNKNOWN)
    }

    /// Egress packets dropped (not IP, malformed or truncated).
    pub fn drop(&self) -> Counter {
        self.slot(EGRESS_DROP)
    }

    /// Packets of ext's own whose label bits the guard cleared.
    pub fn guard(&self) -> Counter {
        self.slot(GUARDED)
    }

    /// Labelled ingress frames on an Ethernet ext that were not from the peer to ext, passed
    /// to ext's own stack untouched.
    pub fn foreign(&self) -> Counter {
        self.slot(FOREIGN)
    }

    /// Packets leaving ext that the guard left alone because they are not IP (or tagged, or
    /// malformed).
    pub fn guard_not_ip(&self) -> Counter {
        self.slot(GUARD_NOT_IP)
    }

    /// Egress packets dropped because they were longer than ext's MTU (and not GSO).
    pub fn too_big(&self) -> Counter {
        self.slot(TOO_BIG)
    }
}

/// The counters map pinned at `path`; an error says `what` was being done.
fn open_pinned(path: &Path, what: &str) -> Result<PerCpuArray<MapData, Counter>, Error> {
    let fail = |e: &dyn std::error::Error| Error::new(format!("{what}: {}", with_causes(e)));
    let data = MapData::from_pin(path).map_err(|e| fail(&e))?;
    Map::from_map_data(data)
        .and_then(PerCpuArray::try_from)
        .map_err(|e| fail(&e))
}

/// An error and its causes, "a: b: c" (aya's syscall errors keep the errno in their cause).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text += &format!(": {c}");
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_named_by_what_they_count() {
        let mut slots = vec![Counter::default(); COUNTER_SLOTS as usize];
        for (i, c) in slots.iter_mut().enumerate() {
            *c = Counter {
                packets: i as u64,
                bytes: 100 * i as u64,
            };
        }
        let counters = Counters(slots);
        assert_eq!(counters.egress(3).packets, u64::from(EGRESS) + 3);
        assert_eq!(counters.pass().bytes, 100 * u64::from(PASS));
        assert_eq!(counters.unknown().packets, u64::from(UNKNOWN));
        assert_eq!(counters.drop().packets, u64::from(EGRESS_DROP));
        assert_eq!(counters.guard().packets, u64::from(GUARDED));
        assert_eq!(counters.foreign().packets, u64::from(FOREIGN));
        assert_eq!(counters.guard_not_ip().packets, u64::from(GUARD_NOT_IP));
        assert_eq!(counters.too_big().packets, u64::from(TOO_BIG));
        assert_eq!(Counters::default().guard(), Counter::default());
    }
}
