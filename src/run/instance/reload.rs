//! Reloading a running instance (SIGHUP): the configuration read again, and only the
//! difference applied. Links added, removed or given another label are created or deleted;
//! `unknown` and `probe` follow the file. The programs are replaced through each attachment's own update
//! (see [`Datapath::replace`]), so the links the change does not touch keep their interfaces,
//! addresses, routes, counters and a program at every moment, and a label configured before
//! and after is never unknown to the demux in between. What cannot change on a running
//! instance (ext, the label width, the ingress mode, the peer) is refused, and a refused
//! reload changes nothing.

use std::path::Path;

use super::super::counters::Counters;
use super::super::datapath::Datapath;
use super::super::naming::hidden_name;
use super::super::options::{LinkArg, Probe, RunOptions};
use super::super::probe;
use super::super::state::Loaded;
use super::super::Error;
use super::Instance;

impl Instance {
    /// The options the instance runs with now.
    pub fn options(&self) -> &RunOptions {
        &self.opts
    }

    /// Records that the configuration was loaded from `file` (now).
    pub fn loaded_from(&mut self, file: &Path) {
        self.loaded = Loaded::now(Some(file));
        if let Err(e) = self.published.write(&self.state()) {
            log::warn!("{e}");
        }
    }

    /// Applies `new` (read from `file`, already checked) in place of the options the instance
    /// runs with: what changed, in words, or an error naming `file` (then nothing changed,
    /// unless the error says what did).
    pub fn reload(&mut self, new: &RunOptions, file: &Path) -> Result<String, Error> {
        let at = |what: String| Error::new(format!("{}: {what}", file.display()));
        self.refuse_fixed(new).map_err(at)?;
        let in_ = |links: &[LinkArg], l: &LinkArg| links.contains(l);
        let removed: Vec<LinkArg> = (self.opts.links.iter())
            .filter(|l| !in_(&new.links, l))
            .cloned()
            .collect();
        let added: Vec<LinkArg> = (new.links.iter())
            .filter(|l| !in_(&self.opts.links, l))
            .cloned()
            .collect();
        let unknown = (self.opts.unknown != new.unknown).then_some(new.unknown);
        self.check_free(&added, &removed).map_err(at)?;

        // First the links that go: programs without them (and with the new `unknown`), then
        // their pairs deleted.
        if !removed.is_empty() || unknown.is_some() {
            let before = (self.links.clone(), self.opts.unknown);
            self.links
                .retain(|l| !removed.iter().any(|r| r.label == l.label));
            self.opts.unknown = new.unknown;
            if let Err(e) = self.replace_programs() {
                (self.links, self.opts.unknown) = before;
                return Err(at(e.to_string()));
            }
            for link in before
                .0
                .iter()
                .filter(|l| !self.links.iter().any(|k| k.label == l.label))
            {
                self.delete_pair(link);
            }
        }
        // Then the links that come: counting from nothing, their pairs, then programs with them.
        let kept = self.links.len();
        for arg in &added {
            if let Err(e) = Counters::reset_link(&self.published.counters(), arg.label) {
                log::warn!("{e}");
            }
            if let Err(e) = probe::reset_pinned(&self.published.probes(), arg.label) {
                log::warn!("{e}");
            }
        }
        for arg in &added {
            match self.create_link(arg) {
                Ok(link) => self.links.push(link),
                Err(e) => {
                    self.undo_added(kept);
                    return Err(at(format!("{e}{}", partly(&removed, unknown.is_some()))));
                }
            }
        }
        if !added.is_empty() {
            // Created down: up once their programs are on them.
            let up = self
                .replace_programs()
                .and_then(|()| self.bring_up(&self.links[kept..]));
            if let Err(e) = up {
                self.undo_added(kept);
                return Err(at(format!("{e}{}", partly(&removed, unknown.is_some()))));
            }
        }
        self.opts.links = new.links.clone();
        let probe = (self.opts.probe != new.probe).then_some(new.probe);
        if probe.is_some() {
            self.opts.probe = new.probe;
            self.prober = super::prober(&self.opts);
        }
        self.loaded = Loaded::now(Some(file));
        if let Err(e) = self.published.write(&self.state()) {
            log::warn!("{e}");
        }
        Ok(said(&added, &removed, unknown, probe))
    }

