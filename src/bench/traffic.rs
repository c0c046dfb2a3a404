//! Traffic between two hosts for the end-to-end figures: a TCP stream and a flood of small
//! UDP datagrams, each for a bounded time, the sender pinned to one CPU and the receiver to
//! the other, both sides measured at the receiver.

use std::io::{self, Read, Write};
use std::mem;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::Error;
use crate::lab::Host;

use super::cpu;

/// The CPU senders run on (the whole receive path of a veth runs there too, in softirq).
const SENDER_CPU: usize = 0;
/// The CPU receivers run on.
const RECEIVER_CPU: usize = 1;
/// Bytes per TCP write and read.
const TCP_CHUNK: usize = 128 * 1024;
/// Payload bytes of a small UDP datagram: a 60-byte IPv4 frame (64 with the FCS).
pub const UDP_PAYLOAD: usize = 18;
/// Datagrams per sendmmsg / recvmmsg call.
const BATCH: usize = 64;
/// Longest a connection, an accept or a quiet receiver waits.
const WAIT: Duration = Duration::from_secs(5);
/// How long a UDP receiver waits for more once the sender has stopped.
const DRAIN: Duration = Duration::from_millis(200);
/// Receive buffer asked for the UDP receiver.
const UDP_RCVBUF: i32 = 16 << 20;

/// What a receiver counted: the units (bytes or datagrams) that arrived after the first
/// arrival, which starts the clock, up to the last.
#[derive(Default)]
struct Received {
    units: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Received {
    /// Counts `units` arriving now.
    fn arrived(&mut self, units: u64) {
        let now = Instant::now();
        match self.first {
            None => self.first = Some(now),
            Some(_) => self.units += units,
        }
        self.last = Some(now);
    }

    /// Units per second.
    fn rate(&self, what: &str) -> Result<f64, Error> {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return Err(Error::new(format!("{what}: nothing arrived")));
        };
        let secs = (last - first).as_secs_f64();
        if self.units == 0 || secs <= 0.0 {
            return Err(Error::new(format!("{what}: too little arrived to time")));
        }
        Ok(self.units as f64 / secs)
    }
}

/// A TCP stream from `from` to `to` at `address` (one of `to`'s) for `secs` seconds; Gbit/s
/// at the receiver.
pub fn tcp(from: &Host, to: &Host, address: IpAddr, secs: f64) -> Result<f64, Error> {
    let what = format!("TCP to {address}");
    let received = between(
        (from, to, &what),
        |port_tx, _| {
            let listener = TcpListener::bind(SocketAddr::new(address, 0)).map_err(io(&what))?;
            let _ = port_tx.send(listener.local_addr().map_err(io(&what))?.port());
            wait_readable(&listener, WAIT).map_err(io(&what))?;
            let (mut stream, _) = listener.accept().map_err(io(&what))?;
            stream.set_read_timeout(Some(WAIT)).map_err(io(&what))?;
            let mut buffer = vec![0u8; TCP_CHUNK];
            let mut got = Received::default();
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) => return Ok(got),
                    Ok(len) => got.arrived(len as u64),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io(&what)(e)),
                }
            }
        },
        |port| {
            let mut stream = TcpStream::connect_timeout(&SocketAddr::new(address, port), WAIT)
                .map_err(io(&what))?;
            stream.set_write_timeout(Some(WAIT)).map_err(io(&what))?;
            let chunk = vec![0x5au8; TCP_CHUNK];
            let deadline = Instant::now() + Duration::from_secs_f64(secs);
            while Instant::now() < deadline {
                stream.write_all(&chunk).map_err(io(&what))?;
            }
            stream.shutdown(Shutdown::Write).map_err(io(&what))
        },
    )?;
    Ok(received.rate(&what)? * 8.0 / 1e9)
}

/// Small UDP datagrams from `from` to `to` at `address` as fast as the sender can for `secs`
/// seconds; million datagrams per second received.
pub fn udp(from: &Host, to: &Host, address: IpAddr, secs: f64) -> Result<f64, Error> {
    let what = format!("UDP to {address}");
    let received = between(
        (from, to, &what),
        |port_tx, stop| {
            let socket = UdpSocket::bind(SocketAddr::new(address, 0)).map_err(io(&what))?;
            set_int(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, UDP_RCVBUF)
                .map_err(io(&what))?;
            let _ = port_tx.send(socket.local_addr().map_err(io(&what))?.port());
            receive_datagrams(&socket, stop).map_err(io(&what))
        },
        |port| {
            let unspecified: IpAddr = match address {
                IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            };
            let socket = UdpSocket::bind(SocketAddr::new(unspecified, 0)).map_err(io(&what))?;
            socket
                .connect(SocketAddr::new(address, port))
                .map_err(io(&what))?;
            send_datagrams(&socket, Duration::from_secs_f64(secs)).map_err(io(&what))
        },
    )?;
    Ok(received.rate(&what)? / 1e6)
}

