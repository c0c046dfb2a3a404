//! One host of the lab: a network namespace, and what the lab does inside it.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use super::Error;
use crate::sys::netlink::{LinkInfo, Netlink};
use crate::sys::netns::NetNs;

use super::addresses::{link_address, AddressKind, Side};
use super::sys_error;
use super::{offload, routes};

/// How often a link that should appear is looked for.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Where a socket lives: a host, and the device the socket is bound to there.
#[derive(Clone, Copy)]
pub struct End<'a> {
    /// The host (network namespace).
    pub host: &'a Host,
    /// The device the socket is bound to (`SO_BINDTODEVICE`).
    pub device: &'a str,
}

/// A host: a network namespace of its own, deleted when the host is dropped.
pub struct Host {
    side: Side,
    netns: NetNs,
}

impl Host {
    /// Creates the namespace `<stem>-a` or `<stem>-b` and brings its `lo` up.
    pub(super) fn create(stem: &str, side: Side) -> Result<Host, Error> {
        let name = format!("{stem}-{}", side.to_string().to_lowercase());
        let netns = NetNs::create(&name).map_err(sys_error)?;
        netns.bring_up_loopback().map_err(sys_error)?;
        Ok(Host { side, netns })
    }

    /// The existing namespace `name` (as `ip netns` names it) as the host on `side`, for a
    /// topology a test builds itself; the namespace is left alone when the host is dropped.
    pub fn open(name: &str, side: Side) -> Result<Host, Error> {
        let netns = NetNs::open(name).map_err(sys_error)?;
        Ok(Host { side, netns })
    }

    /// Sockets of this host bound to `device`.
    pub fn end<'a>(&'a self, device: &'a str) -> End<'a> {
        End { host: self, device }
    }

    /// Which host this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The namespace's name (as `ip netns` shows it).
    pub fn name(&self) -> &str {
        self.netns.name()
    }

