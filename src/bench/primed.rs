//! Demux timed with repeats, faithfully: a repeated test run reruns a program on the same
//! packet, which the first run of a demux leaves without its label, so that every later
//! repeat would take the cheap label-0 path. A *primed* program starts with a short prologue
//! that writes back to their values on the wire the two MACs (which a demux rewrites, and on an
//! Ethernet ext checks before it delivers) and the first 12 bytes of the IP header (the label
//! and the IPv4 checksum), six word stores whatever the packet, then runs the demux unchanged,
//! slot for slot. Its floor gets the very same prologue, so the difference between the two is
//! the demux's own cost; and two demuxes on different labels get prologues of the same shape.

use l3mp_asm::{
    alu64, jump_if, load, mov, store, AluOp, Assembled, Cond, Note, Program, Reg, Size, Target,
};

use super::Error;
use crate::programs::layout::{ETH_HLEN, SKB_DATA, SKB_DATA_END, XDP_DATA, XDP_DATA_END};
use crate::programs::Hook;

/// The byte ranges of an Ethernet frame the prologue restores: both MACs, and the first 12
/// bytes of the IP header.
fn restored() -> [std::ops::Range<usize>; 2] {
    let ip = ETH_HLEN as usize;
    [0..12, ip..ip + 12]
}

/// The words the prologue stores: the [`restored`] bytes of `wire` (an Ethernet frame), at
/// their offsets in the frame.
pub fn restoring(wire: &[u8]) -> Result<Vec<(i16, i32)>, Error> {
    let [_, ip] = restored();
    if wire.len() < ip.end {
        return Err(Error::new(format!(
            "a {}-byte frame has no IP header",
            wire.len()
        )));
    }
    Ok(restored()
        .into_iter()
        .flat_map(|range| range.step_by(4))
        .map(|at| {
            let word: [u8; 4] = wire[at..at + 4].try_into().expect("4 bytes");
            (at as i16, i32::from_ne_bytes(word))
        })
        .collect())
}

/// Whether the prologue restores every byte that differs between `wire` and `after` (the
/// packet after one run).
pub fn restores_all(wire: &[u8], after: &[u8]) -> bool {
    wire.len() == after.len()
        && wire
            .iter()
            .zip(after)
            .enumerate()
            .all(|(i, (w, a))| w == a || restored().iter().any(|r| r.contains(&i)))
}

/// `body` under the name `name`, preceded by a prologue for `hook` that stores `words` into
/// the packet (when it is long enough to hold them).
pub fn primed(
    name: &str,
    hook: Hook,
    words: &[(i16, i32)],
    body: &Assembled,
) -> Result<Assembled, Error> {
    let (data, end) = match hook {
        Hook::Tc => (SKB_DATA, SKB_DATA_END),
        Hook::Xdp => (XDP_DATA, XDP_DATA_END),
    };
    let reach = words.iter().map(|(off, _)| off + 4).max().unwrap_or(0);
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
            Target::Offset(words.len() as i16),
        ),
    ]);
    for &(off, value) in words {
        prologue.push(store(Size::W, Reg::R2, off, value));
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
    fn the_macs_and_the_first_twelve_bytes_of_the_ip_header_are_restored() {
        let wire: Vec<u8> = (0..40).collect();
        let words = restoring(&wire).unwrap();
        let at = |b: u8| i32::from_ne_bytes([b, b + 1, b + 2, b + 3]);
        let expected: Vec<(i16, i32)> = [0, 4, 8, 14, 18, 22]
            .into_iter()
            .map(|b| (i16::from(b), at(b)))
            .collect();
        assert_eq!(words, expected);
        assert!(restoring(&wire[..25]).is_err());

        let mut after = wire.clone();
        after[3] = 9; // a MAC byte
        after[15] = 4; // IPv4 TOS
        after[25] = 1; // IPv4 checksum
        assert!(restores_all(&wire, &after));
        after[26] = 0; // the source address: not restored
        assert!(!restores_all(&wire, &after));
        let mut after = wire.clone();
        after[12] = 0; // the EtherType: not restored
        assert!(!restores_all(&wire, &after));
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
        let out = primed("p", Hook::Xdp, &[(14, 1), (18, 7)], &body).unwrap();
        // 5 prologue instructions, 2 stores, then the body.
        assert_eq!(out.slots.len(), 7 + body.slots.len());
        assert_eq!(out.relocs[0].slot, 7);
        assert_eq!(&out.slots[7..], &body.slots[..]);
    }
}
