//! This thread's Deferred counters, read by [`stats`].

use std::cell::Cell;

/// This thread's Deferred counters (chains are `!Send`, so a chain is
/// created, fired and dropped on one thread). A `const` thread-local of plain
/// `Cell`s: no lazy initialisation and no destructor, so each update is a
/// load and a store at a fixed offset from the thread pointer.
pub(crate) struct Counters {
    pub(crate) created: Cell<u64>,
    pub(crate) pending: Cell<u64>,
    pub(crate) abandoned: Cell<u64>,
}

thread_local! {
    pub(crate) static COUNTERS: Counters = const {
        Counters {
            created: Cell::new(0),
            pending: Cell::new(0),
            abandoned: Cell::new(0),
        }
    };
}

/// A chain was created (unfired).
#[inline(always)]
pub(crate) fn count_created() {
    COUNTERS.with(|c| {
        c.created.set(c.created.get().wrapping_add(1));
        c.pending.set(c.pending.get().wrapping_add(1));
    });
}

/// A chain stopped being pending (fired, abandoned, or dropped unfired).
#[inline(always)]
pub(crate) fn count_settled() {
    COUNTERS.with(|c| c.pending.set(c.pending.get().saturating_sub(1)));
}

pub(crate) fn count_abandoned() {
    COUNTERS.with(|c| c.abandoned.set(c.abandoned.get().wrapping_add(1)));
}

/// How many Deferreds this thread has created, and how many of them are still
/// pending, read by [`stats`].
///
/// A Deferred is pending from its creation until it fires (a value, an error,
/// or a cancel) or its chain is freed unfired (every handle dropped). The
/// counters are per thread (a Deferred never leaves the thread that made it)
/// and cost a couple of instructions per Deferred.
///
/// ```
/// use torsion::defer::{self, Deferred, DeferredStats, Failure};
///
/// let before: DeferredStats = defer::stats();
/// let (d, trigger) = Deferred::<(), Failure>::new();
/// drop(trigger); // abandoned: it can never fire, so it is not pending
/// let now = defer::stats();
/// assert_eq!(now.abandoned, before.abandoned + 1);
/// assert_eq!(now.pending, before.pending);
/// # drop(d);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeferredStats {
    /// Deferreds created on this thread so far (chains made by
    /// [`Deferred::new`](super::Deferred::new), [`succeed`](super::succeed), [`fail`](super::fail), combinators and the
    /// reactor's helpers alike).
    pub created: u64,
    /// Of those, the ones not fired yet whose chain is still alive (an
    /// abandoned one is not pending: it can never fire).
    pub pending: u64,
    /// Deferreds abandoned on this thread so far: every [`Trigger`](super::Trigger) dropped
    /// before firing (or the Deferred a callback returned was), see
    /// [`Deferred::or_abandoned`](super::Deferred::or_abandoned).
    pub abandoned: u64,
}

/// This thread's Deferred counters (for introspection: a `pending` figure
/// that only grows points at Deferreds nobody fires).
///
/// ```
/// use torsion::defer::{self, Deferred, Failure};
///
/// let before = defer::stats();
/// let (d, trigger) = Deferred::<u32, Failure>::new();
/// let now = defer::stats();
/// assert_eq!(now.created, before.created + 1);
/// assert_eq!(now.pending, before.pending + 1);
/// trigger.callback(1).unwrap();
/// assert_eq!(defer::stats().pending, before.pending);
/// # drop(d);
/// ```
pub fn stats() -> DeferredStats {
    COUNTERS.with(|c| DeferredStats {
        created: c.created.get(),
        pending: c.pending.get(),
        abandoned: c.abandoned.get(),
    })
}
