//! `l3mp run`'s wait: until a stop signal arrives, it follows ext through link notifications.
//! When ext is deleted (`wg-quick down`), the links stay and the instance waits; when an
//! interface of ext's name appears, the programs (which bake ext's ifindex in) are generated
//! for it and attached again; when ext's MTU changes, the links follow; when an Ethernet ext's
//! peer has a new MAC, the programs are generated for it. A link whose MAC is changed (which
//! the demux does not follow) is reported.

use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use crate::sys::netlink::Netlink;

use super::instance::{Attachment, Instance, PEER_CHECK};
use super::signals::{pending, TICK};
use super::Error;

/// How often an ext that is there but could not be attached (its peer not resolved yet) is
/// tried again without a notification about it.
const RETRY: Duration = Duration::from_millis(200);

/// Runs until one of `stop` arrives and returns it. The signals must be blocked in every
/// thread (so that they stay pending until taken here), and the calling thread must be in
/// the instance's network namespace (the notifications are that namespace's).
pub fn serve(instance: &mut Instance, stop: &SigSet) -> Result<Signal, Error> {
    let watching = |e: &dyn std::fmt::Display| Error::new(format!("watching the links: {e}"));
    let mut watcher = Netlink::watch_links().map_err(|e| watching(&e))?;
    // Whatever changed between the start and the subscription.
    let mut attachment = instance.look()?;
    let mut tried = Instant::now();
    let mut peer_checked = Instant::now();
    loop {
        if let Some(signal) = pending(stop)? {
            return Ok(signal);
        }
        let notified = match watcher.next(TICK) {
            Ok(event) => event.is_some_and(|event| {
                instance.check_mac(&event);
                instance.concerns(&event)
            }),
            // Notifications were lost: look at ext again.
            Err(e) if e.errno() == Some(libc::ENOBUFS) => true,
            Err(e) => return Err(watching(&e)),
        };
        instance.check_far_ends();
        let retry = attachment == Attachment::Waiting && tried.elapsed() >= RETRY;
        if notified || retry {
            attachment = instance.look()?;
            tried = Instant::now();
        }
        if peer_checked.elapsed() >= PEER_CHECK {
            instance.check_peer();
            peer_checked = Instant::now();
        }
    }
}
