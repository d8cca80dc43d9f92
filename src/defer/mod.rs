//! Deferred: a result that is not there yet, with a chain of callbacks that
//! transform it (Twisted's `twisted.internet.defer`), typed, and usable from
//! `async` code.
//!
//! A [`Deferred<T, E>`] is the consuming end of a chain; its [`Trigger<T, E>`]
//! is the producing end, which fires it once with a value (`callback`) or an
//! error (`errback`). Each `add_*` call consumes the Deferred and returns the
//! new end of the same chain, whose value type is whatever the stage returns:
//! a stage returns a `Result<U, E>` (`Err` switches to the error path, an
//! errback's `Ok` recovers) or another `Deferred<U, E>`, in which case the chain
//! pauses until that one fires and goes on with its result.
//!
//! This module is pure: no sockets, no reactor. The reactor-facing helpers
//! (timeouts, [`defer_later`](crate::task::defer_later),
//! [`spawn_local`](crate::Core::spawn_local), threads, connect) take a
//! [`Core`](crate::Core).
//!
//! # Twisted and torsion side by side
//!
//! | Twisted | torsion |
//! |---|---|
//! | `d = Deferred()` | `let (d, t) = Deferred::<T, E>::new();` (`t` fires, `d` chains) |
//! | `Deferred(canceller=f)` | `Deferred::with_canceller(\|t\| ...)` |
//! | `d.callback(v)` / `d.errback(f)` | `t.callback(v)` / `t.errback(e)` → `Result<(), AlreadyCalled>` |
//! | `AlreadyCalledError` raised | [`AlreadyCalled`] returned |
//! | `d.addCallback(f)` | `d = d.add_callback(\|v\| Ok(..))` (may change `T`) |
//! | `d.addErrback(f)` | `d = d.add_errback(\|e\| Ok(..) or Err(..))` |
//! | `d.addBoth(f)` | `d = d.add_both(\|r: Result<T, E>\| ..)` |
//! | `d.addCallbacks(cb, eb)` | `d = d.add_callbacks(cb, eb)` |
//! | callback raises / returns `Failure` | stage returns `Err(e)` |
//! | callback returns a `Deferred` | stage returns a `Deferred<U, E>` |
//! | `d.pause()` / `d.unpause()` | `d.pause()` / `d.unpause()` |
//! | `d.cancel()`, `CancelledError` | `d.cancel()`, `E: From<`[`Cancelled`]`>` |
//! | `d.addTimeout(t, clock)`, `TimeoutError` | `d.add_timeout(core, t)` ([`crate::task::DeferredExt`]), [`TimedOut`] |
//! | `succeed(v)` / `fail(f)` / `maybeDeferred(f)` | [`succeed`] / [`fail`] / [`maybe_deferred`] |
//! | `DeferredList(ds, fireOnOneCallback, fireOnOneErrback, consumeErrors)` | [`DeferredList`] builder |
//! | `gatherResults(ds)` | [`gather_results`] (fails with the member's own error) |
//! | `race(ds)` | [`race`] |
//! | `Failure` | [`Failure`] (the default `E`), or any error type of yours |
//! | "Unhandled error in Deferred" at garbage collection | `tracing::error!` when the last handle drops, with the creation site |
//! | (none: a Deferred nobody can fire waits forever) | [`Deferred::or_abandoned`] / [`Deferred::fail_if_abandoned`], [`Abandoned`] |
//! | `await d`, `ensureDeferred(coro)` | `d.await`, [`Core::spawn_local`](crate::Core::spawn_local) |
//! | `task.react` / `successResultOf(d)` | [`Reactor::run_until_complete`](crate::Reactor::run_until_complete) / [`Deferred::take_result`] |
//! | `deferLater`, `deferToThread`, `LoopingCall` | [`crate::task::defer_later`], [`Core::defer_to_thread`](crate::Core::defer_to_thread), [`crate::task::LoopingCall`] |
//!
//! Differences worth knowing: callbacks take no extra arguments (closures
//! capture them); a Deferred has one consumer (hand its result on by returning
//! it from a stage, or share it through your own `Rc`); the error type is fixed
//! for a chain; a panic in a stage is not turned into an error: it unwinds to
//! the reactor, which catches and logs it, and that chain gets no result.
//!
//! # Abandoned Deferreds
//!
//! A Deferred whose every [`Trigger`] is dropped before firing can never fire.
//! Twisted has no equivalent (a Python Deferred nobody fires is simply
//! collected, and whoever waits on it waits forever); torsion counts the
//! triggers of each chain and notices when the last one goes: the Deferred is
//! then *abandoned*. Opt in with [`Deferred::or_abandoned`] (any error) or
//! [`Deferred::fail_if_abandoned`] (`E: From<`[`Abandoned`]`>`, as `cancel`
//! needs `From<Cancelled>`), and the abandoned Deferred fails with that error
//! like any other error, through its errbacks, to whoever awaits it. Without
//! it, nothing runs: the Deferred stays unfired (logged at DEBUG, counted in
//! [`stats`]). Abandonment goes through nesting: a chain waiting on a Deferred
//! returned by a callback is abandoned when that one is (unless the inner one
//! fails itself through its own `or_abandoned`). A Deferred that was fired or
//! cancelled is not abandoned when its triggers go, and cancelling an
//! abandoned one fails it with [`Cancelled`] as usual. The cost is one counter
//! per chain, checked when a trigger drops.
//!
//! ```
//! use torsion::defer::{Abandoned, Deferred, Failure};
//!
//! let (d, trigger) = Deferred::<u32, Failure>::new();
//! let mut d = d
//!     .fail_if_abandoned()
//!     .add_errback(|e| if e.is::<Abandoned>() { Ok(0) } else { Err(e) });
//! drop(trigger); // the producer went away without an answer
//! assert_eq!(d.take_result().unwrap().unwrap(), 0);
//! ```
//!
//! # A chain
//!
//! ```
//! use torsion::defer::{Deferred, Failure};
//!
//! let (d, trigger) = Deferred::<u32, Failure>::new();
//! let mut d = d
//!     .add_callback(|n| Ok(n * 2))                        // u32 -> u32
//!     .add_callback(|n| {
//!         if n > 100 { Err(Failure::msg("too big")) } else { Ok(n.to_string()) }
//!     })                                                  // u32 -> String
//!     .add_errback(|e| Ok(format!("recovered from {e}")));
//! trigger.callback(21).unwrap();
//! assert_eq!(d.take_result().unwrap().unwrap(), "42");
//! assert!(trigger.callback(1).is_err()); // fired twice: AlreadyCalled
//! ```
//!
//! # Async code awaiting Deferreds
//!
//! ```
//! use std::time::Duration;
//! use torsion::defer::{Deferred, Failure};
//! use torsion::task::defer_later;
//! use torsion::Reactor;
//!
//! let mut reactor = Reactor::new().unwrap();
//! let a: Deferred<u32, Failure> = defer_later(&mut reactor, Duration::from_millis(5), |_| Ok(40));
//! let b: Deferred<u32, Failure> = defer_later(&mut reactor, Duration::from_millis(1), |_| Ok(2));
//! let sum = reactor.spawn_local(async move {
//!     let a = a.await?;
//!     let b = b.await?;
//!     Ok::<_, Failure>(a + b)
//! });
//! assert_eq!(reactor.run_until_complete(sum).unwrap().unwrap(), 42);
//! ```

