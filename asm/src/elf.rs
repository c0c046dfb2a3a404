//! The ELF writer: a relocatable eBPF object in the layout aya-obj (and libbpf, and PREVAIL)
//! parse. Programs go to `classifier` or `xdp` sections with one `STT_FUNC` symbol each, maps to
//! a legacy `maps` section of 28-byte `struct bpf_map_def` records with one `STT_OBJECT` symbol
//! each, and every map load gets an `R_BPF_64_64` relocation against its map's symbol.

use std::collections::{HashMap, HashSet};

use object::write::{Object, Relocation, StandardSegment, Symbol, SymbolId, SymbolSection};
use object::{
    elf, Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags,
    SymbolKind, SymbolScope,
};

use crate::program::Assembled;
use crate::Error;

/// The longest program name the kernel takes: 15 bytes and a NUL in `prog_name`. It rejects
/// a longer one (EINVAL); aya cuts a longer one to 15 bytes before loading, so that two names
/// that differ only past their 15th byte would load under one name.
pub const MAX_PROGRAM_NAME: usize = 15;

/// The program type, which the loader reads from the section name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    /// `BPF_PROG_TYPE_SCHED_CLS` (section `classifier`).
    Classifier,
    /// `BPF_PROG_TYPE_XDP` (section `xdp`).
    Xdp,
}

impl Section {
    /// The section name.
    pub fn name(self) -> &'static str {
        match self {
            Section::Classifier => "classifier",
            Section::Xdp => "xdp",
        }
    }
}

/// A legacy map definition (`struct bpf_map_def`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDef {
    /// The map's symbol, which [`crate::load_map`] names.
    pub name: String,
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// Bytes of a key.
    pub key_size: u32,
    /// Bytes of a value.
    pub value_size: u32,
    /// How many entries it holds.
    pub max_entries: u32,
    /// `BPF_F_*` map flags.
    pub flags: u32,
}

impl MapDef {
    /// The 28-byte record: type, key size, value size, max entries, flags, id, pinning.
    fn record(&self) -> [u8; 28] {
        let fields = [
            self.map_type,
            self.key_size,
            self.value_size,
            self.max_entries,
            self.flags,
            0,
            0,
        ];
        let mut out = [0u8; 28];
        for (chunk, v) in out.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// Writes programs and maps into one ELF object under `license`.
pub fn write_elf(
    programs: &[(Section, &Assembled)],
    maps: &[MapDef],
    license: &str,
) -> Result<Vec<u8>, Error> {
    // The loader reads the license as one C string.
    if license.contains('\0') {
        return Err(Error::Elf(format!(
            "license {license:?} contains a NUL byte"
        )));
    }
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::Bpf, Endianness::Little);
    let map_symbols = add_maps(&mut obj, maps)?;
    let mut sections = HashMap::new();
    let mut names = HashSet::new();
    for (kind, prog) in programs {
        if prog.name.is_empty() || prog.name.len() > MAX_PROGRAM_NAME {
            return Err(Error::Elf(format!(
                "program name '{}' must be 1 to {MAX_PROGRAM_NAME} bytes (the kernel's limit)",
                prog.name
            )));
        }
        // ELF symbol names are NUL-terminated (and `object` panics on a NUL inside one).
        if prog.name.contains('\0') {
            return Err(Error::Elf(format!(
                "program name {:?} contains a NUL byte",
                prog.name
            )));
        }
        // Loaders key programs by symbol name: a second program of the same name would be
        // silently dropped (aya-obj keeps one).
        if !names.insert(prog.name.as_str()) {
            return Err(Error::Elf(format!(
                "program name '{}' is used twice",
                prog.name
            )));
        }
        let section = *sections.entry(*kind).or_insert_with(|| {
            let segment = obj.segment_name(StandardSegment::Text).to_vec();
            obj.add_section(segment, kind.name().as_bytes().to_vec(), SectionKind::Text)
        });
        let offset = obj.append_section_data(section, &prog.bytes(), 8);
        obj.add_symbol(Symbol {
            name: prog.name.as_bytes().to_vec(),
            value: offset,
            size: prog.bytes().len() as u64,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        });
        for reloc in &prog.relocs {
            let symbol = *map_symbols.get(reloc.map.as_str()).ok_or_else(|| {
                Error::Elf(format!(
                    "program '{}' loads undefined map '{}'",
                    prog.name, reloc.map
                ))
            })?;
            obj.add_relocation(
                section,
                Relocation {
                    offset: offset + 8 * reloc.slot as u64,
                    symbol,
                    addend: 0,
                    flags: RelocationFlags::Elf {
                        r_type: elf::R_BPF_64_64,
                    },
                },
            )
            .map_err(|e| Error::Elf(e.to_string()))?;
        }
    }
    let mut text = license.as_bytes().to_vec();
    text.push(0);
    let lic = obj.add_section(Vec::new(), b"license".to_vec(), SectionKind::Data);
    obj.append_section_data(lic, &text, 1);
    obj.write().map_err(|e| Error::Elf(e.to_string()))
}

/// The ELF symbol of each map, by map name.
type MapSymbols<'m> = HashMap<&'m str, SymbolId>;

/// Adds the `maps` section and a symbol per map; returns the symbols by map name. A name
/// defined twice is an error: loaders key maps by name and would keep only one of them.
fn add_maps<'m>(obj: &mut Object, maps: &'m [MapDef]) -> Result<MapSymbols<'m>, Error> {
    let mut symbols = HashMap::new();
    if maps.is_empty() {
        return Ok(symbols);
    }
    let section = obj.add_section(Vec::new(), b"maps".to_vec(), SectionKind::Data);
    for map in maps {
        if map.name.is_empty() || map.name.contains('\0') {
            return Err(Error::Elf(format!(
                "map name {:?} is empty or contains a NUL byte",
                map.name
            )));
        }
        if symbols.contains_key(map.name.as_str()) {
            return Err(Error::Elf(format!(
                "map name '{}' is defined twice",
                map.name
            )));
        }
        let offset = obj.append_section_data(section, &map.record(), 4);
        let id = obj.add_symbol(Symbol {
            name: map.name.as_bytes().to_vec(),
            value: offset,
            size: 28,
            kind: SymbolKind::Data,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        });
        symbols.insert(map.name.as_str(), id);
    }
    Ok(symbols)
}
