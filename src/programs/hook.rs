//! The attach point a program is generated for. Everything that differs between the TC and XDP
//! flavours of a program is here; the programs themselves are written once.

use l3mp_asm::{
    alu64, call, exit, jump_if, load, load_map, mov, AluOp, Cond, Helper, Program, Reg, Section,
    Size,
};

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

    /// Every program's first block: the context kept in CTX (r6), DATA (r7) = data, DATA_END
    /// (r8) = data_end, and LEN (r9) =
    /// the packet's length for the byte counters.
    pub fn prologue(self, p: &mut Program) {
        p.comment("Keep the context in r6; r7 = data, r8 = data_end, r9 = bytes for the counters");
        p.push(mov(CTX, Reg::R1));
        self.load_bounds(p);
        self.load_len(p);
    }

    /// `r7 = data; r8 = data_end`, read from the context in r6.
    pub fn load_bounds(self, p: &mut Program) {
        let (data, end) = match self {
            Hook::Tc => (SKB_DATA, SKB_DATA_END),
            Hook::Xdp => (XDP_DATA, XDP_DATA_END),
        };
        p.push(load(Size::W, DATA, CTX, data));
        p.push(load(Size::W, DATA_END, CTX, end));
    }

    /// `r9 = length of the packet as the hook sees it`, for the byte counters.
    fn load_len(self, p: &mut Program) {
        match self {
            Hook::Tc => p.push(load(Size::W, LEN, CTX, SKB_LEN)),
            Hook::Xdp => p.extend([mov(LEN, DATA_END), alu64(AluOp::Sub, LEN, DATA)]),
        };
    }

    /// Grows the packet by an Ethernet header at its front: `r0 = 0` on success. Packet
    /// pointers are invalid afterwards.
    pub fn push_ethernet(self, p: &mut Program) {
        p.push(mov(Reg::R1, CTX));
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

    /// Redirects to the hidden end of the link whose label is in the stack slot `STACK_LABEL`
    /// and returns the helper's verdict. TC: the ifindex from the `peers` array (whose lookup
    /// the kernel inlines); XDP: through the `links` DEVMAP.
    pub fn redirect_to_hidden_end(self, p: &mut Program) {
        match self {
            Hook::Tc => {
                let found = p.local("peer_found");
                p.extend([
                    mov(Reg::R2, Reg::R10),
                    alu64(AluOp::Add, Reg::R2, i32::from(STACK_LABEL)),
                    load_map(Reg::R1, PEERS_MAP),
                    call(Helper::MapLookupElem),
                    jump_if(Cond::Ne, Reg::R0, 0, &found),
                ]);
                p.comment("No entry: only past the array's end, which no label reaches");
                p.extend([mov(Reg::R0, TC_ACT_SHOT), exit()]);
                p.label(&found);
                p.extend([
                    load(Size::W, Reg::R1, Reg::R0, 0),
                    mov(Reg::R2, 0),
                    call(Helper::Redirect),
                ]);
            }
            Hook::Xdp => {
                p.extend([
                    load_map(Reg::R1, LINKS_MAP),
                    load(Size::W, Reg::R2, Reg::R10, STACK_LABEL),
                    mov(Reg::R3, 0),
                    call(Helper::RedirectMap),
                ]);
            }
        }
        p.push(exit());
    }
}
