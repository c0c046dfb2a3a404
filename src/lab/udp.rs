//! UDP datagrams sent out of a device, and receivers bound to a device.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::socket::{bind, setsockopt, sockopt, SockType, SockaddrStorage};

use super::Error;

use super::host::End;
use super::socket::{device_socket, scoped, set_timeouts, timed_out, Deadline};

/// Largest datagram a receiver takes (more than any MTU in the lab).
const MAX_DATAGRAM: usize = 65_536;
/// Most datagrams read once a receiver's time is up.
const MAX_LATE: usize = 1024;

/// A payload of `len` bytes no other call returns (from 24 bytes up): it starts with this
/// process's id and a serial number, so that a receiver can tell the datagram it waits for
/// from any other.
pub fn payload(len: usize) -> Vec<u8> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let mut bytes = format!("l3mp {} {serial} ", std::process::id()).into_bytes();
    bytes.extend((0..len).map(|i| b'a' + (i % 26) as u8));
    bytes.truncate(len);
    bytes
}

/// How a datagram is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// The IPv4 TOS or IPv6 traffic class byte (DSCP in its upper six bits).
    pub tos: Option<u8>,
    /// Refuse to fragment: the datagram leaves whole or the send fails.
    pub dont_fragment: bool,
}

/// Sends `payload` from `from` to `to:port`. A link-local or link-scoped multicast
/// destination (e.g. `ff02::1`) is scoped to `from`'s device.
pub fn send(
    from: End<'_>,
    to: IpAddr,
    port: u16,
    payload: &[u8],
    how: SendOptions,
) -> Result<(), Error> {
    from.host
        .run(|| send_here(from.device, to, port, payload, how))?
        .map_err(|e| {
            Error::new(format!(
                "host {}: sending {} bytes to {to} port {port} on {}: {e}",
                from.host.side(),
                payload.len(),
                from.device
            ))
        })
}

fn send_here(
    device: &str,
    to: IpAddr,
    port: u16,
    payload: &[u8],
    how: SendOptions,
) -> io::Result<()> {
    let fd = device_socket(to, SockType::Datagram, None, device)?;
    match (to, how.tos) {
        (_, None) => {}
        (IpAddr::V4(_), Some(tos)) => setsockopt(&fd, sockopt::IpTos, &i32::from(tos))?,
        (IpAddr::V6(_), Some(tos)) => setsockopt(&fd, sockopt::Ipv6TClass, &i32::from(tos))?,
    }
    if how.dont_fragment {
        match to {
            IpAddr::V4(_) => set_int(
                &fd,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            )?,
            IpAddr::V6(_) => setsockopt(&fd, sockopt::Ipv6DontFrag, &true)?,
        }
    }
    let socket = UdpSocket::from(fd);
    let sent = socket.send_to(payload, scoped(to, port, device)?)?;
    if sent != payload.len() {
        return Err(io::Error::other(format!("only {sent} bytes were sent")));
    }
    Ok(())
}

/// `setsockopt(fd, level, name, &value)` for an `int` option nix has no wrapper for.
fn set_int(fd: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    set_option(fd, level, name, &value)
}

