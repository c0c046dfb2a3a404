//! l3mp library: the parts of the product shared by the binary and its tests.

pub mod programs;
pub mod sys;
pub mod vm;
pub mod run;
pub mod lab;
pub mod demo;
pub mod roundtrip;
pub mod replay;
