//! The TC ingress demux on arbitrary packets arriving on ext, and arbitrary configurations
//! (l3mp::roundtrip::ingress): no VM error, the verdict the spec gives (one the program may
//! return), a configured label cleared with ECN and the checksum kept and the link's Ethernet
//! header in front, and non-IP, malformed, unlabelled and unknown-label packets untouched.
//! (The guard, the other TC program on ext, has a target of its own.)
#![no_main]

mod common;

use l3mp::programs::Hook;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((case, machine)) = common::case(data) else {
        return;
    };
    if let Err(v) = l3mp::roundtrip::ingress(&machine, Hook::Tc, &case.packet) {
        panic!("{v}");
    }
});
