//! Fixed numbers the programs are built from: kernel context offsets and verdicts, packet
//! offsets, the counter slots and the stack slots. Multi-byte packet constants are given as the
//! value a native-endian load of the wire bytes yields on the host that generates the programs,
//! which is the host that loads them. That host is little-endian: the assembler emits
//! little-endian eBPF, and the crate refuses to build for a big-endian target (see the crate
//! docs).

/// `struct __sk_buff` field offsets.
pub const SKB_LEN: i16 = 0;
/// `skb->protocol`: the EtherType the kernel gave the packet (big-endian in the low 16 bits).
pub const SKB_PROTOCOL: i16 = 16;
/// Non-zero when the kernel holds a VLAN tag outside the packet data (stripped on receive,
/// or to be inserted by the device on transmit).
pub const SKB_VLAN_PRESENT: i16 = 20;
pub const SKB_TC_INDEX: i16 = 44;
pub const SKB_DATA: i16 = 76;
pub const SKB_DATA_END: i16 = 80;
/// `skb->gso_size`: non-zero for a GSO packet, which the kernel cuts into segments of that
/// size after egress (so its length says nothing about what ext will be asked to carry).
pub const SKB_GSO_SIZE: i16 = 176;

/// `struct xdp_md` field offsets.
pub const XDP_DATA: i16 = 0;
pub const XDP_DATA_END: i16 = 4;

/// TC verdicts. `TC_ACT_UNSPEC` lets the next tcx program or clsact filter run (tcx: `TCX_NEXT`),
/// so "not ours" never bypasses anyone else's programs on ext.
pub const TC_ACT_UNSPEC: i32 = -1;
pub const TC_ACT_SHOT: i32 = 2;
pub const TC_ACT_REDIRECT: i32 = 7;

/// The `tc_index` egress writes on every packet it redirects to ext, so that the guard on
/// ext's egress lets it keep its label. Nothing else in the stack uses `tc_index` since dsmark
/// and tcindex were removed (6.8); the guard resets it. (`skb->mark` is left to the operator.)
pub const FROM_LINK: i32 = 0x4c33;

/// XDP verdicts.
pub const XDP_ABORTED: i32 = 0;
pub const XDP_DROP: i32 = 1;
pub const XDP_PASS: i32 = 2;
pub const XDP_REDIRECT: i32 = 4;

/// Ethernet header length, and where the EtherType sits in it.
pub const ETH_HLEN: i16 = 14;
pub const ETH_PROTO: i16 = 12;

/// EtherTypes, as a native-endian 16-bit load of the wire bytes reads them.
pub const ETH_P_IP: i32 = u16::from_ne_bytes([0x08, 0x00]) as i32;
pub const ETH_P_IPV6: i32 = u16::from_ne_bytes([0x86, 0xdd]) as i32;

/// Minimum header lengths and the offsets the programs touch inside them.
pub const IPV4_HLEN: i16 = 20;
pub const IPV4_TOS: i16 = 1;
pub const IPV4_CSUM: i16 = 10;
pub const IPV6_HLEN: i16 = 40;
/// The IPv6 header's payload length (16 bits, network order) and next header byte.
pub const IPV6_PAYLOAD_LEN: i16 = 4;
pub const IPV6_NEXT_HEADER: i16 = 6;
pub const IPPROTO_UDP: i32 = 17;
/// UDP header length, and where the destination port sits in it.
pub const UDP_HLEN: i16 = 8;
pub const UDP_DEST: i16 = 2;

/// The far-end probe that `l3mp run` sends on each link once a second: an IPv6 UDP datagram to this port
/// whose payload is the magic and then one 8-byte word (the sender's label, label bits and
/// sequence number). The port is 0x4c33, "L3", like [`FROM_LINK`].
pub const PROBE_PORT: u16 = 0x4c33;
/// The probe's first eight payload bytes.
pub const PROBE_MAGIC: [u8; 8] = *b"l3mprobe";
/// The probe's payload: the magic and the word.
pub const PROBE_PAYLOAD: i16 = 16;
/// The probe port as a native-endian 16-bit load of the wire bytes reads it.
pub const PROBE_PORT_NE: i32 = u16::from_ne_bytes(PROBE_PORT.to_be_bytes()) as i32;
/// A probe's IPv6 payload length (UDP header and payload), as a native-endian 16-bit load of
/// the wire bytes reads it.
pub const PROBE_IPV6_PAYLOAD_LEN_NE: i32 =
    u16::from_ne_bytes(((UDP_HLEN + PROBE_PAYLOAD) as u16).to_be_bytes()) as i32;

