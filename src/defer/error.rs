//! The errors of the Deferred machinery, and [`Failure`], a ready-made error
//! type for chains that carry any error.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use crate::error::DisconnectReason;

/// A [`Trigger`](super::Trigger) fired a Deferred that had already fired
/// (Twisted's `AlreadyCalledError`). Returned as a value, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Deferred was already fired")]
pub struct AlreadyCalled;

/// The Deferred was cancelled (Twisted's `CancelledError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Deferred was cancelled")]
pub struct Cancelled;

/// The Deferred was abandoned: every [`Trigger`](super::Trigger) was dropped
/// before firing it, so it never can (Twisted has no equivalent; see
/// [`Deferred::fail_if_abandoned`](super::Deferred::fail_if_abandoned)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Deferred was abandoned: every Trigger was dropped before firing it")]
pub struct Abandoned;

/// The Deferred did not fire within the time given to `add_timeout` (Twisted's
/// `defer.TimeoutError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Deferred timed out")]
pub struct TimedOut;

/// Code run on a worker thread panicked; the message is the panic payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("worker panicked: {0}")]
pub struct Panicked(pub String);

impl Panicked {
    /// Builds the error from a payload caught by `catch_unwind`.
    pub fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        let msg = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "(non-string panic payload)".to_string()
        };
        Panicked(msg)
    }
}

/// With [`DeferredList`](super::DeferredList)'s `fire_on_one_errback`: the first
/// member error and the member's position (Twisted's `FirstError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("member {index} of the list failed: {error:?}")]
pub struct FirstError<E: fmt::Debug> {
    /// Position of the failed member in the list.
    pub index: usize,
    /// The member's error.
    pub error: E,
}

impl<E: fmt::Debug + From<Cancelled>> From<Cancelled> for FirstError<E> {
    fn from(c: Cancelled) -> Self {
        FirstError {
            index: 0,
            error: E::from(c),
        }
    }
}

/// With [`race`](super::race): every member failed; their errors in member
/// order (Twisted's `FailureGroup`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("every member of the race failed: {0:?}")]
pub struct FailureGroup<E: fmt::Debug>(pub Vec<E>);

impl<E: fmt::Debug + From<Cancelled>> From<Cancelled> for FailureGroup<E> {
    fn from(c: Cancelled) -> Self {
        FailureGroup(vec![E::from(c)])
    }
}

impl From<Cancelled> for DisconnectReason {
    fn from(_: Cancelled) -> Self {
        DisconnectReason::Cancelled
    }
}

impl From<TimedOut> for DisconnectReason {
    fn from(_: TimedOut) -> Self {
        DisconnectReason::TimedOut
    }
}

impl From<Cancelled> for io::Error {
    fn from(c: Cancelled) -> Self {
        io::Error::new(io::ErrorKind::Interrupted, c)
    }
}

impl From<TimedOut> for io::Error {
    fn from(t: TimedOut) -> Self {
        io::Error::new(io::ErrorKind::TimedOut, t)
    }
}

impl From<Panicked> for io::Error {
    fn from(p: Panicked) -> Self {
        io::Error::other(p)
    }
}

/// Any error, boxed: the default error type of a
/// [`Deferred`](super::Deferred), like Twisted's `Failure`.
///
/// Every `std::error::Error + Send + Sync` converts into it with `?` or
/// `.into()`, so one chain can carry the errors of several libraries; check what
/// it holds with [`is`](Self::is) (Twisted's `check`) and
/// [`downcast_ref`](Self::downcast_ref). It deliberately does not implement
/// `std::error::Error` itself (that would clash with the blanket `From`); use
/// [`as_error`](Self::as_error) or [`into_inner`](Self::into_inner).
///
/// ```
/// use torsion::defer::{Cancelled, Failure};
///
/// let f = Failure::from(Cancelled);
/// assert!(f.is::<Cancelled>());
/// assert!(!f.is::<std::io::Error>());
/// assert_eq!(f.to_string(), "the Deferred was cancelled");
/// ```
pub struct Failure(Box<dyn StdError + Send + Sync + 'static>);

impl Failure {
    /// Wraps an error.
    pub fn new(e: impl StdError + Send + Sync + 'static) -> Self {
        Failure(Box::new(e))
    }

    /// A failure with only a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Failure(message.into().into())
    }

    /// Whether the error is an `X`.
    pub fn is<X: StdError + 'static>(&self) -> bool {
        self.0.is::<X>()
    }

    /// The error as an `X`, if it is one.
    pub fn downcast_ref<X: StdError + 'static>(&self) -> Option<&X> {
        self.0.downcast_ref::<X>()
    }

    /// The error, borrowed.
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }

    /// The boxed error.
    pub fn into_inner(self) -> Box<dyn StdError + Send + Sync + 'static> {
        self.0
    }
}

impl<X: StdError + Send + Sync + 'static> From<X> for Failure {
    fn from(e: X) -> Self {
        Failure(Box::new(e))
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Failure({:?})", self.0)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
