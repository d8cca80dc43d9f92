//! Callback timing for slow-callback detection and the callback histogram.
//!
//! One clock read per callback: a callback's duration runs from the end of
//! the one before it (or from the turn's start, after the poll) to its own
//! end, so it includes the reactor's dispatch work just before it (the read
//! that fetched its input, for `data_received`). The clock is a tick counter
//! chosen by the driver (the reactor uses the CPU's time-stamp counter where
//! it is invariant, calibrated once against `Instant`; otherwise, and in the
//! test tools, nanoseconds of `Instant`).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::introspect::{CallbackKind, CallbackStats, Histogram};

/// The default slow-callback threshold.
pub(crate) const DEFAULT_SLOW_CALLBACK: Duration = Duration::from_millis(100);

/// A tick source: monotonic, any unit, converted with [`Clock::mult`].
pub(crate) type Ticks = fn() -> u64;

/// Nanoseconds since a process-wide epoch: the fallback tick source.
pub(crate) fn instant_ticks() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    Instant::now().saturating_duration_since(epoch).as_nanos() as u64
}

/// A tick source and its rate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) ticks: Ticks,
    /// Nanoseconds per tick, 32.32 fixed point.
    pub(crate) mult: u64,
    /// Reading it costs a few instructions (the time-stamp counter), far
    /// less than `Instant::now`: the turn's clock uses it too.
    pub(crate) cheap: bool,
}

impl Clock {
    /// `Instant`'s nanoseconds.
    pub(crate) const INSTANT: Clock = Clock {
        ticks: instant_ticks,
        mult: 1 << 32,
        cheap: false,
    };

    #[inline]
    fn to_ns(self, ticks: u64) -> u64 {
        ((ticks as u128 * self.mult as u128) >> 32).min(u64::MAX as u128) as u64
    }

    pub(crate) fn to_ticks(self, ns: u64) -> u64 {
        ((ns as u128) << 32)
            .checked_div(self.mult as u128)
            .unwrap_or(u128::MAX)
            .min(u64::MAX as u128) as u64
    }
}

/// The per-reactor timing state.
#[derive(Debug)]
pub(crate) struct Timing {
    /// Whether callbacks are timed (a threshold is set).
    pub(crate) on: bool,
    threshold: Duration,
    threshold_ticks: u64,
    /// The smaller of the threshold and the longest callback so far: a
    /// callback no longer than this is neither slow nor a new maximum (one
    /// comparison on the common path).
    cutoff: u64,
    /// The tick count at the end of the last timed callback or mark.
    last: u64,
    clock: Clock,
    hist: Histogram,
}

impl Timing {
    pub(crate) fn new(threshold: Option<Duration>) -> Timing {
        let mut t = Timing {
            on: false,
            threshold: DEFAULT_SLOW_CALLBACK,
            threshold_ticks: u64::MAX,
            cutoff: 0,
            last: 0,
            clock: Clock::INSTANT,
            hist: Histogram::default(),
        };
        t.set_threshold(threshold);
        t
    }

