//! Waiting for several Deferreds: [`DeferredList`], [`gather_results`] and
//! [`race`].

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use super::{CancelHandle, Cancelled, Deferred, FailureGroup, FirstError, Trigger};

/// What a [`DeferredList`] fires with.
#[derive(Debug, PartialEq, Eq)]
pub enum ListResult<T, E> {
    /// Every member's result, in member order (the default mode; also an empty
    /// list in every mode).
    All(Vec<Result<T, E>>),
    /// With `fire_on_one_callback`: the first value and its member's position.
    First {
        /// Position of the member in the list.
        index: usize,
        /// Its value.
        value: T,
    },
}

/// Waits for a list of Deferreds (Twisted's `DeferredList`).
///
/// By default it fires once every member has fired, with
/// [`ListResult::All`]: each member's `Result`, in member order. Options:
/// * `fire_on_one_callback`: fire with the first value
///   ([`ListResult::First`]);
/// * `fire_on_one_errback`: fail with the first error, as [`FirstError`];
/// * `consume_errors`: member errors that arrive after the list fired are
///   dropped; without it they are logged as unhandled (errors the list hands on
///   are never logged).
///
/// An empty list fires at once with `All(vec![])`, in every mode. Cancelling the
/// list cancels the members that have not fired.
///
/// ```
/// use torsion::defer::{fail, succeed, DeferredList, Failure, ListResult};
///
/// let ds = vec![succeed(1), fail(Failure::msg("no")), succeed(3)];
/// let mut d = DeferredList::new(ds).into_deferred();
/// let ListResult::All(rs) = d.take_result().unwrap().unwrap() else { unreachable!() };
/// assert_eq!(rs.iter().map(|r| r.is_ok()).collect::<Vec<_>>(), [true, false, true]);
/// ```
pub struct DeferredList<T, E> {
    members: Vec<Deferred<T, E>>,
    fire_on_one_callback: bool,
    fire_on_one_errback: bool,
    consume_errors: bool,
}

impl<T, E> fmt::Debug for DeferredList<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredList")
            .field("members", &self.members.len())
            .field("fire_on_one_callback", &self.fire_on_one_callback)
            .field("fire_on_one_errback", &self.fire_on_one_errback)
            .field("consume_errors", &self.consume_errors)
            .finish()
    }
}

struct ListState<T, E: fmt::Debug> {
    results: Vec<Option<Result<T, E>>>,
    left: usize,
    trigger: Option<Trigger<ListResult<T, E>, FirstError<E>>>,
}

impl<T: 'static, E: fmt::Debug + From<Cancelled> + 'static> DeferredList<T, E> {
    /// A list of `members`, default options.
    pub fn new(members: impl IntoIterator<Item = Deferred<T, E>>) -> Self {
        DeferredList {
            members: members.into_iter().collect(),
            fire_on_one_callback: false,
            fire_on_one_errback: false,
            consume_errors: false,
        }
    }

    /// Fire with the first member value.
    pub fn fire_on_one_callback(mut self, on: bool) -> Self {
        self.fire_on_one_callback = on;
        self
    }

    /// Fail with the first member error.
    pub fn fire_on_one_errback(mut self, on: bool) -> Self {
        self.fire_on_one_errback = on;
        self
    }

    /// Drop member errors the list does not hand on instead of logging them.
    pub fn consume_errors(mut self, on: bool) -> Self {
        self.consume_errors = on;
        self
    }

    /// The Deferred of the list.
    #[track_caller]
    pub fn into_deferred(self) -> Deferred<ListResult<T, E>, FirstError<E>> {
        let n = self.members.len();
        let handles: Vec<CancelHandle<E>> =
            self.members.iter().map(|d| d.cancel_handle()).collect();
        let (d, trigger) = Deferred::with_canceller(move |_| {
            for h in &handles {
                h.cancel();
            }
        });
        if n == 0 {
            let _ = trigger.callback(ListResult::All(Vec::new()));
            return d;
        }
        let state = Rc::new(RefCell::new(ListState {
            results: (0..n).map(|_| None).collect(),
            left: n,
            trigger: Some(trigger),
        }));
        let (on_cb, on_eb, consume) = (
            self.fire_on_one_callback,
            self.fire_on_one_errback,
            self.consume_errors,
        );
        for (index, member) in self.members.into_iter().enumerate() {
            let state = state.clone();
            let rest = member.add_both(move |r: Result<T, E>| {
                let mut st = state.borrow_mut();
                let Some(trigger) = st.trigger.clone() else {
                    // Fired already: this result has nowhere to go.
                    return match r {
                        Err(e) if !consume => Err(e),
                        _ => Ok(()),
                    };
                };
                st.left -= 1;
                let fire = match r {
                    Ok(value) if on_cb => Some(Ok(ListResult::First { index, value })),
                    Err(error) if on_eb => Some(Err(FirstError { index, error })),
                    r => {
                        st.results[index] = Some(r);
                        (st.left == 0).then(|| {
                            let all = st.results.drain(..).map(|r| r.expect("all fired"));
                            Ok(ListResult::All(all.collect()))
                        })
                    }
                };
                if let Some(out) = fire {
                    st.trigger = None;
                    st.results.clear();
                    drop(st);
                    let _ = trigger.fire(out);
                }
                Ok(())
            });
            drop(rest);
        }
        d
    }
}

