//! A UDP receiver that reports the IPv4 TOS byte each datagram arrived with (`IP_RECVTOS`).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use l3mp::lab::Host;

/// A UDP socket on `host` bound to `address` that reports the TOS byte of what it receives.
pub struct TosReceiver {
    socket: UdpSocket,
}

impl TosReceiver {
    pub fn bind(host: &Host, address: Ipv4Addr, wait: Duration) -> TosReceiver {
        let socket = host
            .run(|| UdpSocket::bind(SocketAddr::from((address, 0))))
            .expect("enter the host")
            .expect("bind");
        let on: libc::c_int = 1;
        // SAFETY: an int option with its size, on an open socket.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_RECVTOS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "IP_RECVTOS: {}", std::io::Error::last_os_error());
        socket
            .set_read_timeout(Some(wait))
            .expect("a receive timeout");
        TosReceiver { socket }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("bound").port()
    }

    /// The TOS of the next datagram carrying `expected`, if one comes in time.
    pub fn tos_of(&self, expected: &[u8]) -> Option<u8> {
        let mut data = vec![0u8; 2048];
        let mut control = [0u8; 64];
        for _ in 0..16 {
            let mut iov = libc::iovec {
                iov_base: data.as_mut_ptr().cast(),
                iov_len: data.len(),
            };
            // SAFETY: a zeroed msghdr pointing at buffers that outlive the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control.len();
            // SAFETY: msg describes valid, writable buffers.
            let len = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut msg, 0) };
            if len < 0 {
                return None;
            }
            if &data[..len as usize] != expected {
                continue;
            }
            // SAFETY: walking the control messages the kernel wrote into `control`.
            let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            while !cmsg.is_null() {
                let header = unsafe { &*cmsg };
                if header.cmsg_level == libc::IPPROTO_IP && header.cmsg_type == libc::IP_TOS {
                    return Some(unsafe { *libc::CMSG_DATA(cmsg) });
                }
                cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
            }
            panic!("no IP_TOS control message");
        }
        None
    }
}
