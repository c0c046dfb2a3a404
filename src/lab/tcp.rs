//! A TCP transfer between two hosts, both ends bound to a device.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::Duration;

use nix::sys::socket::{bind, connect, listen, Backlog, SockType, SockaddrStorage};

use super::Error;

use super::host::End;
use super::socket::{device_socket, scoped, set_timeouts};

/// Bytes written per call.
const CHUNK: usize = 64 * 1024;

/// The byte at `offset` of every transfer.
fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// Sends `bytes` bytes over one TCP connection from `client` to a listener on `server` at
/// `address`, and returns how many the server received, every one checked against what was
/// sent. Each connect, accept, read and write waits at most `timeout`.
pub fn transfer(
    client: End<'_>,
    server: End<'_>,
    address: IpAddr,
    bytes: usize,
    timeout: Duration,
) -> Result<usize, Error> {
    let fail = |end: End<'_>, what: &str| {
        let side = end.host.side();
        let device = end.device.to_string();
        let what = what.to_string();
        move |e: io::Error| {
            Error::new(format!(
                "host {side}: TCP to {address} on {device}: {what}: {e}"
            ))
        }
    };
    let listener = server
        .host
        .run(|| listener(address, server.device, timeout))?
        .map_err(fail(server, "listening"))?;
    let port = listener
        .local_addr()
        .map_err(fail(server, "reading the port"))?
        .port();
    thread::scope(|scope| {
        let receiver = scope.spawn(|| receive(&listener, timeout));
        let sent = client
            .host
            .run(|| send(address, port, client.device, bytes, timeout))?
            .map_err(fail(client, "sending"));
        let received = receiver
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .map_err(fail(server, "receiving"));
        sent?;
        received
    })
}

fn listener(address: IpAddr, device: &str, timeout: Duration) -> io::Result<TcpListener> {
    let fd = device_socket(address, SockType::Stream, None, device)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(scoped(address, 0, device)?),
    )?;
    listen(&fd, Backlog::new(1)?)?;
    // The receive timeout bounds accept() too.
    set_timeouts(&fd, timeout)?;
    Ok(TcpListener::from(fd))
}

/// Accepts one connection and reads it to its end, checking every byte.
fn receive(listener: &TcpListener, timeout: Duration) -> io::Result<usize> {
    let (mut stream, _) = listener.accept()?;
    stream.set_read_timeout(Some(timeout))?;
    let mut buffer = vec![0u8; CHUNK];
    let mut received = 0;
    loop {
        let len = match stream.read(&mut buffer) {
            Ok(0) => return Ok(received),
            Ok(len) => len,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(i) = (0..len).find(|&i| buffer[i] != pattern(received + i)) {
            return Err(io::Error::other(format!(
                "byte {} arrived corrupted",
                received + i
            )));
        }
        received += len;
    }
}

/// Connects to `address:port` out of `device` and writes `bytes` bytes of the pattern.
fn send(
    address: IpAddr,
    port: u16,
    device: &str,
    bytes: usize,
    timeout: Duration,
) -> io::Result<()> {
    let fd = device_socket(address, SockType::Stream, None, device)?;
    // The send timeout bounds connect() too.
    set_timeouts(&fd, timeout)?;
    connect(
        fd.as_raw_fd(),
        &SockaddrStorage::from(scoped(address, port, device)?),
    )?;
    let mut stream = TcpStream::from(fd);
    let mut sent = 0;
    while sent < bytes {
        let chunk: Vec<u8> = (sent..bytes.min(sent + CHUNK)).map(pattern).collect();
        stream.write_all(&chunk)?;
        sent += chunk.len();
    }
    stream.shutdown(Shutdown::Write)
}