mod chain;
mod error;
#[cfg(test)]
mod fast_tests;
mod future;
mod lifecycle;
mod list;
mod pool;
mod stages;
mod stats;
#[cfg(test)]
mod tests;
mod value;

use std::fmt;
use std::marker::PhantomData;
use std::panic::Location;
use std::rc::{Rc, Weak};

pub use error::{
    Abandoned, AlreadyCalled, Cancelled, Failure, FailureGroup, FirstError, Panicked, TimedOut,
};
pub use future::LocalExecutor;
pub use list::{gather_results, race, DeferredList, ListResult};
pub use stats::{stats, DeferredStats};

use chain::{Chain, Flow};
use pool::ChainRef;
use value::{on_error, on_value, Next};

#[cfg(test)]
mod abandon_tests;

/// A result that is not there yet, and the chain of callbacks that will
/// transform it. See the [module docs](self).
///
/// The default error type is [`Failure`] (any error). `E` must be `Debug` so an
/// unhandled error can be logged.
///
/// ```
/// use torsion::defer::{Deferred, Failure};
///
/// // `d` is where callbacks go, `trigger` fires it (once).
/// let (d, trigger) = Deferred::<&str, Failure>::new();
/// let mut d = d.add_callback(|s| Ok(s.len()));
/// assert!(!d.has_result());
/// trigger.callback("hello").unwrap();
/// assert_eq!(d.take_result().unwrap().unwrap(), 5);
/// // A second firing is an error value, not a panic.
/// assert!(trigger.callback("again").is_err());
/// ```
#[must_use = "a Deferred does nothing unless callbacks are added or it is awaited; dropping one that failed logs the error"]
pub struct Deferred<T, E = Failure> {
    chain: ChainRef<E>,
    _t: PhantomData<fn() -> T>,
}