    /// Uses `clock` from now on (before anything is recorded: the
    /// histogram counts its ticks).
    pub(crate) fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
        self.set_threshold(self.threshold());
    }

    pub(crate) fn threshold(&self) -> Option<Duration> {
        self.on.then_some(self.threshold)
    }

    pub(crate) fn set_threshold(&mut self, threshold: Option<Duration>) {
        self.on = threshold.is_some();
        if let Some(t) = threshold {
            self.threshold = t;
            let ns = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            self.threshold_ticks = self.clock.to_ticks(ns);
        }
        self.cutoff = self.hist.max().min(self.threshold_ticks);
        self.mark();
    }

    /// Starts the next callback's time now (work before the poll).
    #[inline]
    pub(crate) fn mark(&mut self) {
        if self.on {
            self.last = (self.clock.ticks)();
        }
    }

    /// The clock, for the turn's clock.
    #[inline]
    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// The poll returned: starts the next callback's time, and returns the
    /// tick count if the clock is cheap (read once for both), else 0.
    #[inline]
    pub(crate) fn turn_started(&mut self) -> u64 {
        if self.clock.cheap {
            let now = (self.clock.ticks)();
            self.last = now;
            return now;
        }
        self.mark();
        0
    }

    /// A callback ended: records its time; one over the threshold is logged
    /// and counted (returns true).
    #[inline]
    pub(crate) fn done(&mut self, kind: CallbackKind, name: impl FnOnce() -> &'static str) -> bool {
        match self.done_untold() {
            Some(ns) => {
                self.slow(kind, name(), ns);
                true
            }
            None => false,
        }
    }

    /// [`done`](Self::done) without the log: a slow callback's duration in
    /// nanoseconds, for the caller to tell with [`slow`](Self::slow) (so
    /// that what names the callback is looked at only then).
    #[inline]
    pub(crate) fn done_untold(&mut self) -> Option<u64> {
        if !self.on {
            return None;
        }
        let now = (self.clock.ticks)();
        let dt = now.saturating_sub(self.last);
        self.last = now;
        // Ticks go into the histogram as they are (converted when read).
        self.hist.record_below_max(dt);
        if dt > self.cutoff {
            return self.past_cutoff(dt);
        }
        None
    }

    /// A callback longer than the cutoff: a new maximum, or slow, or both.
    #[cold]
    #[inline(never)]
    fn past_cutoff(&mut self, dt: u64) -> Option<u64> {
        self.hist.note_max(dt);
        self.cutoff = self.hist.max().min(self.threshold_ticks);
        (dt > self.threshold_ticks).then(|| self.clock.to_ns(dt))
    }

    /// Logs a slow callback (see [`done_untold`](Self::done_untold)).
    #[cold]
    #[inline(never)]
    pub(crate) fn slow(&self, kind: CallbackKind, name: &'static str, ns: u64) {
        let took = Duration::from_nanos(ns);
        tracing::warn!(
            kind = kind.name(),
            protocol = name,
            took_ms = took.as_secs_f64() * 1e3,
            threshold_ms = self.threshold.as_secs_f64() * 1e3,
            "slow callback: {kind} callback of {name} took {took:?}, blocking the reactor",
        );
    }

    pub(crate) fn stats(&self) -> CallbackStats {
        let clock = self.clock;
        self.hist.stats_scaled(|t| clock.to_ns(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_ticks() -> u64 {
        thread_local!(static T: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
        T.with(|t| {
            // Each read is 30 ms (in 10 ns ticks) later than the last.
            t.set(t.get() + 3_000_000);
            t.get()
        })
    }

    #[test]
    fn ticks_are_converted_and_compared_with_the_threshold() {
        let mut t = Timing::new(Some(Duration::from_millis(20)));
        t.set_clock(Clock {
            ticks: fake_ticks,
            mult: 10 << 32,
            cheap: true,
        });
        // 30 ms per callback against a 20 ms threshold: each one is slow.
        assert!(t.done(CallbackKind::Timer, || "t"));
        assert!(t.done(CallbackKind::Protocol, || "p"));
        let s = t.stats();
        assert_eq!(s.count, 2);
        assert_eq!(s.max, Duration::from_millis(30));
        t.set_threshold(Some(Duration::from_millis(40)));
        assert!(!t.done(CallbackKind::Timer, || "t"));
        t.set_threshold(None);
        assert!(!t.done(CallbackKind::Timer, || "t"));
        assert_eq!(t.stats().count, 3, "nothing is recorded while off");
    }

    thread_local!(static STEP: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) });

    /// Ticks that advance by the step set with `step` at each read.
    fn stepped_ticks() -> u64 {
        STEP.with(|s| {
            let (now, step) = s.get();
            s.set((now + step, step));
            now + step
        })
    }

    fn step(ticks: u64) {
        STEP.with(|s| s.set((s.get().0, ticks)));
    }

    #[test]
    fn every_slow_callback_is_caught_whatever_the_longest_before_it() {
        let mut t = Timing::new(Some(Duration::from_nanos(100)));
        t.set_clock(Clock {
            ticks: stepped_ticks,
            mult: 1 << 32,
            cheap: true,
        });
        // Fast ones (a new maximum each, below the threshold), a slow one, a
        // shorter slow one, a fast one, one as long as the longest.
        for (dt, slow) in [
            (10, false),
            (50, false),
            (500, true),
            (200, true),
            (80, false),
            (500, true),
            (100, false),
        ] {
            step(dt);
            assert_eq!(t.done(CallbackKind::Timer, || "t"), slow, "{dt} ticks");
        }
        let s = t.stats();
        assert_eq!(s.count, 7);
        assert_eq!(s.max, Duration::from_nanos(500));
        assert_eq!(s.total, Duration::from_nanos(1440));
        // A lower threshold catches what the maximum had let through.
        t.set_threshold(Some(Duration::from_nanos(20)));
        step(30);
        assert!(t.done(CallbackKind::Timer, || "t"));
    }

    #[test]
    fn instant_ticks_are_nanoseconds() {
        let c = Clock::INSTANT;
        assert_eq!(c.to_ns(1_234), 1_234);
        assert_eq!(c.to_ticks(1_234), 1_234);
        assert!(instant_ticks() <= instant_ticks());
    }
}
