//! `l3mp run`'s wait: until a stop signal arrives, it follows ext through link notifications.
//! When ext is deleted (`wg-quick down`), the links stay and the instance waits; when an
//! interface of ext's name appears, the programs (which bake ext's ifindex in) are generated
//! for it and attached again; when ext's MTU changes, the links follow; when an Ethernet ext's
//! peer has a new MAC, the programs are generated for it. A link whose MAC is changed (which
//! the demux does not follow) is reported.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};

use crate::sys::netlink::{format_mac, LinkInfo, Netlink};

use super::instance::{Attachment, Instance, PEER_CHECK};
use super::Error;

/// The longest wait for link notifications: a stop signal is noticed within it.
pub(super) const TICK: Duration = Duration::from_millis(100);
/// How often an ext that is there but could not be attached (its peer not resolved yet) is
/// tried again without a notification about it.
const RETRY: Duration = Duration::from_millis(200);

/// What ext's current state asks of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing that matters changed.
    Nothing,
    /// ext is gone: keep the links and wait.
    Gone,
    /// An interface of ext's name is there, not the one the programs are on: attach to it.
    Attach(LinkInfo),
    /// ext's MTU changed: the links follow.
    Mtu(u32),
}

/// The step for an instance whose programs were last attached to `attached` (still there if
/// `present`), now that ext's name denotes `now`.
pub fn step(attached: &LinkInfo, present: bool, now: Option<LinkInfo>) -> Step {
    match now {
        None if present => Step::Gone,
        None => Step::Nothing,
        // ext's MAC is baked into the programs on an Ethernet ext: a new one is a new ext.
        Some(now) if present && now.index == attached.index && now.mac != attached.mac => {
            Step::Attach(now)
        }
        Some(now) if present && now.index == attached.index => match now.mtu {
            mtu if mtu != attached.mtu => Step::Mtu(mtu),
            _ => Step::Nothing,
        },
        Some(now) => Step::Attach(now),
    }
}

/// What to say when the MAC of the user end of a link changes from `before` to `now`, the demux
/// delivering to `expected`: a warning when it no longer matches, a note when it matches again.
pub fn mac_change(
    link: &str,
    expected: [u8; 6],
    before: Option<[u8; 6]>,
    now: Option<[u8; 6]>,
) -> Option<(log::Level, String)> {
    let expected_text = format_mac(&expected);
    match now {
        _ if now == before => None,
        Some(mac) if mac == expected => Some((
            log::Level::Info,
            format!("{link}: MAC {expected_text} again; it receives again"),
        )),
        _ => Some((
            log::Level::Warn,
            format!(
                "{link}: MAC changed to {}; l3mp delivers to {expected_text}, so {link} receives \
                 nothing until it has that MAC again",
                now.map_or("none".into(), |mac| format_mac(&mac))
            ),
        )),
    }
}

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

/// One of `stop` if it is pending (taking it), without waiting.
pub(super) fn pending(stop: &SigSet) -> Result<Option<Signal>, Error> {
    let now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: sigtimedwait reads the set and the timeout and writes no siginfo (null).
    let taken = unsafe { libc::sigtimedwait(stop.as_ref(), std::ptr::null_mut(), &now) };
    if taken >= 0 {
        return Signal::try_from(taken)
            .map(Some)
            .map_err(|e| Error::new(format!("taking signal {taken}: {e}")));
    }
    match Errno::last() {
        Errno::EAGAIN | Errno::EINTR => Ok(None),
        e => Err(Error::new(format!("checking for a stop signal: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(index: u32, mtu: u32) -> LinkInfo {
        LinkInfo {
            index,
            name: "wg0".into(),
            mac: None,
            mtu,
            kind: None,
            is_ethernet: false,
            alias: None,
            up: true,
            running: true,
            noarp: true,
        }
    }

    #[test]
    fn steps_follow_ext() {
        let old = ext(7, 1420);
        assert_eq!(step(&old, true, Some(ext(7, 1420))), Step::Nothing);
        assert_eq!(step(&old, true, None), Step::Gone);
        assert_eq!(step(&old, false, None), Step::Nothing);
        assert_eq!(step(&old, true, Some(ext(7, 1380))), Step::Mtu(1380));
        assert_eq!(
            step(&old, false, Some(ext(9, 1420))),
            Step::Attach(ext(9, 1420))
        );
        // Deleted and created again between two looks: a new ifindex all the same.
        assert_eq!(
            step(&old, true, Some(ext(9, 1420))),
            Step::Attach(ext(9, 1420))
        );
        // A new MAC (which an Ethernet ext's programs bake in): generated again.
        let remade = LinkInfo {
            mac: Some([2, 0, 0, 0, 0, 7]),
            ..ext(7, 1420)
        };
        assert_eq!(step(&old, true, Some(remade.clone())), Step::Attach(remade));
        // Not attached (an attempt failed): try again, even on the same ifindex.
        assert_eq!(
            step(&old, false, Some(ext(7, 1420))),
            Step::Attach(ext(7, 1420))
        );
    }

    #[test]
    fn a_changed_link_mac_is_reported_once_and_its_return_too() {
        let ours = [2, 0xc0, 0xff, 0xee, 0, 1];
        let other = [2, 0, 0, 0, 0, 9];
        assert_eq!(mac_change("a", ours, Some(ours), Some(ours)), None);
        let (level, text) = mac_change("a", ours, Some(ours), Some(other)).expect("reported");
        assert_eq!(level, log::Level::Warn);
        assert!(
            text.contains("a: MAC changed to 02:00:00:00:00:09")
                && text.contains("delivers to 02:c0:ff:ee:00:01, so a receives nothing until"),
            "{text}"
        );
        assert_eq!(mac_change("a", ours, Some(other), Some(other)), None);
        let (level, _) = mac_change("a", ours, Some(other), Some(ours)).expect("reported");
        assert_eq!(level, log::Level::Info);
    }

    #[test]
    fn a_pending_stop_signal_is_taken_without_waiting() {
        let mut stop = SigSet::empty();
        stop.add(Signal::SIGUSR2);
        // Blocked in this test's thread only, and raised at it (not at the process).
        stop.thread_block().expect("block SIGUSR2");
        assert_eq!(pending(&stop).expect("check"), None);
        // raise(3) sends to the calling thread.
        nix::sys::signal::raise(Signal::SIGUSR2).expect("raise");
        assert_eq!(pending(&stop).expect("check"), Some(Signal::SIGUSR2));
        assert_eq!(pending(&stop).expect("check"), None, "taken once");
        stop.thread_unblock().expect("unblock");
    }
}
