//! One rtnetlink request and its replies over a blocking `NETLINK_ROUTE` socket.

use std::{cell::Cell, io};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_ACK_TLVS,
    NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::sys::error::{IoContext, SysError};

/// Room for one datagram: the kernel never sends more than 32 KiB at once.
const RECV_BUFFER: usize = 64 * 1024;
/// How many times a dump disturbed by concurrent changes is restarted.
const DUMP_ATTEMPTS: usize = 3;
/// `NLMSGERR_ATTR_MSG`: the extended-ack attribute holding the error text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of a `struct nlmsghdr`.
const NLMSG_HEADER: usize = 16;

/// Why a request failed, before the caller says what it was doing.
#[derive(Debug)]
pub(super) enum Failure {
    /// The kernel answered with an errno, and maybe an explanation.
    Kernel { errno: i32, detail: Option<String> },
    /// The socket itself failed.
    Io(io::Error),
    /// A reply could not be decoded.
    Decode(String),
    /// A dump kept being interrupted by concurrent changes.
    Interrupted,
}

impl Failure {
    /// The errno of a kernel refusal.
    pub(super) fn errno(&self) -> Option<i32> {
        match self {
            Failure::Kernel { errno, .. } => Some(*errno),
            Failure::Io(error) => error.raw_os_error(),
            Failure::Decode(_) | Failure::Interrupted => None,
        }
    }

    /// Turns the failure into a [`SysError`] saying what was being done.
    pub(super) fn into_error(self, context: String) -> SysError {
        match self {
            Failure::Kernel { errno, detail } => SysError::kernel(context, errno, detail),
            Failure::Io(error) => SysError::os(context, error),
            Failure::Decode(reason) => SysError::other(context, reason),
            Failure::Interrupted => SysError::other(
                context,
                format!("the dump was interrupted by concurrent changes {DUMP_ATTEMPTS} times"),
            ),
        }
    }
}

/// A `NETLINK_ROUTE` socket that sends one request at a time and collects
/// its replies.
pub(super) struct Channel {
    socket: Socket,
    sequence: Cell<u32>,
}

impl Channel {
    /// Opens the socket in the calling thread's network namespace.
    pub(super) fn open() -> Result<Self, SysError> {
        let mut socket = Socket::new(NETLINK_ROUTE)
            .context_with(|| "opening a NETLINK_ROUTE socket".to_string())?;
        socket
            .bind_auto()
            .context_with(|| "binding a NETLINK_ROUTE socket".to_string())?;
        // Both only make error replies smaller and more helpful.
        if let Err(error) = socket.set_ext_ack(true).and(socket.set_cap_ack(true)) {
            log::debug!("netlink extended acks unavailable: {error}");
        }
        Ok(Channel {
            socket,
            sequence: Cell::new(0),
        })
    }

    /// Sends `message` (acknowledged) with extra `flags` and returns the
    /// messages of the reply. Dumps interrupted by concurrent changes are
    /// restarted.
    pub(super) fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Failure> {
        let attempts = if flags & NLM_F_DUMP == NLM_F_DUMP {
            DUMP_ATTEMPTS
        } else {
            1
        };
        for _ in 1..attempts {
            match self.request_once(message.clone(), flags) {
                Err(Failure::Interrupted) => continue,
                done => return done,
            }
        }
        self.request_once(message, flags)
    }

    fn request_once(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Failure> {
        let sequence = self.next_sequence();
        self.send(message, flags, sequence)?;
        let mut replies = Replies::new(sequence);
        let mut buffer = Vec::with_capacity(RECV_BUFFER);
        while !replies.finished {
            buffer.clear();
            self.receive(&mut buffer)?;
            replies.absorb(&buffer)?;
        }
        replies.into_result()
    }

    fn next_sequence(&self) -> u32 {
        let sequence = self.sequence.get().wrapping_add(1);
        self.sequence.set(sequence);
        sequence
    }

    fn send(&self, message: RouteNetlinkMessage, flags: u16, sequence: u32) -> Result<(), Failure> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let kernel = SocketAddr::new(0, 0);
        self.socket
            .send_to(&bytes, &kernel, 0)
            .map(drop)
            .map_err(Failure::Io)
    }

    fn receive(&self, buffer: &mut Vec<u8>) -> Result<(), Failure> {
        loop {
            match self.socket.recv(buffer, libc::MSG_TRUNC) {
                Ok(length) if length > buffer.len() => {
                    return Err(Failure::Decode(format!(
                        "a netlink reply of {length} bytes did not fit in {RECV_BUFFER} bytes"
                    )))
                }
                Ok(_) => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(Failure::Io(error)),
            }
        }
    }
}

/// The replies collected so far for one request.
struct Replies {
    sequence: u32,
    messages: Vec<RouteNetlinkMessage>,
    finished: bool,
    interrupted: bool,
    undecodable: Option<String>,
}

impl Replies {
    fn new(sequence: u32) -> Self {
        Replies {
            sequence,
            messages: Vec::new(),
            finished: false,
            interrupted: false,
            undecodable: None,
        }
    }

