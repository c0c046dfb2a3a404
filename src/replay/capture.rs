//! Reading captures (pcap or pcapng, by their magic number) into Ethernet frames, the form a
//! managed link's stack hands to egress.

use std::borrow::Cow;
use std::path::Path;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::DataLink;

use super::Error;

/// pcapng files start with a section header block of this type.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// pcap files start with one of these: microsecond or nanosecond timestamps, either byte order.
const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x4d, 0x3c, 0xb2, 0xa1],
];

/// How many of a file's first bytes an error shows.
const SHOWN: usize = 16;

/// Every packet of the capture at `path`, as an Ethernet frame.
pub fn frames(path: &Path) -> Result<Vec<Vec<u8>>, Error> {
    let file = Mapped::open(path)?;
    let mut frames = Vec::new();
    each_frame(path, file.bytes(), |frame| frames.push(frame.into_owned()))?;
    Ok(frames)
}

/// A capture file mapped into memory, read-only: its packets are read where they lie in the
/// page cache, neither copied nor given fresh pages (reading a 100 MB capture into memory
/// was a quarter of a replay's time, most of it the kernel zeroing pages). What cannot be
/// mapped (a pipe, an empty file) is read.
pub enum Mapped {
    Map(std::ptr::NonNull<libc::c_void>, usize),
    Read(Vec<u8>),
}

impl Mapped {
    pub fn open(path: &Path) -> Result<Mapped, Error> {
        use std::os::fd::AsRawFd;
        let what = |e: std::io::Error| Error::new(format!("{}: {e}", path.display()));
        let mut file = std::fs::File::open(path).map_err(what)?;
        let meta = file.metadata().map_err(what)?;
        let len = meta.len() as usize;
        if !meta.is_file() || len == 0 {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes).map_err(what)?;
            return Ok(Mapped::Read(bytes));
        }
        // SAFETY: a fresh read-only private mapping of the whole file; the result is checked.
        // (A file truncated by another process while mapped would fault on access, as it
        // would for any program reading captures this way.)
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(what(std::io::Error::last_os_error()));
        }
        let p = std::ptr::NonNull::new(p).ok_or_else(|| what(std::io::Error::last_os_error()))?;
        Ok(Mapped::Map(p, len))
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: the mapping is `len` readable bytes and lives as long as self.
            Mapped::Map(p, len) => unsafe {
                std::slice::from_raw_parts(p.as_ptr().cast::<u8>(), *len)
            },
            Mapped::Read(bytes) => bytes,
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if let Mapped::Map(p, len) = *self {
            // SAFETY: unmapping exactly the mapping made in `open`.
            unsafe { libc::munmap(p.as_ptr(), len) };
        }
    }
}

/// Gives every packet of the capture `bytes` (the file at `path`) to `put` in turn, as an
/// Ethernet frame: Ethernet frames are not copied.
pub fn each_frame<'a>(
    path: &Path,
    bytes: &'a [u8],
    mut put: impl FnMut(Cow<'a, [u8]>),
) -> Result<(), Error> {
    let what = |e: &dyn std::fmt::Display| Error::new(format!("{}: {e}", path.display()));
    let magic = bytes.get(..4).unwrap_or_default();
    if magic == PCAPNG_MAGIC {
        let (mut rest, mut parser) = PcapNgParser::new(bytes).map_err(|e| what(&e))?;
        while !rest.is_empty() {
            let (after, block) = parser.next_block(rest).map_err(|e| what(&e))?;
            rest = after;
            if let Block::EnhancedPacket(p) = block {
                let link = parser
                    .interfaces()
                    .get(p.interface_id as usize)
                    .ok_or_else(|| what(&"packet of an undeclared interface"))?
                    .linktype;
                put(to_ethernet(link, p.data).map_err(|e| what(&e))?);
            }
        }
    } else if PCAP_MAGICS.iter().any(|m| m == magic) {
        let (mut rest, parser) = PcapParser::new(bytes).map_err(|e| what(&e))?;
        let link = parser.header().datalink;
        while !rest.is_empty() {
            let (after, p) = parser.next_packet(rest).map_err(|e| what(&e))?;
            rest = after;
            put(to_ethernet(link, p.data).map_err(|e| what(&e))?);
        }
    } else {
        return Err(what(&not_a_capture(&bytes[..bytes.len().min(SHOWN)])));
    }
    Ok(())
}

/// The error for a file that is neither pcap nor pcapng, with the first bytes it holds.
fn not_a_capture(start: &[u8]) -> String {
    if start.is_empty() {
        return "neither pcap nor pcapng: the file is empty".to_string();
    }
    let hex: Vec<String> = start.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "neither pcap nor pcapng: it starts with {} (a pcap file starts with a1 b2 c3 d4, \
         a1 b2 3c 4d or those reversed, a pcapng file with 0a 0d 0d 0a)",
        hex.join(" ")
    )
}

/// A captured packet as an Ethernet frame: Ethernet as it is; raw IP and Linux cooked captures
/// with an Ethernet header whose EtherType matches the packet (MACs zero).
fn to_ethernet(link: DataLink, data: Cow<'_, [u8]>) -> Result<Cow<'_, [u8]>, String> {
    let framed = |ethertype: [u8; 2], payload: &[u8]| {
        let mut frame = vec![0u8; 12];
        frame.extend(ethertype);
        frame.extend(payload);
        Cow::Owned(frame)
    };
    let by_version = |ip: &[u8]| match ip.first().map(|b| b >> 4) {
        Some(6) => [0x86, 0xdd],
        _ => [0x08, 0x00],
    };
    match link {
        DataLink::ETHERNET => Ok(data),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Ok(framed(by_version(&data), &data)),
        DataLink::LINUX_SLL if data.len() >= 16 => Ok(framed([data[14], data[15]], &data[16..])),
        DataLink::LINUX_SLL2 if data.len() >= 20 => Ok(framed([data[0], data[1]], &data[20..])),
        other => Err(format!(
            "link type {other:?} is not supported (Ethernet, raw IP or Linux cooked only)"
        )),
    }
}
