//! The capture `l3mp bench --offline` replays: made at run time, never committed. Ethernet
//! frames of UDP over IPv4 and IPv6, of mixed sizes and traffic classes (every DSCP and ECN
//! value), each with a valid IPv4 header checksum.

use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapWriter};

use super::Error;
use crate::packets::udp_frame;
use crate::programs::Family;

/// Frame lengths the capture cycles through, Ethernet header included.
const LENGTHS: [usize; 7] = [64, 80, 128, 200, 576, 1000, 1500];

/// Writes `count` frames to a pcap file at `path`.
pub fn write(path: &Path, count: usize) -> Result<(), Error> {
    let what = |e: &dyn std::fmt::Display| Error::new(format!("{}: {e}", path.display()));
    let file = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| what(&e))?);
    let mut writer = PcapWriter::new(file).map_err(|e| what(&e))?;
    // One frame per (family, length); each copy gets its own traffic class.
    let templates: Vec<(Family, Vec<u8>)> = [Family::V4, Family::V6]
        .into_iter()
        .flat_map(|f| LENGTHS.map(|len| (f, udp_frame(f, len))))
        .collect();
    for n in 0..count {
        let (family, template) = &templates[n % templates.len()];
        let mut frame = template.clone();
        set_traffic_class(*family, &mut frame, (n * 7 % 256) as u8);
        let ts = Duration::from_micros(n as u64 * 10);
        let packet = PcapPacket::new(ts, frame.len() as u32, &frame);
        writer.write_packet(&packet).map_err(|e| what(&e))?;
    }
    writer
        .into_writer()
        .into_inner()
        .map_err(|e| what(&e.error()))?;
    Ok(())
}

/// Sets the traffic class (DSCP << 2 | ECN) of the IP packet in `frame`, keeping an IPv4
/// header checksum valid.
fn set_traffic_class(family: Family, frame: &mut [u8], tc: u8) {
    let ip = &mut frame[14..];
    match family {
        Family::V4 => {
            let (mut header, _) =
                etherparse::Ipv4Header::from_slice(ip).expect("the template is IPv4");
            header.dscp = etherparse::Ipv4Dscp::try_new(tc >> 2).expect("6 bits");
            header.ecn = etherparse::Ipv4Ecn::try_new(tc & 3).expect("2 bits");
            header.header_checksum = header.calc_header_checksum();
            ip[..20].copy_from_slice(&header.to_bytes());
        }
        Family::V6 => {
            ip[0] = (ip[0] & 0xf0) | (tc >> 4);
            ip[1] = (ip[1] & 0x0f) | (tc << 4);
        }
    }
}
