//! A fake clock over the reactor's own timer queue.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::conn::{NoConns, OpsDriver};
use super::Request;
use crate::conn::ops::Connections;
use crate::context::Core;
use crate::core::TimerDriver;

/// A clock that only moves when the test moves it (Twisted's `task.Clock`),
/// wrapping a real [`Core`], so timers behave exactly as under the reactor.
///
/// `Clock` dereferences to [`Core`]: schedule with `clock.call_later(..)`, cancel
/// and reset [`DelayedCall`](crate::DelayedCall)s with `&mut *clock` or from
/// inside callbacks, as in production.
///
/// [`advance`](Self::advance) is one reactor turn at the new time: every call
/// due by then runs, in deadline order and, for equal deadlines, in the order
/// scheduled. A call that one of them schedules runs in a later advance, even
/// with zero delay, exactly as the reactor runs it on its next turn (this is
/// where torsion differs from Twisted's `Clock`, which runs it in the same
/// `advance`, unlike Twisted's own reactor). Delays are measured from the
/// time of the advance, like the reactor's `now` after a long sleep.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use torsion::testing::Clock;
///
/// let mut clock = Clock::new();
/// let hits = Rc::new(Cell::new(0));
/// let h = hits.clone();
/// let call = clock.call_later(Duration::from_secs(5), move |_| h.set(h.get() + 1));
/// clock.advance(Duration::from_secs(4));
/// assert_eq!(hits.get(), 0);
/// call.delay(&mut clock, Duration::from_secs(2)).unwrap();
/// clock.pump(&[Duration::from_secs(1); 3]);
/// assert_eq!(hits.get(), 1);
/// assert!(!call.active(&clock));
/// assert_eq!(clock.elapsed(), Duration::from_secs(7));
/// ```
pub struct Clock {
    pub(crate) core: Core,
    start: Instant,
    pub(crate) requests: Vec<Request>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("elapsed", &self.elapsed())
            .field("pending_calls", &self.pending_calls())
            .field("requests", &self.requests)
            .finish()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock at an arbitrary starting instant, with no pending calls.
    ///
    /// Its core behaves as a running reactor: [`Core::stop`] succeeds and is
    /// remembered ([`stop_requested`](Self::stop_requested)), and callback
    /// panics are recorded ([`PanicPolicy::Record`](crate::PanicPolicy::Record))
    /// for [`assert_no_panics`](super::assert_no_panics).
    pub fn new() -> Clock {
        let start = Instant::now();
        let mut core = Core::new(start, None);
        core.running = true;
        core.set_panic_policy(crate::PanicPolicy::Record);
        Clock {
            core,
            start,
            requests: Vec::new(),
        }
    }

    /// How far the test has moved the clock.
    pub fn elapsed(&self) -> Duration {
        self.core.now() - self.start
    }

    /// Moves time forward by `by` and runs what is due, like one reactor turn.
    /// Returns how many calls ran.
    pub fn advance(&mut self, by: Duration) -> usize {
        self.advance_with(by, &mut NoConns)
    }

    /// Advances by each step in turn (Twisted's `Clock.pump`). Returns how many
    /// calls ran in all.
    pub fn pump(&mut self, steps: &[Duration]) -> usize {
        steps.iter().map(|d| self.advance(*d)).sum()
    }

    /// Number of pending calls.
    pub fn pending_calls(&self) -> usize {
        self.core.timers.len()
    }

    /// Time until the next pending call is due (zero if one is due now).
    pub fn next_call_in(&mut self) -> Option<Duration> {
        let now = self.core.now();
        self.core
            .timers
            .next_deadline()
            .map(|d| d.saturating_duration_since(now))
    }

    /// Whether a callback called [`Core::stop`] (cleared by
    /// [`clear_stop`](Self::clear_stop)).
    pub fn stop_requested(&self) -> bool {
        self.core.stop_requested
    }

    /// Forgets an earlier stop request.
    pub fn clear_stop(&mut self) {
        self.core.stop_requested = false;
    }

