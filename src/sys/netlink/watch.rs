//! Link notifications (`RTNLGRP_LINK`).

use std::{
    collections::VecDeque,
    io,
    os::fd::AsFd,
    time::{Duration, Instant},
};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{link::LinkMessage, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use nix::{
    errno::Errno,
    poll::{poll, PollFd, PollFlags, PollTimeout},
};

use super::{request::split_messages, LinkInfo, Netlink};
use crate::sys::{
    error::{IoContext, NixContext},
    SysError,
};

/// Kernel socket buffer for notifications: room for bursts of link changes.
const RECEIVE_BUFFER_BYTES: usize = 1 << 20;
/// Room for one notification datagram.
const DATAGRAM_BYTES: usize = 64 * 1024;

/// A change to the set of links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A link appeared or changed (name, flags, MTU, ...): its new state.
    New(LinkInfo),
    /// A link was deleted (or moved to another namespace).
    Deleted {
        /// Its former interface index.
        index: u32,
        /// Its former name.
        name: String,
    },
}

impl LinkEvent {
    fn from_message(message: RouteNetlinkMessage) -> Option<Self> {
        match message {
            RouteNetlinkMessage::NewLink(link) => {
                Some(LinkEvent::New(LinkInfo::from_message(&link)))
            }
            RouteNetlinkMessage::DelLink(link) => Some(deleted(&link)),
            _ => None,
        }
    }
}

fn deleted(link: &LinkMessage) -> LinkEvent {
    let info = LinkInfo::from_message(link);
    LinkEvent::Deleted {
        index: info.index,
        name: info.name,
    }
}

/// A subscription to link notifications in the namespace it was opened in.
pub struct LinkWatcher {
    socket: Socket,
    pending: VecDeque<LinkEvent>,
    buffer: Vec<u8>,
}

impl Netlink {
    /// Subscribes to link notifications of the calling thread's network
    /// namespace. Only changes made after this call are reported.
    pub fn watch_links() -> Result<LinkWatcher, SysError> {
        LinkWatcher::open()
    }
}

impl LinkWatcher {
    fn open() -> Result<Self, SysError> {
        let context = || "subscribing to link notifications".to_string();
        let mut socket = Socket::new(NETLINK_ROUTE).context_with(context)?;
        socket.bind_auto().context_with(context)?;
        socket
            .add_membership(libc::RTNLGRP_LINK)
            .context_with(context)?;
        socket
            .set_rx_buf_sz(RECEIVE_BUFFER_BYTES)
            .context_with(context)?;
        socket.set_non_blocking(true).context_with(context)?;
        Ok(LinkWatcher {
            socket,
            pending: VecDeque::new(),
            buffer: Vec::with_capacity(DATAGRAM_BYTES),
        })
    }

    /// The next link event, waiting at most `timeout`; `Ok(None)` if none came.
    ///
    /// If the kernel had to drop notifications because they were not read
    /// fast enough, this returns an error with errno `ENOBUFS`: re-read the
    /// links with [`Netlink::links`] and carry on calling `next`.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<LinkEvent>, SysError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !self.wait_readable(remaining)? {
                return Ok(None);
            }
            self.read_events()?;
        }
    }

    /// Whether the socket became readable within `timeout` (an interrupted
    /// wait counts as readable; the read then finds nothing).
    fn wait_readable(&self, timeout: Duration) -> Result<bool, SysError> {
        let millis = timeout.as_nanos().div_ceil(1_000_000);
        let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => Ok(true),
            ready => ready
                .map(|count| count > 0)
                .context_with(|| "waiting for link notifications".to_string()),
        }
    }

    /// Reads one datagram of notifications, if any, into `pending`.
    fn read_events(&mut self) -> Result<(), SysError> {
        self.buffer.clear();
        match self.socket.recv(&mut self.buffer, 0) {
            Ok(_) => self.queue_events(),
            Err(error) if is_transient(&error) => Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => Err(SysError::os(
                "reading link notifications: some were lost, re-read the links",
                error,
            )),
            Err(error) => Err(SysError::os("reading link notifications", error)),
        }
    }

    /// Queues the events of the datagram in `buffer`; one that cannot be
    /// decoded is reported after the others are queued.
    fn queue_events(&mut self) -> Result<(), SysError> {
        let context = "decoding a link notification";
        let messages = split_messages(&self.buffer)
            .map_err(|failure| failure.into_error(context.to_string()))?;
        let mut undecodable = None;
        for bytes in messages {
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
                Ok(NetlinkMessage {
                    payload: NetlinkPayload::InnerMessage(inner),
                    ..
                }) => self.pending.extend(LinkEvent::from_message(inner)),
                Ok(_) => {}
                Err(error) => undecodable = Some(SysError::other(context, error.to_string())),
            }
        }
        undecodable.map_or(Ok(()), Err)
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
