//! A packet socket watching what a device of a lab host receives, whatever its addresses.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use l3mp::lab::Host;
use l3mp::sys::netns::NetNs;
use nix::net::if_::if_nametoindex;
use nix::sys::socket::{
    recvfrom, setsockopt, socket, sockopt, AddressFamily, LinkAddr, SockFlag, SockProtocol,
    SockType,
};
use nix::sys::time::TimeVal;

/// `PACKET_OUTGOING`: a copy of a frame the host itself sent.
const PACKET_OUTGOING: u8 = 4;

/// Every frame arriving on one device, from the moment it is opened.
pub struct Sniffer {
    fd: OwnedFd,
    ifindex: u32,
}

impl Sniffer {
    /// Starts watching `device` on `host`.
    pub fn open(host: &Host, device: &str) -> Sniffer {
        Sniffer::open_in(host.netns(), device)
    }

    /// Starts watching `device` in the network namespace `netns`.
    pub fn open_in(netns: &NetNs, device: &str) -> Sniffer {
        netns
            .run(|| {
                let fd = socket(
                    AddressFamily::Packet,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    SockProtocol::EthAll,
                )
                .expect("a packet socket");
                let ifindex = if_nametoindex(device).expect("the device to watch");
                setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 20_000))
                    .expect("a receive timeout");
                Sniffer { fd, ifindex }
            })
            .expect("enter the host")
    }

    /// For each of `markers`, whether a frame containing it arrived on the device since the
    /// sniffer was opened; reads for `window`.
    pub fn seen(&self, markers: &[&[u8]], window: Duration) -> Vec<bool> {
        self.frames(markers, window)
            .iter()
            .map(Option::is_some)
            .collect()
    }

    /// For each of `markers`, the first frame containing it that arrived on the device since
    /// the sniffer was opened; reads for `window` (less once every marker was seen).
    pub fn frames(&self, markers: &[&[u8]], window: Duration) -> Vec<Option<Vec<u8>>> {
        let mut seen: Vec<Option<Vec<u8>>> = vec![None; markers.len()];
        let deadline = Instant::now() + window;
        let mut frame = [0u8; 65_536];
        while Instant::now() < deadline && seen.iter().any(Option::is_none) {
            let Ok((len, Some(from))) = recvfrom::<LinkAddr>(self.fd.as_raw_fd(), &mut frame)
            else {
                continue;
            };
            let incoming =
                from.ifindex() == self.ifindex as usize && from.pkttype() != PACKET_OUTGOING;
            if !incoming {
                continue;
            }
            let frame = &frame[..len];
            for (marker, seen) in markers.iter().zip(seen.iter_mut()) {
                if seen.is_none() && frame.windows(marker.len()).any(|w| w == *marker) {
                    *seen = Some(frame.to_vec());
                }
            }
        }
        seen
    }
}