    /// The listen, connect and other reactor requests callbacks made, in
    /// order. They are recorded, never carried out; see [`Request`].
    pub fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// Takes the recorded requests out.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    /// Advances, processing operations against `conns`.
    pub(crate) fn advance_with(&mut self, by: Duration, conns: &mut impl Connections) -> usize {
        let now = crate::context::later(self.core.now(), by);
        self.core.set_now(now);
        self.run_due(conns)
    }

    /// Runs what is due at the current time, processing operations against `conns`.
    pub(crate) fn run_due(&mut self, conns: &mut impl Connections) -> usize {
        self.ops(conns);
        let mut driver = OpsDriver {
            conns,
            requests: &mut self.requests,
        };
        self.core.run_due_timers(&mut driver)
    }

    /// Carries out queued operations against `conns`.
    pub(crate) fn ops(&mut self, conns: &mut impl Connections) {
        OpsDriver {
            conns,
            requests: &mut self.requests,
        }
        .process_ops(&mut self.core);
    }

    /// Whether a call is due now (it would run on the next turn).
    pub(crate) fn call_due(&mut self) -> bool {
        let now = self.core.now();
        self.core.timers.next_deadline().is_some_and(|d| d <= now)
    }
}

impl Deref for Clock {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl DerefMut for Clock {
    fn deref_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn runs_in_deadline_then_schedule_order() {
        let mut clock = Clock::new();
        let log = Rc::new(RefCell::new(vec![]));
        for (name, d) in [("c", 5), ("a", 1), ("d", 5), ("b", 1)] {
            let l = log.clone();
            clock.call_later(ms(d), move |_| l.borrow_mut().push(name));
        }
        assert_eq!(clock.pending_calls(), 4);
        assert_eq!(clock.next_call_in(), Some(ms(1)));
        assert_eq!(clock.advance(ms(5)), 4);
        assert_eq!(*log.borrow(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn zero_delay_calls_from_a_call_wait_for_the_next_advance() {
        let mut clock = Clock::new();
        let log = Rc::new(RefCell::new(vec![]));
        let l = log.clone();
        clock.call_later(ms(1), move |core| {
            l.borrow_mut().push("first");
            let l2 = l.clone();
            core.call_later(Duration::ZERO, move |_| l2.borrow_mut().push("second"));
        });
        clock.advance(ms(10));
        assert_eq!(*log.borrow(), ["first"]);
        assert_eq!(clock.advance(Duration::ZERO), 1);
        assert_eq!(*log.borrow(), ["first", "second"]);
    }

    #[test]
    fn time_never_moves_by_itself_and_delays_count_from_the_advance() {
        let mut clock = Clock::new();
        let seen = Rc::new(RefCell::new(vec![]));
        let s = seen.clone();
        clock.call_later(ms(10), move |core| {
            let s2 = s.clone();
            let at = core.now();
            s.borrow_mut().push(at);
            core.call_later(ms(10), move |core| s2.borrow_mut().push(core.now()));
        });
        let t0 = clock.now();
        clock.advance(ms(25)); // overslept, like a busy reactor
        assert_eq!(*seen.borrow(), [t0 + ms(25)]);
        clock.advance(ms(9));
        assert_eq!(seen.borrow().len(), 1);
        clock.advance(ms(1));
        assert_eq!(*seen.borrow(), [t0 + ms(25), t0 + ms(35)]);
        assert_eq!(clock.elapsed(), ms(35));
    }

    #[test]
    fn cancel_reset_and_panics() {
        let mut clock = Clock::new();
        let call = clock.call_later(ms(5), |_| panic!("boom"));
        call.reset(&mut clock, ms(50)).unwrap();
        clock.advance(ms(49));
        assert!(call.active(&clock));
        clock.advance(ms(1));
        assert!(!call.active(&clock));
        assert!(call.cancel(&mut clock).is_err());
        assert_eq!(clock.take_panics(), ["boom"]);
        clock.call_later(ms(1), |core| core.stop().unwrap());
        clock.advance(ms(1));
        assert!(clock.stop_requested());
    }
}
