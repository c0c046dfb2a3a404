//! `l3mp demo` (being written).
use crate::run::{Error, IngressChoice};

/// Runs the demo.
pub fn demo(_ethernet: bool, _ingress: IngressChoice) -> Result<(), Error> {
    Err(Error::new("demo not written yet"))
}
