//! Whether IPv6 addresses are usable yet.
//!
//! An IPv6 address (even one added with `IFA_F_NODAD`) gets its local route from the kernel's
//! address work a moment after the address is added, under the RTNL lock; until then packets
//! to it are not delivered locally. The routes are read from procfs, which shows the calling
//! thread's namespace under `/proc/thread-self/net`.

use std::fs;
use std::io;
use std::net::Ipv6Addr;

/// The calling thread's IPv6 routes, every table.
const IPV6_ROUTES: &str = "/proc/thread-self/net/ipv6_route";
/// `RTF_LOCAL`: a route to an address of this host.
const RTF_LOCAL: u32 = 0x8000_0000;

/// Whether every address in `addresses` has its local route on `device`.
pub fn local_routes_present(device: &str, addresses: &[Ipv6Addr]) -> io::Result<bool> {
    let table = fs::read_to_string(IPV6_ROUTES)?;
    Ok(addresses
        .iter()
        .all(|address| has_local_route(&table, device, *address)))
}

/// Whether a line of `table` (the `ipv6_route` format: destination, prefix length, source,
/// source prefix length, next hop, metric, references, use, flags, device; numbers in hex) is
/// the local /128 route of `address` on `device`.
fn has_local_route(table: &str, device: &str, address: Ipv6Addr) -> bool {
    let destination = format!("{:032x}", u128::from(address));
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [dest, len, _, _, _, _, _, _, flags, dev] = fields[..] else {
            return false;
        };
        let local = u32::from_str_radix(flags, 16).is_ok_and(|f| f & RTF_LOCAL != 0);
        dest == destination && len == "80" && local && dev == device
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
fd000005000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001       d0
fd000005000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       d0
";

    #[test]
    fn only_the_local_host_route_on_the_device_counts() {
        let address: Ipv6Addr = "fd00:5::1".parse().expect("literal");
        assert!(has_local_route(TABLE, "d0", address));
        assert!(!has_local_route(TABLE, "d1", address));
        let other: Ipv6Addr = "fd00:5::2".parse().expect("literal");
        assert!(!has_local_route(TABLE, "d0", other));
        let prefix_only = TABLE.lines().next().expect("line");
        assert!(!has_local_route(prefix_only, "d0", address));
    }
}
