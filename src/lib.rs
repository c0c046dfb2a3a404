//! l3mp library: the parts of the product shared by the binary and its tests.
//!
//! The offline core ([`programs`], [`vm`], [`roundtrip`], [`replay`]) builds without the
//! `daemon` feature, and so without aya, nix or netlink; everything that touches the kernel
//! needs it.
//!
//! Little-endian hosts only (x86_64, arm64, riscv64 …): the assembler emits little-endian
//! eBPF, which a big-endian kernel does not load.

#[cfg(target_endian = "big")]
compile_error!(
    "l3mp emits little-endian eBPF (asm/), which a big-endian kernel does not load; \
     build it for a little-endian host"
);

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
