//! A link's MTU never above ext's: what is longer cannot cross. An MTU set above it (`ip link
//! set a mtu 1450` over a wg0 of 1420) is set back at once and said; what egress meanwhile got
//! that is longer than ext's MTU is dropped and counted `too big` (the programs bake ext's MTU
//! in, so they are generated again when it changes). An MTU below ext's is the operator's.

use super::Instance;
use super::{is, Mark};

impl Instance {
    /// Sets back the MTU of every link whose user end has one above ext's, and says so.
    pub(super) fn keep_link_mtus(&mut self) {
        let all = match self.netlink.links() {
            Ok(all) => all,
            Err(e) => {
                log::warn!("listing links: {e}");
                return;
            }
        };
        let (ext, mtu) = (self.ext.name.clone(), self.ext.mtu);
        for i in 0..self.links.len() {
            let mark: Mark = self.mark(self.links[i].label, false);
            let link = &mut self.links[i];
            let Some(now) = all
                .iter()
                .find(|l| l.name == link.user.name && is(l, &mark))
            else {
                continue;
            };
            if now.mtu <= mtu {
                link.user.mtu = now.mtu;
                continue;
            }
            match self.netlink.set_mtu(now.index, mtu) {
                Ok(()) => {
                    link.user.mtu = mtu;
                    log::warn!(
                        "{}: MTU {} is above that of {ext}, {mtu}, the most that crosses: set \
                         back to {mtu} (what was sent longer meanwhile is dropped and counted \
                         `too big`)",
                        now.name,
                        now.mtu
                    );
                }
                Err(e) => log::warn!(
                    "{}: MTU {} is above that of {ext}, {mtu}, and could not be set back: {e}; \
                     what is longer is dropped and counted `too big`",
                    now.name,
                    now.mtu
                ),
            }
        }
    }
}
