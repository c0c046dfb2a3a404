//! The attach point a program is generated for. Everything that differs between the TC and XDP
//! flavours of a program is here; the programs themselves are written once.

use l3mp_asm::{alu64, call, load, load_map, mov, AluOp, Helper, Program, Reg, Section};

use super::layout::*;

/// TC (`sched_cls`, on an `__sk_buff`) or XDP (on an `xdp_md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Tc,
    Xdp,
}

impl Hook {
    /// The ELF section, which tells the loader the program type.
    pub fn section(self) -> Section {
        match self {
            Hook::Tc => Section::Classifier,
            Hook::Xdp => Section::Xdp,
        }
    }

    /// Verdict for a packet that is not ours: let the stack (and anyone else's programs) have it.
    pub fn pass(self) -> i32 {
        match self {
            Hook::Tc => TC_ACT_UNSPEC,
            Hook::Xdp => XDP_PASS,
        }
    }

    /// Verdict for a packet to discard.
    pub fn drop(self) -> i32 {
        match self {
            Hook::Tc => TC_ACT_SHOT,
            Hook::Xdp => XDP_DROP,
        }
    }

    /// Verdict a successful redirect returns.
    pub fn redirected(self) -> i32 {
        match self {
            Hook::Tc => TC_ACT_REDIRECT,
            Hook::Xdp => XDP_REDIRECT,
        }
    }

    /// Every verdict a program of this hook may return.
    pub fn verdicts(self) -> &'static [i32] {
        match self {
            Hook::Tc => &[TC_ACT_UNSPEC, TC_ACT_SHOT, TC_ACT_REDIRECT],
            Hook::Xdp => &[XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_REDIRECT],
        }
    }

    /// Every program's first block: the context kept in r6, r7 = data, r8 = data_end, and r9 =
    /// the packet's length for the byte counters.
    pub fn prologue(self, p: &mut Program) {
        p.comment("Keep the context in r6; r7 = data, r8 = data_end, r9 = bytes for the counters");
        p.push(mov(Reg::R6, Reg::R1));
        self.load_bounds(p);
        self.load_len(p);
    }

    /// `r7 = data; r8 = data_end`, read from the context in r6.
    pub fn load_bounds(self, p: &mut Program) {
        let (data, end) = match self {
            Hook::Tc => (SKB_DATA, SKB_DATA_END),
            Hook::Xdp => (XDP_DATA, XDP_DATA_END),
        };
        p.push(load(l3mp_asm::Size::W, Reg::R7, Reg::R6, data));
        p.push(load(l3mp_asm::Size::W, Reg::R8, Reg::R6, end));
    }

    /// `r9 = length of the packet as the hook sees it`, for the byte counters.
    fn load_len(self, p: &mut Program) {
        match self {
            Hook::Tc => p.push(load(l3mp_asm::Size::W, Reg::R9, Reg::R6, SKB_LEN)),
            Hook::Xdp => p.extend([mov(Reg::R9, Reg::R8), alu64(AluOp::Sub, Reg::R9, Reg::R7)]),
        };
    }

    /// Grows the packet by an Ethernet header at its front: `r0 = 0` on success. Packet
    /// pointers are invalid afterwards.
    pub fn push_ethernet(self, p: &mut Program) {
        p.push(mov(Reg::R1, Reg::R6));
        match self {
            Hook::Tc => p.extend([
                mov(Reg::R2, i32::from(ETH_HLEN)),
                mov(Reg::R3, 0),
                call(Helper::SkbChangeHead),
            ]),
            Hook::Xdp => p.extend([
                mov(Reg::R2, -i32::from(ETH_HLEN)),
                call(Helper::XdpAdjustHead),
            ]),
        };
    }

    /// Redirects and returns the helper's verdict. TC: to the ifindex in r1 (transmitted on it);
    /// XDP: through the `links` DEVMAP at the key in r2.
    pub fn redirect(self, p: &mut Program) {
        match self {
            Hook::Tc => p.extend([mov(Reg::R2, 0), call(Helper::Redirect)]),
            Hook::Xdp => p.extend([
                load_map(Reg::R1, LINKS_MAP),
                mov(Reg::R3, 0),
                call(Helper::RedirectMap),
            ]),
        };
        p.push(l3mp_asm::exit());
    }
}