/// `setsockopt(fd, level, name, value)` for an option whose value is a plain C struct or
/// integer of type `T`.
fn set_option<T>(fd: &impl AsRawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a `T`, passed with its size; `fd` is an open socket.
    let result = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A UDP socket on one host, bound to a device, that waits for given datagrams.
pub struct UdpReceiver {
    socket: UdpSocket,
    port: u16,
}

impl UdpReceiver {
    /// A receiver at `at` bound to `address:port` (an unspecified address takes every
    /// destination, multicast included; port 0 picks a free one). Several receivers may
    /// share a port on different devices.
    pub fn bind(at: End<'_>, address: IpAddr, port: u16) -> Result<Self, Error> {
        let device = at.device;
        let socket = at
            .host
            .run(|| -> io::Result<UdpSocket> {
                let fd = device_socket(address, SockType::Datagram, None, device)?;
                bind(
                    fd.as_raw_fd(),
                    &SockaddrStorage::from(scoped(address, port, device)?),
                )?;
                Ok(UdpSocket::from(fd))
            })?
            .map_err(|e| {
                Error::new(format!(
                    "host {}: binding a UDP receiver to {address} port {port} on {device}: {e}",
                    at.host.side()
                ))
            })?;
        let port = socket
            .local_addr()
            .map_err(|e| Error::new(format!("reading a UDP receiver's port: {e}")))?
            .port();
        Ok(UdpReceiver { socket, port })
    }

    /// A receiver at `at` for the link-scoped multicast `group` (e.g. 224.0.0.5 or ff02::1:6,
    /// OSPF's): bound to `group`'s family's unspecified address and `port`, and a member of
    /// `group` on `at`'s device, as a routing daemon makes itself.
    pub fn join(at: End<'_>, group: IpAddr, port: u16) -> Result<Self, Error> {
        let any: IpAddr = match group {
            IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let receiver = UdpReceiver::bind(at, any, port)?;
        let device = at.device;
        at.host
            .run(|| -> io::Result<()> {
                let index = nix::net::if_::if_nametoindex(device)?;
                match group {
                    IpAddr::V4(v4) => {
                        let request = libc::ip_mreqn {
                            imr_multiaddr: libc::in_addr {
                                s_addr: u32::from(v4).to_be(),
                            },
                            imr_address: libc::in_addr { s_addr: 0 },
                            imr_ifindex: index as i32,
                        };
                        set_option(
                            &receiver.socket,
                            libc::IPPROTO_IP,
                            libc::IP_ADD_MEMBERSHIP,
                            &request,
                        )
                    }
                    IpAddr::V6(v6) => receiver.socket.join_multicast_v6(&v6, index),
                }
            })?
            .map_err(|e| {
                Error::new(format!(
                    "host {}: joining {group} on {device}: {e}",
                    at.host.side()
                ))
            })?;
        Ok(receiver)
    }

    /// The port the receiver listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits up to `timeout` for a datagram carrying exactly `payload`, skipping any other;
    /// returns its sender, or `None` if it did not come. Datagrams already queued are always
    /// read, so a zero `timeout` checks what has arrived.
    pub fn wait_for(&self, payload: &[u8], timeout: Duration) -> Result<Option<SocketAddr>, Error> {
        let got = self.collect(&[payload], timeout)?;
        Ok(got.into_iter().next().flatten())
    }

    /// Waits up to `timeout` (less if all arrive sooner) for datagrams carrying the
    /// `expected` payloads; returns how many of them arrived.
    pub fn count(&self, expected: &[&[u8]], timeout: Duration) -> Result<usize, Error> {
        let got = self.collect(expected, timeout)?;
        Ok(got.iter().filter(|from| from.is_some()).count())
    }

    /// The next datagram to arrive within `timeout`, if one does.
    pub fn next(&self, timeout: Duration) -> Result<Option<Vec<u8>>, Error> {
        let fail = |e: io::Error| Error::new(format!("receiving on port {}: {e}", self.port));
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        set_timeouts(&self.socket, timeout.max(Duration::from_micros(1))).map_err(fail)?;
        loop {
            match self.socket.recv_from(&mut buffer) {
                Ok((len, _)) => return Ok(Some(buffer[..len].to_vec())),
                Err(e) if timed_out(&e) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail(e)),
            }
        }
    }

    /// For each expected payload, the sender of the datagram that carried it, if one came.
    fn collect(
        &self,
        expected: &[&[u8]],
        timeout: Duration,
    ) -> Result<Vec<Option<SocketAddr>>, Error> {
        let mut got = vec![None; expected.len()];
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        let deadline = Deadline::after(timeout);
        let fail = |e: io::Error| Error::new(format!("receiving on port {}: {e}", self.port));
        // Past the deadline, what is already queued is still read (a bounded number).
        let mut late = 0;
        while got.iter().any(Option::is_none) && late < MAX_LATE {
            let left = deadline.remaining().unwrap_or_else(|| {
                late += 1;
                Duration::ZERO
            });
            set_timeouts(&self.socket, left).map_err(fail)?;
            let (len, from) = match self.socket.recv_from(&mut buffer) {
                Ok(received) => received,
                Err(e) if timed_out(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail(e)),
            };
            if let Some(i) = expected.iter().position(|p| *p == &buffer[..len]) {
                got[i] = Some(from);
            }
        }
        Ok(got)
    }
}
