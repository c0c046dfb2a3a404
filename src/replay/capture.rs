//! Reading captures (pcap or pcapng, by their magic number) into Ethernet frames, the form a
//! managed link's stack hands to egress.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

use crate::run::Error;

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
const SHOWN: u64 = 16;

/// Every packet of the capture at `path`, as an Ethernet frame.
pub fn frames(path: &Path) -> Result<Vec<Vec<u8>>, Error> {
    let what = |e: &dyn std::fmt::Display| Error::new(format!("{}: {e}", path.display()));
    let mut file = BufReader::new(File::open(path).map_err(|e| what(&e))?);
    let mut start = Vec::new();
    (&mut file)
        .take(SHOWN)
        .read_to_end(&mut start)
        .map_err(|e| what(&e))?;
    file.rewind().map_err(|e| what(&e))?;
    let magic = start.get(..4).unwrap_or_default();
    let mut out = Vec::new();
    if magic == PCAPNG_MAGIC {
        let mut reader = PcapNgReader::new(file).map_err(|e| what(&e))?;
        while let Some(block) = reader.next_block() {
            if let Block::EnhancedPacket(p) = block.map_err(|e| what(&e))? {
                let (interface, data) = (p.interface_id as usize, p.data.into_owned());
                let link = reader
                    .interfaces()
                    .get(interface)
                    .ok_or_else(|| what(&"packet of an undeclared interface"))?
                    .linktype;
                out.push(to_ethernet(link, &data).map_err(|e| what(&e))?);
            }
        }
    } else if PCAP_MAGICS.iter().any(|m| m == magic) {
        let mut reader = PcapReader::new(file).map_err(|e| what(&e))?;
        let link = reader.header().datalink;
        while let Some(p) = reader.next_packet() {
            let p = p.map_err(|e| what(&e))?;
            out.push(to_ethernet(link, &p.data).map_err(|e| what(&e))?);
        }
    } else {
        return Err(what(&not_a_capture(&start)));
    }
    Ok(out)
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
fn to_ethernet(link: DataLink, data: &[u8]) -> Result<Vec<u8>, String> {
    let framed = |ethertype: [u8; 2], payload: &[u8]| {
        let mut frame = vec![0u8; 12];
        frame.extend(ethertype);
        frame.extend(payload);
        frame
    };
    let by_version = |ip: &[u8]| match ip.first().map(|b| b >> 4) {
        Some(6) => [0x86, 0xdd],
        _ => [0x08, 0x00],
    };
    match link {
        DataLink::ETHERNET => Ok(data.to_vec()),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Ok(framed(by_version(data), data)),
        DataLink::LINUX_SLL if data.len() >= 16 => Ok(framed([data[14], data[15]], &data[16..])),
        DataLink::LINUX_SLL2 if data.len() >= 20 => Ok(framed([data[0], data[1]], &data[20..])),
        other => Err(format!(
            "link type {other:?} is not supported (Ethernet, raw IP or Linux cooked only)"
        )),
    }
}