    /// Takes in one datagram, which may hold several netlink messages.
    fn absorb(&mut self, datagram: &[u8]) -> Result<(), Failure> {
        for bytes in split_messages(datagram)? {
            let raw = NetlinkBuffer::new(bytes);
            if raw.sequence_number() != self.sequence {
                continue;
            }
            self.interrupted |= raw.flags() & NLM_F_DUMP_INTR != 0;
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
                Ok(message) => self.take(message, raw.flags())?,
                // Keep reading to the end of the reply, then report it.
                Err(error) => self.undecodable = Some(format!("undecodable reply: {error}")),
            }
        }
        Ok(())
    }

    fn take(
        &mut self,
        message: NetlinkMessage<RouteNetlinkMessage>,
        flags: u16,
    ) -> Result<(), Failure> {
        match message.payload {
            NetlinkPayload::InnerMessage(inner) => self.messages.push(inner),
            NetlinkPayload::Done(done) if done.code != 0 => {
                return Err(Failure::Kernel {
                    errno: done.code.abs(),
                    detail: None,
                })
            }
            NetlinkPayload::Done(_) => self.finished = true,
            NetlinkPayload::Error(error) => match error.code {
                None => self.finished = true,
                Some(code) => {
                    let detail = extack_message(flags, &error.header);
                    return Err(Failure::Kernel {
                        errno: code.get().abs(),
                        detail,
                    });
                }
            },
            // Noop, Overrun: nothing to collect.
            _ => {}
        }
        Ok(())
    }

    fn into_result(self) -> Result<Vec<RouteNetlinkMessage>, Failure> {
        if let Some(reason) = self.undecodable {
            return Err(Failure::Decode(reason));
        }
        if self.interrupted {
            return Err(Failure::Interrupted);
        }
        Ok(self.messages)
    }
}

/// Splits a datagram into its netlink messages (each slice is one message).
pub(super) fn split_messages(datagram: &[u8]) -> Result<Vec<&[u8]>, Failure> {
    let mut messages = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let rest = &datagram[offset..];
        let length = NetlinkBuffer::new_checked(rest)
            .map_err(|error| Failure::Decode(format!("malformed netlink message: {error}")))?
            .length() as usize;
        messages.push(&rest[..length]);
        offset += align4(length);
    }
    Ok(messages)
}

fn align4(length: usize) -> usize {
    (length + 3) & !3
}

/// The text of an extended acknowledgement (`NLMSGERR_ATTR_MSG`), if any.
///
/// `payload` is what follows the errno in an `NLMSG_ERROR`: the request's
/// header (whole request unless `NLM_F_CAPPED`), then the TLVs.
fn extack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < NLMSG_HEADER {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HEADER
    } else {
        u32::from_ne_bytes(payload[..4].try_into().ok()?) as usize
    };
    let mut tlvs = payload.get(align4(echoed)..)?;
    while tlvs.len() >= 4 {
        let length = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        let value = tlvs.get(4..length)?;
        if kind == NLMSGERR_ATTR_MSG {
            let text = value.split(|&byte| byte == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        tlvs = tlvs.get(align4(length).max(4)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut bytes = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        bytes.extend(kind.to_ne_bytes());
        bytes.extend(value);
        bytes.resize(align4(bytes.len()), 0);
        bytes
    }

    #[test]
    fn extack_text_is_found_after_a_capped_header() {
        let mut payload = vec![0u8; NLMSG_HEADER];
        payload.extend(tlv(2, &7u32.to_ne_bytes()));
        payload.extend(tlv(NLMSGERR_ATTR_MSG, b"Invalid MTU\0"));
        let text = extack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &payload);
        assert_eq!(text.as_deref(), Some("Invalid MTU"));
    }

    #[test]
    fn extack_text_is_found_after_an_uncapped_request() {
        let mut payload = 20u32.to_ne_bytes().to_vec();
        payload.resize(20, 0);
        payload.extend(tlv(NLMSGERR_ATTR_MSG, b"No such device\0"));
        let text = extack_message(NLM_F_ACK_TLVS, &payload);
        assert_eq!(text.as_deref(), Some("No such device"));
    }

    #[test]
    fn no_extack_without_the_flag_or_with_truncated_tlvs() {
        let mut payload = vec![0u8; NLMSG_HEADER];
        payload.extend(tlv(NLMSGERR_ATTR_MSG, b"x\0"));
        assert_eq!(extack_message(NLM_F_CAPPED, &payload), None);
        payload.truncate(NLMSG_HEADER + 5);
        payload[NLMSG_HEADER] = 40;
        assert_eq!(
            extack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &payload),
            None
        );
    }

    #[test]
    fn datagrams_split_into_aligned_messages() {
        let mut datagram = Vec::new();
        for length in [17u32, 20] {
            let mut message = length.to_ne_bytes().to_vec();
            message.resize(length as usize, 0);
            message.resize(align4(length as usize), 0);
            datagram.extend(message);
        }
        let messages = split_messages(&datagram).expect("well-formed datagram");
        let lengths: Vec<usize> = messages.iter().map(|m| m.len()).collect();
        assert_eq!(lengths, vec![17, 20]);
        assert!(split_messages(&datagram[..10]).is_err());
    }
}
