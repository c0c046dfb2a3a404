//! The far-end check: both ends of a link must use the same label and label width, or what
//! one sends on a link arrives on another link at the other end (or nowhere). Once a second
//! `run` sends a probe on each link that has carrier: an IPv6 UDP datagram from the link's
//! link-local address to `ff02::1` port 19507, payload the magic `l3mprobe` and one word (this
//! end's label, its label bits, a sequence number). It leaves through the link's egress program
//! like anything the link sends, labelled. The far end's demux counts it on the link of the
//! label it read and records the word and its arrival time in the `probes` map under that
//! label, and drops it: no socket ever receives it. A probe that arrives with a label no link
//! uses is an `unknown` packet like any other.
//!
//! Each end compares what arrived on each of its links with the link's own label and the
//! label bits: the same is a far end seen; another label or width is a mismatch; nothing for
//! [`STALE`] is a far end not seen (down, not running l3mp, running it with `--probe off`, or
//! using other labels or label bits, so that its probes arrive as `unknown` here).
//!
//! The probe is a plain UDP socket's: `run` needs no privilege for it beyond those it has
//! (a raw or packet socket would need CAP_NET_RAW).

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::{Array, Map, MapData};
use aya::Pod;
use serde::{Deserialize, Serialize};

use crate::programs::layout::{PROBE_MAGIC, PROBE_PORT, PROBE_SLOTS};

use super::Error;

/// How often each link sends its probe.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How long without a probe before the far end counts as not seen: three probes lost, and
/// half an interval for the timers.
pub const STALE: Duration = Duration::from_millis(3500);

/// What a probe says about its sender, after the magic: `[label, bits, 0, 0, seq (BE, 4)]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word {
    pub label: u8,
    pub bits: u8,
    pub seq: u32,
}

impl Word {
    /// The eight bytes on the wire.
    pub fn to_bytes(self) -> [u8; 8] {
        let [a, b, c, d] = self.seq.to_be_bytes();
        [self.label, self.bits, 0, 0, a, b, c, d]
    }

    /// Reads the eight bytes on the wire.
    pub fn from_bytes(bytes: [u8; 8]) -> Word {
        let [label, bits, _, _, a, b, c, d] = bytes;
        Word {
            label,
            bits,
            seq: u32::from_be_bytes([a, b, c, d]),
        }
    }

    /// The probe's UDP payload.
    pub fn payload(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&PROBE_MAGIC);
        out[8..].copy_from_slice(&self.to_bytes());
        out
    }
}

/// A `probes` entry as the demux writes it: the word, and when it arrived
/// (`bpf_ktime_get_ns`, CLOCK_MONOTONIC); all zero while none has.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub word: [u8; 8],
    pub at_ns: u64,
}

// SAFETY: 16 bytes, no padding; any bit pattern is valid.
unsafe impl Pod for Recorded {}

/// How the far end of a link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FarEndState {
    /// Its probe arrives, with this end's label and label bits.
    Ok,
    /// Its probe arrives, with another label or other label bits.
    Mismatch,
    /// No probe for [`STALE`] (or ever).
    NotSeen,
    /// This end runs with `--probe off`: it neither sends nor checks.
    Off,
}

/// What this end knows of the far end of one link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FarEnd {
    pub state: FarEndState,
    /// Milliseconds since its last probe arrived; `None` if none has.
    pub seen_ms_ago: Option<u64>,
    /// The label and label bits its last probe named.
    pub label: Option<u8>,
    pub label_bits: Option<u8>,
}

