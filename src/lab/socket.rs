//! What every traffic generator needs: sockets bound to a device, destinations scoped to it,
//! and bounded waits.

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::net::if_::if_nametoindex;
use nix::sys::socket::{
    setsockopt, socket, sockopt, AddressFamily, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

/// The shortest wait handed to the kernel (a zero `SO_RCVTIMEO` would mean "forever").
const MIN_WAIT: Duration = Duration::from_millis(1);

/// A socket of `ty` and `protocol` for `ip`'s family, bound to `device` (`SO_BINDTODEVICE`)
/// before anything else happens to it. Created in the calling thread's namespace.
pub fn device_socket(
    ip: IpAddr,
    ty: SockType,
    protocol: Option<SockProtocol>,
    device: &str,
) -> io::Result<OwnedFd> {
    let family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, ty, SockFlag::SOCK_CLOEXEC, protocol)?;
    setsockopt(&fd, sockopt::BindToDevice, &OsString::from(device))?;
    Ok(fd)
}

/// `ip:port` as a socket address; a link-scoped IPv6 address (`fe80::/10`, `ff02::/16`) gets
/// `device`'s index as its scope. Looks the device up in the calling thread's namespace.
pub fn scoped(ip: IpAddr, port: u16, device: &str) -> io::Result<SocketAddr> {
    match ip {
        IpAddr::V4(v4) => Ok(SocketAddr::from((v4, port))),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            let link_scoped = first & 0xffc0 == 0xfe80 || first & 0xff0f == 0xff02;
            let scope = if link_scoped {
                if_nametoindex(device)?
            } else {
                0
            };
            Ok(SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope)))
        }
    }
}

/// Sets the receive (and send) timeout of `fd` to `wait`, at least [`MIN_WAIT`].
pub fn set_timeouts(fd: &impl AsFd, wait: Duration) -> io::Result<()> {
    let wait = wait.max(MIN_WAIT);
    let wait = TimeVal::new(wait.as_secs() as _, wait.subsec_micros() as _);
    setsockopt(fd, sockopt::ReceiveTimeout, &wait)?;
    setsockopt(fd, sockopt::SendTimeout, &wait)?;
    Ok(())
}

/// A deadline `timeout` from now, and what is left of it.
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now() + timeout)
    }

    /// The time left, `None` once it has passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    }
}

/// Whether `e` is a receive timing out.
pub fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
