//! With CAP_BPF and CAP_NET_ADMIN: the kernel's verifier accepts every program variant, loaded
//! through aya from the ELF the assembler wrote. Prints the verifier's instruction counts.

mod common;

use aya::EbpfLoader;

#[test]
fn kernel_accepts_every_variant() {
    if !common::can_bpf("kernel_accepts_every_variant") {
        return;
    }
    common::kernel_accepts_every_variant();
}

/// The check can fail: the kernel rejects a program reading past the bounds it checked, and
/// says so at that read.
#[test]
fn kernel_rejects_an_unchecked_packet_read() {
    if !common::can_bpf("kernel_rejects_an_unchecked_packet_read") {
        return;
    }
    let mut ebpf = EbpfLoader::new()
        .load(&common::unchecked_read_elf())
        .expect("aya parses it");
    let err = common::load(&mut ebpf, "bad").expect_err("the kernel rejects it");
    let aya::programs::ProgramError::LoadError { verifier_log, .. } = &err else {
        panic!("a verifier rejection expected, got {err}")
    };
    let log = verifier_log.to_string();
    // The verifier names the read (slot 1, one byte at r2 + 20) and why it refuses it.
    for line in [
        "1: (71) r0 = *(u8 *)(r2 +20)",
        "invalid access to packet, off=20 size=1",
    ] {
        assert!(
            log.contains(line),
            "no '{line}' in the verifier's log:\n{log}"
        );
    }
}