/// Runs `receive` in `to` on the receiver's CPU and `send` in `from` on the sender's, the
/// sender once the receiver has given the port it listens on; what the receiver counted. The
/// receiver is told to stop (for one that cannot tell the end from the traffic) when the
/// sender is done.
fn between(
    (from, to, what): (&Host, &Host, &str),
    receive: impl FnOnce(mpsc::Sender<u16>, &AtomicBool) -> Result<Received, Error> + Send,
    send: impl FnOnce(u16) -> Result<(), Error>,
) -> Result<Received, Error> {
    let (port_tx, port_rx) = mpsc::channel();
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let receiver = scope.spawn(|| -> Result<Received, Error> {
            on(to, RECEIVER_CPU)?;
            receive(port_tx, &stop)
        });
        let sent = (|| -> Result<(), Error> {
            on(from, SENDER_CPU)?;
            let port = port_rx
                .recv_timeout(WAIT)
                .map_err(|_| Error::new(format!("{what}: the receiver did not start")))?;
            send(port)
        })();
        stop.store(true, Ordering::Relaxed);
        let received = receiver
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        sent?;
        received
    })
}

/// Sends datagrams of [`UDP_PAYLOAD`] bytes on the connected `socket` for `time`, in batches.
fn send_datagrams(socket: &UdpSocket, time: Duration) -> io::Result<()> {
    let payload = [0x5au8; UDP_PAYLOAD];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: all-zero `mmsghdr`s are valid (no name, no control data).
    let mut messages: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect();
    for m in &mut messages {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let deadline = Instant::now() + time;
    while Instant::now() < deadline {
        // SAFETY: `messages` holds BATCH headers, each pointing at `iov`, which points at
        // `payload`; all outlive the call.
        let sent =
            unsafe { libc::sendmmsg(socket.as_raw_fd(), messages.as_mut_ptr(), BATCH as u32, 0) };
        if sent < 0 {
            let e = io::Error::last_os_error();
            // A full queue somewhere on the way: try again.
            if !matches!(
                e.raw_os_error(),
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR)
            ) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Counts datagrams on `socket` until `stop` is set and nothing more comes for [`DRAIN`].
/// It polls without sleeping (the receiver has a CPU of its own), so that no datagram has to
/// wake it: what is measured is the datapath, not the cost of waking a thread in a VM.
fn receive_datagrams(socket: &UdpSocket, stop: &AtomicBool) -> io::Result<Received> {
    let mut buffers = vec![[0u8; 2048]; BATCH];
    let mut iovs: Vec<libc::iovec> = buffers
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: all-zero `mmsghdr`s are valid (no name, no control data).
    let mut messages: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect();
    for (m, iov) in messages.iter_mut().zip(&mut iovs) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut got = Received::default();
    let mut stopped: Option<Instant> = None;
    loop {
        // SAFETY: `messages` holds BATCH headers, each pointing at its own iovec and buffer;
        // all outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                messages.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            got.arrived(n as u64);
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => {
                if let Some(at) = stopped {
                    if at.elapsed() > DRAIN {
                        return Ok(got);
                    }
                } else if stop.load(Ordering::Relaxed) {
                    stopped = Some(Instant::now());
                }
                std::hint::spin_loop();
            }
            io::ErrorKind::Interrupted => {}
            _ => return Err(e),
        }
    }
}

/// Moves the calling thread into `host`'s namespace and onto `cpu`.
fn on(host: &Host, cpu: usize) -> Result<(), Error> {
    host.netns()
        .enter_current_thread()
        .map_err(|e| Error::new(e.to_string()))?;
    cpu::pin(cpu)
}

/// Waits up to `timeout` for `listener` to have a connection to accept.
fn wait_readable(listener: &TcpListener, timeout: Duration) -> io::Result<()> {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut fd, 1, timeout.as_millis() as i32) };
    match ready {
        1 => Ok(()),
        0 => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no connection came",
        )),
        _ => Err(io::Error::last_os_error()),
    }
}

/// `setsockopt(socket, level, name, &value)` for an `int` option.
fn set_int(socket: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the option value is one `int`, passed with its size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An I/O error as the bench reports it.
fn io(what: &str) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::new(format!("{what}: {e}"))
}
