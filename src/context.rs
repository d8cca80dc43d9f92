//! What callbacks can reach: [`Core`] (the reactor's clock, timers, stop, listen,
//! connect, other connections by handle) and the cross-thread [`ReactorHandle`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::timers::{TimerId, TimerQueue};
use crate::core::Wake;
use crate::error::{Error, Result};

/// A closure sent from another thread with [`ReactorHandle::call_from_thread`].
pub(crate) type ThreadFn = Box<dyn FnOnce(&mut Core) + Send>;

pub(crate) use crate::core::ops::{InternalTimer, Op, Timed};

/// What happens when a callback panics.
///
/// ```
/// use torsion::{PanicPolicy, Reactor};
///
/// let mut reactor = Reactor::new()?;
/// // In a test: a panic in a callback stops the reactor, so `run` fails.
/// reactor.set_panic_policy(PanicPolicy::StopReactor);
/// reactor.call_later(std::time::Duration::ZERO, |_core| panic!("bug"));
/// assert!(matches!(reactor.run(), Err(torsion::Error::Panicked(_))));
/// # Ok::<(), torsion::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// Log the panic, abort that connection, keep serving the others (default).
    #[default]
    AbortConnection,
    /// Like `AbortConnection`, and stop the reactor: `run` returns
    /// [`Error::Panicked`].
    StopReactor,
    /// Like `AbortConnection`, and remember the message: tests check
    /// [`Core::take_panics`] (or call `testing::assert_no_panics`).
    Record,
}

/// State shared with other threads through [`ReactorHandle`].
pub(crate) struct Shared {
    pub(crate) queue: Mutex<VecDeque<ThreadFn>>,
    /// Set after a push to `queue`: the reactor checks it every turn instead of
    /// taking the lock.
    pub(crate) queued: std::sync::atomic::AtomicBool,
    pub(crate) waker: Option<Box<dyn Wake>>,
    pub(crate) running: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// A `Send + Clone` door into a reactor from other threads.
///
/// Closures queued with [`call_from_thread`](Self::call_from_thread) run on the
/// reactor thread, in the order queued, waking the reactor if it sleeps.
///
/// ```
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new().unwrap();
/// let handle = reactor.reactor_handle();
/// std::thread::spawn(move || {
///     handle.call_from_thread(|core| {
///         core.stop().unwrap();
///     });
/// });
/// reactor.run().unwrap(); // returns once the other thread's call has run
/// ```
#[derive(Clone, Debug)]
pub struct ReactorHandle {
    shared: Arc<Shared>,
}

impl ReactorHandle {
    /// Queues `f` to run on the reactor thread. Calls run in the order queued; a
    /// call queued while the reactor is not running waits for the next `run`.
    pub fn call_from_thread(&self, f: impl FnOnce(&mut Core) + Send + 'static) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Box::new(f));
        self.shared
            .queued
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(w) = &self.shared.waker {
            if let Err(e) = w.wake() {
                tracing::error!(error = %e, "could not wake the reactor");
            }
        }
    }

    /// Stops the reactor from another thread.
    ///
    /// # Errors
    /// [`Error::NotRunning`] if the reactor is not running.
    pub fn stop(&self) -> Result<()> {
        if !self
            .shared
            .running
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(Error::NotRunning);
        }
        self.call_from_thread(|core| {
            let _ = core.stop();
        });
        Ok(())
    }
}

