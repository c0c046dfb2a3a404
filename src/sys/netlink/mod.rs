//! Synchronous rtnetlink: links, addresses, neighbours and link notifications.
//!
//! A [`Netlink`] handle owns one `NETLINK_ROUTE` socket, which the kernel
//! binds to the network namespace of the thread that creates it: create the
//! handle in the namespace you want to act on (see
//! [`NetNs::run`](crate::sys::netns::NetNs::run)). Once created, it may be
//! moved to and used from any thread and keeps acting on that namespace.

mod address;
mod link;
mod link_info;
mod neighbour;
mod request;
mod tc;
mod vxlan;
mod watch;

use netlink_packet_route::RouteNetlinkMessage;

pub use address::Address;
pub use link::{Sent, VethEnd};
pub use link_info::{format_mac, LinkInfo, LinkRef};
pub use neighbour::NeighbourEntry;
pub use tc::{TcDirection, TcFilter};
pub use watch::{LinkEvent, LinkWatcher};

use crate::sys::SysError;
use request::Channel;

/// A handle on the routing netlink of one network namespace.
pub struct Netlink {
    channel: Channel,
}

impl Netlink {
    /// Opens a handle on the calling thread's current network namespace.
    pub fn new() -> Result<Self, SysError> {
        Ok(Netlink {
            channel: Channel::open()?,
        })
    }

    /// Sends an acknowledged request with extra `flags` and returns its
    /// reply messages; on failure, the error starts with `context()`.
    fn execute(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
        context: impl FnOnce() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, SysError> {
        self.channel
            .request(message, flags)
            .map_err(|failure| failure.into_error(context()))
    }

    /// Like [`Netlink::execute`], but a refusal with `absent_errno` (the
    /// kernel's way of saying "no such object") gives `Ok(None)`.
    fn execute_lookup(
        &self,
        message: RouteNetlinkMessage,
        absent_errno: i32,
        context: impl FnOnce() -> String,
    ) -> Result<Option<Vec<RouteNetlinkMessage>>, SysError> {
        match self.channel.request(message, 0) {
            Ok(replies) => Ok(Some(replies)),
            Err(failure) if failure.errno() == Some(absent_errno) => Ok(None),
            Err(failure) => Err(failure.into_error(context())),
        }
    }
}

#[cfg(test)]
mod tests;
