//! l3mp library: the parts of the product shared by the binary and its tests.

pub mod bench;
pub mod demo;
mod error;
pub mod lab;
pub mod programs;
pub mod replay;
pub mod roundtrip;
pub mod run;
pub mod status;
pub mod sys;
pub mod vm;
