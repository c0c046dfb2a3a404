//! The helpers as rbpf's x86_64 JIT calls them. Its compiled code calls a helper with the stack
//! 8 bytes off the 16-byte alignment the System V ABI promises (measured: a debug build's
//! helper faulted on an aligned SSE store to its stack), so each helper is reached through a
//! trampoline that aligns the stack, calls the helper with the C calling convention the JIT
//! uses (arguments in rdi, rsi, rdx, rcx, r8; result in rax), and restores the stack.

use super::helpers;

/// For each helper: a C-ABI wrapper, a trampoline to it that aligns the stack (a global,
/// hidden symbol: the code taking its address may sit in another codegen unit), and a function
/// giving the trampoline's address.
macro_rules! trampolines {
    ($($f:path => $c:ident, $label:literal, $addr:ident;)*) => {
        $(
            extern "C" fn $c(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
                $f(a, b, c, d, e)
            }

            core::arch::global_asm!(
                ".pushsection .text.l3mp_jit_helpers,\"ax\",@progbits",
                ".p2align 4",
                concat!(".globl ", $label),
                concat!(".hidden ", $label),
                concat!($label, ":"),
                "push rbp",
                "mov rbp, rsp",
                "and rsp, -16",
                "call {f}",
                "mov rsp, rbp",
                "pop rbp",
                "ret",
                ".popsection",
                f = sym $c,
            );

            fn $addr() -> usize {
                let addr: usize;
                // SAFETY: only takes the address of the label (RIP-relative, no memory access).
                unsafe { core::arch::asm!(concat!("lea {}, [rip + ", $label, "]"), out(reg) addr) };
                addr
            }
        )*

        /// The helpers to register for the JIT, in [`helpers::ALL`]'s order: rbpf only reads
        /// their addresses and calls them from the compiled code; nothing calls them as Rust
        /// functions.
        pub fn trampolines() -> [rbpf::ebpf::Helper; 6] {
            // SAFETY: a helper registered with a JIT-compiled VM is only called by the compiled
            // code, with the C convention the trampolines expect; rbpf never calls it from Rust.
            [$($addr()),*].map(|a| unsafe { std::mem::transmute::<usize, rbpf::ebpf::Helper>(a) })
        }
    };
}

trampolines! {
    helpers::map_lookup_elem => c_map_lookup_elem, "l3mp_jit_map_lookup_elem", map_lookup_elem;
    helpers::redirect => c_redirect, "l3mp_jit_redirect", redirect;
    helpers::redirect_map => c_redirect_map, "l3mp_jit_redirect_map", redirect_map;
    helpers::skb_change_head => c_skb_change_head, "l3mp_jit_skb_change_head", skb_change_head;
    helpers::xdp_adjust_head => c_xdp_adjust_head, "l3mp_jit_xdp_adjust_head", xdp_adjust_head;
    helpers::ktime_get_ns => c_ktime_get_ns, "l3mp_jit_ktime_get_ns", ktime_get_ns;
}
