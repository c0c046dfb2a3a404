//! The typed instruction model: one [`Insn`] value type for every eBPF instruction, with jump
//! targets and map references kept symbolic until [`crate::Program::assemble`] resolves them.

use std::fmt;

/// An eBPF register. `R10` is the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reg {
    /// Return value of helpers and of the program.
    R0,
    /// First helper argument; the context when the program starts.
    R1,
    /// Second helper argument.
    R2,
    /// Third helper argument.
    R3,
    /// Fourth helper argument.
    R4,
    /// Fifth helper argument.
    R5,
    /// Callee-saved: kept across helper calls.
    R6,
    /// Callee-saved: kept across helper calls.
    R7,
    /// Callee-saved: kept across helper calls.
    R8,
    /// Callee-saved: kept across helper calls.
    R9,
    /// The frame pointer: the top of the 512-byte stack, read-only.
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
    /// 64-bit operands (`ALU64`, `JMP`).
    W64,
    /// 32-bit operands (`ALU`, `JMP32`): `w` registers.
    W32,
}

/// Access size of loads and stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    /// One byte (`u8`).
    B,
    /// Two bytes (`u16`).
    H,
    /// Four bytes (`u32`).
    W,
    /// Eight bytes (`u64`).
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
    /// `+=`
    Add,
    /// `-=`
    Sub,
    /// `*=`
    Mul,
    /// `/=`, unsigned; division by zero gives 0.
    Div,
    /// `|=`
    Or,
    /// `&=`
    And,
    /// `<<=`
    Lsh,
    /// `>>=`, logical (zeros shifted in).
    Rsh,
    /// `%=`, unsigned; modulo zero leaves `dst` unchanged.
    Mod,
    /// `^=`
    Xor,
    /// `=`
    Mov,
    /// `s>>=`, arithmetic (the sign bit shifted in).
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
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`, unsigned.
    Gt,
    /// `>=`, unsigned.
    Ge,
    /// `<`, unsigned.
    Lt,
    /// `<=`, unsigned.
    Le,
    /// `s>`, signed.
    Sgt,
    /// `s>=`, signed.
    Sge,
    /// `s<`, signed.
    Slt,
    /// `s<=`, signed.
    Sle,
    /// `&`: any bit of `src` set in `dst`.
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
    /// To big endian (`be16`, `be32`, `be64`).
    Be,
    /// To little endian (`le16`, `le32`, `le64`).
    Le,
}

/// The source operand of ALU, jump and store instructions: a register or a 32-bit immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Src {
    /// A register.
    Reg(Reg),
    /// A 32-bit immediate; 64-bit operations sign-extend it.
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
    /// A label of the program, resolved by [`crate::Program::assemble`].
    Label(String),
    /// Slots from the instruction after the jump (as the kernel counts).
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
    /// `bpf_map_lookup_elem(map, key)`: a pointer to the value, or null.
    MapLookupElem,
    /// `bpf_redirect(ifindex, flags)`.
    Redirect,
    /// `bpf_skb_change_head(skb, len, flags)`: room for `len` bytes at the front.
    SkbChangeHead,
    /// `bpf_xdp_adjust_head(xdp, delta)`: moves the start of the packet.
    XdpAdjustHead,
    /// `bpf_redirect_map(map, key, flags)`: to the device a DEVMAP entry holds.
    RedirectMap,
    /// `bpf_ktime_get_ns()`: nanoseconds of CLOCK_MONOTONIC.
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
        /// 64 bits, or 32 with the upper half of `dst` zeroed.
        width: Width,
        /// The operation.
        op: AluOp,
        /// The register written.
        dst: Reg,
        /// The other operand.
        src: Src,
    },
    /// `dst = -dst`.
    Neg {
        /// 64 or 32 bits.
        width: Width,
        /// The register negated.
        dst: Reg,
    },
    /// `dst = be16 dst` etc.
    Swap {
        /// The byte order converted to (from the host's).
        order: Endian,
        /// 16, 32 or 64.
        bits: u8,
        /// The register converted in place.
        dst: Reg,
    },
    /// `dst = *(size *)(base + off)`.
    Load {
        /// How many bytes are read (zero-extended).
        size: Size,
        /// The register written.
        dst: Reg,
        /// The register holding the address.
        base: Reg,
        /// Bytes from `base`.
        off: i16,
    },
    /// `*(size *)(base + off) = src`.
    Store {
        /// How many bytes are written (the low ones of `src`).
        size: Size,
        /// The register holding the address.
        base: Reg,
        /// Bytes from `base`.
        off: i16,
        /// The value: a register, or an immediate.
        src: Src,
    },
    /// `dst = imm ll`.
    LoadImm64 {
        /// The register written.
        dst: Reg,
        /// The 64-bit value, split over the two slots.
        imm: i64,
    },
    /// `dst = <address of map>`: an `ld_imm64` with a relocation against the map's symbol.
    LoadMap {
        /// The register written.
        dst: Reg,
        /// The map's name, as in [`crate::MapDef::name`].
        map: String,
    },
    /// `goto target`.
    Jump {
        /// Where to.
        target: Target,
    },
    /// `if dst cond src goto target`.
    JumpIf {
        /// Compare 64 bits, or the low 32.
        width: Width,
        /// The comparison.
        cond: Cond,
        /// The left operand.
        dst: Reg,
        /// The right operand.
        src: Src,
        /// Where to when the condition holds; otherwise the next instruction.
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
