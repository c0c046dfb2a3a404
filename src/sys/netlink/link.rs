//! Link (network interface) queries and changes.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::{
    link::{
        AfSpecInet6, AfSpecUnspec, InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask,
        LinkFlag, LinkInfo as InfoAttribute, LinkMessage,
    },
    RouteNetlinkMessage,
};

use super::{LinkInfo, LinkRef, Netlink};
use crate::sys::{netns::NetNs, SysError};

/// `IN6_ADDR_GEN_MODE_NONE` (linux/if_link.h): no automatic IPv6 address.
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;

/// What a link has sent, as the kernel counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub packets: u64,
    pub bytes: u64,
}

/// One end of a veth pair to create.
#[derive(Clone, Copy, Debug, Default)]
pub struct VethEnd<'a> {
    pub name: &'a str,
    /// `IFLA_IFALIAS`; empty for none.
    pub alias: &'a str,
    /// The MAC; `None` lets the kernel pick a random one.
    pub mac: Option<[u8; 6]>,
}

impl Netlink {
    /// The link called `name`, or `None` if there is none.
    pub fn link(&self, name: &str) -> Result<Option<LinkInfo>, SysError> {
        self.get_link(LinkRef::Name(name))
    }

    /// The link with interface index `index`, or `None` if there is none.
    pub fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>, SysError> {
        self.get_link(LinkRef::Index(index))
    }

    /// All links of the namespace.
    pub fn links(&self) -> Result<Vec<LinkInfo>, SysError> {
        let request = RouteNetlinkMessage::GetLink(query(LinkMessage::default()));
        let replies = self.execute(request, NLM_F_DUMP, || "listing links".to_string())?;
        Ok(replies.iter().filter_map(link_of).collect())
    }