/// The producing end of a [`Deferred`]: fires it once. Cheap to clone.
///
/// ```
/// use torsion::defer::{Deferred, Failure};
///
/// let (d, trigger) = Deferred::<u32, Failure>::new();
/// // The trigger can go wherever the result will be known (a protocol, a
/// // timer); clones fire the same Deferred.
/// let other = trigger.clone();
/// let mut d = d.add_errback(|e| {
///     println!("failed: {e}");
///     Ok(0)
/// });
/// other.errback(Failure::msg("no answer")).unwrap();
/// assert_eq!(d.take_result().unwrap().unwrap(), 0);
/// assert!(trigger.is_called());
/// ```
pub struct Trigger<T, E = Failure> {
    chain: ChainRef<E>,
    _t: PhantomData<fn(T)>,
}

/// A cancel-only reference to a chain, which does not keep it alive.
pub(crate) struct CancelHandle<E> {
    chain: Weak<Chain<E>>,
}

impl<T, E> fmt::Debug for Deferred<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.chain, f)
    }
}

impl<T, E> fmt::Debug for Trigger<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Trigger(")?;
        fmt::Debug::fmt(&*self.chain, f)?;
        f.write_str(")")
    }
}

impl<T, E> Trigger<T, E> {
    /// Another trigger of `chain` (counted, like a clone).
    fn from_chain(chain: &Rc<Chain<E>>) -> Self {
        chain.triggers.set(chain.triggers.get() + 1);
        Trigger {
            chain: ChainRef(chain.clone()),
            _t: PhantomData,
        }
    }
}

impl<T, E> Clone for Trigger<T, E> {
    fn clone(&self) -> Self {
        Trigger::from_chain(&self.chain)
    }
}

/// The last trigger of an unfired Deferred going away abandons it (see
/// [`Deferred::or_abandoned`]).
impl<T, E> Drop for Trigger<T, E> {
    #[inline]
    fn drop(&mut self) {
        let n = self.chain.triggers.get().wrapping_sub(1);
        self.chain.triggers.set(n);
        if n == 0 && !self.chain.has(chain::flag::CALLED | chain::flag::ABANDONED) {
            (self.chain.fns.last_trigger)(&self.chain);
        }
    }
}

/// What a callback may return: `Result<U, E>` (go on with a value or an error)
/// or `Deferred<U, E>` (wait for it, then go on with its result). Implemented for
/// those two only.
///
/// ```
/// use torsion::defer::{succeed, Deferred, Failure};
///
/// let (d, trigger) = Deferred::<u32, Failure>::new();
/// let mut d = d
///     // A `Result`: go on at once (here with another type)...
///     .add_callback(|n| Ok::<_, Failure>(n + 1))
///     // ...or a `Deferred`: the chain waits for it.
///     .add_callback(|n: u32| succeed::<String, Failure>(format!("#{n}")));
/// trigger.callback(41).unwrap();
/// assert_eq!(d.take_result().unwrap().unwrap(), "#42");
/// ```
pub trait IntoChain<E>: 'static {
    /// The value type the chain goes on with.
    type Value: 'static;
    #[doc(hidden)]
    fn into_next(self) -> Next<Self::Value, E>;
}

