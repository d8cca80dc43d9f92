//! Time-based helpers that return Deferreds (Twisted's `twisted.internet.task`
//! and `Deferred.addTimeout`): [`defer_later`], [`DeferredExt::add_timeout`]
//! and [`LoopingCall`].
//!
//! They take a [`Core`], so they run on the real reactor and on any test clock
//! that drives a `Core`, with the same timer semantics.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::context::{Core, DelayedCall};
use crate::defer::{maybe_deferred, Cancelled, Deferred, Failure, IntoChain, TimedOut, Trigger};

/// Runs `f` after `delay` and returns a Deferred of what it returns (a
/// `Result`, or a Deferred to wait for). Cancelling the Deferred before then
/// cancels the call: `f` never runs and the Deferred fails with [`Cancelled`]
/// (Twisted's `deferLater`).
///
/// ```
/// use std::time::Duration;
/// use torsion::defer::Failure;
/// use torsion::task::defer_later;
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new().unwrap();
/// let d = defer_later(&mut reactor, Duration::from_millis(2), |core| {
///     Ok::<_, Failure>(core.now())
/// });
/// let fired_at = reactor.run_until_complete(d).unwrap().unwrap();
/// assert!(fired_at >= reactor.now() - Duration::from_secs(1));
/// ```
#[track_caller]
pub fn defer_later<R, E, F>(core: &mut Core, delay: Duration, f: F) -> Deferred<R::Value, E>
where
    R: IntoChain<E>,
    E: fmt::Debug + 'static,
    F: FnOnce(&mut Core) -> R + 'static,
{
    let slot: Rc<Cell<Option<DelayedCall>>> = Rc::new(Cell::new(None));
    let s = slot.clone();
    let local = core.local();
    let (d, trigger) = Deferred::<R, E>::with_canceller(move |_| {
        if let Some(call) = s.take() {
            local.call(move |core| {
                let _ = call.cancel(core);
            });
        }
    });
    let call = core.call_later(delay, move |core| {
        if trigger.is_called() {
            return; // cancelled
        }
        let r = f(core);
        let _ = trigger.callback(r);
    });
    slot.set(Some(call));
    d.add_callback(|r: R| r)
}

/// Reactor-facing methods on [`Deferred`].
///
/// ```
/// use std::time::Duration;
/// use torsion::defer::{Deferred, Failure, TimedOut};
/// use torsion::task::DeferredExt;
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// // An answer that comes in time passes through the timeout untouched...
/// let (fast, trigger) = Deferred::<u32, Failure>::new();
/// let fast = fast.add_timeout(&mut reactor, Duration::from_secs(5));
/// trigger.callback(7).unwrap();
/// assert_eq!(reactor.run_until_complete(fast)?.unwrap(), 7);
/// // ...one that never comes fails with TimedOut.
/// let (slow, _never) = Deferred::<u32, Failure>::new();
/// let slow = slow.add_timeout(&mut reactor, Duration::from_millis(1));
/// assert!(reactor.run_until_complete(slow)?.unwrap_err().is::<TimedOut>());
/// # Ok::<(), torsion::Error>(())
/// ```
pub trait DeferredExt<T, E>: Sized {
    /// Fails the Deferred with [`TimedOut`] if it has not fired within
    /// `timeout` (Twisted's `addTimeout`): it is cancelled (running its
    /// canceller, or cancelling the Deferred it waits on), and the error that
    /// results is replaced by `TimedOut`. Callbacks added before this call see
    /// the cancellation and may recover from it; when the Deferred fires first,
    /// the timer is cancelled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::defer::{Deferred, Failure, TimedOut};
    /// use torsion::task::DeferredExt;
    /// use torsion::Reactor;
    ///
    /// let mut reactor = Reactor::new().unwrap();
    /// let (d, _never) = Deferred::<(), Failure>::new();
    /// let d = d.add_timeout(&mut reactor, Duration::from_millis(1));
    /// let err = reactor.run_until_complete(d).unwrap().unwrap_err();
    /// assert!(err.is::<TimedOut>());
    /// ```
    fn add_timeout(self, core: &mut Core, timeout: Duration) -> Self;
}

impl<T, E> DeferredExt<T, E> for Deferred<T, E>
where
    T: 'static,
    E: From<Cancelled> + From<TimedOut> + 'static,
{
    fn add_timeout(self, core: &mut Core, timeout: Duration) -> Self {
        let handle = self.cancel_handle();
        let done = Rc::new(Cell::new(false));
        let timed_out = Rc::new(Cell::new(false));
        let (dn, to) = (done.clone(), timed_out.clone());
        let call = core.call_later(timeout, move |_| {
            if !dn.get() {
                to.set(true);
                handle.cancel();
            }
        });
        let local = core.local();
        self.add_both(move |r| {
            done.set(true);
            if !timed_out.get() {
                local.call(move |core| {
                    let _ = call.cancel(core);
                });
            }
            match r {
                Err(_) if timed_out.get() => Err(E::from(TimedOut)),
                r => r,
            }
        })
    }
}

