//! The pure decisions of following ext and the links, apart from the netlink and signals
//! that feed them: what ext's state asks of an instance, and what to say when a link's MAC
//! changes.

use crate::sys::netlink::{format_mac, LinkInfo};

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
}