/// Counter slots of the per-CPU `counters` array; each slot is `{ packets: u64, bytes: u64 }`.
/// Egress of label L counts at `EGRESS + L`. What the demux delivers to a link is not counted
/// here but by the link itself (see [`super::ingress`]); slots 64 to 127, where l3mp counted
/// it before 2026-11-30, stay unused, so that every slot keeps its number for `l3mp status`
/// reading an instance of an older l3mp.
pub const EGRESS: u32 = 0;
/// Ingress packets passed untouched: unlabelled, not IP, VLAN-tagged, malformed or truncated.
pub const PASS: u32 = 128;
/// Ingress packets with a label no link uses (passed or dropped, by configuration).
pub const UNKNOWN: u32 = 129;
/// Egress packets dropped: not IP, malformed or truncated.
pub const EGRESS_DROP: u32 = 130;
/// Packets leaving ext that did not come from a managed link and whose label bits the guard
/// cleared.
pub const GUARDED: u32 = 131;
/// Ethernet ext: labelled ingress frames that did not come from the peer's MAC to ext's own,
/// passed untouched to ext's stack.
pub const FOREIGN: u32 = 132;
/// Packets leaving ext that are not IPv4 or IPv6 (or carry a VLAN tag, or are malformed),
/// which the guard leaves untouched.
pub const GUARD_NOT_IP: u32 = 133;
/// Egress packets dropped because they are longer than ext's MTU (and not GSO): sent while
/// the link's MTU was above ext's.
pub const TOO_BIG: u32 = 134;
/// Number of counter slots.
pub const COUNTER_SLOTS: u32 = 135;
/// Size of one counter slot.
pub const COUNTER_SIZE: u32 = 16;

/// Registers every program keeps for its whole run, named by role (the prologue loads them;
/// helpers leave r6..r9 alone).
pub const CTX: l3mp_asm::Reg = l3mp_asm::Reg::R6;
/// The packet's first byte (`data`).
pub const DATA: l3mp_asm::Reg = l3mp_asm::Reg::R7;
/// One past the packet's last byte (`data_end`).
pub const DATA_END: l3mp_asm::Reg = l3mp_asm::Reg::R8;
/// The packet's length as the hook sees it, which the byte counters add.
pub const LEN: l3mp_asm::Reg = l3mp_asm::Reg::R9;

/// Stack slots (offsets from r10).
pub const STACK_KEY: i16 = -4;
pub const STACK_LABEL: i16 = -8;
pub const STACK_ETHERTYPE: i16 = -12;
/// When a probe arrived (`bpf_ktime_get_ns`), 8 bytes.
pub const STACK_PROBE_AT: i16 = -24;

/// Map types.
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
pub const BPF_MAP_TYPE_DEVMAP: u32 = 14;

/// Map names, shared by the ELF writer, the loader and the offline VM.
pub const COUNTERS_MAP: &str = "counters";
/// XDP: label → hidden end, the DEVMAP `bpf_redirect_map` sends through.
pub const LINKS_MAP: &str = "links";
/// TC: label → ifindex of the hidden end, an array the kernel inlines the lookup of.
pub const PEERS_MAP: &str = "peers";
/// The far end's probes: by the label one arrived with, its word and when it arrived.
pub const PROBES_MAP: &str = "probes";
/// Entries of `probes`: one per 6-bit label, whatever the label width.
pub const PROBE_SLOTS: u32 = 64;
/// Size of one `probes` entry: `{ word: [u8; 8], at_ns: u64 }`.
pub const PROBE_SIZE: u32 = 16;