impl<U: 'static, E: 'static> IntoChain<E> for Result<U, E> {
    type Value = U;
    #[inline]
    fn into_next(self) -> Next<U, E> {
        Next::Ready(self)
    }
}

impl<U: 'static, E: 'static> IntoChain<E> for Deferred<U, E> {
    type Value = U;
    #[inline]
    fn into_next(self) -> Next<U, E> {
        Next::Wait(self.chain)
    }
}

impl<T: 'static, E: 'static> Deferred<T, E> {
    /// Takes the final result out of the chain, typed.
    #[inline]
    fn take_typed(&self) -> Option<Result<T, E>> {
        self.chain.take::<T>()
    }
}

impl<T: 'static, E: fmt::Debug + 'static> Deferred<T, E> {
    /// A new, unfired Deferred and the trigger that fires it. The creation site
    /// is remembered for the unhandled-error log.
    #[track_caller]
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (Deferred<T, E>, Trigger<T, E>) {
        let chain = Chain::new::<T>(Location::caller());
        (
            Deferred {
                chain: ChainRef(chain.clone()),
                _t: PhantomData,
            },
            Trigger {
                chain: ChainRef(chain),
                _t: PhantomData,
            },
        )
    }

    /// Like [`new`](Self::new), with a canceller: [`cancel`](Self::cancel) on
    /// the unfired Deferred calls it once with the trigger. If it does not fire
    /// the Deferred itself, the Deferred fails with [`Cancelled`].
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use torsion::defer::{Cancelled, Deferred, Failure};
    ///
    /// let stopped = Rc::new(Cell::new(false));
    /// let s = stopped.clone();
    /// let (mut d, _t) = Deferred::<(), Failure>::with_canceller(move |_t| s.set(true));
    /// d.cancel();
    /// assert!(stopped.get());
    /// assert!(d.take_result().unwrap().unwrap_err().is::<Cancelled>());
    /// ```
    #[track_caller]
    pub fn with_canceller(
        canceller: impl FnOnce(&Trigger<T, E>) + 'static,
    ) -> (Deferred<T, E>, Trigger<T, E>) {
        let (d, t) = Self::new();
        d.chain.set_canceller(Box::new(move |chain: &Rc<Chain<E>>| {
            canceller(&Trigger::from_chain(chain))
        }));
        (d, t)
    }
}

impl<T: 'static, E: 'static> Deferred<T, E> {
    /// Adds a callback, run with the value when the chain is on the success
    /// path (at once if it already is). Errors pass it by. The callback returns
    /// `Ok(u)`, `Err(e)` (switch to the error path) or a `Deferred<U, E>` (wait
    /// for it).
    pub fn add_callback<R: IntoChain<E>>(
        self,
        f: impl FnOnce(T) -> R + 'static,
    ) -> Deferred<R::Value, E> {
        self.stage(move |c| {
            if c.is_err() {
                // The error passes by, in place.
                Flow::Done
            } else {
                on_value(c, |x: T| f(x).into_next())
            }
        })
    }

    /// Adds an errback, run with the error when the chain is on the error path.
    /// Values pass it by. Returning `Ok(v)` recovers the chain.
    pub fn add_errback<R: IntoChain<E, Value = T>>(
        self,
        f: impl FnOnce(E) -> R + 'static,
    ) -> Deferred<T, E> {
        self.stage(move |c| {
            if c.is_err() {
                on_error(c, |e| f(e).into_next())
            } else {
                // The value passes by, in place.
                Flow::Done
            }
        })
    }

    /// Adds a callback run on either path with the whole result.
    pub fn add_both<R: IntoChain<E>>(
        self,
        f: impl FnOnce(Result<T, E>) -> R + 'static,
    ) -> Deferred<R::Value, E> {
        self.stage(move |c| {
            if c.is_err() {
                on_error(c, |e| f(Err(e)).into_next())
            } else {
                on_value(c, |x: T| f(Ok(x)).into_next())
            }
        })
    }

