//! The stop signals of `l3mp run`, taken while it waits for link notifications: never more
//! than [`TICK`] goes by without looking for one.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};

use super::Error;

/// The longest wait for link notifications: a stop signal is noticed within it.
pub(super) const TICK: Duration = Duration::from_millis(100);

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
