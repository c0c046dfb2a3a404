//! VXLAN devices (the bench's point of comparison for a muxed link).

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo as InfoAttribute, LinkMessage},
    RouteNetlinkMessage,
};

use super::Netlink;
use crate::sys::SysError;

/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;

impl Netlink {
    /// Creates the point-to-point VXLAN device `name` with VNI `vni` over link `underlay`,
    /// from `local` to `remote` (same family) on UDP port [`VXLAN_PORT`]. It starts down.
    pub fn create_vxlan(
        &self,
        name: &str,
        vni: u32,
        underlay: u32,
        local: IpAddr,
        remote: IpAddr,
    ) -> Result<(), SysError> {
        let (local_attr, remote_attr) = match (local, remote) {
            (IpAddr::V4(l), IpAddr::V4(r)) => (
                InfoVxlan::Local(l.octets().to_vec()),
                InfoVxlan::Group(r.octets().to_vec()),
            ),
            (IpAddr::V6(l), IpAddr::V6(r)) => (
                InfoVxlan::Local6(l.octets().to_vec()),
                InfoVxlan::Group6(r.octets().to_vec()),
            ),
            _ => {
                return Err(SysError::other(
                    format!("creating VXLAN {name:?}"),
                    format!("{local} and {remote} are of different families"),
                ))
            }
        };
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![
                InfoAttribute::Kind(InfoKind::Vxlan),
                InfoAttribute::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(vni),
                    InfoVxlan::Link(underlay),
                    local_attr,
                    remote_attr,
                    InfoVxlan::Port(VXLAN_PORT),
                ])),
            ]),
        ];
        let request = RouteNetlinkMessage::NewLink(message);
        self.execute(request, NLM_F_CREATE | NLM_F_EXCL, || {
            format!("creating VXLAN {name:?} (VNI {vni}) from {local} to {remote}")
        })?;
        Ok(())
    }
}
