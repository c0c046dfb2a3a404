//! Helpers for the privileged tests of the system layer.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::{
    caps::{missing_capabilities, Cap},
    netns::NetNs,
};

/// Whether the tests may create namespaces and configure links; prints why
/// `test` is skipped when they may not.
pub(crate) fn privileged(test: &str) -> bool {
    let missing = missing_capabilities(&[Cap::NetAdmin, Cap::SysAdmin]);
    if !missing.is_empty() {
        eprintln!("skipped {test}: needs {}", missing.join(" and "));
    }
    missing.is_empty()
}

/// A new namespace named after this process and `label`; it is deleted
/// when dropped, also when the test fails.
pub(crate) fn test_namespace(label: &str) -> NetNs {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let serial = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("l3mp-test-{}-{serial}-{label}", std::process::id());
    NetNs::create(&name).unwrap_or_else(|error| panic!("{error}"))
}
