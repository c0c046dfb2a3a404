//! A link someone else deletes while l3mp runs (`ip link del bgp1`) is created again, with the
//! same MAC, so that the kernel gives it the same IPv6 link-local address (EUI-64), and the
//! same mark; the routing daemon above sees the interface come back and configures it again.

use std::net::Ipv6Addr;

use crate::sys::netlink::{format_mac, LinkInfo};

use super::super::naming::link_macs;
use super::super::options::LinkArg;
use super::Instance;

impl Instance {
    /// Creates again the pair of every link of which neither end is in the namespace any more,
    /// under its name or its ifindex (deleted: a veth pair goes as a whole), as `all` lists
    /// the namespace's links; says so. Whether it created any.
    pub(super) fn recreate_deleted(&mut self, all: &[LinkInfo]) -> bool {
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
        let mut created = false;
        for arg in deleted {
            let mac = link_macs(&self.opts.ext).user_end(arg.label);
            match self.create_link(&arg) {
                Ok(_) => {
                    created = true;
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
