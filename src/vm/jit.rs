//! The helpers as rbpf's x86_64 JIT calls them. Its compiled code calls a helper with the stack
//! 8 bytes off the 16-byte alignment the System V ABI promises (measured: a debug build's
//! helper faulted on an aligned SSE store to its stack), so each helper is reached through a
//! trampoline that aligns the stack, calls the helper with the C calling convention the JIT
//! uses (arguments in rdi, rsi, rdx, rcx, r8; result in rax), and restores the stack.

use super::helpers;

macro_rules! c_abi {
    ($($c:ident => $f:path),* $(,)?) => {
        $(
            extern "C" fn $c(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
                $f(a, b, c, d, e)
            }
        )*
    };
}

c_abi! {
    c_map_lookup_elem => helpers::map_lookup_elem,
    c_redirect => helpers::redirect,
    c_redirect_map => helpers::redirect_map,
    c_skb_change_head => helpers::skb_change_head,
    c_xdp_adjust_head => helpers::xdp_adjust_head,
}

core::arch::global_asm!(
    ".pushsection .text.l3mp_jit_helpers,\"ax\",@progbits",
    ".p2align 4",
    ".globl l3mp_jit_map_lookup_elem", ".hidden l3mp_jit_map_lookup_elem", "l3mp_jit_map_lookup_elem:",
    "push rbp", "mov rbp, rsp", "and rsp, -16", "call {0}", "mov rsp, rbp", "pop rbp", "ret",
    ".p2align 4",
    ".globl l3mp_jit_redirect", ".hidden l3mp_jit_redirect", "l3mp_jit_redirect:",
    "push rbp", "mov rbp, rsp", "and rsp, -16", "call {1}", "mov rsp, rbp", "pop rbp", "ret",
    ".p2align 4",
    ".globl l3mp_jit_redirect_map", ".hidden l3mp_jit_redirect_map", "l3mp_jit_redirect_map:",
    "push rbp", "mov rbp, rsp", "and rsp, -16", "call {2}", "mov rsp, rbp", "pop rbp", "ret",
    ".p2align 4",
    ".globl l3mp_jit_skb_change_head", ".hidden l3mp_jit_skb_change_head", "l3mp_jit_skb_change_head:",
    "push rbp", "mov rbp, rsp", "and rsp, -16", "call {3}", "mov rsp, rbp", "pop rbp", "ret",
    ".p2align 4",
    ".globl l3mp_jit_xdp_adjust_head", ".hidden l3mp_jit_xdp_adjust_head", "l3mp_jit_xdp_adjust_head:",
    "push rbp", "mov rbp, rsp", "and rsp, -16", "call {4}", "mov rsp, rbp", "pop rbp", "ret",
    ".popsection",
    sym c_map_lookup_elem,
    sym c_redirect,
    sym c_redirect_map,
    sym c_skb_change_head,
    sym c_xdp_adjust_head,
);

/// The address of a trampoline above (global, hidden symbols: the code taking their address
/// may sit in another codegen unit).
fn address(which: usize) -> usize {
    let addr: usize;
    // SAFETY: only takes the address of a label defined above (RIP-relative, no memory access).
    unsafe {
        match which {
            0 => core::arch::asm!("lea {}, [rip + l3mp_jit_map_lookup_elem]", out(reg) addr),
            1 => core::arch::asm!("lea {}, [rip + l3mp_jit_redirect]", out(reg) addr),
            2 => core::arch::asm!("lea {}, [rip + l3mp_jit_redirect_map]", out(reg) addr),
            3 => core::arch::asm!("lea {}, [rip + l3mp_jit_skb_change_head]", out(reg) addr),
            _ => core::arch::asm!("lea {}, [rip + l3mp_jit_xdp_adjust_head]", out(reg) addr),
        }
    }
    addr
}

/// The helpers to register for the JIT, in [`helpers::ALL`]'s order: rbpf only reads their
/// addresses and calls them from the compiled code; nothing calls them as Rust functions.
pub fn trampolines() -> [rbpf::ebpf::Helper; 5] {
    // SAFETY: a helper registered with a JIT-compiled VM is only called by the compiled code,
    // with the C convention the trampolines expect; rbpf never calls it from Rust.
    std::array::from_fn(|i| unsafe {
        std::mem::transmute::<usize, rbpf::ebpf::Helper>(address(i))
    })
}