impl FarEnd {
    /// The far end of the link with `label` at an end using `bits`, from its `probes` entry,
    /// at `now_ns` (CLOCK_MONOTONIC); `checking` is false with `--probe off`.
    pub fn of(recorded: Recorded, now_ns: u64, label: u8, bits: u8, checking: bool) -> FarEnd {
        let seen = recorded.at_ns != 0;
        let word = Word::from_bytes(recorded.word);
        let ago = seen.then(|| Duration::from_nanos(now_ns.saturating_sub(recorded.at_ns)));
        let state = match ago {
            _ if !checking => FarEndState::Off,
            Some(ago) if ago <= STALE => {
                if word.label == label && word.bits == bits {
                    FarEndState::Ok
                } else {
                    FarEndState::Mismatch
                }
            }
            _ => FarEndState::NotSeen,
        };
        FarEnd {
            state,
            seen_ms_ago: ago.map(|a| a.as_millis() as u64),
            label: seen.then_some(word.label),
            label_bits: seen.then_some(word.bits),
        }
    }

    /// For the table: "seen 0.8 s ago, label 1, bits 4", "mismatch: far end uses 3 bits,
    /// label 9", "not seen (for 12 s)", "not seen", "off".
    pub fn describe(&self) -> String {
        let ago = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
        let (label, bits) = (self.label.unwrap_or(0), self.label_bits.unwrap_or(0));
        match (self.state, self.seen_ms_ago) {
            (FarEndState::Ok, Some(ms)) => {
                format!("seen {} ago, label {label}, bits {bits}", ago(ms))
            }
            (FarEndState::Mismatch, _) => {
                format!("mismatch: far end uses {bits} bits, label {label}")
            }
            (FarEndState::NotSeen, Some(ms)) => format!("not seen for {}", ago(ms)),
            (FarEndState::Off, _) => "off".into(),
            _ => "not seen".into(),
        }
    }
}

/// The current CLOCK_MONOTONIC time in nanoseconds, the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Every entry of the `probes` map pinned at `path`, by label.
pub fn read_pinned(path: &Path) -> Result<Vec<Recorded>, Error> {
    let what = format!("reading the probes pinned at {}", path.display());
    let map = open_pinned(path, &what)?;
    (0..PROBE_SLOTS.min(map.len()))
        .map(|label| {
            map.get(&label, 0)
                .map_err(|e| Error::new(format!("{what}: label {label}: {e}")))
        })
        .collect()
}

/// Clears the entry of `label` in the `probes` map pinned at `path`: a link added by a
/// reload has seen no far end yet.
pub fn reset_pinned(path: &Path, label: u8) -> Result<(), Error> {
    let what = format!(
        "clearing the far end of label {label} pinned at {}",
        path.display()
    );
    open_pinned(path, &what)?
        .set(u32::from(label), Recorded::default(), 0)
        .map_err(|e| Error::new(format!("{what}: {e}")))
}

fn open_pinned(path: &Path, what: &str) -> Result<Array<MapData, Recorded>, Error> {
    let data = MapData::from_pin(path).map_err(|e| Error::new(format!("{what}: {e}")))?;
    Map::from_map_data(data)
        .and_then(Array::try_from)
        .map_err(|e| Error::new(format!("{what}: {e}")))
}

/// One link as the prober sees it at a tick.
pub struct ProbedLink<'a> {
    pub name: &'a str,
    pub label: u8,
    /// Its user end's ifindex.
    pub ifindex: u32,
    /// Whether it has carrier (up and running): only then does it send, and is its far end
    /// judged.
    pub carrier: bool,
}

/// What the prober last said of a link's far end, and since when it has had carrier.
struct Judged {
    said: Option<FarEndState>,
    carrier_since: Instant,
}

/// Sends each link's probe once an [`INTERVAL`] and says, once per change, how each link's
/// far end stands: a warning when it turns mismatched or not seen, a note when it is seen
/// matching again.
pub struct Prober {
    socket: UdpSocket,
    bits: u8,
    seq: u32,
    next: Instant,
    judged: HashMap<u8, Judged>,
    /// The links whose last send failed, with the error said.
    unsent: HashMap<u8, String>,
}

