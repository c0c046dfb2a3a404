//! l3mp library: the parts of the product shared by the binary and its tests.
//!
//! The offline core ([`programs`], [`vm`], [`roundtrip`], [`replay`]) builds without the
//! `daemon` feature, and so without aya, nix or netlink; everything that touches the kernel
//! needs it.

#[cfg(feature = "daemon")]
pub mod bench;
#[cfg(feature = "daemon")]
pub mod demo;
mod error;
#[cfg(feature = "daemon")]
pub mod lab;
#[cfg(any(test, feature = "daemon"))]
mod packets;
pub mod programs;
pub mod replay;
pub mod roundtrip;
#[cfg(feature = "daemon")]
pub mod run;
#[cfg(feature = "daemon")]
pub mod status;
#[cfg(feature = "daemon")]
pub mod sys;
pub mod vm;
