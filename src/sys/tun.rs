//! TUN devices and a packet relay between two of them.

use std::{
    fs::File,
    io::{self, PipeReader, PipeWriter, Read, Write},
    mem,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
};

use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg, OFlag},
    poll::{poll, PollFd, PollFlags, PollTimeout},
};

use crate::sys::{
    error::{IoContext, NixContext},
    SysError,
};

/// The TUN clone device.
const TUN_CLONE_DEVICE: &str = "/dev/net/tun";
/// Largest IP packet a TUN device can hand over.
const MAX_PACKET: usize = 65_535;
/// Packets moved from one side before the other side gets its turn.
const BATCH: usize = 64;

/// A layer-3 TUN device (`IFF_TUN | IFF_NO_PI`): each read gives one whole
/// IP packet the kernel routed into the device, each write injects one IP
/// packet as if received on it. The device disappears when this is dropped.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates the TUN device `name` in the calling thread's network
    /// namespace. It starts down and without addresses. A name containing
    /// `%d` (e.g. `"l3mp%d"`) lets the kernel pick a free number.
    pub fn create(name: &str) -> Result<Tun, SysError> {
        let context = || format!("creating TUN device {name:?}");
        let mut request =
            interface_request(name).map_err(|reason| SysError::other(context(), reason))?;
        let file = File::options()
            .read(true)
            .write(true)
            .open(TUN_CLONE_DEVICE)
            .context_with(|| format!("{}: opening {TUN_CLONE_DEVICE}", context()))?;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which
        // `request` is, on a descriptor we own.
        let result = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut request) };
        Errno::result(result).context_with(context)?;
        Ok(Tun {
            file,
            name: name_of(&request),
        })
    }

    /// The device name the kernel gave (the requested one, `%d` filled in).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet into `buffer`, returning its length. Fails with
    /// `WouldBlock` when non-blocking and nothing is queued. Returns
    /// `std::io` errors, cheap enough for a per-packet path.
    pub fn read_packet(&self, buffer: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buffer)
    }

    /// Injects one IP packet into the device's namespace.
    pub fn write_packet(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }

    /// Makes reads return `WouldBlock` instead of waiting (or waits again).
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), SysError> {
        let context = || format!("changing the blocking mode of TUN device {}", self.name);
        let fd = self.file.as_raw_fd();
        let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).context_with(context)?);
        let flags = if nonblocking {
            flags | OFlag::O_NONBLOCK
        } else {
            flags - OFlag::O_NONBLOCK
        };
        fcntl(fd, FcntlArg::F_SETFL(flags)).context_with(context)?;
        Ok(())
    }
}

impl AsFd for Tun {
    /// The device's file descriptor, for polling.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// A `struct ifreq` asking for a TUN device without packet information.
fn interface_request(name: &str) -> Result<libc::ifreq, String> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(format!(
            "a device name must have 1 to {} bytes and no NUL",
            libc::IFNAMSIZ - 1
        ));
    }
    // SAFETY: `ifreq` is plain data (a name and a union of integers), for
    // which all zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { mem::zeroed() };
    for (slot, &byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    Ok(request)
}

