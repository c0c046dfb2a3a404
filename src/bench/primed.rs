//! Demux timed with repeats, faithfully: a repeated test run reruns a program on the same
//! packet, which the first run of a demux leaves without its label, so that every later
//! repeat would take the cheap label-0 path. A *primed* program starts with a short prologue
//! that writes the bytes the demux changes in the IP header (the label and the IPv4
//! checksum) back to their values on the wire, then runs the demux unchanged, slot for slot.
//! Its floor gets the very same prologue, so the difference between the two is the demux's
//! own cost. (The MAC rewrite of a demux on an Ethernet ext writes the same bytes on every
//! run and nothing reads them, so it needs no restoring.)

use l3mp_asm::{
    alu64, jump_if, load, mov, store, AluOp, Assembled, Cond, Note, Program, Reg, Size, Target,
};

use crate::programs::layout::{ETH_HLEN, SKB_DATA, SKB_DATA_END, XDP_DATA, XDP_DATA_END};
use crate::programs::Hook;
use crate::run::Error;

/// The bytes at offsets past the Ethernet header where `wire` and `after` (the packet after
/// one run) differ, with their values on the wire.
pub fn changed_bytes(wire: &[u8], after: &[u8]) -> Vec<(i16, u8)> {
    wire.iter()
        .zip(after)
        .enumerate()
        .skip(ETH_HLEN as usize)
        .filter(|(_, (w, a))| w != a)
        .map(|(i, (w, _))| (i as i16, *w))
        .collect()
}

/// `body` under the name `name`, preceded by a prologue for `hook` that stores `bytes` into
/// the packet (when it is long enough to hold them).
pub fn primed(
    name: &str,
    hook: Hook,
    bytes: &[(i16, u8)],
    body: &Assembled,
) -> Result<Assembled, Error> {
    let (data, end) = match hook {
        Hook::Tc => (SKB_DATA, SKB_DATA_END),
        Hook::Xdp => (XDP_DATA, XDP_DATA_END),
    };
    let reach = bytes.iter().map(|(off, _)| off + 1).max().unwrap_or(0);
    let mut prologue = Program::new(name);
    prologue.extend([
        load(Size::W, Reg::R2, Reg::R1, data),
        load(Size::W, Reg::R3, Reg::R1, end),
        mov(Reg::R4, Reg::R2),
        alu64(AluOp::Add, Reg::R4, i32::from(reach)),
        jump_if(
            Cond::Gt,
            Reg::R4,
            Reg::R3,
            Target::Offset(bytes.len() as i16),
        ),
    ]);
    for &(off, value) in bytes {
        prologue.push(store(Size::B, Reg::R2, off, i32::from(value)));
    }
    let mut out = prologue
        .assemble()
        .map_err(|e| Error::new(format!("{name}: {e}")))?;
    let shift = out.slots.len();
    out.notes
        .push((shift, Note::Comment(format!("{} as generated", body.name))));
    out.slots.extend(body.slots.iter().cloned());
    out.relocs
        .extend(body.relocs.iter().map(|r| l3mp_asm::MapReloc {
            slot: r.slot + shift,
            map: r.map.clone(),
        }));
    out.notes.extend(
        body.notes
            .iter()
            .map(|(slot, note)| (slot + shift, note.clone())),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_header_bytes_that_changed_are_restored() {
        let wire = [0u8; 20];
        let mut after = wire;
        after[3] = 9; // a MAC byte: rewritten identically on every run, left alone
        after[15] = 4;
        after[19] = 1;
        assert_eq!(changed_bytes(&wire, &after), vec![(15, 0), (19, 0)]);
    }

    #[test]
    fn the_body_follows_the_prologue_with_its_relocations_shifted() {
        let mut body = Program::new("body");
        body.extend([
            l3mp_asm::load_map(Reg::R1, "m"),
            mov(Reg::R0, 2),
            l3mp_asm::exit(),
        ]);
        let body = body.assemble().unwrap();
        let out = primed("p", Hook::Xdp, &[(15, 1), (25, 7)], &body).unwrap();
        // 5 prologue instructions, 2 stores, then the body.
        assert_eq!(out.slots.len(), 7 + body.slots.len());
        assert_eq!(out.relocs[0].slot, 7);
        assert_eq!(&out.slots[7..], &body.slots[..]);
    }
}