    /// Adds a callback and an errback as one stage: exactly one of them runs,
    /// and an error returned by `callback` does not reach `errback`.
    pub fn add_callbacks<R: IntoChain<E>>(
        self,
        callback: impl FnOnce(T) -> R + 'static,
        errback: impl FnOnce(E) -> R + 'static,
    ) -> Deferred<R::Value, E> {
        self.stage(move |c| {
            if c.is_err() {
                on_error(c, |e| errback(e).into_next())
            } else {
                on_value(c, |x: T| callback(x).into_next())
            }
        })
    }

    /// Adds a stage. On a settled chain (fired, idle, nothing queued) it runs
    /// at once and is never boxed; otherwise it is queued.
    #[inline]
    fn stage<U>(self, f: impl FnOnce(&Chain<E>) -> Flow<E> + 'static) -> Deferred<U, E> {
        self.chain.add(f);
        Deferred {
            chain: self.chain,
            _t: PhantomData,
        }
    }

    /// Cancels the Deferred (Twisted's `cancel`):
    /// * unfired: its canceller runs once; if that did not fire it, it fails
    ///   with [`Cancelled`]; one later fire by the producer is then swallowed;
    /// * waiting on a Deferred returned by a callback: that one is cancelled;
    /// * fired: nothing happens.
    pub fn cancel(&self)
    where
        E: From<Cancelled>,
    {
        self.chain.cancel(Some(&|| E::from(Cancelled)));
    }

    /// What the Deferred fails with if it is abandoned: when every [`Trigger`]
    /// is dropped before firing it, or when it waits on a Deferred returned by
    /// a callback that is abandoned itself (and has no `or_abandoned` of its
    /// own). Without it, an abandoned Deferred never fires: its callbacks never
    /// run and an `await` on it waits forever. Set on a Deferred that is already
    /// abandoned, it fails it at once. The error flows down the chain like any
    /// other, from where the chain stands. See the [module docs](self#abandoned-deferreds).
    ///
    /// ```
    /// use torsion::defer::{Deferred, Failure};
    ///
    /// let (d, trigger) = Deferred::<u32, Failure>::new();
    /// let mut d = d.or_abandoned(|| Failure::msg("the producer went away"));
    /// drop(trigger);
    /// assert_eq!(d.take_result().unwrap().unwrap_err().to_string(), "the producer went away");
    /// ```
    pub fn or_abandoned(self, err: impl FnOnce() -> E + 'static) -> Self {
        self.chain.set_on_abandon(Box::new(err));
        self
    }

    /// [`or_abandoned`](Self::or_abandoned) with [`Abandoned`] (as
    /// [`cancel`](Self::cancel) fails with [`Cancelled`]).
    ///
    /// ```
    /// use torsion::defer::{Abandoned, Deferred, Failure};
    ///
    /// let (d, trigger) = Deferred::<u32, Failure>::new();
    /// let mut d = d.fail_if_abandoned();
    /// drop(trigger);
    /// assert!(d.take_result().unwrap().unwrap_err().is::<Abandoned>());
    /// ```
    pub fn fail_if_abandoned(self) -> Self
    where
        E: From<Abandoned>,
    {
        self.or_abandoned(|| E::from(Abandoned))
    }

    /// Pauses the chain: no callback runs until [`unpause`](Self::unpause) has
    /// been called as many times.
    pub fn pause(&self) {
        self.chain.pause();
    }

    /// Undoes one [`pause`](Self::pause); callbacks run at once if the chain has
    /// fired.
    pub fn unpause(&self) {
        self.chain.unpause();
    }

    /// Whether the Deferred has fired (its result may still be waiting on a
    /// nested Deferred or a pause).
    pub fn is_called(&self) -> bool {
        self.chain.is_called()
    }

    /// Whether the final result is there to take.
    pub fn has_result(&self) -> bool {
        self.chain.is_ready()
    }

    /// Takes the final result, if it is there (Twisted's `successResultOf` /
    /// `failureResultOf`). A taken error is handled: it is not logged.
    ///
    /// ```
    /// use torsion::defer::{succeed, Failure};
    ///
    /// let mut d = succeed::<_, Failure>(1).add_callback(|n| Ok(n + 1));
    /// assert_eq!(d.take_result().unwrap().unwrap(), 2);
    /// assert!(d.take_result().is_none()); // taken
    /// ```
    pub fn take_result(&mut self) -> Option<Result<T, E>> {
        self.take_typed()
    }

