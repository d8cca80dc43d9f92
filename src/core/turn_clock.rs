//! The time of a reactor turn: the clock is read at most once per turn,
//! after the poll, and only when a timer might be due.
//!
//! * No timer pending: the clock is not read. The turn's time stays an
//!   earlier turn's until something asks ([`Core::fresh_turn_time`]), and a
//!   timer scheduled in the turn freezes it, so that a read later in the
//!   turn cannot make a zero-delay call scheduled in it due before the next
//!   turn.
//! * Only far timers pending (an idle timeout minutes away, further than
//!   [`FAR_DEADLINE`]): where the tick counter of callback timing is cheap
//!   (the CPU's time-stamp counter, see `core::timing`), the turn compares
//!   the tick read at its start with a horizon computed at the last reading
//!   of the clock, [`STALE_MAX`] later and at least [`FAR_DEADLINE`] before
//!   the next deadline, and does not read the clock before it: such a quiet
//!   turn's time is at most `STALE_MAX` old (never later than the truth),
//!   and no timer can be due in it. The poll then waits `FAR_DEADLINE` at
//!   most. (A turn that read the clock and found it that far from the
//!   deadline is a quiet turn too, with a fresh time.)
//! * Otherwise the clock is read after the poll.

use std::time::{Duration, Instant};

use super::Core;

/// A deadline further than this from the turn's time is not waited for to
/// the nanosecond: the poll waits this long at most, then looks again.
pub(crate) const FAR_DEADLINE: Duration = Duration::from_secs(1);

/// How old a quiet turn's time may be: the bound on how much earlier than
/// the truth traffic is stamped for idle timeouts while only far timers are
/// pending (a timer due in the meantime is never missed: see the module docs).
pub(crate) const STALE_MAX: Duration = Duration::from_millis(1);

/// The timer deadline the poll last waited for, when it comes within
/// [`FAR_DEADLINE`] (computed once per deadline: an idle timeout stays the
/// next deadline for minutes).
#[derive(Debug, Clone, Copy)]
struct FarMark {
    deadline: Instant,
    near_from: Instant,
    /// [`STALE_MAX`] before `near_from` (`None`: no such time): a clock
    /// read before it may start a horizon of quiet turns.
    quiet_before: Option<Instant>,
}

impl FarMark {
    fn new(deadline: Instant) -> FarMark {
        let near_from = deadline.checked_sub(FAR_DEADLINE).unwrap_or(deadline);
        FarMark {
            deadline,
            near_from,
            quiet_before: near_from.checked_sub(STALE_MAX),
        }
    }
}

/// The turn clock's state in [`Core`].
#[derive(Debug)]
pub(crate) struct TurnClock {
    far: Option<FarMark>,
    // The tick count before which turns need not read the clock is the
    // timer queue's horizon (0: read it): the queue clears it whenever its
    // mark moves, with every schedule and reset (what can bring the next
    // deadline nearer), so while it stands, no deadline is nearer than the
    // far mark's. (One comparison for a quiet turn.)
    /// This turn is a quiet one, the real time before the far mark's
    /// `near_from` (it did not read the clock before the horizon, or read
    /// it and found so): the timer queue's mark then, or `u64::MAX` (not
    /// quiet; no mark gets that far). While the mark stays,
    /// no timer is due and none is nearer than `FAR_DEADLINE`: one
    /// comparison tells, however often the turn asks.
    quiet_mark: u64,
    /// [`STALE_MAX`] in ticks of the cheap clock (0: none).
    stale_ticks: u64,
}

impl Default for TurnClock {
    fn default() -> TurnClock {
        TurnClock {
            far: None,
            quiet_mark: u64::MAX,
            stale_ticks: 0,
        }
    }
}

impl Core {
    /// A turn of the real reactor begins, after its poll: starts callback
    /// timing and reads the clock if a timer might be due (see the
    /// [module docs](self)).
    #[inline]
    pub(crate) fn new_turn(&mut self) {
        let tick = self.timing.turn_started();
        let tc = &mut self.turn_clock;
        // (Without a cheap clock `tick` is 0 and so is the horizon. Before
        // it, the queue may have emptied since: no timer is due then
        // either, and the turn is as quiet.)
        if tick < self.timers.horizon() {
            tc.quiet_mark = self.timers.mark();
            self.clock_stale = true;
            self.clock_read = false;
            return;
        }
        if self.timers.is_empty() {
            tc.quiet_mark = u64::MAX;
            self.clock_stale = true;
            self.clock_read = false;
            return;
        }
        tc.quiet_mark = u64::MAX;
        self.read_turn_clock(tick);
    }

