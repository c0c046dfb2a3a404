//! The ELF writer, read back by aya-obj (what the loader sees: programs, sections, instructions,
//! maps, and relocations applied by `relocate_maps`) and by the `object` crate (the raw ELF:
//! machine, symbol kinds and sizes, relocation records, license).

use std::collections::{HashMap, HashSet};

use aya_obj::generated::bpf_insn;
use aya_obj::{Map, Object as AyaObject, ProgramSection};
use l3mp_asm::*;
use object::read::elf::{ElfFile64, FileHeader as _};
use object::{elf, Endianness, Object as _, ObjectSection as _, ObjectSymbol as _};

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_DEVMAP: u32 = 14;
const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_PSEUDO_MAP_FD: u8 = 1;

fn maps() -> Vec<MapDef> {
    vec![
        MapDef {
            name: "config".into(),
            map_type: BPF_MAP_TYPE_HASH,
            key_size: 4,
            value_size: 16,
            max_entries: 256,
            flags: BPF_F_NO_PREALLOC,
        },
        MapDef {
            name: "ports".into(),
            map_type: BPF_MAP_TYPE_DEVMAP,
            key_size: 4,
            value_size: 4,
            max_entries: 64,
            flags: 0,
        },
    ]
}

/// Looks a key up in `map`, returns r0 = found.
fn lookup(p: &mut Program, map: &str, skip: &str) {
    p.push(mov(Reg::R2, Reg::R10))
        .push(alu64(AluOp::Add, Reg::R2, -4))
        .push(store(Size::W, Reg::R10, -4, 0))
        .push(load_map(Reg::R1, map))
        .push(call(Helper::MapLookupElem))
        .push(jump_if(Cond::Eq, Reg::R0, 0, skip));
}

/// Two classifier programs and one XDP program, sharing the two maps.
fn programs() -> Vec<(Section, Assembled)> {
    let mut egress = Program::new("egress");
    lookup(&mut egress, "config", "out");
    lookup(&mut egress, "ports", "out");
    egress.label("out").push(mov(Reg::R0, 0)).push(exit());

    let mut ingress = Program::new("ingress");
    ingress.push(load_imm64(Reg::R3, 0x1122_3344_5566_7788));
    lookup(&mut ingress, "ports", "done");
    lookup(&mut ingress, "ports", "done");
    ingress.label("done").push(mov(Reg::R0, -1)).push(exit());

    let mut xdp = Program::new("xdp_in");
    lookup(&mut xdp, "config", "pass");
    xdp.push(mov(Reg::R1, 1))
        .push(mov(Reg::R2, 0))
        .push(call(Helper::Redirect))
        .push(exit())
        .label("pass")
        .push(mov(Reg::R0, 2))
        .push(exit());

    [
        (Section::Classifier, egress),
        (Section::Xdp, xdp),
        (Section::Classifier, ingress),
    ]
    .into_iter()
    .map(|(s, p)| (s, p.assemble().expect("assemble")))
    .collect()
}

fn write(progs: &[(Section, Assembled)], license: &str) -> Vec<u8> {
    let refs: Vec<(Section, &Assembled)> = progs.iter().map(|(s, a)| (*s, a)).collect();
    write_elf(&refs, &maps(), license).expect("write_elf")
}

fn raw(insn: &bpf_insn) -> RawInsn {
    RawInsn {
        code: insn.code,
        dst: insn.dst_reg(),
        src: insn.src_reg(),
        off: insn.off,
        imm: insn.imm,
    }
}

fn instructions(obj: &AyaObject, name: &str) -> Vec<RawInsn> {
    let prog = &obj.programs[name];
    obj.functions[&prog.function_key()]
        .instructions
        .iter()
        .map(raw)
        .collect()
}