/// The part of the reactor that callbacks reach: the clock, timers, stop, and
/// operations on listeners, connectors and connections by handle.
///
/// A [`Reactor`](crate::Reactor) dereferences to its `Core`, and so does every
/// [`Context`](crate::Context), so `reactor.call_later(..)` and `ctx.call_later(..)` are the same
/// call.
pub struct Core {
    pub(crate) now: Instant,
    /// `now` as a [stamp](Self::stamp_of), for the idle timeout's touch on
    /// every read and write (one integer compare, not an `Instant` one).
    turn_stamp: u64,
    /// Read the system's monotonic clock (real reactor) or only `now` (fake clock).
    real_clock: bool,
    /// The reactor did not read the clock after this turn's poll (no timer
    /// was pending): `now` is an earlier turn's time until something needs
    /// the current one ([`fresh_turn_time`](Self::fresh_turn_time)) or a timer
    /// is scheduled (which freezes it: see [`new_turn`](Self::new_turn)).
    pub(crate) clock_stale: bool,
    /// The clock was read in this turn, after its poll (not frozen at an
    /// earlier turn's time): `now` is recent.
    pub(crate) clock_read: bool,
    /// The turn's clock (see `core::turn_clock`): whether this turn skipped
    /// the clock before a far deadline, and that deadline's mark.
    pub(crate) turn_clock: crate::core::turn_clock::TurnClock,
    pub(crate) timers: TimerQueue<Timed>,
    pub(crate) ops: Vec<Op>,
    pub(crate) running: bool,
    pub(crate) stop_requested: bool,
    pub(crate) shared: Arc<Shared>,
    next_id: u64,
    pub(crate) panic_policy: PanicPolicy,
    pub(crate) panics: Vec<String>,
    /// Local tasks, queued local calls, the thread pool (see `crate::local`).
    pub(crate) local: std::rc::Rc<crate::local::LocalState>,
    /// When the core was made (connection ages count from here).
    pub(crate) created: Instant,
    /// The reactor's counters (see [`crate::introspect`]).
    pub(crate) counters: crate::introspect::Counters,
    /// Callback timing: slow-callback detection and the histogram.
    pub(crate) timing: crate::core::timing::Timing,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("now", &self.now)
            .field("timers", &self.timers.len())
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn new(now: Instant, waker: Option<Box<dyn Wake>>) -> Core {
        let real_clock = waker.is_some();
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            queued: std::sync::atomic::AtomicBool::new(false),
            waker,
            running: std::sync::atomic::AtomicBool::new(false),
        });
        Core {
            now,
            turn_stamp: 0,
            real_clock,
            clock_stale: false,
            clock_read: false,
            turn_clock: Default::default(),
            timers: TimerQueue::new(),
            ops: Vec::new(),
            running: false,
            stop_requested: false,
            local: crate::local::LocalState::new(&shared),
            shared,
            next_id: 1,
            panic_policy: PanicPolicy::default(),
            panics: Vec::new(),
            created: now,
            counters: Default::default(),
            // Under the fake clock nothing is timed unless asked: the test
            // tools' callbacks run between steps of the test itself.
            timing: crate::core::timing::Timing::new(
                real_clock.then_some(crate::core::timing::DEFAULT_SLOW_CALLBACK),
            ),
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The current time: the monotonic clock (or the fake clock's time in tests).
    /// Delays given to [`call_later`](Self::call_later) count from here.
    pub fn now(&self) -> Instant {
        if self.real_clock {
            Instant::now().max(self.now)
        } else {
            self.now
        }
    }

    /// Whether this core runs under the fake clock of the test tools (whose
    /// listen and connect requests bind nothing).
    pub(crate) fn is_simulated(&self) -> bool {
        !self.real_clock
    }

    /// The time the current turn started at (what expiring timers compare with).
    ///
    /// When no timer was pending as the turn began, the reactor does not read
    /// the clock (see [`new_turn`](Self::new_turn)), and this is the time of
    /// an earlier turn: never later than the truth. (With only far timers
    /// pending, at most [`STALE_MAX`](crate::core::turn_clock::STALE_MAX) old.) Code for which an early
    /// time is wrong (rate windows) asks [`fresh_turn_time`](Self::fresh_turn_time).
    #[inline]
    pub(crate) fn turn_time(&self) -> Instant {
        self.now
    }

    /// The turn's time, reading the clock now if the reactor skipped that
    /// after the poll and no timer was scheduled since.
    #[inline]
    pub(crate) fn fresh_turn_time(&mut self) -> Instant {
        if self.clock_stale {
            self.clock_stale = false;
            self.clock_read = true;
            self.set_now(Instant::now());
        }
        self.now
    }

    pub(crate) fn set_now(&mut self, now: Instant) {
        // Monotonic even if a caller hands in an older instant.
        if now > self.now {
            self.now = now;
            self.turn_stamp = self.stamp_of(now);
        }
    }

    /// [`turn_time`](Self::turn_time) as a [stamp](Self::stamp_of).
    #[inline]
    pub(crate) fn turn_stamp(&self) -> u64 {
        self.turn_stamp
    }

    /// `t` as a stamp: nanoseconds since the core was made (0 for earlier
    /// instants), exact both ways with [`instant_of`](Self::instant_of).
    pub(crate) fn stamp_of(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.created).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant of a [stamp](Self::stamp_of).
    pub(crate) fn instant_of(&self, stamp: u64) -> Instant {
        later(self.created, Duration::from_nanos(stamp))
    }

    /// Whether the reactor is inside `run`.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Asks the reactor to return from `run` at the end of this turn.
    ///
    /// # Errors
    /// [`Error::NotRunning`] if the reactor is not running.
    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Err(Error::NotRunning);
        }
        self.stop_requested = true;
        Ok(())
    }

    /// A `Send + Clone` handle for other threads (not to be confused with a
    /// connection's [`ConnectionHandle`], [`Context::handle`](crate::Context::handle)).
    pub fn reactor_handle(&self) -> ReactorHandle {
        ReactorHandle {
            shared: self.shared.clone(),
        }
    }

    /// Runs `f` after `delay`, on the reactor thread. A zero delay runs it on the
    /// next turn, never inside the current callback. Calls due at the same time run
    /// in the order they were scheduled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::Reactor;
    ///
    /// let mut reactor = Reactor::new().unwrap();
    /// let call = reactor.call_later(Duration::from_secs(60), |_| unreachable!());
    /// reactor.call_later(Duration::ZERO, move |core| {
    ///     call.cancel(core).unwrap();
    ///     core.stop().unwrap();
    /// });
    /// reactor.run().unwrap();
    /// ```
    ///
    /// A delay past the clock's range (`Duration::MAX`) means "never": the
    /// call stays pending, about a thousand years away, until cancelled.
    pub fn call_later(
        &mut self,
        delay: Duration,
        f: impl FnOnce(&mut Core) + 'static,
    ) -> DelayedCall {
        let deadline = later(self.now(), delay);
        self.clock_stale = false;
        DelayedCall {
            id: self.timers.schedule(deadline, Timed::Call(Box::new(f))),
        }
    }

    pub(crate) fn schedule_internal(&mut self, delay: Duration, t: InternalTimer) -> TimerId {
        let deadline = later(self.now(), delay);
        self.clock_stale = false;
        self.timers.schedule(deadline, Timed::Internal(t))
    }

    /// Sets what happens when a callback panics.
    pub fn set_panic_policy(&mut self, policy: PanicPolicy) {
        self.panic_policy = policy;
    }

    /// Fails (panics) if any callback panicked while [`PanicPolicy::Record`] was
    /// set, listing the panics: for the end of a test.
    ///
    /// # Panics
    /// If a panic was recorded.
    #[track_caller]
    pub fn assert_no_panics(&mut self) {
        let p = self.take_panics();
        assert!(p.is_empty(), "{} callback(s) panicked: {p:?}", p.len());
    }

    /// The messages of panics recorded under [`PanicPolicy::Record`], emptied.
    pub fn take_panics(&mut self) -> Vec<String> {
        std::mem::take(&mut self.panics)
    }

    /// Records a caught panic according to the policy. Returns the message.
    pub(crate) fn caught_panic(
        &mut self,
        payload: Box<dyn std::any::Any + Send>,
        what: &str,
    ) -> Arc<str> {
        let msg: Arc<str> = if let Some(s) = payload.downcast_ref::<&str>() {
            Arc::from(*s)
        } else if let Some(s) = payload.downcast_ref::<String>() {
            Arc::from(s.as_str())
        } else {
            Arc::from("(non-string panic payload)")
        };
        tracing::error!(panic = %msg, "{what} panicked");
        self.counters.callbacks_panicked += 1;
        match self.panic_policy {
            PanicPolicy::AbortConnection => {}
            PanicPolicy::StopReactor | PanicPolicy::Record => self.panics.push(msg.to_string()),
        }
        if self.panic_policy == PanicPolicy::StopReactor && self.running {
            self.stop_requested = true;
        }
        msg
    }
}