impl Prober {
    /// A prober for an end using `bits`, with its socket made in the calling thread's network
    /// namespace (the instance's).
    pub fn new(bits: u8) -> Result<Prober, Error> {
        let fail = |e: std::io::Error| Error::new(format!("the far-end probe's socket: {e}"));
        let socket = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).map_err(fail)?;
        // Not to this host's own sockets on the link either.
        socket.set_multicast_loop_v6(false).map_err(fail)?;
        socket.set_nonblocking(true).map_err(fail)?;
        Ok(Prober {
            socket,
            bits,
            seq: 0,
            next: Instant::now(),
            judged: HashMap::new(),
            unsent: HashMap::new(),
        })
    }

    /// Whether a tick is due.
    pub fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// Sends the probes of `links` and judges their far ends from `recorded` (the `probes`
    /// map, by label), logging what changed.
    pub fn tick(&mut self, links: &[ProbedLink<'_>], recorded: &[Recorded]) {
        let now = Instant::now();
        self.next = now + INTERVAL;
        self.seq = self.seq.wrapping_add(1);
        let now_ns = monotonic_ns();
        self.judged
            .retain(|label, _| links.iter().any(|l| l.label == *label));
        for link in links {
            if link.carrier {
                self.send(link);
            }
            let judged = self.judged.entry(link.label).or_insert(Judged {
                said: None,
                carrier_since: now,
            });
            if !link.carrier {
                // Said of ext (or of the link) already; judged afresh once it is back.
                judged.said = None;
                judged.carrier_since = now;
                continue;
            }
            let entry = recorded
                .get(usize::from(link.label))
                .copied()
                .unwrap_or_default();
            let far = FarEnd::of(entry, now_ns, link.label, self.bits, true);
            // A far end not seen is only said once it has had the time to be.
            if far.state == FarEndState::NotSeen && now - judged.carrier_since < STALE {
                continue;
            }
            if let Some((level, line)) = change(link, self.bits, judged.said, &far) {
                log::log!(level, "{line}");
            }
            judged.said = Some(far.state);
        }
    }

    fn send(&mut self, link: &ProbedLink<'_>) {
        let word = Word {
            label: link.label,
            bits: self.bits,
            seq: self.seq,
        };
        let to = SocketAddrV6::new(
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            PROBE_PORT,
            0,
            link.ifindex,
        );
        match self.socket.send_to(&word.payload(), to) {
            Ok(_) => {
                if self.unsent.remove(&link.label).is_some() {
                    log::info!("{}: the far-end probe is sent again", link.name);
                }
            }
            Err(e) => {
                let e = e.to_string();
                if self.unsent.get(&link.label) != Some(&e) {
                    log::info!(
                        "{} (label {}): cannot send the far-end probe ({e}): it needs IPv6 on \
                         the link; the far end will not see this end",
                        link.name,
                        link.label
                    );
                    self.unsent.insert(link.label, e);
                }
            }
        }
    }
}