/// The NUL-terminated name in an `ifreq`.
fn name_of(request: &libc::ifreq) -> String {
    let bytes: Vec<u8> = request
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Packet counts of a [`TunRelay`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Packets read from `a` and written to `b`.
    pub a_to_b: u64,
    /// Packets read from `b` and written to `a`.
    pub b_to_a: u64,
    /// Packets read from either side that the other side refused.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    a_to_b: AtomicU64,
    b_to_a: AtomicU64,
    dropped: AtomicU64,
}

/// Copies packets between two TUN devices in both directions, on one
/// thread polling both, like a userspace VPN endpoint would. The devices
/// may live in different network namespaces.
pub struct TunRelay {
    stop: Option<PipeWriter>,
    worker: Option<JoinHandle<Result<(), SysError>>>,
    counters: Arc<Counters>,
}

impl TunRelay {
    /// Starts relaying between `a` and `b`, which the relay now owns.
    pub fn start(a: Tun, b: Tun) -> Result<TunRelay, SysError> {
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        let what = format!("starting the relay between {} and {}", a.name, b.name);
        let context = || what.clone();
        let (stop_reader, stop_writer) = io::pipe().context_with(context)?;
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
        let worker = thread::Builder::new()
            .name("tun relay".to_string())
            .spawn(move || relay(&a, &b, &stop_reader, &shared))
            .context_with(context)?;
        Ok(TunRelay {
            stop: Some(stop_writer),
            worker: Some(worker),
            counters,
        })
    }

    /// The packet counts so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            a_to_b: self.counters.a_to_b.load(Ordering::Relaxed),
            b_to_a: self.counters.b_to_a.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops the relay, waits for its thread (a few milliseconds) and
    /// closes both devices. Returns the error that had stopped the relay
    /// early, if one did (for instance a device deleted under it).
    pub fn stop(mut self) -> Result<(), SysError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), SysError> {
        // Closing the pipe's write end wakes the relay thread's poll.
        drop(self.stop.take());
        match self.worker.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Err(SysError::other(
                "stopping the TUN relay",
                "its thread panicked",
            )),
        }
    }
}

impl Drop for TunRelay {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            log::warn!("{error}");
        }
    }
}

/// The relay thread: returns when `stop` becomes readable (closed).
fn relay(a: &Tun, b: &Tun, stop: &PipeReader, counters: &Counters) -> Result<(), SysError> {
    let mut buffer = vec![0u8; MAX_PACKET];
    loop {
        let [ready_a, ready_b, stopped] = wait(a, b, stop)?;
        if !stopped.is_empty() {
            return Ok(());
        }
        for (ready, from, to, relayed) in [
            (ready_a, a, b, &counters.a_to_b),
            (ready_b, b, a, &counters.b_to_a),
        ] {
            if ready.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL) {
                return Err(SysError::other(
                    format!("relaying packets from {}", from.name),
                    format!("the device reported {ready:?} (was it deleted?)"),
                ));
            }
            if ready.contains(PollFlags::POLLIN) {
                forward(from, to, &mut buffer, relayed, &counters.dropped)?;
            }
        }
    }
}

/// Waits until `a`, `b` or `stop` has something; returns their poll events.
fn wait(a: &Tun, b: &Tun, stop: &PipeReader) -> Result<[PollFlags; 3], SysError> {
    let mut fds = [a.as_fd(), b.as_fd(), stop.as_fd()].map(|fd| PollFd::new(fd, PollFlags::POLLIN));
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                return Err(errno).context_with(|| "waiting for packets to relay".to_string())
            }
            Ok(_) => return Ok(fds.map(|fd| fd.revents().unwrap_or(PollFlags::empty()))),
        }
    }
}