    #[inline(never)]
    fn read_turn_clock(&mut self, tick: u64) {
        self.clock_stale = false;
        self.clock_read = true;
        self.set_now(Instant::now());
        let tc = &mut self.turn_clock;
        self.timers.set_horizon(0);
        let Some(next) = self.timers.next_deadline() else {
            return;
        };
        // (Made once per deadline and read in place: not copied out and
        // written back at every reading of the clock.)
        let m = match &mut tc.far {
            Some(m) if m.deadline == next => m,
            far => far.insert(FarMark::new(next)),
        };
        if self.now >= m.near_from {
            return;
        }
        // The time read is before the horizon: no timer is due and none is
        // nearer than FAR_DEADLINE, so this turn is a quiet one too (its
        // poll waits FAR_DEADLINE, it runs no timer), only with a fresh time.
        let mark = self.timers.mark();
        tc.quiet_mark = mark;
        if !self.timing.clock().cheap || m.quiet_before.is_none_or(|q| self.now >= q) {
            return;
        }
        if tc.stale_ticks == 0 {
            let ns = u64::try_from(STALE_MAX.as_nanos()).unwrap_or(u64::MAX);
            tc.stale_ticks = self.timing.clock().to_ticks(ns).max(1);
        }
        self.timers.set_horizon(tick.saturating_add(tc.stale_ticks));
    }

    /// This is a quiet turn and no timer was scheduled or reset since it
    /// began: no timer is due, and none is nearer than `FAR_DEADLINE`.
    #[inline]
    pub(crate) fn quiet_turn(&self) -> bool {
        self.turn_clock.quiet_mark == self.timers.mark()
    }

    /// How long the poll may wait for the next timer (`None`: no timer is
    /// pending); see [`poll_wait`](Self::poll_wait).
    #[inline]
    pub(crate) fn timer_wait(&mut self, next_turn: bool) -> Option<Duration> {
        if next_turn && self.quiet_turn() {
            return Some(FAR_DEADLINE);
        }
        let next = self.timers.next_deadline()?;
        Some(self.poll_wait(next, next_turn))
    }