/// How far away "never" is: a delay that would take a deadline past the
/// clock's range (`Duration::MAX`, for example) puts it this far from now
/// instead (about a thousand years), so it does not come.
pub(crate) const NEVER: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// `from + delay`, or, past the clock's range, `NEVER` from `from` (or the
/// latest instant the clock can hold). Never panics.
pub(crate) fn later(from: Instant, delay: Duration) -> Instant {
    if let Some(t) = from.checked_add(delay) {
        return t;
    }
    let mut d = NEVER;
    while !d.is_zero() {
        if let Some(t) = from.checked_add(d) {
            return t;
        }
        d /= 2;
    }
    from
}

/// A call scheduled with [`Core::call_later`] (Twisted's `IDelayedCall`).
///
/// ```
/// use std::time::Duration;
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// // Twisted's IDelayedCall: cancel it, or push it back, before it runs.
/// let call = reactor.call_later(Duration::from_secs(3600), |_core| unreachable!());
/// assert!(call.active(&reactor));
/// call.cancel(&mut reactor)?;
/// assert!(!call.active(&reactor));
/// # Ok::<(), torsion::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DelayedCall {
    id: TimerId,
}

impl DelayedCall {
    /// Cancels the call.
    ///
    /// # Errors
    /// [`Error::AlreadyCalled`] if it already ran or was cancelled.
    pub fn cancel(&self, core: &mut Core) -> Result<()> {
        core.timers
            .cancel(self.id)
            .map(drop)
            .map_err(|_| Error::AlreadyCalled)
    }

