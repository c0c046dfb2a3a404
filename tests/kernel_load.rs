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

/// The check can fail: the kernel rejects a program reading past the bounds it checked.
#[test]
fn kernel_rejects_an_unchecked_packet_read() {
    if !common::can_bpf("kernel_rejects_an_unchecked_packet_read") {
        return;
    }
    let mut ebpf = EbpfLoader::new()
        .load(&common::unchecked_read_elf())
        .expect("aya parses it");
    assert!(common::load(&mut ebpf, "bad").is_err());
}