#[test]
fn programs_have_their_names_sections_and_bytes() {
    let progs = programs();
    let bytes = write(&progs, "GPL");
    let obj = AyaObject::parse(&bytes).expect("aya-obj parses our ELF");

    let names: HashSet<&str> = obj.programs.keys().map(String::as_str).collect();
    assert_eq!(names, HashSet::from(["egress", "ingress", "xdp_in"]));
    assert!(matches!(
        obj.programs["egress"].section,
        ProgramSection::SchedClassifier
    ));
    assert!(matches!(
        obj.programs["ingress"].section,
        ProgramSection::SchedClassifier
    ));
    assert!(matches!(
        obj.programs["xdp_in"].section,
        ProgramSection::Xdp { frags: false, .. }
    ));
    // The two classifiers share one section, one after the other; XDP has its own.
    let (egress, ingress, xdp) = (
        &obj.programs["egress"],
        &obj.programs["ingress"],
        &obj.programs["xdp_in"],
    );
    assert_eq!(egress.section_index, ingress.section_index);
    assert_ne!(egress.section_index, xdp.section_index);
    assert_eq!(egress.address, 0);
    assert_eq!(ingress.address, 8 * progs[0].1.len() as u64);
    assert_eq!(xdp.address, 0);
    assert_eq!(obj.license.to_str(), Ok("GPL"));

    // Before relocate_maps, aya-obj sees exactly our slots (map loads still `ld_imm64 rX, 0`).
    for (_, asm) in &progs {
        assert_eq!(instructions(&obj, &asm.name), asm.slots, "{}", asm.name);
    }
}

#[test]
fn maps_have_their_definitions() {
    let bytes = write(&programs(), "GPL");
    let obj = AyaObject::parse(&bytes).expect("parse");
    assert_eq!(obj.maps.len(), 2);
    for def in maps() {
        let map = &obj.maps[&def.name];
        assert!(
            matches!(map, Map::Legacy(_)),
            "{} is a legacy map",
            def.name
        );
        assert_eq!(map.map_type(), def.map_type, "{}", def.name);
        assert_eq!(map.key_size(), def.key_size, "{}", def.name);
        assert_eq!(map.value_size(), def.value_size, "{}", def.name);
        assert_eq!(map.max_entries(), def.max_entries, "{}", def.name);
        assert_eq!(map.map_flags(), def.flags, "{}", def.name);
        if let Map::Legacy(legacy) = map {
            assert_eq!(legacy.def.id, 0);
            assert!(legacy.inner_def.is_none());
            assert!(
                legacy.data.is_empty(),
                "no initial data: relocated as a map fd"
            );
        }
    }
}

#[test]
fn relocate_maps_patches_exactly_our_relocation_slots() {
    let progs = programs();
    let bytes = write(&progs, "GPL");
    let mut obj = AyaObject::parse(&bytes).expect("parse");
    let fds: HashMap<&str, i32> = HashMap::from([("config", 41), ("ports", 97)]);
    let maps = obj.maps.clone();
    obj.relocate_maps(
        maps.iter()
            .map(|(name, map)| (name.as_str(), fds[name.as_str()], map)),
        &HashSet::new(),
    )
    .expect("relocate_maps");

    let mut relocated = 0;
    for (_, asm) in &progs {
        assert!(!asm.relocs.is_empty());
        let got = instructions(&obj, &asm.name);
        assert_eq!(got.len(), asm.slots.len());
        for (slot, (ours, theirs)) in asm.slots.iter().zip(&got).enumerate() {
            match asm.relocs.iter().find(|r| r.slot == slot) {
                Some(r) => {
                    assert_eq!(theirs.code, 0x18, "{} slot {slot}", asm.name);
                    assert_eq!(theirs.src, BPF_PSEUDO_MAP_FD, "{} slot {slot}", asm.name);
                    assert_eq!(theirs.imm, fds[r.map.as_str()], "{} slot {slot}", asm.name);
                    assert_eq!(theirs.dst, ours.dst);
                    relocated += 1;
                }
                None => assert_eq!(theirs, ours, "{} slot {slot} untouched", asm.name),
            }
        }
    }
    assert_eq!(relocated, 2 + 2 + 1);
}

