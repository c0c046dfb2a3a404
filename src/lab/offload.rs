//! Transmit checksum offload, switched through the `SIOCETHTOOL` ioctl.

use std::io;
use std::mem;
use std::os::fd::AsRawFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// `ETHTOOL_GTXCSUM`: read whether transmit checksum offload is on.
const ETHTOOL_GTXCSUM: u32 = 0x16;
/// `ETHTOOL_STXCSUM`: turn transmit checksum offload on or off.
const ETHTOOL_STXCSUM: u32 = 0x17;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Sets transmit checksum offload of `link` (in the calling thread's namespace) and checks the
/// kernel took it.
pub fn set_tx_checksum(link: &str, on: bool) -> Result<(), String> {
    let what = if on { "on" } else { "off" };
    let context = |e: io::Error| format!("turning tx checksum offload {what} on {link}: {e}");
    ethtool(link, ETHTOOL_STXCSUM, u32::from(on)).map_err(context)?;
    let now = ethtool(link, ETHTOOL_GTXCSUM, 0).map_err(context)?;
    if (now != 0) != on {
        return Err(format!(
            "turning tx checksum offload {what} on {link}: the device kept it {}",
            if now != 0 { "on" } else { "off" }
        ));
    }
    Ok(())
}

/// One `SIOCETHTOOL` request with an `ethtool_value`; returns the value's data afterwards.
fn ethtool(link: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let bytes = link.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an interface name",
        ));
    }
    let socket = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: `ifreq` is plain data; all zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { mem::zeroed() };
    for (slot, &byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL reads the name and the pointer from `request` and reads and writes
    // one `ethtool_value` through it; both outlive the call.
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &mut request) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}
