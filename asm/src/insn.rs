//! The typed instruction model: one [`Insn`] value type for every eBPF instruction, with jump
//! targets and map references kept symbolic until [`crate::Program::assemble`] resolves them.

use std::fmt;

/// An eBPF register. `R10` is the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reg {
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

impl Reg {
    /// All registers, in encoding order.
    pub const ALL: [Reg; 11] = [
        Reg::R0,
        Reg::R1,
        Reg::R2,
        Reg::R3,
        Reg::R4,
        Reg::R5,
        Reg::R6,
        Reg::R7,
        Reg::R8,
        Reg::R9,
        Reg::R10,
    ];

    /// The register number as encoded in `struct bpf_insn`.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The register with this number, if it exists.
    pub fn from_number(n: u8) -> Option<Reg> {
        Reg::ALL.get(usize::from(n)).copied()
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.number())
    }
}

/// Operand width of ALU and conditional-jump instructions (`ALU64`/`JMP` or `ALU`/`JMP32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    W64,
    W32,
}

/// Access size of loads and stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    B,
    H,
    W,
    DW,
}

impl Size {
    /// Size in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }
}

/// Two-operand ALU operations (`dst op= src`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    Or,
    And,
    Lsh,
    Rsh,
    Mod,
    Xor,
    Mov,
    Arsh,
}

impl AluOp {
    /// Every two-operand ALU operation.
    pub const ALL: [AluOp; 12] = [
        AluOp::Add,
        AluOp::Sub,
        AluOp::Mul,
        AluOp::Div,
        AluOp::Or,
        AluOp::And,
        AluOp::Lsh,
        AluOp::Rsh,
        AluOp::Mod,
        AluOp::Xor,
        AluOp::Mov,
        AluOp::Arsh,
    ];
}

/// Conditions of conditional jumps. `Set` is `dst & src != 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Sgt,
    Sge,
    Slt,
    Sle,
    Set,
}

impl Cond {
    /// Every condition.
    pub const ALL: [Cond; 11] = [
        Cond::Eq,
        Cond::Ne,
        Cond::Gt,
        Cond::Ge,
        Cond::Lt,
        Cond::Le,
        Cond::Sgt,
        Cond::Sge,
        Cond::Slt,
        Cond::Sle,
        Cond::Set,
    ];
}

/// Byte order of an endianness conversion (`be16`, `le32`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endian {
    Be,
    Le,
}

/// The source operand of ALU, jump and store instructions: a register or a 32-bit immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Src {
    Reg(Reg),
    Imm(i32),
}

impl From<Reg> for Src {
    fn from(r: Reg) -> Src {
        Src::Reg(r)
    }
}

impl From<i32> for Src {
    fn from(imm: i32) -> Src {
        Src::Imm(imm)
    }
}

/// Where a jump goes: a label resolved at assembly time, or a raw slot offset (as decoded).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Label(String),
    Offset(i16),
}

impl From<&str> for Target {
    fn from(label: &str) -> Target {
        Target::Label(label.to_string())
    }
}

impl From<String> for Target {
    fn from(label: String) -> Target {
        Target::Label(label)
    }
}

impl From<&Label> for Target {
    fn from(label: &Label) -> Target {
        Target::Label(label.0.clone())
    }
}

/// A label local to one block of a program, made unique by [`Program::local`]
/// (`counted.0`, `counted.1`, ...), as the kernel selftests' `l0_%=` are: code that emits the
/// same block twice (a helper called from several places) needs no name from its caller.
///
/// [`Program::local`]: crate::Program::local
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Label(pub(crate) String);

impl Label {
    /// The unique name the label has in the program and its listing.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Label {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A kernel helper function, called by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Helper {
    MapLookupElem,
    Redirect,
    SkbChangeHead,
    XdpAdjustHead,
    RedirectMap,
    KtimeGetNs,
}

impl Helper {
    /// Every helper the assembler knows by name.
    pub const ALL: [Helper; 6] = [
        Helper::MapLookupElem,
        Helper::Redirect,
        Helper::SkbChangeHead,
        Helper::XdpAdjustHead,
        Helper::RedirectMap,
        Helper::KtimeGetNs,
    ];

    /// The helper's number in `enum bpf_func_id`.
    pub fn id(self) -> i32 {
        match self {
            Helper::MapLookupElem => 1,
            Helper::Redirect => 23,
            Helper::SkbChangeHead => 43,
            Helper::XdpAdjustHead => 44,
            Helper::RedirectMap => 51,
            Helper::KtimeGetNs => 5,
        }
    }

    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Helper::MapLookupElem => "bpf_map_lookup_elem",
            Helper::Redirect => "bpf_redirect",
            Helper::SkbChangeHead => "bpf_skb_change_head",
            Helper::XdpAdjustHead => "bpf_xdp_adjust_head",
            Helper::RedirectMap => "bpf_redirect_map",
            Helper::KtimeGetNs => "bpf_ktime_get_ns",
        }
    }

    /// The helper with this number, if the assembler knows it.
    pub fn from_id(id: i32) -> Option<Helper> {
        Helper::ALL.into_iter().find(|h| h.id() == id)
    }
}

