//! The far-end check of a running instance (see [`crate::run::probe`]): once an interval,
//! each link that has carrier sends its probe, and the far end of each is judged from what
//! the demux recorded.

use crate::run::probe::ProbedLink;

use super::Instance;

impl Instance {
    /// Sends the probes and judges the far ends when an interval has passed since the last
    /// time; does nothing with `--probe off`.
    pub(in crate::run) fn check_far_ends(&mut self) {
        let Some(prober) = self.prober.as_mut() else {
            return;
        };
        if !prober.due() {
            return;
        }
        let recorded = match self.datapath.as_ref().map(|dp| dp.probes()) {
            Some(Ok(recorded)) => recorded,
            Some(Err(e)) => {
                log::debug!("{e}");
                Vec::new()
            }
            None => Vec::new(),
        };
        // A link sends, and its far end is judged, only while it has carrier: up and running
        // (not while ext is away, down or without carrier; that is said of ext).
        let devices = self.netlink.links().unwrap_or_default();
        let carrier = |index: u32| {
            devices
                .iter()
                .any(|d| d.index == index && d.up && d.running)
        };
        let links: Vec<ProbedLink<'_>> = self
            .links
            .iter()
            .map(|l| ProbedLink {
                name: &l.user.name,
                label: l.label,
                ifindex: l.user.index,
                carrier: self.ext_present && l.here && carrier(l.user.index),
            })
            .collect();
        prober.tick(&links, &recorded);
    }
}