    /// The namespace.
    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// Runs `f` on a thread inside the namespace and returns its result. Sockets and netlink
    /// handles it creates stay in the namespace wherever they are used afterwards.
    pub fn run<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        self.netns.run(f).map_err(sys_error)
    }

    /// Starts `command` inside the namespace (it enters it between fork and exec).
    pub fn spawn(&self, mut command: Command) -> io::Result<Child> {
        let fd = self.netns.as_fd().as_raw_fd();
        // SAFETY: between fork and exec the closure calls only setns(2), which is
        // async-signal-safe, on a descriptor that stays open until exec (the namespace outlives
        // this call; O_CLOEXEC closes it only at exec).
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
        command.spawn()
    }

    /// A netlink handle on this host.
    fn netlink(&self) -> Result<Netlink, Error> {
        self.run(Netlink::new)?.map_err(sys_error)
    }

    /// Every link of the host.
    pub fn links(&self) -> Result<Vec<LinkInfo>, Error> {
        self.netlink()?.links().map_err(sys_error)
    }

    /// The link called `name`, waiting up to `timeout` for it to appear.
    pub fn wait_link(&self, name: &str, timeout: Duration) -> Result<LinkInfo, Error> {
        let netlink = self.netlink()?;
        poll(timeout, || netlink.link(name).map_err(sys_error))?.ok_or_else(|| {
            Error::new(format!(
                "host {}: no link {name} appeared within {timeout:?}",
                self.side
            ))
        })
    }

    /// Once the link `name` exists (waiting up to `timeout`), adds `addresses` (address,
    /// prefix length) to it, brings it up, and waits (up to `timeout` again) until its IPv6
    /// addresses are usable.
    pub fn configure_link(
        &self,
        name: &str,
        addresses: &[(IpAddr, u8)],
        timeout: Duration,
    ) -> Result<(), Error> {
        let link = self.wait_link(name, timeout)?;
        let netlink = self.netlink()?;
        for &(address, prefix_len) in addresses {
            netlink
                .add_address(link.index, address, prefix_len)
                .map_err(|e| Error::new(format!("host {}: {e}", self.side)))?;
        }
        netlink.set_up(link.index).map_err(sys_error)?;
        let v6: Vec<Ipv6Addr> = addresses
            .iter()
            .filter_map(|(address, _)| match address {
                IpAddr::V6(v6) => Some(*v6),
                IpAddr::V4(_) => None,
            })
            .collect();
        let present = poll(timeout, || Ok(self.usable(name, &v6)?.then_some(())))?;
        present.ok_or_else(|| {
            Error::new(format!(
                "host {}: the IPv6 addresses of {name} got no local route within {timeout:?}",
                self.side
            ))
        })
    }

    /// Whether every address of `v6` has its local route on `name`.
    fn usable(&self, name: &str, v6: &[Ipv6Addr]) -> Result<bool, Error> {
        self.run(|| routes::local_routes_present(name, v6))?
            .map_err(|e| Error::new(format!("host {}: reading IPv6 routes: {e}", self.side)))
    }

    /// The address of `kind` that the link `name` (label `label`) has on this host: the
    /// plan's, or for link-local the one the kernel generated (see [`Host::link_local`]).
    pub fn link_address(&self, name: &str, label: u8, kind: AddressKind) -> Result<IpAddr, Error> {
        match link_address(label, kind, self.side) {
            Some(planned) => Ok(planned),
            None => Ok(self.link_local(name, super::LINK_TIMEOUT)?.into()),
        }
    }

    /// The IPv6 link-local address the kernel gave the link `name` (the first, if it has
    /// several), once it is usable; waits up to `timeout` for it.
    pub fn link_local(&self, name: &str, timeout: Duration) -> Result<Ipv6Addr, Error> {
        let link = self.wait_link(name, timeout)?;
        let netlink = self.netlink()?;
        let found = poll(timeout, || {
            let found = netlink
                .addresses()
                .map_err(sys_error)?
                .into_iter()
                .filter(|a| a.index == link.index)
                .find_map(|a| match a.address {
                    IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(v6),
                    _ => None,
                });
            Ok(match found {
                Some(address) if self.usable(name, &[address])? => Some(address),
                _ => None,
            })
        })?;
        found.ok_or_else(|| {
            Error::new(format!(
                "host {}: {name} got no usable IPv6 link-local address within {timeout:?}",
                self.side
            ))
        })
    }

    /// Sets the MTU of the link `name`.
    pub fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), Error> {
        let netlink = self.netlink()?;
        let link = netlink
            .link(name)
            .map_err(sys_error)?
            .ok_or_else(|| Error::new(format!("host {}: no link {name}", self.side)))?;
        netlink.set_mtu(link.index, mtu).map_err(sys_error)
    }

    /// Sets the network sysctl `key` (a path under `/proc/sys/net`, e.g.
    /// `ipv6/conf/default/disable_ipv6`) of this host to `value`.
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<(), Error> {
        let path = format!("/proc/sys/net/{key}");
        // procfs shows the namespace of the thread that opens the file.
        self.run(|| std::fs::write(&path, value))?
            .map_err(|e| Error::new(format!("host {}: writing {path}: {e}", self.side)))
    }

    /// Turns transmit checksum offload of `link` on or off (what `ethtool -K <link> tx off`
    /// does). A sender's veth must have it off towards a native XDP program.
    pub fn set_tx_checksum(&self, link: &str, on: bool) -> Result<(), Error> {
        self.run(|| offload::set_tx_checksum(link, on))?
            .map_err(|e| Error::new(format!("host {}: {e}", self.side)))
    }
}

/// Calls `f` every [`POLL_INTERVAL`] until it gives something or `timeout` has passed (then
/// `None`).
fn poll<T>(
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>, Error>,
) -> Result<Option<T>, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = f()? {
            return Ok(Some(found));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(POLL_INTERVAL);
    }
}