    /// What every link of the namespace has sent (`IFLA_STATS64`'s transmit counters), by
    /// interface index.
    pub fn sent_by_link(&self) -> Result<HashMap<u32, Sent>, SysError> {
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        let replies = self.execute(request, NLM_F_DUMP, || {
            "listing link statistics".to_string()
        })?;
        Ok(replies
            .iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .filter_map(|link| {
                link.attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        LinkAttribute::Stats64(stats) => Some((
                            link.header.index,
                            Sent {
                                packets: stats.tx_packets,
                                bytes: stats.tx_bytes,
                            },
                        )),
                        _ => None,
                    })
            })
            .collect())
    }

    /// Creates the veth pair `user` / `peer`, both with MTU `mtu` and the
    /// given aliases and MACs, ARP off on `user` (`IFF_NOARP`) and IPv6
    /// address generation off on `peer` (it gets no link-local address, so its
    /// stack sends nothing: no DAD, MLD or router solicitation). Both ends stay
    /// down, so that nothing crosses the pair until the caller brings them up.
    /// If any step after the creation fails, the pair is deleted again before
    /// the error is returned.
    ///
    /// Five requests: the creation (with ARP off), one change per end for what
    /// the kernel takes only on an existing link (the alias, the address
    /// generation), and a lookup per end.
    pub fn create_veth(
        &self,
        user: &VethEnd<'_>,
        peer: &VethEnd<'_>,
        mtu: u32,
    ) -> Result<(LinkInfo, LinkInfo), SysError> {
        self.add_veth_pair(user, peer, mtu, None, true)?;
        let configured = self.configure_veth(user, peer);
        if configured.is_err() {
            if let Err(error) = self.delete_link(user.name) {
                log::warn!(
                    "could not remove the half-configured veth pair {:?}: {error}",
                    user.name
                );
            }
        }
        configured
    }

    /// Creates the veth pair `name` / `peer_name` with MTU `mtu`, the peer
    /// end created directly in the network namespace `peer_netns` (so both
    /// ends may carry the same name). Both ends start down, with ARP on.
    pub fn create_veth_across(
        &self,
        name: &str,
        peer_name: &str,
        mtu: u32,
        peer_netns: &NetNs,
    ) -> Result<(), SysError> {
        let end = |name| VethEnd {
            name,
            ..VethEnd::default()
        };
        self.add_veth_pair(&end(name), &end(peer_name), mtu, Some(peer_netns), false)
    }

    /// Deletes a link (for a veth, both ends).
    pub fn delete_link<'a>(&self, link: impl Into<LinkRef<'a>>) -> Result<(), SysError> {
        let link = link.into();
        let request = RouteNetlinkMessage::DelLink(addressed(link));
        self.execute(request, 0, || format!("deleting {link}"))?;
        Ok(())
    }

    /// Sets the MTU of link `index`.
    pub fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), SysError> {
        self.set_link(index, &format!("setting MTU {mtu}"), |message| {
            message.attributes.push(LinkAttribute::Mtu(mtu));
        })
    }

    /// Brings link `index` administratively up.
    pub fn set_up(&self, index: u32) -> Result<(), SysError> {
        self.set_flag(index, LinkFlag::Up, true, "bringing up")
    }

    /// Takes link `index` administratively down.
    pub fn set_down(&self, index: u32) -> Result<(), SysError> {
        self.set_flag(index, LinkFlag::Up, false, "taking down")
    }

    /// Turns ARP / neighbour discovery off (`noarp == true`) or on for link `index`.
    pub fn set_noarp(&self, index: u32, noarp: bool) -> Result<(), SysError> {
        let what = if noarp {
            "turning ARP off"
        } else {
            "turning ARP on"
        };
        self.set_flag(index, LinkFlag::Noarp, noarp, what)
    }

    /// Sets the alias (`IFLA_IFALIAS`) of link `index`; an empty alias clears it.
    pub fn set_alias(&self, index: u32, alias: &str) -> Result<(), SysError> {
        self.set_link(index, &format!("setting alias {alias:?}"), |message| {
            message
                .attributes
                .push(LinkAttribute::IfAlias(alias.to_string()));
        })
    }

    /// Moves link `index` into the network namespace `netns`. The kernel
    /// brings it down on the way; its index may change if taken there.
    pub fn move_to_netns(&self, index: u32, netns: &NetNs) -> Result<(), SysError> {
        let what = format!("moving to network namespace {:?}", netns.name());
        let fd = netns.as_fd().as_raw_fd();
        self.set_link(index, &what, |message| {
            message.attributes.push(LinkAttribute::NetNsFd(fd));
        })
    }

    fn get_link(&self, link: LinkRef<'_>) -> Result<Option<LinkInfo>, SysError> {
        let request = RouteNetlinkMessage::GetLink(query(addressed(link)));
        let replies =
            self.execute_lookup(request, libc::ENODEV, || format!("looking up {link}"))?;
        Ok(replies.and_then(|replies| replies.iter().find_map(link_of)))
    }

    fn existing_link(&self, name: &str) -> Result<LinkInfo, SysError> {
        self.link(name)?.ok_or_else(|| {
            SysError::other(format!("looking up link {name:?}"), "it no longer exists")
        })
    }

    /// Creates the pair, `user` without ARP if `noarp`. Each end gets one
    /// queue each way: a veth made with one per CPU and cut down to one (the
    /// default) waits for an RCU grace period per end under the RTNL lock.
    fn add_veth_pair(
        &self,
        user: &VethEnd<'_>,
        peer: &VethEnd<'_>,
        mtu: u32,
        peer_netns: Option<&NetNs>,
        noarp: bool,
    ) -> Result<(), SysError> {
        let attributes = |end: &VethEnd<'_>| {
            let mut attributes = vec![
                LinkAttribute::IfName(end.name.to_string()),
                LinkAttribute::Mtu(mtu),
                LinkAttribute::NumTxQueues(1),
                LinkAttribute::NumRxQueues(1),
            ];
            if let Some(mac) = end.mac {
                attributes.push(LinkAttribute::Address(mac.to_vec()));
            }
            attributes
        };
        let mut peer_message = LinkMessage::default();
        peer_message.attributes = attributes(peer);
        if let Some(netns) = peer_netns {
            let fd = netns.as_fd().as_raw_fd();
            peer_message.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        let mut message = LinkMessage::default();
        if noarp {
            message.header.flags = vec![LinkFlag::Noarp];
            message.header.change_mask = vec![LinkFlag::Noarp];
        }
        message.attributes = attributes(user);
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            InfoAttribute::Kind(InfoKind::Veth),
            InfoAttribute::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        let request = RouteNetlinkMessage::NewLink(message);
        let (name, peer_name) = (user.name, peer.name);
        self.execute(request, NLM_F_CREATE | NLM_F_EXCL, || match peer_netns {
            None => format!("creating veth pair {name:?}/{peer_name:?} with MTU {mtu}"),
            Some(netns) => format!(
                "creating veth pair {name:?}/{peer_name:?} (in {:?}) with MTU {mtu}",
                netns.name()
            ),
        })?;
        Ok(())
    }

    fn configure_veth(
        &self,
        user: &VethEnd<'_>,
        peer: &VethEnd<'_>,
    ) -> Result<(LinkInfo, LinkInfo), SysError> {
        let alias = |end: &VethEnd<'_>| LinkAttribute::IfAlias(end.alias.to_string());
        let what = |end: &VethEnd<'_>| format!("setting alias {:?} on {:?}", end.alias, end.name);
        self.set_named_link(user.name, &what(user), |message| {
            message.attributes.push(alias(user));
        })?;
        let what = format!("{} and turning IPv6 address generation off", what(peer));
        self.set_named_link(peer.name, &what, |message| {
            message.attributes.push(alias(peer));
            message.attributes.push(no_ipv6_addresses());
        })?;
        Ok((
            self.existing_link(user.name)?,
            self.existing_link(peer.name)?,
        ))
    }

    fn set_flag(&self, index: u32, flag: LinkFlag, on: bool, what: &str) -> Result<(), SysError> {
        self.set_link(index, what, |message| {
            message.header.flags = if on { vec![flag] } else { Vec::new() };
            message.header.change_mask = vec![flag];
        })
    }

    /// Sends an `RTM_SETLINK` for link `index`, filled in by `fill`; `what`
    /// describes the change for the error message.
    fn set_link(
        &self,
        index: u32,
        what: &str,
        fill: impl FnOnce(&mut LinkMessage),
    ) -> Result<(), SysError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        fill(&mut message);
        let request = RouteNetlinkMessage::SetLink(message);
        self.execute(request, 0, || format!("{what} on {}", self.describe(index)))?;
        Ok(())
    }

    /// Like [`Netlink::set_link`], for the link called `name`.
    fn set_named_link(
        &self,
        name: &str,
        what: &str,
        fill: impl FnOnce(&mut LinkMessage),
    ) -> Result<(), SysError> {
        let mut message = addressed(LinkRef::Name(name));
        fill(&mut message);
        let request = RouteNetlinkMessage::SetLink(message);
        self.execute(request, 0, || what.to_string())?;
        Ok(())
    }

    /// "link 7 ("veth0")" when the name can be found, else "link 7".
    pub(super) fn describe(&self, index: u32) -> String {
        match self.link_by_index(index) {
            Ok(Some(link)) => format!("link {index} ({:?})", link.name),
            _ => format!("link {index}"),
        }
    }
}

/// A link message naming `link` by index or by name.
fn addressed(link: LinkRef<'_>) -> LinkMessage {
    let mut message = LinkMessage::default();
    match link {
        LinkRef::Index(index) => message.header.index = index,
        LinkRef::Name(name) => message
            .attributes
            .push(LinkAttribute::IfName(name.to_string())),
    }
    message
}

/// `IFLA_AF_SPEC` for no automatic IPv6 address (`addr_gen_mode` `none`): taking effect the
/// next time the link comes up, it gets no link-local address.
fn no_ipv6_addresses() -> LinkAttribute {
    let mode = AfSpecInet6::AddrGenMode(IN6_ADDR_GEN_MODE_NONE);
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![mode])])
}

/// Asks the kernel to leave the statistics out of link replies.
fn query(mut message: LinkMessage) -> LinkMessage {
    let mask = LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]);
    message.attributes.push(mask);
    message
}

fn link_of(message: &RouteNetlinkMessage) -> Option<LinkInfo> {
    match message {
        RouteNetlinkMessage::NewLink(link) => Some(LinkInfo::from_message(link)),
        _ => None,
    }
}
