//! A link someone else deletes while l3mp runs (`ip link del bgp1`) is created again, with the
//! same MAC, so that the kernel gives it the same IPv6 link-local address (EUI-64), and the
//! same mark; the routing daemon above sees the interface come back and configures it again.

use std::net::Ipv6Addr;

use crate::sys::netlink::{format_mac, LinkInfo};

use super::super::options::LinkArg;
use super::{Instance, ManagedLink};

impl Instance {
    /// Creates again (down, as at start) the pair of every link of which neither end is in the
    /// namespace any more, under its name or its ifindex (deleted: a veth pair goes as a
    /// whole), as `all` lists the namespace's links; says so. The labels of those it created.
    pub(super) fn recreate_deleted(&mut self, all: &[LinkInfo]) -> Vec<u8> {
        let gone = |end: &LinkInfo| {
            !all.iter()
                .any(|l| l.name == end.name || l.index == end.index)
        };
        let deleted: Vec<LinkArg> = (self.links.iter())
            .filter(|l| gone(&l.user) && gone(&l.hidden))
            .map(|l| LinkArg {
                name: l.user.name.clone(),
                label: l.label,
            })
            .collect();
        let mut created = Vec::new();
        for arg in deleted {
            let mac = self.macs.user_end(arg.label);
            match self.create_link(&arg) {
                Ok(_) => {
                    created.push(arg.label);
                    log::warn!(
                        "{} (label {}) was deleted by someone else: created it again, with the \
                         same MAC {} and link-local address {} (its other addresses and routes \
                         went with it)",
                        arg.name,
                        arg.label,
                        format_mac(&mac),
                        eui64_link_local(mac)
                    );
                }
                Err(e) => log::warn!(
                    "{} (label {}) was deleted by someone else and cannot be created again: {e}",
                    arg.name,
                    arg.label
                ),
            }
        }
        created
    }

    /// Brings up the links of `labels`, created again by [`Instance::recreate_deleted`], once
    /// the programs are on them (or ext is away, and they wait with the others).
    pub(super) fn bring_up_recreated(&self, labels: &[u8]) {
        let links: Vec<ManagedLink> = (self.links.iter())
            .filter(|l| labels.contains(&l.label))
            .cloned()
            .collect();
        if let Err(e) = self.bring_up(&links) {
            log::warn!("{e}");
        }
    }
}

/// The IPv6 link-local address the kernel derives from `mac` (modified EUI-64, RFC 4291).
fn eui64_link_local(mac: [u8; 6]) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        a ^ 0x02,
        b,
        c,
        0xff,
        0xfe,
        d,
        e,
        f,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_addresses_are_modified_eui64() {
        assert_eq!(
            eui64_link_local([0x02, 0xab, 0xcd, 0xef, 0x00, 0x01]),
            "fe80::ab:cdff:feef:1".parse::<Ipv6Addr>().unwrap()
        );
    }
}
