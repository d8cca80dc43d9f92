//! The mio-free core: the clock, the timer queue, handles, the queue of
//! operations callbacks ask for (plain `std` data), the panic policy and the
//! local futures. Nothing here knows a socket, a poller or a protocol; the
//! reactor and the test tools both drive it.

pub(crate) mod handles;
pub(crate) mod ops;
mod stats;
pub mod timers;
pub(crate) mod timing;
pub(crate) mod turn_clock;

use std::panic::{catch_unwind, AssertUnwindSafe};

pub(crate) use crate::context::{ConnectionHandle, Core};
use ops::{InternalTimer, Timed};

/// Wakes a sleeping driver from another thread (the reactor's poll).
pub(crate) trait Wake: Send + Sync {
    /// Interrupts the driver's wait.
    fn wake(&self) -> std::io::Result<()>;
}

/// What runs timers needs from whoever owns the connections.
pub(crate) trait TimerDriver {
    /// A timer the driver scheduled for itself expired.
    fn internal_timer(&mut self, core: &mut Core, t: InternalTimer);
    /// Carry out what the last callback queued on `core.ops`.
    fn process_ops(&mut self, core: &mut Core);
}

impl Core {
    /// Runs the timers due at `now()` that were scheduled before this call, in
    /// deadline order, then scheduling order, processing queued operations
    /// after each, then the local calls and woken futures. A zero-delay call
    /// scheduled by one of them waits for the next call. Returns how many user
    /// timer calls ran. The reactor calls this once
    /// per turn; the fake clock once per advance.
    #[inline]
    pub(crate) fn run_due_timers(&mut self, driver: &mut impl TimerDriver) -> usize {
        if !self.timers_or_local_due() {
            return 0;
        }
        self.run_due_timers_now(driver)
    }

    /// Whether [`run_due_timers`](Self::run_due_timers) has anything to
    /// do. The common case, inline and without the clock: nothing due,
    /// nothing queued (an empty timer queue, or its next deadline still
    /// ahead).
    #[inline]
    pub(crate) fn timers_or_local_due(&mut self) -> bool {
        let quiet = self.quiet_turn();
        self.due_unless_quiet(quiet)
    }

    /// [`timers_or_local_due`](Self::timers_or_local_due), given
    /// [`quiet_turn`](Self::quiet_turn) (for a caller that wants it too).
    #[inline]
    pub(crate) fn due_unless_quiet(&mut self, quiet: bool) -> bool {
        self.has_local_work() || !(quiet || self.timers.is_empty()) && self.timer_due()
    }

    /// Whether the next timer is due at the turn's time (out of line: a
    /// quiet turn does not ask, and nothing of it is loaded then).
    #[inline(never)]
    fn timer_due(&mut self) -> bool {
        let now = self.turn_time();
        self.timers.next_deadline().is_some_and(|d| d <= now)
    }

    /// [`run_due_timers`](Self::run_due_timers) without the test.
    #[inline(never)]
    pub(crate) fn run_due_timers_now(&mut self, driver: &mut impl TimerDriver) -> usize {
        let now = self.turn_time();
        let mark = self.timers.mark();
        let mut ran = 0;
        while let Some(t) = self.timers.pop_expired_before(now, mark) {
            match t {
                Timed::Call(f) => {
                    ran += 1;
                    if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(self))) {
                        self.caught_panic(p, "timer callback");
                    }
                    self.callback_done(crate::introspect::CallbackKind::Timer, || "call_later");
                }
                Timed::Internal(t) => driver.internal_timer(self, t),
            }
            driver.process_ops(self);
        }
        // Calls queued by cancellers and futures woken by what just ran
        // (Deferreds, `spawn_local`): the same end of turn for the reactor and
        // the fake clock.
        self.run_local();
        driver.process_ops(self);
        ran
    }
}
