//! A restart that routing daemons do not notice. After a crash or a SIGKILL (a unit's
//! `Restart=on-failure`), or a hand-over for an upgrade (SIGUSR2: the instance leaves its
//! links and exits), the next start on the same ext *adopts* the links its predecessor left
//! when its configuration has them (the same name with the same label): the same devices, so
//! the same ifindexes, addresses, routes and MACs; only the programs are new. What the new
//! configuration does not have is removed, as after any death.
//!
//! A link is its predecessor's when both ends are there under their names (the user end's
//! from `--if`, the hidden end's from ext and the label) with a mark for this ext and label,
//! whatever the pid in it: the caller holds the claim on ext's name, so no live instance has
//! them.

use crate::programs::LinkMacs;
use crate::sys::netlink::{LinkInfo, Netlink};

use super::{hidden_name, Instance, ManagedLink, Mark};
use crate::run::options::RunOptions;
use crate::run::Error;

/// The links of a dead instance on ext that the configuration has, found before anything is
/// removed.
pub(super) struct Adoptable(Vec<(u8, LinkInfo, LinkInfo, u32)>);

impl Adoptable {
    /// Finds, for every `--if` of `opts`, the pair a dead instance on `opts.ext` left for it,
    /// with the MACs `macs` gives its label.
    pub(super) fn find(
        netlink: &Netlink,
        opts: &RunOptions,
        macs: &LinkMacs,
    ) -> Result<Adoptable, Error> {
        let all = netlink
            .links()
            .map_err(|e| Error::new(format!("listing links: {e}")))?;
        // The MACs too must be the ones the demux writes (an earlier l3mp may have derived
        // them otherwise): a pair with others is removed and created again.
        let marked = |name: &str, label: u8, hidden: bool| {
            let mac = if hidden {
                macs.hidden_end(label)
            } else {
                macs.user_end(label)
            };
            all.iter().find_map(|l| {
                let mark = l.alias.as_deref().and_then(Mark::parse)?;
                let ours = l.name == name
                    && l.kind.as_deref() == Some("veth")
                    && l.mac == Some(mac)
                    && mark.ext == opts.ext
                    && mark.label == label
                    && mark.hidden == hidden;
                ours.then(|| (l.clone(), mark.pid))
            })
        };
        let found = opts
            .links
            .iter()
            .filter_map(|arg| {
                let (user, pid) = marked(&arg.name, arg.label, false)?;
                let (hidden, _) = marked(&hidden_name(&opts.ext, arg.label), arg.label, true)?;
                Some((arg.label, user, hidden, pid))
            })
            .collect();
        Ok(Adoptable(found))
    }

    /// Whether the link with `label` is adopted.
    pub(super) fn has(&self, label: u8) -> bool {
        self.0.iter().any(|(l, ..)| *l == label)
    }

    /// Whether the device called `name` is an end of an adopted link.
    pub(super) fn keeps(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|(_, user, hidden, _)| user.name == name || hidden.name == name)
    }
}

impl Instance {
    /// Makes the links of `adoptable` this instance's: marks both ends with its pid and gives
    /// the hidden end ext's MTU (the user end's is kept if not above it), and says so.
    pub(super) fn adopt(&mut self, adoptable: Adoptable) -> Result<(), Error> {
        for (label, user, hidden, pid) in adoptable.0 {
            for (end, is_hidden) in [(&user, false), (&hidden, true)] {
                let alias = self.mark(label, is_hidden).alias();
                self.netlink
                    .set_alias(end.index, &alias)
                    .map_err(|e| Error::new(format!("adopting {}: {e}", end.name)))?;
                let too_big = end.mtu > self.ext.mtu;
                if (is_hidden && end.mtu != self.ext.mtu) || too_big {
                    self.netlink
                        .set_mtu(end.index, self.ext.mtu)
                        .map_err(|e| Error::new(format!("adopting {}: {e}", end.name)))?;
                }
            }
            log::info!(
                "adopted {} (label {label}, ifindex {}) and its hidden end {} from an l3mp on {} \
                 that is no longer running (pid {pid}): its addresses and routes are kept",
                user.name,
                user.index,
                hidden.name,
                self.opts.ext
            );
            let mtu = |end: &LinkInfo| end.mtu.min(self.ext.mtu);
            let (user, hidden) = (
                LinkInfo {
                    mtu: mtu(&user),
                    ..user
                },
                LinkInfo {
                    mtu: self.ext.mtu,
                    ..hidden
                },
            );
            self.links.push(ManagedLink {
                label,
                user,
                hidden,
                here: true,
            });
        }
        Ok(())
    }

    /// Takes the programs off and leaves the links for the next start on ext to adopt (a
    /// hand-over, for an upgrade); the state file, pins and claims go as at any stop.
    pub fn hand_over(mut self) {
        self.detach();
        for link in std::mem::take(&mut self.links) {
            log::info!(
                "leaving {} (label {}, ifindex {}) for the next l3mp on {} to adopt",
                link.user.name,
                link.label,
                link.user.index,
                self.opts.ext
            );
        }
    }
}