/// Waits for every Deferred and fires with their values in order, or fails with
/// the first error itself (not a wrapper) as soon as one fails (Twisted's
/// `gatherResults`). Errors of other members after that are logged as
/// unhandled. An empty list fires at once with `vec![]`. Cancelling cancels the
/// members that have not fired.
///
/// ```
/// use torsion::defer::{gather_results, succeed, Failure};
///
/// let mut d = gather_results(vec![succeed::<_, Failure>(1), succeed(2)]);
/// assert_eq!(d.take_result().unwrap().unwrap(), vec![1, 2]);
/// ```
#[track_caller]
pub fn gather_results<T: 'static, E: fmt::Debug + From<Cancelled> + 'static>(
    members: impl IntoIterator<Item = Deferred<T, E>>,
) -> Deferred<Vec<T>, E> {
    let list = DeferredList::new(members)
        .fire_on_one_errback(true)
        .into_deferred();
    let handle = list.cancel_handle();
    let (d, trigger) = Deferred::with_canceller(move |_| handle.cancel());
    let rest = list.add_both(move |r| {
        let out = match r {
            Ok(ListResult::All(rs)) => Ok(rs
                .into_iter()
                .map(|r| r.unwrap_or_else(|_| unreachable!("errors fire the list early")))
                .collect()),
            Ok(ListResult::First { .. }) => unreachable!("fire_on_one_callback is off"),
            Err(first) => Err(first.error),
        };
        let _ = trigger.fire(out);
        Ok(())
    });
    drop(rest);
    d
}

/// Fires with the first value and its member's position, and cancels the other
/// members (Twisted's `race`). If every member fails, fails with all their
/// errors in member order ([`FailureGroup`]); an empty race fails at once.
///
/// ```
/// use torsion::defer::{race, Deferred, Failure};
///
/// let (a, _ta) = Deferred::<u32, Failure>::new();
/// let (b, tb) = Deferred::<u32, Failure>::new();
/// let mut d = race(vec![a, b]);
/// tb.callback(7).unwrap();
/// assert_eq!(d.take_result().unwrap().unwrap(), (1, 7)); // `a` was cancelled
/// ```
#[track_caller]
pub fn race<T: 'static, E: fmt::Debug + From<Cancelled> + 'static>(
    members: impl IntoIterator<Item = Deferred<T, E>>,
) -> Deferred<(usize, T), FailureGroup<E>> {
    let members: Vec<Deferred<T, E>> = members.into_iter().collect();
    let n = members.len();
    let handles: Rc<Vec<CancelHandle<E>>> =
        Rc::new(members.iter().map(|d| d.cancel_handle()).collect());
    let hs = handles.clone();
    let (d, trigger) = Deferred::with_canceller(move |_| {
        for h in hs.iter() {
            h.cancel();
        }
    });
    if n == 0 {
        let _ = trigger.errback(FailureGroup(Vec::new()));
        return d;
    }
    struct Race<T, E: fmt::Debug> {
        errors: Vec<Option<E>>,
        left: usize,
        trigger: Option<Trigger<(usize, T), FailureGroup<E>>>,
    }
    let state = Rc::new(RefCell::new(Race {
        errors: (0..n).map(|_| None).collect(),
        left: n,
        trigger: Some(trigger),
    }));
    for (index, member) in members.into_iter().enumerate() {
        let state = state.clone();
        let handles = handles.clone();
        let rest = member.add_both(move |r: Result<T, E>| {
            let mut st = state.borrow_mut();
            let Some(trigger) = st.trigger.clone() else {
                // The race is over; losers (usually cancelled) are dropped.
                return Ok(());
            };
            st.left -= 1;
            match r {
                Ok(value) => {
                    st.trigger = None;
                    st.errors.clear();
                    drop(st);
                    let _ = trigger.callback((index, value));
                    for (i, h) in handles.iter().enumerate() {
                        if i != index {
                            h.cancel();
                        }
                    }
                }
                Err(e) => {
                    st.errors[index] = Some(e);
                    if st.left == 0 {
                        st.trigger = None;
                        let errors = st.errors.drain(..).map(|e| e.expect("all failed"));
                        let group = FailureGroup(errors.collect());
                        drop(st);
                        let _ = trigger.errback(group);
                    }
                }
            }
            Ok::<(), E>(())
        });
        drop(rest);
    }
    d
}