    /// Where the Deferred was created.
    pub fn creator(&self) -> &'static Location<'static> {
        self.chain.creator.get()
    }

    pub(crate) fn cancel_handle(&self) -> CancelHandle<E> {
        CancelHandle {
            chain: Rc::downgrade(&self.chain),
        }
    }

    /// Changes the error type. The result is a new chain that waits on this
    /// one; cancelling it runs this one's canceller and fails the new chain
    /// with [`Cancelled`].
    #[track_caller]
    pub fn map_err<E2: fmt::Debug + 'static>(
        self,
        f: impl FnOnce(E) -> E2 + 'static,
    ) -> Deferred<T, E2> {
        let inner = self.cancel_handle();
        let (d, t) = Deferred::<T, E2>::new();
        d.chain
            .set_canceller(Box::new(move |_| inner.cancel_quiet()));
        let d2 = self.add_both(move |r| {
            let _ = t.fire(r.map_err(f));
            Ok(())
        });
        drop(d2);
        d
    }
}

impl<E: 'static> CancelHandle<E> {
    pub(crate) fn cancel(&self)
    where
        E: From<Cancelled>,
    {
        if let Some(c) = self.chain.upgrade() {
            c.cancel(Some(&|| E::from(Cancelled)));
        }
    }

    /// Runs the canceller without failing the chain.
    pub(crate) fn cancel_quiet(&self) {
        if let Some(c) = self.chain.upgrade() {
            c.cancel(None);
        }
    }
}

impl<T: 'static, E: 'static> Trigger<T, E> {
    /// Fires the Deferred with a value.
    ///
    /// # Errors
    /// [`AlreadyCalled`] if it already fired (one fire after a
    /// [`cancel`](Deferred::cancel) is silently swallowed instead).
    pub fn callback(&self, value: T) -> Result<(), AlreadyCalled> {
        self.fire(Ok(value))
    }

    /// Fires the Deferred with an error.
    ///
    /// # Errors
    /// As [`callback`](Self::callback).
    pub fn errback(&self, error: E) -> Result<(), AlreadyCalled> {
        self.fire(Err(error))
    }

    /// Fires the Deferred with a result.
    ///
    /// # Errors
    /// As [`callback`](Self::callback).
    pub fn fire(&self, result: Result<T, E>) -> Result<(), AlreadyCalled> {
        self.chain.fire(result).map_err(|()| AlreadyCalled)
    }

    /// Whether the Deferred has fired (or was cancelled).
    pub fn is_called(&self) -> bool {
        self.chain.is_called()
    }
}

/// A Deferred that has already fired with `value`.
#[track_caller]
pub fn succeed<T: 'static, E: fmt::Debug + 'static>(value: T) -> Deferred<T, E> {
    let (d, t) = Deferred::new();
    let _ = t.callback(value);
    d
}

/// A Deferred that has already failed with `error`.
#[track_caller]
pub fn fail<T: 'static, E: fmt::Debug + 'static>(error: E) -> Deferred<T, E> {
    let (d, t) = Deferred::new();
    let _ = t.errback(error);
    d
}

/// Calls `f` and makes a Deferred of what it returns: a `Result` becomes a fired
/// Deferred, a `Deferred` passes through (Twisted's `maybeDeferred`).
///
/// ```
/// use torsion::defer::{maybe_deferred, succeed, Failure};
///
/// let mut a = maybe_deferred(|| Ok::<_, Failure>(1));
/// let mut b = maybe_deferred(|| succeed::<_, Failure>(2));
/// assert_eq!(a.take_result().unwrap().unwrap() + b.take_result().unwrap().unwrap(), 3);
/// ```
#[track_caller]
pub fn maybe_deferred<E, R>(f: impl FnOnce() -> R) -> Deferred<R::Value, E>
where
    E: fmt::Debug + 'static,
    R: IntoChain<E>,
{
    match f().into_next() {
        Next::Wait(chain) => Deferred {
            chain,
            _t: PhantomData,
        },
        Next::Ready(r) => {
            let (d, t) = Deferred::<R::Value, E>::new();
            let _ = t.fire(r);
            d
        }
    }
}