    /// Moves the call to `delay` from now (`Duration::MAX`: never).
    ///
    /// # Errors
    /// [`Error::AlreadyCalled`] if it already ran or was cancelled.
    pub fn reset(&self, core: &mut Core, delay: Duration) -> Result<()> {
        let deadline = later(core.now(), delay);
        core.timers
            .reset(self.id, deadline)
            .map_err(|_| Error::AlreadyCalled)
    }

    /// Pushes the call `by` later than it was due (`Duration::MAX`: never).
    ///
    /// # Errors
    /// [`Error::AlreadyCalled`] if it already ran or was cancelled.
    pub fn delay(&self, core: &mut Core, by: Duration) -> Result<()> {
        let due = core.timers.deadline(self.id).ok_or(Error::AlreadyCalled)?;
        core.timers
            .reset(self.id, later(due, by))
            .map_err(|_| Error::AlreadyCalled)
    }

    /// Whether the call is still pending.
    pub fn active(&self, core: &Core) -> bool {
        core.timers.is_active(self.id)
    }

    /// When the call is due, while it is pending.
    pub fn time(&self, core: &Core) -> Option<Instant> {
        core.timers.deadline(self.id)
    }
}

/// Names one connection, from anywhere on the reactor thread (another
/// connection's callback, a timer). Stale handles, of connections that closed,
/// are recognised and ignored, even after their slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionHandle {
    pub(crate) key: u32,
    pub(crate) gen: u32,
}