    /// How long the poll may wait for the timer due at `next`. When the
    /// previous turn came just before (`next_turn`, inside `run`) and knew
    /// the time was further than [`FAR_DEADLINE`] from `next` (it read the
    /// clock after its poll, or was a quiet turn), the wait is
    /// `FAR_DEADLINE` without reading the clock again: a reactor with only
    /// far timers pending looks once a second. Otherwise the wait is counted
    /// from a fresh reading of the clock (near deadlines, zero-delay calls,
    /// a turn that did not read the clock, the first turn of `run` or
    /// `run_once`).
    #[inline]
    pub(crate) fn poll_wait(&mut self, next: Instant, next_turn: bool) -> Duration {
        if next_turn {
            let tc = &mut self.turn_clock;
            if tc.quiet_mark != u64::MAX && tc.far.is_some_and(|m| m.deadline == next) {
                return FAR_DEADLINE;
            }
            if self.clock_read {
                let m = match tc.far {
                    Some(m) if m.deadline == next => m,
                    _ => {
                        let m = FarMark::new(next);
                        tc.far = Some(m);
                        m
                    }
                };
                if self.now < m.near_from {
                    return FAR_DEADLINE;
                }
            }
        }
        next.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::timing::Clock;

    fn core_at(now: Instant) -> Core {
        // A waker makes it a real-clock core; this one is never woken.
        struct NoWake;
        impl crate::core::Wake for NoWake {
            fn wake(&self) -> std::io::Result<()> {
                Ok(())
            }
        }
        Core::new(now, Some(Box::new(NoWake)))
    }

    /// Ticks that only move when told (one tick a nanosecond).
    fn held_ticks() -> u64 {
        HELD.with(|t| t.get())
    }
    thread_local!(static HELD: std::cell::Cell<u64> = const { std::cell::Cell::new(1_000) });
    fn advance(ns: u64) {
        HELD.with(|t| t.set(t.get() + ns));
    }

    fn cheap_clock(core: &mut Core) {
        core.timing.set_clock(Clock {
            ticks: held_ticks,
            mult: 1 << 32,
            cheap: true,
        });
    }

    #[test]
    fn a_timer_set_in_a_turn_that_skipped_the_clock_is_waited_for_in_full_precision() {
        // The last turn that read the clock was long ago; this turn had no
        // timer pending, so it did not read it; a callback sets a 100 ms timer.
        let mut core = core_at(Instant::now() - Duration::from_secs(10));
        core.new_turn();
        assert!(!core.clock_read);
        core.call_later(Duration::from_millis(100), |_| {});
        let next = core.timers.next_deadline().unwrap();
        let wait = core.poll_wait(next, true);
        assert!(wait <= Duration::from_millis(100), "waits {wait:?}");
    }

    #[test]
    fn a_far_deadline_is_waited_for_a_second_at_a_time_only_after_a_clock_read() {
        let mut core = core_at(Instant::now());
        core.call_later(Duration::from_secs(60), |_| {});
        core.new_turn();
        assert!(core.clock_read);
        let next = core.timers.next_deadline().unwrap();
        assert_eq!(core.poll_wait(next, true), FAR_DEADLINE);
        assert_eq!(core.poll_wait(next, true), FAR_DEADLINE);
        // The first turn of `run`/`run_once` counts from a fresh reading.
        let wait = core.poll_wait(next, false);
        assert!(
            wait > FAR_DEADLINE && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        // A near deadline is counted from a fresh reading too.
        core.call_later(Duration::from_millis(50), |_| {});
        let next = core.timers.next_deadline().unwrap();
        let wait = core.poll_wait(next, true);
        assert!(wait <= Duration::from_millis(50), "{wait:?}");
    }

    #[test]
    fn with_a_cheap_clock_turns_skip_the_clock_for_stale_max_before_a_far_deadline() {
        let mut core = core_at(Instant::now());
        cheap_clock(&mut core);
        core.call_later(Duration::from_secs(60), |_| {});
        core.new_turn();
        assert!(core.clock_read, "the first turn reads the clock");
        let read_at = core.turn_time();
        // Less than STALE_MAX of ticks later: quiet, the time stays.
        advance(STALE_MAX.as_nanos() as u64 / 2);
        core.new_turn();
        assert!(!core.clock_read);
        assert_eq!(core.turn_time(), read_at);
        let next = core.timers.next_deadline().unwrap();
        assert_eq!(core.poll_wait(next, true), FAR_DEADLINE);
        assert!(core.quiet_turn());
        assert_eq!(core.timer_wait(true), Some(FAR_DEADLINE));
        // A timer scheduled in the turn ends what the turn knows.
        let near = core.call_later(Duration::from_millis(5), |_| {});
        assert!(!core.quiet_turn());
        let wait = core.timer_wait(true).unwrap();
        assert!(wait <= Duration::from_millis(5), "{wait:?}");
        near.cancel(&mut core).unwrap();
        // Past the horizon: read again.
        advance(STALE_MAX.as_nanos() as u64);
        core.new_turn();
        assert!(core.clock_read);
        // A nearer timer (a new next deadline) makes the next turn read it.
        core.call_later(Duration::from_secs(30), |_| {});
        core.new_turn();
        assert!(core.clock_read);
        // A time fresh-read inside a quiet turn is read for real.
        advance(1);
        core.new_turn();
        assert!(!core.clock_read);
        let before = core.turn_time();
        assert!(core.fresh_turn_time() >= before);
        assert!(core.clock_read);
    }

    #[test]
    fn near_a_deadline_every_turn_reads_the_clock() {
        let mut core = core_at(Instant::now());
        cheap_clock(&mut core);
        core.call_later(Duration::from_millis(500), |_| {});
        core.new_turn();
        assert!(core.clock_read);
        advance(1);
        core.new_turn();
        assert!(core.clock_read, "within FAR_DEADLINE of the deadline");
    }

    #[test]
    fn a_turn_that_read_the_clock_far_from_the_deadline_is_quiet() {
        let mut core = core_at(Instant::now());
        core.timing.set_clock(Clock::INSTANT);
        core.call_later(Duration::from_secs(60), |_| {});
        core.new_turn();
        assert!(core.clock_read);
        assert!(core.quiet_turn());
        assert_eq!(core.timer_wait(true), Some(FAR_DEADLINE));
        // A timer scheduled in the turn ends what the turn knows.
        core.call_later(Duration::from_millis(5), |_| {});
        assert!(!core.quiet_turn());
        // Within FAR_DEADLINE of the next deadline: read, not quiet.
        core.new_turn();
        assert!(core.clock_read);
        assert!(!core.quiet_turn());
        let wait = core.timer_wait(true).unwrap();
        assert!(wait <= Duration::from_millis(5), "{wait:?}");
    }

    #[test]
    fn without_a_cheap_clock_every_turn_with_timers_reads_the_clock() {
        let mut core = core_at(Instant::now());
        core.timing.set_clock(Clock::INSTANT);
        core.call_later(Duration::from_secs(60), |_| {});
        core.new_turn();
        core.new_turn();
        assert!(core.clock_read);
    }
}
