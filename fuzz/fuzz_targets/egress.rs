//! Egress on arbitrary frames and configurations, then both ingress flavours and the guard on
//! what it sends (l3mp::roundtrip::egress): no VM error, the verdict the spec gives (one egress
//! may return), a label round trip that restores the packet with the label bits cleared, ECN
//! never changed, a valid IPv4 checksum stays valid, non-IP and malformed frames dropped
//! untouched.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((case, machine)) = common::case(data) else {
        return;
    };
    if let Err(v) = l3mp::roundtrip::egress(&machine, case.label, &case.packet) {
        panic!("{v}");
    }
});