/// Why [`LoopingCall::start`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoopingCallError {
    /// The loop is running already.
    #[error("the LoopingCall is already running")]
    AlreadyRunning,
}

type LoopFn<E> = Box<dyn FnMut(&mut Core, &LoopingCall<E>) -> Deferred<(), E>>;

struct LoopState<E> {
    f: Option<LoopFn<E>>,
    running: bool,
    interval: Duration,
    start: Instant,
    /// Grid index of the last call (`None` before the first).
    last: Option<u128>,
    /// Intervals since the previous call, as told to the current call.
    intervals: u64,
    call: Option<DelayedCall>,
    /// Inside `f`, or waiting for the Deferred it returned.
    busy: bool,
    trigger: Option<Trigger<(), E>>,
}

/// Calls a function repeatedly, on a fixed grid (Twisted's `LoopingCall`).
///
/// * [`start`](Self::start) with an interval: the first call happens at once
///   (`now == true`) or after one interval; later calls are due at
///   `start + k * interval`, so the schedule does not drift;
/// * if the reactor falls behind, missed intervals are skipped, not replayed:
///   [`intervals`](Self::intervals) tells the call how many passed since the
///   previous one (Twisted's `withCount`);
/// * when the call returns a Deferred, the next call waits for it;
/// * an error (returned, or from that Deferred) stops the loop and fails the
///   Deferred that `start` returned; [`stop`](Self::stop) (also from inside
///   the call) fires it with `()` once the current call has finished.
///
/// ```
/// use std::time::Duration;
/// use torsion::defer::Failure;
/// use torsion::task::LoopingCall;
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new().unwrap();
/// let mut n = 0;
/// let lc = LoopingCall::<Failure>::new(move |core, lc| {
///     n += 1;
///     if n == 3 {
///         lc.stop(core);
///     }
///     Ok(())
/// });
/// let done = lc.start(&mut reactor, Duration::from_millis(1), true).unwrap();
/// reactor.run_until_complete(done).unwrap().unwrap();
/// assert!(!lc.is_running());
/// ```
pub struct LoopingCall<E = Failure> {
    state: Rc<RefCell<LoopState<E>>>,
}

impl<E> Clone for LoopingCall<E> {
    fn clone(&self) -> Self {
        LoopingCall {
            state: self.state.clone(),
        }
    }
}

impl<E> fmt::Debug for LoopingCall<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.borrow();
        f.debug_struct("LoopingCall")
            .field("running", &s.running)
            .field("interval", &s.interval)
            .finish_non_exhaustive()
    }
}

