//! What [`Core`] tells about itself: counters, callback timing, and the
//! reactor-wide part of a [`Snapshot`] (the driver adds its connections and
//! listeners).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::ops::Op;
use super::Core;
use crate::context::ReactorHandle;
use crate::introspect::{CallbackKind, CallbackStats, Counters, Snapshot, TimerInfo};

/// A callback waiting for a snapshot (`Core::request_snapshot`).
pub(crate) type SnapshotFn = Box<dyn FnOnce(&mut Core, Snapshot)>;

impl Core {
    /// The reactor's counters since it was made: connections accepted,
    /// refused and shed, closed by reason, bytes, panics, slow callbacks.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Durations of the callbacks timed so far (count, p50, p99, max).
    pub fn callback_stats(&self) -> CallbackStats {
        self.timing.stats()
    }

    /// Sets the slow-callback threshold: a protocol, timer or cross-thread
    /// callback that runs longer is logged once (WARN, with its kind, the
    /// protocol's type name and its duration) and counted in
    /// [`Counters::slow_callbacks`]; every callback's duration goes into
    /// [`callback_stats`](Self::callback_stats). `None` turns timing off
    /// (then nothing is timed and no clock is read). Default on the reactor:
    /// 100 ms; under the test tools' fake clock: off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// assert_eq!(reactor.slow_callback_threshold(), Some(Duration::from_millis(100)));
    /// reactor.set_slow_callback_threshold(Some(Duration::from_millis(20)));
    /// reactor.set_slow_callback_threshold(None); // no timing at all
    /// # Ok::<(), torsion::Error>(())
    /// ```
    pub fn set_slow_callback_threshold(&mut self, threshold: Option<Duration>) {
        self.timing.set_threshold(threshold);
    }

    /// The slow-callback threshold; `None` when callbacks are not timed.
    pub fn slow_callback_threshold(&self) -> Option<Duration> {
        self.timing.threshold()
    }

    /// Asks for a [`Snapshot`] of the whole reactor (connections and
    /// listeners included): `f` gets it once the current callback has
    /// returned, on the reactor thread. For signal handlers, HTTP handlers
    /// and timers; outside callbacks, [`Reactor::snapshot`](crate::Reactor::snapshot)
    /// answers at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// reactor.call_later(Duration::ZERO, |core| {
    ///     core.request_snapshot(|core, snap| {
    ///         println!("{} connections, {} timers", snap.connections.len(), snap.timers.pending);
    ///         core.stop().unwrap();
    ///     });
    /// });
    /// reactor.run()?;
    /// # Ok::<(), torsion::Error>(())
    /// ```
    pub fn request_snapshot(&mut self, f: impl FnOnce(&mut Core, Snapshot) + 'static) {
        self.ops.push(Op::Snapshot(Box::new(f)));
    }

    /// Milliseconds since the core was made (saturating at `u32::MAX`, about
    /// 49 days): a connection's birth time, in four bytes.
    pub(crate) fn age_ms(&self) -> u32 {
        u32::try_from(
            self.turn_time()
                .saturating_duration_since(self.created)
                .as_millis(),
        )
        .unwrap_or(u32::MAX)
    }

    /// [`age_ms`](Self::age_ms) at a fresh turn time (reading the clock
    /// if this turn has not).
    pub(crate) fn fresh_age_ms(&mut self) -> u32 {
        self.fresh_turn_time();
        self.age_ms()
    }

    /// The age of something born at `born_ms` (see [`age_ms`](Self::age_ms)).
    pub(crate) fn age_since(&self, born_ms: u32, now: std::time::Instant) -> Duration {
        now.saturating_duration_since(self.created)
            .saturating_sub(Duration::from_millis(born_ms.into()))
    }

    /// The reactor-wide part of a snapshot (no connections or listeners).
    pub(crate) fn core_snapshot(&self) -> Snapshot {
        let taken = self.now();
        let timers = TimerInfo {
            pending: self.timers.len(),
            next_deadline: self
                .timers
                .peek_deadline()
                .map(|d| d.saturating_duration_since(taken)),
        };
        let cross_thread_queued = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        Snapshot {
            taken,
            uptime: taken.saturating_duration_since(self.created),
            connections: Vec::new(),
            listeners: Vec::new(),
            timers,
            cross_thread_queued,
            thread_pool: self.pool_info(),
            // Deferreds are counted per thread: this reactor's thread.
            deferreds: crate::defer::stats(),
            counters: self.counters,
            callbacks: self.timing.stats(),
        }
    }

    /// Delivers a snapshot to a callback from `request_snapshot` (a panic
    /// in it is caught like any callback's).
    pub(crate) fn deliver_snapshot(&mut self, f: SnapshotFn, snap: Snapshot) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(self, snap))) {
            self.caught_panic(p, "snapshot callback");
        }
        self.callback_done(CallbackKind::Timer, || "snapshot callback");
    }

    /// A callback ended: times it (see `timing`), counting a slow one.
    #[inline]
    pub(crate) fn callback_done(
        &mut self,
        kind: CallbackKind,
        name: impl FnOnce() -> &'static str,
    ) {
        if self.timing.done(kind, name) {
            self.counters.slow_callbacks += 1;
        }
    }

    /// [`callback_done`](Self::callback_done) without the log: a slow
    /// callback's duration, for [`slow_callback`](Self::slow_callback).
    #[inline]
    pub(crate) fn callback_timed(&mut self) -> Option<u64> {
        self.timing.done_untold()
    }

    /// Logs and counts a slow callback that took `ns` nanoseconds.
    #[cold]
    #[inline(never)]
    pub(crate) fn slow_callback(&mut self, kind: CallbackKind, name: &'static str, ns: u64) {
        self.timing.slow(kind, name, ns);
        self.counters.slow_callbacks += 1;
    }
}

impl ReactorHandle {
    /// Asks for a [`Snapshot`] from another thread: `f` gets it on the
    /// reactor thread once the reactor runs the request (in the order of
    /// [`call_from_thread`](Self::call_from_thread) calls). Send it where it
    /// is wanted (a channel, a response).
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// let handle = reactor.reactor_handle();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// handle.request_snapshot(move |snap| {
    ///     let _ = tx.send(snap);
    /// });
    /// let mut got = None;
    /// reactor.run_until(Duration::from_secs(10), |_| {
    ///     got = got.take().or_else(|| rx.try_recv().ok());
    ///     got.is_some()
    /// })?;
    /// assert!(got.unwrap().connections.is_empty());
    /// # Ok::<(), torsion::Error>(())
    /// ```
    pub fn request_snapshot(&self, f: impl FnOnce(Snapshot) + Send + 'static) {
        self.call_from_thread(move |core| core.request_snapshot(move |_, snap| f(snap)));
    }
}
