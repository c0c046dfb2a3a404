//! The links' carrier follows ext's, as a point-to-point interface's follows its line: when
//! ext is gone, administratively down or without carrier, every link shows `NO-CARRIER`, so
//! that a routing daemon reacts at once instead of waiting for its hold timer. A veth's
//! carrier is its peer's administrative state, so l3mp takes the hidden ends down, and brings
//! them up again when ext carries traffic again. The user ends, which the operator configures,
//! stay up and keep their addresses and routes (the kernel marks the routes `linkdown`).

use std::thread;
use std::time::{Duration, Instant};

use crate::sys::netlink::LinkInfo;

use super::{is, Instance};
use crate::run::Error;

/// How long ext's return waits for the links to run again (their transmit queues started).
const RUNNING_WAIT: Duration = Duration::from_millis(250);

/// Whether ext, as it is `now` (`None`: not in the namespace under its name), carries
/// traffic: administratively up and running (with carrier).
fn carries(now: Option<&LinkInfo>) -> bool {
    now.is_some_and(|ext| ext.up && ext.running)
}

/// Why ext does not carry traffic, for the log.
fn why_not(name: &str, now: Option<&LinkInfo>) -> String {
    match now {
        None => format!("{name} is gone"),
        Some(ext) if !ext.up => format!("{name} is down"),
        Some(ext) if !ext.running => format!("{name} has no carrier"),
        Some(_) => format!("l3mp's programs are not on {name} yet"),
    }
}

impl Instance {
    /// Gives the links their carrier back once the programs are on ext again, and waits (at
    /// most [`RUNNING_WAIT`]) until the ends that have it are running: until the kernel has
    /// started a link's transmit queue, what it is given is dropped, and l3mp is about to say
    /// that ext is back.
    pub(super) fn give_back_carrier(&mut self) {
        if let Err(e) = self.follow_carrier() {
            log::warn!("{e}");
            return;
        }
        let deadline = Instant::now() + RUNNING_WAIT;
        while Instant::now() < deadline {
            let Ok(all) = self.netlink.links() else {
                return;
            };
            let device = |name: &str| all.iter().find(|d| d.name == name);
            // An end that is down (the operator's, or a hidden end without carrier) is not
            // waited for.
            let starting = |name: &str| device(name).is_some_and(|d| d.up && !d.running);
            let waiting = self
                .links
                .iter()
                .filter(|l| l.here)
                .any(|l| starting(&l.hidden.name) || starting(&l.user.name));
            if !waiting {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Gives every link that is here the carrier ext has now: brings its hidden end up or takes
    /// it down where it is not as it should be, and says so when that changes anything.
    pub(super) fn follow_carrier(&mut self) -> Result<(), Error> {
        let ext = self
            .netlink
            .link(&self.opts.ext)
            .map_err(|e| Error::new(format!("--ext {}: {e}", self.opts.ext)))?;
        // What the links send goes nowhere until the programs are on ext, either.
        let carrier = carries(ext.as_ref()) && self.ext_present;
        let all = self
            .netlink
            .links()
            .map_err(|e| Error::new(format!("listing links: {e}")))?;
        let mut changed = Vec::new();
        for link in self.links.iter().filter(|l| l.here) {
            let mark = self.mark(link.label, true);
            let Some(hidden) = all
                .iter()
                .find(|l| l.name == link.hidden.name && is(l, &mark))
            else {
                continue;
            };
            if hidden.up == carrier {
                continue;
            }
            let done = if carrier {
                self.netlink.set_up(hidden.index)
            } else {
                self.netlink.set_down(hidden.index)
            };
            match done {
                Ok(()) => changed.push(link.user.name.as_str()),
                Err(e) => log::warn!(
                    "{}: could not {} its carrier (through its hidden end {}): {e}",
                    link.user.name,
                    if carrier { "give back" } else { "take away" },
                    hidden.name
                ),
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let links = changed.join(", ");
        if carrier {
            log::info!(
                "{} carries traffic again: {links} have carrier again",
                self.opts.ext
            );
        } else {
            // A consequence of what is said about ext itself: not a warning of its own.
            log::info!(
                "{}: {links} show NO-CARRIER until it is back up with carrier",
                why_not(&self.opts.ext, ext.as_ref())
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(up: bool, running: bool) -> LinkInfo {
        LinkInfo {
            index: 2,
            name: "wg0".into(),
            mac: None,
            mtu: 1420,
            kind: None,
            is_ethernet: false,
            alias: None,
            up,
            running,
            noarp: true,
        }
    }

    #[test]
    fn only_an_ext_up_and_running_carries() {
        assert!(carries(Some(&ext(true, true))));
        assert!(!carries(Some(&ext(true, false))));
        assert!(!carries(Some(&ext(false, false))));
        assert!(!carries(None));
        assert_eq!(why_not("wg0", None), "wg0 is gone");
        assert_eq!(why_not("wg0", Some(&ext(false, false))), "wg0 is down");
        assert_eq!(
            why_not("wg0", Some(&ext(true, false))),
            "wg0 has no carrier"
        );
        assert_eq!(
            why_not("wg0", Some(&ext(true, true))),
            "l3mp's programs are not on wg0 yet"
        );
    }
}