#[test]
fn raw_elf_has_bpf_machine_symbols_relocations_and_license() {
    let progs = programs();
    let bytes = write(&progs, "Dual MIT/GPL");
    let file = ElfFile64::<Endianness>::parse(&*bytes).expect("object parses our ELF");
    let endian = file.endian();
    assert_eq!(file.elf_header().e_machine(endian), elf::EM_BPF);
    assert_eq!(file.elf_header().e_type(endian), elf::ET_REL);
    assert_eq!(file.architecture(), object::Architecture::Bpf);
    assert!(file.is_little_endian());

    // Programs: global STT_FUNC symbols in their section, sized as the program.
    for (section, asm) in &progs {
        let sym = file
            .symbol_by_name(&asm.name)
            .unwrap_or_else(|| panic!("symbol {}", asm.name));
        let raw = sym.elf_symbol();
        assert_eq!(raw.st_type(), elf::STT_FUNC, "{}", asm.name);
        assert_eq!(raw.st_bind(), elf::STB_GLOBAL, "{}", asm.name);
        assert_eq!(sym.size(), asm.bytes().len() as u64, "{}", asm.name);
        let sec = file
            .section_by_index(sym.section_index().expect("defined"))
            .expect("section");
        assert_eq!(sec.name(), Ok(section.name()));
        assert_eq!(sec.kind(), object::SectionKind::Text);
        let start = sym.address() as usize;
        let data = sec.data().expect("data");
        assert_eq!(
            &data[start..start + asm.bytes().len()],
            asm.bytes().as_slice()
        );
    }

    // Maps: global STT_OBJECT symbols of 28 bytes in `maps`, one record after the other.
    let maps_section = file.section_by_name("maps").expect("maps section");
    let records = maps_section.data().expect("data");
    assert_eq!(records.len(), 28 * maps().len());
    for (i, def) in maps().iter().enumerate() {
        let sym = file.symbol_by_name(&def.name).expect("map symbol");
        assert_eq!(sym.elf_symbol().st_type(), elf::STT_OBJECT, "{}", def.name);
        assert_eq!(sym.elf_symbol().st_bind(), elf::STB_GLOBAL, "{}", def.name);
        assert_eq!(sym.size(), 28, "{}", def.name);
        assert_eq!(sym.address(), 28 * i as u64, "{}", def.name);
        assert_eq!(sym.section_index(), Some(maps_section.index()));
        let rec = &records[28 * i..28 * (i + 1)];
        let field = |n: usize| u32::from_le_bytes(rec[4 * n..4 * n + 4].try_into().unwrap());
        assert_eq!(
            [
                field(0),
                field(1),
                field(2),
                field(3),
                field(4),
                field(5),
                field(6)
            ],
            [
                def.map_type,
                def.key_size,
                def.value_size,
                def.max_entries,
                def.flags,
                0,
                0
            ]
        );
    }

    // Relocations: R_BPF_64_64 (REL, addend 0) at each map load's byte offset, against its map.
    let mut want: Vec<(String, u64, String)> = Vec::new();
    let mut offsets: HashMap<Section, u64> = HashMap::new();
    for (section, asm) in &progs {
        let base = offsets.entry(*section).or_insert(0);
        for r in &asm.relocs {
            want.push((
                section.name().into(),
                *base + 8 * r.slot as u64,
                r.map.clone(),
            ));
        }
        *base += asm.bytes().len() as u64;
    }
    let mut got = Vec::new();
    for sec in file.sections() {
        for (offset, reloc) in sec.relocations() {
            assert_eq!(
                reloc.flags(),
                object::RelocationFlags::Elf {
                    r_type: elf::R_BPF_64_64
                }
            );
            assert_eq!(reloc.addend(), 0);
            assert!(!reloc.has_implicit_addend() || reloc.addend() == 0);
            let object::RelocationTarget::Symbol(index) = reloc.target() else {
                panic!("relocation against a symbol");
            };
            let sym = file.symbol_by_index(index).expect("symbol");
            got.push((
                sec.name().expect("name").to_string(),
                offset,
                sym.name().expect("name").to_string(),
            ));
        }
    }
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(got.len(), 5);

    // License: NUL-terminated, in its own section.
    let license = file.section_by_name("license").expect("license section");
    assert_eq!(license.data().expect("data"), b"Dual MIT/GPL\0");
    let aya = AyaObject::parse(&bytes).expect("parse");
    assert_eq!(aya.license.to_str(), Ok("Dual MIT/GPL"));
}

#[test]
fn object_without_maps_has_no_maps_section() {
    let mut p = Program::new("plain");
    p.push(mov(Reg::R0, 2)).push(exit());
    let asm = p.assemble().expect("assemble");
    let bytes = write_elf(&[(Section::Xdp, &asm)], &[], "GPL").expect("write");
    let file = ElfFile64::<Endianness>::parse(&*bytes).expect("parse");
    assert!(file.section_by_name("maps").is_none());
    let obj = AyaObject::parse(&bytes).expect("aya-obj parses it");
    assert!(obj.maps.is_empty());
    assert_eq!(instructions(&obj, "plain"), asm.slots);
}
