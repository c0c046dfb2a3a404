//! The system layer: netlink, network namespaces, TUN devices and capabilities.
//!
//! Everything here is synchronous and runs no external program. Sockets and
//! devices are created in the network namespace of the calling thread.

pub mod caps;
pub mod error;
pub mod netlink;
pub mod netns;
pub mod tun;
pub mod wireguard;

#[cfg(test)]
mod test_support;

pub use error::SysError;
