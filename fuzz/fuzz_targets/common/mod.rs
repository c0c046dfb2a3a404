//! Shared by the packet targets: decoding the input and a cache of generated programs per
//! configuration (assembling them for every input would dominate the run time).

use std::collections::HashMap;
use std::sync::Mutex;

use l3mp::programs::{build, Bundle};
use l3mp::roundtrip::{Case, CASE_HEADER};

static BUNDLES: Mutex<Option<HashMap<Vec<u8>, Bundle>>> = Mutex::new(None);

/// The case in `data` and its programs; `None` for inputs too short to hold a configuration.
pub fn case(data: &[u8]) -> Option<(Case, Bundle)> {
    let case = Case::from_bytes(data)?;
    let key = data[..CASE_HEADER].to_vec();
    let mut cache = BUNDLES.lock().expect("not poisoned");
    let bundle = cache
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(|| build(&case.cfg).expect("a decoded case always builds"))
        .clone();
    Some((case, bundle))
}