/// One eBPF instruction. `LoadImm64` and `LoadMap` occupy two encoded slots.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Insn {
    /// `dst op= src`.
    Alu {
        width: Width,
        op: AluOp,
        dst: Reg,
        src: Src,
    },
    /// `dst = -dst`.
    Neg { width: Width, dst: Reg },
    /// `dst = be16 dst` etc. `bits` is 16, 32 or 64.
    Swap { order: Endian, bits: u8, dst: Reg },
    /// `dst = *(size *)(base + off)`.
    Load {
        size: Size,
        dst: Reg,
        base: Reg,
        off: i16,
    },
    /// `*(size *)(base + off) = src`.
    Store {
        size: Size,
        base: Reg,
        off: i16,
        src: Src,
    },
    /// `dst = imm ll`.
    LoadImm64 { dst: Reg, imm: i64 },
    /// `dst = <address of map>`: an `ld_imm64` with a relocation against the map's symbol.
    LoadMap { dst: Reg, map: String },
    /// `goto target`.
    Jump { target: Target },
    /// `if dst cond src goto target`.
    JumpIf {
        width: Width,
        cond: Cond,
        dst: Reg,
        src: Src,
        target: Target,
    },
    /// `call helper`.
    Call(Helper),
    /// `exit`.
    Exit,
}

impl Insn {
    /// How many 8-byte slots the instruction occupies once encoded.
    pub fn slots(&self) -> usize {
        match self {
            Insn::LoadImm64 { .. } | Insn::LoadMap { .. } => 2,
            _ => 1,
        }
    }
}

// Short constructors, so that programs read like a listing.

/// `dst op= src` on 64 bits.
pub fn alu64(op: AluOp, dst: Reg, src: impl Into<Src>) -> Insn {
    Insn::Alu {
        width: Width::W64,
        op,
        dst,
        src: src.into(),
    }
}

/// `dst op= src` on 32 bits (the upper half of `dst` is zeroed).
pub fn alu32(op: AluOp, dst: Reg, src: impl Into<Src>) -> Insn {
    Insn::Alu {
        width: Width::W32,
        op,
        dst,
        src: src.into(),
    }
}

/// `dst = src` on 64 bits.
pub fn mov(dst: Reg, src: impl Into<Src>) -> Insn {
    alu64(AluOp::Mov, dst, src)
}

/// `dst = *(size *)(base + off)`.
pub fn load(size: Size, dst: Reg, base: Reg, off: i16) -> Insn {
    Insn::Load {
        size,
        dst,
        base,
        off,
    }
}

/// `*(size *)(base + off) = src`.
pub fn store(size: Size, base: Reg, off: i16, src: impl Into<Src>) -> Insn {
    Insn::Store {
        size,
        base,
        off,
        src: src.into(),
    }
}

/// `dst = imm ll`.
pub fn load_imm64(dst: Reg, imm: i64) -> Insn {
    Insn::LoadImm64 { dst, imm }
}

/// `dst = &map`, relocated against the map's symbol.
pub fn load_map(dst: Reg, map: &str) -> Insn {
    Insn::LoadMap {
        dst,
        map: map.to_string(),
    }
}

/// `dst = bswap-to-order(dst)` on `bits` bits.
pub fn swap(order: Endian, bits: u8, dst: Reg) -> Insn {
    Insn::Swap { order, bits, dst }
}

/// `goto target`.
pub fn jump(target: impl Into<Target>) -> Insn {
    Insn::Jump {
        target: target.into(),
    }
}

/// `if dst cond src goto target`, comparing 64 bits.
pub fn jump_if(cond: Cond, dst: Reg, src: impl Into<Src>, target: impl Into<Target>) -> Insn {
    Insn::JumpIf {
        width: Width::W64,
        cond,
        dst,
        src: src.into(),
        target: target.into(),
    }
}

/// `if wdst cond wsrc goto target`, comparing the low 32 bits.
pub fn jump32_if(cond: Cond, dst: Reg, src: impl Into<Src>, target: impl Into<Target>) -> Insn {
    Insn::JumpIf {
        width: Width::W32,
        cond,
        dst,
        src: src.into(),
        target: target.into(),
    }
}

/// `call helper`.
pub fn call(helper: Helper) -> Insn {
    Insn::Call(helper)
}

/// `exit`.
pub fn exit() -> Insn {
    Insn::Exit
}
