//! ICMP and ICMPv6 echo through raw sockets bound to a device (no `ping` needed).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use nix::sys::socket::{recvfrom, sendto, MsgFlags, SockProtocol, SockType, SockaddrStorage};

use super::Error;

use super::host::End;
use super::socket::{device_socket, scoped, set_timeouts, timed_out, Deadline};
use super::udp::payload;

/// Bytes of payload after the 8-byte echo header.
const ECHO_PAYLOAD: usize = 48;

/// Echo request and reply types, by family.
fn types(target: IpAddr) -> (u8, u8) {
    match target {
        IpAddr::V4(_) => (8, 0),
        IpAddr::V6(_) => (128, 129),
    }
}

/// Sends one echo request from `from` to `target` and waits up to `timeout` for its reply;
/// returns whether it came.
pub fn echo(from: End<'_>, target: IpAddr, timeout: Duration) -> Result<bool, Error> {
    from.host
        .run(|| echo_here(from.device, target, timeout))?
        .map_err(|e| {
            Error::new(format!(
                "host {}: echo to {target} on {}: {e}",
                from.host.side(),
                from.device
            ))
        })
}

fn echo_here(device: &str, target: IpAddr, timeout: Duration) -> io::Result<bool> {
    static SERIAL: AtomicU16 = AtomicU16::new(0);
    let protocol = match target {
        IpAddr::V4(_) => SockProtocol::Icmp,
        IpAddr::V6(_) => SockProtocol::IcmpV6,
    };
    let fd = device_socket(target, SockType::Raw, Some(protocol), device)?;
    let id = std::process::id() as u16;
    let sequence = SERIAL.fetch_add(1, Ordering::Relaxed);
    let (request, reply) = types(target);
    let mut message = vec![request, 0, 0, 0];
    message.extend(id.to_be_bytes());
    message.extend(sequence.to_be_bytes());
    message.extend(payload(ECHO_PAYLOAD));
    if target.is_ipv4() {
        // ICMPv6 raw sockets have the kernel fill in the checksum; ICMP ones do not.
        let sum = checksum(&message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let to = SockaddrStorage::from(scoped(target, 0, device)?);
    sendto(fd.as_raw_fd(), &message, &to, MsgFlags::empty())?;
    // The reply is the request with the type changed (and the checksum recomputed).
    let mut expected = message.clone();
    expected[0] = reply;
    wait_reply(&fd, target, &expected, timeout)
}

/// Reads ICMP messages until one from `target` matches `expected` (checksum aside).
fn wait_reply(
    fd: &OwnedFd,
    target: IpAddr,
    expected: &[u8],
    timeout: Duration,
) -> io::Result<bool> {
    let mut buffer = [0u8; 2048];
    let deadline = Deadline::after(timeout);
    while let Some(left) = deadline.remaining() {
        set_timeouts(fd, left)?;
        let (len, from) = match recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buffer) {
            Ok(received) => received,
            Err(errno) => {
                let e = io::Error::from(errno);
                if timed_out(&e) {
                    return Ok(false);
                }
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
        };
        if source(from.as_ref()) != Some(target) {
            continue;
        }
        // An IPv4 raw socket hands over the IP header too.
        let skip = match target {
            IpAddr::V4(_) if len > 0 => usize::from(buffer[0] & 0x0f) * 4,
            _ => 0,
        };
        let icmp = &buffer[skip.min(len)..len];
        let matches = icmp.len() == expected.len()
            && icmp[..2] == expected[..2]
            && icmp[4..] == expected[4..];
        if matches {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The sender's address of a received message.
fn source(from: Option<&SockaddrStorage>) -> Option<IpAddr> {
    let from = from?;
    if let Some(v4) = from.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    from.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// The Internet checksum (RFC 1071) of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_echo_request() {
        // type 8, code 0, id 0x1234, sequence 1, no payload: ~(0x0800 + 0x1234 + 0x0001).
        let message = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
        assert_eq!(checksum(&message), !(0x0800u16 + 0x1234 + 0x0001));
        let mut with_sum = message;
        with_sum[2..4].copy_from_slice(&checksum(&message).to_be_bytes());
        assert_eq!(checksum(&with_sum), 0);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }
}