    /// What cannot change on a running instance, if `new` changes it.
    fn refuse_fixed(&self, new: &RunOptions) -> Result<(), String> {
        let old = &self.opts;
        let restart = "restart the instance to change it";
        if new.ext != old.ext {
            return Err(format!(
                "ext cannot change on a reload ({} to {}): stop this instance and start one for {}",
                old.ext, new.ext, new.ext
            ));
        }
        if new.label_bits != old.label_bits {
            return Err(format!(
                "label_bits cannot change on a reload ({} to {}): every label would; {restart}",
                old.label_bits, new.label_bits
            ));
        }
        if new.ingress != old.ingress {
            return Err(format!(
                "ingress cannot change on a reload ({:?} to {:?}): {restart}",
                old.ingress, new.ingress
            )
            .to_lowercase());
        }
        if new.peer != old.peer {
            return Err(format!(
                "peer cannot change on a reload ({} to {}): {restart}",
                old.peer.map_or("none".into(), |p| p.to_string()),
                new.peer.map_or("none".into(), |p| p.to_string())
            ));
        }
        Ok(())
    }

    /// Every name the links in `added` need is free, or held by a link in `removed` (which
    /// goes first).
    fn check_free(&self, added: &[LinkArg], removed: &[LinkArg]) -> Result<(), String> {
        let ext = &self.opts.ext;
        let freed = |name: &str| {
            removed
                .iter()
                .any(|r| r.name == name || hidden_name(ext, r.label) == name)
        };
        for arg in added {
            let hidden = hidden_name(ext, arg.label);
            for (name, what) in [(&arg.name, "an interface"), (&hidden, "the hidden peer")] {
                let exists = (self.netlink.link(name))
                    .map_err(|e| format!("link {}: {e}", arg.name))?
                    .is_some();
                if exists && !freed(name) {
                    return Err(format!(
                        "link {} (label {}): {what} named {name} already exists; pick another \
                         name or delete it",
                        arg.name, arg.label
                    ));
                }
            }
        }
        Ok(())
    }

    /// Deletes the links after the first `kept`, created by a reload that then failed.
    fn undo_added(&mut self, kept: usize) {
        for link in self.links.split_off(kept) {
            self.delete_pair(&link);
        }
    }

    /// Replaces the programs by those of the links here now (see [`Datapath::replace`]); while
    /// ext is away there are none, and [`Instance::reattach`] generates them when it is back.
    fn replace_programs(&mut self) -> Result<(), Error> {
        let Some(old) = self.datapath.take() else {
            return Ok(());
        };
        let cfg = self.program_config();
        let pins = self.published.pins();
        match Datapath::replace(old, &cfg, &self.ext.name, self.mode, &pins) {
            Ok(datapath) => {
                self.datapath = Some(datapath);
                Ok(())
            }
            Err((Some(old), e)) => {
                self.datapath = Some(*old);
                Err(e)
            }
            // Some attachments were handed over and are gone: attach afresh.
            Err((None, e)) => {
                log::warn!("{}: {e}; attaching the programs afresh", self.ext.name);
                self.attach(&[]).inspect_err(|_| {
                    self.detach();
                    self.failed_on = None;
                })
            }
        }
    }
}

/// What an error after the removals leaves changed.
fn partly(removed: &[LinkArg], unknown: bool) -> String {
    match (removed.is_empty(), unknown) {
        (true, false) => String::new(),
        _ => "; the removals and unknown were applied, no link was added".into(),
    }
}

/// "added c (label 3); removed b (label 2); unknown labels now drop", or "no change".
fn said(
    added: &[LinkArg],
    removed: &[LinkArg],
    unknown: Option<crate::programs::Unknown>,
    probe: Option<Probe>,
) -> String {
    let list = |links: &[LinkArg]| {
        links
            .iter()
            .map(|l| format!("{} (label {})", l.name, l.label))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("added {}", list(added)));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", list(removed)));
    }
    if let Some(unknown) = unknown {
        parts.push(format!(
            "unknown labels now {}",
            format!("{unknown:?}").to_lowercase()
        ));
    }
    if let Some(probe) = probe {
        parts.push(format!(
            "far-end probe now {}",
            format!("{probe:?}").to_lowercase()
        ));
    }
    if parts.is_empty() {
        return "no change".into();
    }
    parts.join("; ")
}
