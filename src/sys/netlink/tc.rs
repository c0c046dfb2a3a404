//! The clsact qdisc and the TC filters on it, for kernels (or a choice) without tcx: whether a
//! device has one, which filters hang off it, and adding and removing them.

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::{
    tc::{TcAttribute, TcHandle, TcMessage, TcOption},
    RouteNetlinkMessage,
};
use netlink_packet_utils::nla::{Nla, NlasIterator};

use super::Netlink;
use crate::sys::SysError;

/// `TCA_BPF_NAME`: the name a cls_bpf filter carries (its program's, as aya attaches it).
const TCA_BPF_NAME: u16 = 7;
/// The handle of a clsact qdisc (`ffff:0`).
const CLSACT_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};

/// Which side of a clsact qdisc a filter hangs off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcDirection {
    Ingress,
    Egress,
}

impl TcDirection {
    pub const BOTH: [TcDirection; 2] = [TcDirection::Ingress, TcDirection::Egress];

    /// The parent handle filters of this side have (`ffff:fff2`, `ffff:fff3`).
    fn parent(self) -> TcHandle {
        let minor = match self {
            TcDirection::Ingress => TcHandle::MIN_INGRESS,
            TcDirection::Egress => TcHandle::MIN_EGRESS,
        };
        TcHandle {
            major: 0xffff,
            minor,
        }
    }
}

impl std::fmt::Display for TcDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TcDirection::Ingress => "ingress",
            TcDirection::Egress => "egress",
        })
    }
}

/// One TC filter on a clsact qdisc, as a dump lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcFilter {
    pub direction: TcDirection,
    /// `bpf`, `u32`, ...
    pub kind: String,
    /// The name of a cls_bpf filter (none for classic BPF bytecode).
    pub name: Option<String>,
    /// Priority and protocol (`tcm_info`) and handle: what deleting this one filter takes.
    info: u32,
    handle: TcHandle,
}

impl Netlink {
    /// Whether link `index` has a clsact qdisc: a get of its ingress-side qdisc (clsact,
    /// the legacy ingress qdisc, or none), not a dump of every qdisc of the namespace.
    pub fn has_clsact(&self, index: u32) -> Result<bool, SysError> {
        let mut message = TcMessage::with_index(index as i32);
        message.header.parent = TcHandle::CLSACT;
        let request = RouteNetlinkMessage::GetQueueDiscipline(message);
        let context = || format!("looking up the clsact qdisc of {}", self.describe(index));
        // The kernel answers a get of a qdisc as a notification: to the asker only on echo.
        let replies = match self.execute(request, NLM_F_ECHO, context) {
            Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(false),
            replies => replies?,
        };
        Ok(replies.iter().any(|reply| match reply {
            RouteNetlinkMessage::NewQueueDiscipline(qdisc) => qdisc
                .attributes
                .contains(&TcAttribute::Kind("clsact".into())),
            _ => false,
        }))
    }

    /// Adds a clsact qdisc to link `index`; fails if there is one.
    pub fn add_clsact(&self, index: u32) -> Result<(), SysError> {
        let request = RouteNetlinkMessage::NewQueueDiscipline(clsact_message(index));
        let context = || format!("adding a clsact qdisc to {}", self.describe(index));
        self.execute(request, NLM_F_CREATE | NLM_F_EXCL, context)?;
        Ok(())
    }

    /// Removes the clsact qdisc of link `index`, and every filter on it with it.
    pub fn delete_clsact(&self, index: u32) -> Result<(), SysError> {
        let request = RouteNetlinkMessage::DelQueueDiscipline(clsact_message(index));
        let context = || format!("removing the clsact qdisc of {}", self.describe(index));
        self.execute(request, 0, context)?;
        Ok(())
    }

    /// Every filter on the clsact qdisc of link `index` (none without one).
    pub fn tc_filters(&self, index: u32) -> Result<Vec<TcFilter>, SysError> {
        let mut filters = Vec::new();
        for direction in TcDirection::BOTH {
            let mut message = TcMessage::with_index(index as i32);
            message.header.parent = direction.parent();
            let request = RouteNetlinkMessage::GetTrafficFilter(message);
            let context = || {
                format!(
                    "listing the {direction} filters of {}",
                    self.describe(index)
                )
            };
            for reply in self.execute(request, NLM_F_DUMP, context)? {
                // A dump lists each classifier once without a handle, then its filters.
                match reply {
                    RouteNetlinkMessage::NewTrafficFilter(filter)
                        if filter.header.handle != TcHandle::UNSPEC =>
                    {
                        filters.push(filter_of(direction, &filter))
                    }
                    _ => {}
                }
            }
        }
        Ok(filters)
    }

    /// Removes `filter` from link `index`.
    pub fn delete_tc_filter(&self, index: u32, filter: &TcFilter) -> Result<(), SysError> {
        let mut message = TcMessage::with_index(index as i32);
        message.header.parent = filter.direction.parent();
        message.header.info = filter.info;
        message.header.handle = filter.handle;
        message
            .attributes
            .push(TcAttribute::Kind(filter.kind.clone()));
        let request = RouteNetlinkMessage::DelTrafficFilter(message);
        let what = filter.name.as_deref().unwrap_or(&filter.kind);
        let context = || {
            let on = self.describe(index);
            format!("removing the {} filter {what} of {on}", filter.direction)
        };
        self.execute(request, 0, context)?;
        Ok(())
    }
}

/// The `RTM_{NEW,DEL}QDISC` body for the clsact qdisc of link `index`.
fn clsact_message(index: u32) -> TcMessage {
    let mut message = TcMessage::with_index(index as i32);
    message.header.parent = TcHandle::CLSACT;
    message.header.handle = CLSACT_HANDLE;
    message.attributes.push(TcAttribute::Kind("clsact".into()));
    message
}

/// A filter as a dump reply describes it.
fn filter_of(direction: TcDirection, message: &TcMessage) -> TcFilter {
    let mut kind = String::new();
    let mut name = None;
    for attribute in &message.attributes {
        match attribute {
            TcAttribute::Kind(k) => kind.clone_from(k),
            TcAttribute::Options(options) => name = options.iter().find_map(bpf_name),
            _ => {}
        }
    }
    TcFilter {
        direction,
        kind,
        name,
        info: message.header.info,
        handle: message.header.handle,
    }
}

/// The text of the `TCA_BPF_NAME` attribute in a filter's options. netlink-packet-route knows
/// no cls_bpf options: it keeps them whole, as one attribute holding the nested ones.
fn bpf_name(option: &TcOption) -> Option<String> {
    let TcOption::Other(options) = option else {
        return None;
    };
    let mut nested = vec![0; options.value_len()];
    options.emit_value(&mut nested);
    let name = NlasIterator::new(&nested[..])
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == TCA_BPF_NAME)?;
    let text = name.value().split(|b| *b == 0).next().unwrap_or_default();
    Some(String::from_utf8_lossy(text).into_owned())
}
