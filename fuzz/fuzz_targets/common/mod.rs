//! Shared by the packet targets: decoding the input and a cache of prepared programs per
//! configuration (assembling them, and loading them into the VM, for every input would
//! dominate the run time).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use l3mp::programs::{build, ExtKind, Unknown};
use l3mp::roundtrip::Case;
use l3mp::vm::{Engine, Machine};

/// What tells configurations apart: label bits, the label under test, every link's label, an
/// Ethernet ext, the unknown-label policy.
type Key = (u8, u8, Vec<u8>, bool, bool);

/// More configurations than this and the cache starts again (each holds an arena).
const MAX_CACHED: usize = 8192;

thread_local! {
    static MACHINES: RefCell<HashMap<Key, Rc<Machine>>> = RefCell::new(HashMap::new());
}

/// The case in `data` and its programs on the interpreter; `None` for inputs too short to hold
/// a configuration.
pub fn case(data: &[u8]) -> Option<(Case, Rc<Machine>)> {
    let case = Case::from_bytes(data)?;
    let cfg = &case.cfg;
    let key = (
        cfg.label_bits,
        case.label,
        cfg.links.iter().map(|l| l.label).collect(),
        matches!(cfg.ext.kind, ExtKind::Ethernet { .. }),
        cfg.unknown == Unknown::Drop,
    );
    let machine = MACHINES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache
            .entry(key)
            .or_insert_with(|| {
                let bundle = build(cfg).expect("a decoded case always builds");
                Rc::new(Machine::new(&bundle, cfg, Engine::Interp).expect("the VM takes them"))
            })
            .clone()
    });
    Some((case, machine))
}
