//! Timers that shape a connection's traffic: idle timeouts and rate limits.

use std::time::Instant;

use super::{Entry, InternalTimer, Net};
use crate::context::Core;
use crate::transport::flags;

impl Net {
    /// Arms the connection's throttle timer for `at`, unless one is armed.
    pub(crate) fn arm_throttle(&mut self, core: &mut Core, key: usize, at: Instant) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        let h = c.state.handle;
        let x = c.state.extra();
        if x.throttle_timer.is_none() {
            x.throttle_timer = Some(core.schedule_internal(
                at.saturating_duration_since(core.now()),
                InternalTimer::Throttle { key, gen: h.gen },
            ));
        }
    }

    /// A rate window ended: lift throttling and resume what it held back.
    pub(crate) fn on_throttle_timer(&mut self, core: &mut Core, key: usize) {
        let read = self.with_engine(core, key, |e| e.throttle_expired());
        if read == Some(true) {
            if let Some(Entry::Conn(c)) = self.entries.get_mut(key) {
                if c.state.has(flags::READ_PENDING) && !c.state.has(flags::READ_PAUSED) {
                    c.state.clear(flags::READ_PENDING);
                    self.on_readable(core, key);
                }
            }
        }
    }
}