/// Moves up to [`BATCH`] queued packets from `from` to `to`.
fn forward(
    from: &Tun,
    to: &Tun,
    buffer: &mut [u8],
    relayed: &AtomicU64,
    dropped: &AtomicU64,
) -> Result<(), SysError> {
    for _ in 0..BATCH {
        let length = match from.read_packet(buffer) {
            Ok(length) => length,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(SysError::os(
                    format!("reading a packet from {}", from.name),
                    error,
                ))
            }
        };
        match to.write_packet(&buffer[..length]) {
            Ok(_) => relayed.fetch_add(1, Ordering::Relaxed),
            Err(error) => {
                log::debug!("{} refused a packet of {length} bytes: {error}", to.name);
                dropped.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, UdpSocket},
        path::Path,
        time::{Duration, Instant},
    };

    use super::*;
    use crate::sys::{
        netlink::Netlink,
        test_support::{privileged, test_namespace},
    };

    #[test]
    fn requests_carry_the_name_and_tun_flags() {
        let request = interface_request("l3mp%d").expect("valid name");
        assert_eq!(name_of(&request), "l3mp%d");
        // SAFETY: the union was written as `ifru_flags` just above.
        let flags = unsafe { request.ifr_ifru.ifru_flags };
        assert_eq!(flags as libc::c_int, libc::IFF_TUN | libc::IFF_NO_PI);
    }

    #[test]
    fn unusable_device_names_are_refused_before_any_syscall() {
        assert!(interface_request("").is_err());
        assert!(interface_request("sixteen-bytes-xx").is_err());
        assert!(interface_request("nul\0").is_err());
        assert!(interface_request("fifteen-bytes-x").is_ok());
    }

    /// A TUN device with `address`/30, up, in the calling thread's namespace.
    fn tun_with_address(name: &str, address: Ipv4Addr) -> Result<Tun, SysError> {
        let tun = Tun::create(name)?;
        let netlink = Netlink::new()?;
        let link = netlink
            .link(tun.name())?
            .ok_or_else(|| SysError::other("finding the new TUN device", "it is missing"))?;
        assert_eq!(link.kind.as_deref(), Some("tun"));
        assert!(!link.is_ethernet && link.mac.is_none());
        netlink.add_address(link.index, address.into(), 30)?;
        netlink.set_up(link.index)?;
        Ok(tun)
    }

    #[test]
    fn relay_carries_a_udp_datagram_between_namespaces() {
        if !privileged("relay_carries_a_udp_datagram_between_namespaces") {
            return;
        }
        if !Path::new(TUN_CLONE_DEVICE).exists() {
            eprintln!("skipped: needs {TUN_CLONE_DEVICE}");
            return;
        }
        let (left_ip, right_ip) = (Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2));
        let left = test_namespace("tunl");
        let right = test_namespace("tunr");
        let a = left
            .run(|| tun_with_address("l3t%d", left_ip))
            .expect("enter")
            .expect("left tun");
        let b = right
            .run(|| tun_with_address("l3t%d", right_ip))
            .expect("enter")
            .expect("right tun");
        assert!(
            a.name().starts_with("l3t") && !a.name().contains('%'),
            "{}",
            a.name()
        );
        let relay = TunRelay::start(a, b).expect("start the relay");

        let receiver = right
            .run(|| UdpSocket::bind((right_ip, 0)))
            .expect("enter")
            .expect("bind");
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let port = receiver.local_addr().expect("local address").port();
        let sent = left
            .run(|| UdpSocket::bind((left_ip, 0))?.send_to(b"through the tunnel", (right_ip, port)))
            .expect("enter")
            .expect("send");
        assert_eq!(sent, 18);

        let mut buffer = [0u8; 64];
        let (length, from) = receiver
            .recv_from(&mut buffer)
            .expect("the datagram crosses the relay");
        assert_eq!(&buffer[..length], b"through the tunnel");
        assert_eq!(from.ip(), left_ip);
        assert!(relay.stats().a_to_b >= 1, "{:?}", relay.stats());

        // Stopping does not wait for traffic that will never come: it returns (a relay stuck
        // in a blocking read would hang here). The bound is loose on purpose: this is no
        // timing test, and a loaded machine may take a while to schedule the threads.
        let started = Instant::now();
        relay.stop().expect("the relay ran without error");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "stop took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn relay_reports_a_deleted_device() {
        if !privileged("relay_reports_a_deleted_device") {
            return;
        }
        let netns = test_namespace("tundel");
        let (a, b, netlink) = netns
            .run(|| -> Result<_, SysError> {
                Ok((Tun::create("l3ta")?, Tun::create("l3tb")?, Netlink::new()?))
            })
            .expect("enter")
            .expect("two TUN devices");
        let relay = TunRelay::start(a, b).expect("start the relay");
        netlink.delete_link("l3ta").expect("delete one device");
        let deadline = Instant::now() + Duration::from_secs(2);
        while relay
            .worker
            .as_ref()
            .is_some_and(|worker| !worker.is_finished())
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(5));
        }
        let error = relay.stop().expect_err("the relay noticed the deletion");
        assert!(error.to_string().contains("l3ta"), "{error}");
    }
}
