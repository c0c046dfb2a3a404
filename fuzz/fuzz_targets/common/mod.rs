//! Shared by the packet targets: decoding the input and a cache of prepared programs per
//! configuration (assembling them, and loading them into the VM, for every input would
//! dominate the run time).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use l3mp::programs::{build, ExtKind, Unknown};
use l3mp::roundtrip::Case;
use l3mp::vm::{Engine, Machine};

/// What tells configurations apart: label bits, the links' labels (sorted), an Ethernet ext,
/// the unknown-label policy. Which of the labels is under test does not: it picks a program of
/// the same bundle (the links' names differ, and no check reads them).
type Key = (u8, Vec<u8>, bool, bool);

/// Every configuration an input can decode to (`Case::from_bytes`): for each label width `b`
/// (1 to 6), one or two of its `2^b - 1` labels, and two flags.
const CONFIGURATIONS: usize = {
    let (mut sum, mut bits) = (0, 1);
    while bits <= 6 {
        let n = (1 << bits) - 1;
        sum += n + n * (n - 1) / 2;
        bits += 1;
    }
    4 * sum
};

/// A new configuration beyond this many and the cache starts again. All of them fit (a machine holds
/// its programs, without their listings, and the VMs of those that ran), so that a long run
/// builds each configuration's programs once.
const MAX_CACHED: usize = CONFIGURATIONS;

thread_local! {
    static MACHINES: RefCell<HashMap<Key, Rc<Machine>>> = RefCell::new(HashMap::new());
}

/// The case in `data` and its programs on the interpreter; `None` for inputs too short to hold
/// a configuration.
pub fn case(data: &[u8]) -> Option<(Case, Rc<Machine>)> {
    let case = Case::from_bytes(data)?;
    let cfg = &case.cfg;
    let mut labels: Vec<u8> = cfg.links.iter().map(|l| l.label).collect();
    labels.sort_unstable();
    let key = (
        cfg.label_bits,
        labels,
        matches!(cfg.ext.kind, ExtKind::Ethernet { .. }),
        cfg.unknown == Unknown::Drop,
    );
    let machine = MACHINES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(machine) = cache.get(&key) {
            return Rc::clone(machine);
        }
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        let bundle = build(cfg).expect("a decoded case always builds");
        let machine =
            Rc::new(Machine::new(&bundle, cfg, Engine::Interp).expect("the VM takes them"));
        cache.insert(key, Rc::clone(&machine));
        machine
    });
    Some((case, machine))
}
