//! The guard, the other TC program on ext, on arbitrary packets leaving ext that no managed link
//! sent, and arbitrary configurations (l3mp::roundtrip::guard): no VM error, the verdict the
//! spec gives, the label bits of an IP packet of the ext's framing cleared with ECN and the
//! checksum kept, and everything else (non-IP, malformed, MPLS, tagged) untouched.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((case, machine)) = common::case(data) else {
        return;
    };
    if let Err(v) = l3mp::roundtrip::guard(&machine, &case.packet, 0) {
        panic!("{v}");
    }
});
