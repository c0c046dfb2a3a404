//! `l3mp run` before its ext exists (a unit started at boot before `wg-quick@` or
//! systemd-networkd made the tunnel): it says once that it waits, and waits for a link
//! notification naming ext, or for a signal.

use nix::sys::signal::{SigSet, Signal};

use crate::sys::netlink::{LinkEvent, LinkInfo, Netlink};

use super::signals::{pending, TICK};
use super::Error;

/// How a wait for ext ended.
pub(super) enum Waited {
    /// ext is there now.
    Appeared(LinkInfo),
    /// This signal came first (taken).
    Signalled(Signal),
}

/// Waits until an interface called `ext` exists in this network namespace, or one of
/// `signals` arrives. Says once that it waits (if it does).
pub(super) fn wait_for_ext(
    netlink: &Netlink,
    ext: &str,
    signals: &SigSet,
) -> Result<Waited, Error> {
    let failed = |e: &dyn std::fmt::Display| Error::new(format!("--ext {ext}: {e}"));
    // Subscribed before the look, so that an ext made in between is not missed.
    let mut watcher = Netlink::watch_links().map_err(|e| failed(&e))?;
    let mut said = false;
    loop {
        if let Some(found) = netlink.link(ext).map_err(|e| failed(&e))? {
            if said {
                log::info!("{ext} appeared (ifindex {}): starting", found.index);
            }
            return Ok(Waited::Appeared(found));
        }
        if !said {
            log::info!(
                "{ext} does not exist yet: waiting for it to appear, then creating the links \
                 and attaching"
            );
            said = true;
        }
        // Until a notification may concern ext (or notifications were lost), or a signal.
        loop {
            if let Some(signal) = pending(signals)? {
                return Ok(Waited::Signalled(signal));
            }
            match watcher.next(TICK) {
                Ok(Some(LinkEvent::New(info))) if info.name == ext => break,
                Ok(_) => {}
                Err(e) if e.errno() == Some(libc::ENOBUFS) => break,
                Err(e) => return Err(failed(&e)),
            }
        }
    }
}
