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

/// Every packet of the capture at `path`, as an Ethernet frame.
pub fn frames(path: &Path) -> Result<Vec<Vec<u8>>, Error> {
    let what = |e: &dyn std::fmt::Display| Error::new(format!("{}: {e}", path.display()));
    let mut file = BufReader::new(File::open(path).map_err(|e| what(&e))?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(|e| what(&e))?;
    file.rewind().map_err(|e| what(&e))?;
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
    } else {
        let mut reader = PcapReader::new(file).map_err(|e| what(&e))?;
        let link = reader.header().datalink;
        while let Some(p) = reader.next_packet() {
            let p = p.map_err(|e| what(&e))?;
            out.push(to_ethernet(link, &p.data).map_err(|e| what(&e))?);
        }
    }
    Ok(out)
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