/// What to say when the far end of `link` goes from `said` (nothing yet: `None`) to `far`.
fn change(
    link: &ProbedLink<'_>,
    bits: u8,
    said: Option<FarEndState>,
    far: &FarEnd,
) -> Option<(log::Level, String)> {
    if said == Some(far.state) {
        return None;
    }
    let (name, label) = (link.name, link.label);
    let check = "check that both ends use the same labels and --label-bits";
    Some(match far.state {
        FarEndState::Ok if said.is_none() => (
            log::Level::Debug,
            format!(
                "{name} (label {label}): the far end's probe arrives, label {label}, bits {bits}"
            ),
        ),
        FarEndState::Ok => (
            log::Level::Info,
            format!(
                "{name} (label {label}): the far end is seen again, with label {label} and \
                 {bits} label bits as here"
            ),
        ),
        FarEndState::Mismatch => (
            log::Level::Warn,
            format!(
                "{name} (label {label}, {bits} label bits): mismatch: the far end's probe on \
                 this link says label {} with {} label bits, so each end's links reach other \
                 links at the other end; {check}",
                far.label.unwrap_or(0),
                far.label_bits.unwrap_or(0)
            ),
        ),
        FarEndState::NotSeen => (
            log::Level::Warn,
            format!(
                "{name} (label {label}): far end not seen: no probe for {} s (it is down, does \
                 not run l3mp, runs it with --probe off, or its labels differ); {check}",
                STALE.as_secs_f64()
            ),
        ),
        FarEndState::Off => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn recorded(label: u8, bits: u8, at_ns: u64) -> Recorded {
        Recorded {
            word: Word {
                label,
                bits,
                seq: 7,
            }
            .to_bytes(),
            at_ns,
        }
    }

    #[test]
    fn the_word_is_label_bits_and_a_big_endian_sequence() {
        let word = Word {
            label: 9,
            bits: 4,
            seq: 0x0102_0304,
        };
        assert_eq!(word.to_bytes(), [9, 4, 0, 0, 1, 2, 3, 4]);
        assert_eq!(Word::from_bytes(word.to_bytes()), word);
        assert_eq!(&word.payload()[..8], b"l3mprobe");
    }

    #[test]
    fn the_far_end_is_judged_by_label_bits_and_age() {
        let now = 100 * S;
        let ok = FarEnd::of(recorded(1, 4, now - S / 5), now, 1, 4, true);
        assert_eq!(ok.state, FarEndState::Ok);
        assert_eq!(ok.seen_ms_ago, Some(200));
        assert_eq!(ok.describe(), "seen 0.2 s ago, label 1, bits 4");
        let bits = FarEnd::of(recorded(9, 4, now - S), now, 1, 3, true);
        assert_eq!(bits.state, FarEndState::Mismatch);
        assert_eq!(bits.describe(), "mismatch: far end uses 4 bits, label 9");
        let label = FarEnd::of(recorded(2, 4, now - S), now, 1, 4, true);
        assert_eq!(label.state, FarEndState::Mismatch);
        let old = FarEnd::of(recorded(1, 4, now - 12 * S), now, 1, 4, true);
        assert_eq!(old.state, FarEndState::NotSeen);
        assert_eq!(old.describe(), "not seen for 12.0 s");
        let never = FarEnd::of(Recorded::default(), now, 1, 4, true);
        assert_eq!((never.state, never.label), (FarEndState::NotSeen, None));
        assert_eq!(never.describe(), "not seen");
        let off = FarEnd::of(recorded(1, 4, now), now, 1, 4, false);
        assert_eq!(
            (off.state, off.describe().as_str()),
            (FarEndState::Off, "off")
        );
    }

    #[test]
    fn only_changes_are_said_warnings_into_trouble_a_note_out_of_it() {
        let link = ProbedLink {
            name: "c1",
            label: 1,
            ifindex: 3,
            carrier: true,
        };
        let now = 100 * S;
        let ok = FarEnd::of(recorded(1, 3, now), now, 1, 3, true);
        let bad = FarEnd::of(recorded(9, 4, now), now, 1, 3, true);
        let gone = FarEnd::of(Recorded::default(), now, 1, 3, true);
        let level = |said, far: &FarEnd| change(&link, 3, said, far).map(|(l, _)| l);
        assert_eq!(level(None, &ok), Some(log::Level::Debug));
        assert_eq!(level(Some(FarEndState::Ok), &ok), None);
        assert_eq!(level(Some(FarEndState::Ok), &bad), Some(log::Level::Warn));
        assert_eq!(level(Some(FarEndState::Mismatch), &bad), None);
        assert_eq!(
            level(Some(FarEndState::Mismatch), &gone),
            Some(log::Level::Warn)
        );
        assert_eq!(
            level(Some(FarEndState::NotSeen), &ok),
            Some(log::Level::Info)
        );
        let (_, text) = change(&link, 3, None, &bad).expect("said");
        assert!(text.contains("says label 9 with 4 label bits"), "{text}");
        assert!(text.contains("--label-bits"), "{text}");
    }
}