impl<E: fmt::Debug + 'static> LoopingCall<E> {
    /// A loop that calls `f` with the core and itself; `f` returns `Ok(())`,
    /// `Err(e)` (stops the loop) or a `Deferred<(), E>` to wait for.
    pub fn new<R>(mut f: impl FnMut(&mut Core, &LoopingCall<E>) -> R + 'static) -> Self
    where
        R: IntoChain<E, Value = ()>,
    {
        let f: LoopFn<E> = Box::new(move |core, lc| maybe_deferred(|| f(core, lc)));
        LoopingCall {
            state: Rc::new(RefCell::new(LoopState {
                f: Some(f),
                running: false,
                interval: Duration::ZERO,
                start: Instant::now(),
                last: None,
                intervals: 0,
                call: None,
                busy: false,
                trigger: None,
            })),
        }
    }

    /// Starts calling every `interval` (zero: once per reactor turn). Returns a
    /// Deferred that fires with `()` when the loop is stopped, or fails with the
    /// call's error.
    ///
    /// # Errors
    /// [`LoopingCallError::AlreadyRunning`] if it is running.
    #[track_caller]
    pub fn start(
        &self,
        core: &mut Core,
        interval: Duration,
        now: bool,
    ) -> Result<Deferred<(), E>, LoopingCallError> {
        let (d, trigger) = Deferred::new();
        {
            let mut s = self.state.borrow_mut();
            if s.running || s.busy {
                return Err(LoopingCallError::AlreadyRunning);
            }
            s.running = true;
            s.interval = interval;
            s.start = core.now();
            s.last = None;
            s.trigger = Some(trigger);
        }
        if now {
            self.tick(core);
        } else {
            self.schedule(core);
        }
        Ok(d)
    }

    /// Stops the loop: no further call is made, and the Deferred from
    /// [`start`](Self::start) fires (at once, or when the running call's
    /// Deferred finishes). Does nothing if it is not running.
    pub fn stop(&self, core: &mut Core) {
        let (call, fire) = {
            let mut s = self.state.borrow_mut();
            if !s.running {
                return;
            }
            s.running = false;
            let fire = if s.busy { None } else { s.trigger.take() };
            (s.call.take(), fire)
        };
        if let Some(c) = call {
            let _ = c.cancel(core);
        }
        if let Some(t) = fire {
            let _ = t.callback(());
        }
    }

    /// Restarts the grid from now: the next call is one interval from now.
    /// Does nothing unless the loop is running and waiting for its next call.
    pub fn reset(&self, core: &mut Core) {
        let call = {
            let mut s = self.state.borrow_mut();
            if !s.running || s.busy {
                return;
            }
            s.start = core.now();
            s.last = Some(0);
            s.call.take()
        };
        if let Some(c) = call {
            let _ = c.cancel(core);
        }
        self.schedule(core);
    }

    /// Whether the loop is running.
    pub fn is_running(&self) -> bool {
        self.state.borrow().running
    }

    /// The interval given to [`start`](Self::start).
    pub fn interval(&self) -> Duration {
        self.state.borrow().interval
    }

    /// How many intervals passed between the previous call and the current
    /// one: 1 normally, more when the reactor was late and intervals were
    /// skipped (always 1 with a zero interval).
    pub fn intervals(&self) -> u64 {
        self.state.borrow().intervals
    }

    fn grid_index(s: &LoopState<E>, now: Instant) -> u128 {
        now.saturating_duration_since(s.start)
            .as_nanos()
            .checked_div(s.interval.as_nanos())
            .unwrap_or(0)
    }

    fn schedule(&self, core: &mut Core) {
        let now = core.now();
        let delay = {
            let s = self.state.borrow();
            let i = s.interval.as_nanos();
            if i == 0 {
                Duration::ZERO
            } else {
                // The next grid point strictly after the last call's (and
                // after now): skipped points are not replayed.
                let here = Self::grid_index(&s, now);
                let next = (here + 1).max(s.last.map_or(1, |l| l + 1));
                let at = s.start + nanos(next * i);
                at.saturating_duration_since(now)
            }
        };
        let lc = self.clone();
        let call = core.call_later(delay, move |core| lc.tick(core));
        self.state.borrow_mut().call = Some(call);
    }

    fn tick(&self, core: &mut Core) {
        let now = core.now();
        let mut f = {
            let mut s = self.state.borrow_mut();
            s.call = None;
            if !s.running {
                return;
            }
            let here = Self::grid_index(&s, now);
            s.intervals = match s.last {
                _ if s.interval.is_zero() => 1,
                None => 1,
                Some(l) => u64::try_from(here.saturating_sub(l))
                    .unwrap_or(u64::MAX)
                    .max(1),
            };
            s.last = Some(here);
            s.busy = true;
            s.f.take()
                .expect("LoopingCall function present when not busy")
        };
        let mut d = f(core, self);
        self.state.borrow_mut().f = Some(f);
        if let Some(r) = d.take_result() {
            if self.finished(r) {
                self.schedule(core);
            }
            return;
        }
        let lc = self.clone();
        let local = core.local();
        let rest = d.add_both(move |r: Result<(), E>| {
            if lc.finished(r) {
                // No core at hand in a callback: schedule at the end of the
                // turn (a test clock runs these with `Core::run_local`).
                local.call(move |core| {
                    if lc.is_running() && lc.state.borrow().call.is_none() {
                        lc.schedule(core);
                    }
                });
            }
            Ok::<(), E>(())
        });
        drop(rest);
    }

    /// Settles a finished call; true when the next call is due to be scheduled.
    fn finished(&self, r: Result<(), E>) -> bool {
        let mut s = self.state.borrow_mut();
        s.busy = false;
        let ok = r.is_ok();
        if ok && s.running {
            return true;
        }
        s.running = false;
        let t = s.trigger.take();
        drop(s);
        match (t, r) {
            (Some(t), r) => {
                let _ = t.fire(r);
            }
            (None, Err(e)) => {
                tracing::error!(error = ?e, "LoopingCall failed after it was stopped")
            }
            (None, Ok(())) => {}
        }
        false
    }
}

fn nanos(n: u128) -> Duration {
    Duration::new(
        u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX),
        (n % 1_000_000_000) as u32,
    )
}

#[cfg(test)]
mod tests;
