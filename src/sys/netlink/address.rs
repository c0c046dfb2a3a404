//! Interface addresses.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlag, AddressHeaderFlag, AddressMessage, AddressScope},
    AddressFamily, RouteNetlinkMessage,
};

use super::Netlink;
use crate::sys::SysError;

/// An address of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    /// The interface's index.
    pub index: u32,
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl Netlink {
    /// Every address of every interface of the namespace, IPv4 and IPv6.
    pub fn addresses(&self) -> Result<Vec<Address>, SysError> {
        let request = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        let replies = self.execute(request, NLM_F_DUMP, || "listing addresses".to_string())?;
        Ok(replies.iter().filter_map(address_of).collect())
    }

    /// Adds `address/prefix_len` to link `index`. IPv6 addresses are added
    /// with `IFA_F_NODAD`, so they are usable at once (no duplicate address
    /// detection delay).
    pub fn add_address(&self, index: u32, address: IpAddr, prefix_len: u8) -> Result<(), SysError> {
        let context = || format!("adding {address}/{prefix_len} to {}", self.describe(index));
        let message = address_message(index, address, prefix_len)
            .map_err(|reason| SysError::other(context(), reason))?;
        let request = RouteNetlinkMessage::NewAddress(message);
        self.execute(request, NLM_F_CREATE | NLM_F_EXCL, context)?;
        Ok(())
    }
}

/// The address an `RTM_NEWADDR` reply gives the interface: `IFA_LOCAL`, else `IFA_ADDRESS`
/// (IPv6 replies carry only that one; on a point-to-point link `IFA_ADDRESS` is the peer's).
fn address_of(message: &RouteNetlinkMessage) -> Option<Address> {
    let RouteNetlinkMessage::NewAddress(message) = message else {
        return None;
    };
    let address = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = address.or_else(|| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    Some(Address {
        index: message.header.index,
        address,
        prefix_len: message.header.prefix_len,
    })
}

/// The `RTM_NEWADDR` body, or why the prefix length is impossible.
fn address_message(index: u32, address: IpAddr, prefix_len: u8) -> Result<AddressMessage, String> {
    let (family, bits) = match address {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    if prefix_len > bits {
        return Err(format!(
            "prefix length {prefix_len} is longer than {bits} bits"
        ));
    }
    let mut message = AddressMessage::default();
    message.header.family = family;
    message.header.prefix_len = prefix_len;
    message.header.index = index;
    message.header.scope = if address.is_loopback() {
        AddressScope::Host
    } else {
        AddressScope::Universe
    };
    message.attributes = vec![
        AddressAttribute::Local(address),
        AddressAttribute::Address(address),
    ];
    if address.is_ipv6() {
        message.header.flags = vec![AddressHeaderFlag::Nodad];
        message
            .attributes
            .push(AddressAttribute::Flags(vec![AddressFlag::Nodad]));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_skip_duplicate_address_detection() {
        let address: IpAddr = "fd00:77::1".parse().expect("literal");
        let message = address_message(4, address, 64).expect("valid prefix");
        assert_eq!(message.header.family, AddressFamily::Inet6);
        assert_eq!((message.header.index, message.header.prefix_len), (4, 64));
        assert_eq!(message.header.flags, vec![AddressHeaderFlag::Nodad]);
        assert!(message
            .attributes
            .contains(&AddressAttribute::Flags(vec![AddressFlag::Nodad])));
    }

    #[test]
    fn ipv4_addresses_carry_local_and_address() {
        let address: IpAddr = "10.77.0.1".parse().expect("literal");
        let message = address_message(2, address, 30).expect("valid prefix");
        assert_eq!(message.header.family, AddressFamily::Inet);
        assert_eq!(message.header.scope, AddressScope::Universe);
        assert!(message.header.flags.is_empty());
        assert_eq!(
            message.attributes,
            vec![
                AddressAttribute::Local(address),
                AddressAttribute::Address(address)
            ]
        );
    }

    #[test]
    fn impossible_prefix_lengths_are_refused() {
        let v4: IpAddr = "10.77.0.1".parse().expect("literal");
        let v6: IpAddr = "fd00::1".parse().expect("literal");
        assert!(address_message(1, v4, 33).is_err());
        assert!(address_message(1, v6, 129).is_err());
        assert!(address_message(1, v6, 128).is_ok());
    }
}
