//! The untyped engine under [`Deferred`](super::Deferred): one chain of stages,
//! run iteratively so that nested chains never grow the Rust stack.
//!
//! Values travel as `Box<dyn Any>` so a stage may change the value's type; the
//! typed handles (`Deferred<T, E>`, `Trigger<T, E>`) guarantee that every box
//! holds the type the next stage expects. The error type `E` is the same for the
//! whole chain and is kept unboxed.
//!
//! Cost (the hot case is "new, a few callbacks, fire, take"): a box holds an
//! `Option<T>` slot, so a stage takes the value out and, when its output has the
//! same type, puts the output back into the same box: one value allocation per
//! chain, not one per stage. The first [`INLINE`] stages live inside the chain
//! (no queue allocation), and a callback added to a fired, idle chain runs at
//! once without being boxed (see `Deferred::stage`). What is left per chain is
//! the shared `Rc` and the one value box.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::task::Waker;

/// This thread's Deferred counters (chains are `!Send`, so a chain is
/// created, fired and dropped on one thread). A `const` thread-local of plain
/// `Cell`s: no lazy initialisation and no destructor, so each update is a
/// load and a store at a fixed offset from the thread pointer.
pub(crate) struct Counters {
    pub(crate) created: Cell<u64>,
    pub(crate) pending: Cell<u64>,
}

thread_local! {
    pub(crate) static COUNTERS: Counters = const {
        Counters {
            created: Cell::new(0),
            pending: Cell::new(0),
        }
    };
}

/// A chain was created (unfired).
#[inline]
fn count_created() {
    COUNTERS.with(|c| {
        c.created.set(c.created.get().wrapping_add(1));
        c.pending.set(c.pending.get().wrapping_add(1));
    });
}

/// A chain stopped being pending (fired, or dropped unfired).
#[inline]
fn count_settled() {
    COUNTERS.with(|c| c.pending.set(c.pending.get().saturating_sub(1)));
}

/// A value in flight: a box holding an `Option<T>` (`Some` while in flight).
pub type Val = Box<dyn Any>;
/// A result in flight.
pub type Outcome<E> = Result<Val, E>;

/// Boxes a value for the chain.
pub(crate) fn boxed<T: 'static>(v: T) -> Val {
    Box::new(Some(v))
}

/// Takes the value out of its box, leaving the box (empty) for reuse.
pub(crate) fn take_val<T: 'static>(v: &mut Val) -> T {
    v.downcast_mut::<Option<T>>()
        .and_then(Option::take)
        .expect(WRONG_TYPE)
}

const WRONG_TYPE: &str = "torsion bug: a Deferred stage received a value of the wrong type";

/// What a callback returned, typed: a result, or a chain to wait for.
#[doc(hidden)]
#[derive(Debug)]
pub enum Next<U, E> {
    /// Go on with this result.
    Ready(Result<U, E>),
    /// Wait for this chain and take its result.
    Wait(Rc<Chain<E>>),
}

impl<U: 'static, E> Next<U, E> {
    /// The untyped step, boxing a value.
    #[inline]
    pub(crate) fn into_step(self) -> Step<E> {
        match self {
            Next::Ready(r) => Step::Ready(r.map(boxed)),
            Next::Wait(c) => Step::Wait(c),
        }
    }
}

/// Calls `f` with the value in `v`; a value of the same type goes back into
/// the same box (the type check on the output is resolved at compile time).
#[inline]
pub(crate) fn call_with<T: 'static, U: 'static, E>(
    mut v: Val,
    f: impl FnOnce(T) -> Next<U, E>,
) -> Step<E> {
    let slot = v.downcast_mut::<Option<T>>().expect(WRONG_TYPE);
    let x = slot.take().expect(WRONG_TYPE);
    match f(x) {
        Next::Ready(Ok(u)) => {
            if let Some(same) = (slot as &mut dyn Any).downcast_mut::<Option<U>>() {
                *same = Some(u);
                return Step::Ready(Ok(v));
            }
            Step::Ready(Ok(boxed(u)))
        }
        Next::Ready(Err(e)) => Step::Ready(Err(e)),
        Next::Wait(c) => Step::Wait(c),
    }
}

/// What a stage hands on: a result, or another chain to wait for.
#[doc(hidden)]
pub enum Step<E> {
    /// Go on with this result.
    Ready(Outcome<E>),
    /// Wait for this chain and take its result.
    Wait(Rc<Chain<E>>),
}

impl<E> fmt::Debug for Step<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Ready(Ok(_)) => f.write_str("Ready(Ok)"),
            Step::Ready(Err(_)) => f.write_str("Ready(Err)"),
            Step::Wait(c) => write!(f, "Wait({c:?})"),
        }
    }
}

pub(crate) type StageFn<E> = Box<dyn FnOnce(Outcome<E>) -> Step<E>>;

pub(crate) type Canceller<E> = Box<dyn FnOnce(&Rc<Chain<E>>)>;

/// How many stages a chain holds without allocating a queue.
pub(crate) const INLINE: usize = 4;

/// A FIFO of stages: the first [`INLINE`] inside the chain, the rest in a
/// queue. Once the queue is used, new stages go behind it, so order is kept.
struct Stages<E> {
    inline: [Option<StageFn<E>>; INLINE],
    head: u8,
    len: u8,
    spill: VecDeque<StageFn<E>>,
}

impl<E> Stages<E> {
    fn new() -> Self {
        Stages {
            inline: [None, None, None, None],
            head: 0,
            len: 0,
            spill: VecDeque::new(),
        }
    }

    #[inline]
    fn push(&mut self, f: StageFn<E>) {
        let end = usize::from(self.head + self.len);
        if end < INLINE && self.spill.is_empty() {
            self.inline[end] = Some(f);
            self.len += 1;
        } else {
            self.spill.push_back(f);
        }
    }

    #[inline]
    fn pop(&mut self) -> Option<StageFn<E>> {
        if self.len == 0 {
            return self.spill.pop_front();
        }
        let f = self.inline[usize::from(self.head)].take();
        self.len -= 1;
        self.head = if self.len == 0 { 0 } else { self.head + 1 };
        f
    }

    fn len(&self) -> usize {
        usize::from(self.len) + self.spill.len()
    }

    fn is_empty(&self) -> bool {
        self.len == 0 && self.spill.is_empty()
    }
}

pub(crate) struct State<E> {
    /// The current result: `None` before firing, while a stage runs, after the
    /// result was taken or handed on.
    pub(crate) result: Option<Outcome<E>>,
    pub(crate) called: bool,
    running: bool,
    /// Swallow the next fire (one fire after a cancel is expected).
    suppress: bool,
    paused: u32,
    /// Set while this chain waits on an inner one.
    waiting: Option<Weak<Chain<E>>>,
    stages: Stages<E>,
    /// The chain waiting on this one: it gets this one's result once every
    /// stage has run. Only a chain whose `Deferred` was returned from a
    /// callback has one, so no stage is ever added after it.
    outer: Option<Rc<Chain<E>>>,
    canceller: Option<Canceller<E>>,
    waker: Option<Waker>,
}

impl<E> State<E> {
    /// Fired, nothing left to run, not paused, not waiting: the result is final.
    fn settled(&self) -> bool {
        self.called
            && !self.running
            && self.paused == 0
            && self.waiting.is_none()
            && self.stages.is_empty()
            && self.result.is_some()
    }
}

/// One chain. Shared (through `Rc`) by its `Deferred`, its `Trigger`s, and an
/// inner chain it waits on.
#[doc(hidden)]
pub struct Chain<E> {
    pub(crate) st: RefCell<State<E>>,
    creator: &'static Location<'static>,
    log: fn(&E, &'static Location<'static>),
}

fn log_unhandled<E: fmt::Debug>(e: &E, at: &'static Location<'static>) {
    tracing::error!(
        error = ?e,
        created_at = %at,
        "unhandled error in Deferred"
    );
}

impl<E> fmt::Debug for Chain<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Deferred");
        d.field("created_at", &format_args!("{}", self.creator));
        match self.st.try_borrow() {
            Ok(s) => d
                .field("called", &s.called)
                .field("paused", &s.paused)
                .field("waiting", &s.waiting.is_some())
                .field("callbacks", &s.stages.len())
                .field(
                    "result",
                    &match &s.result {
                        None => "none",
                        Some(Ok(_)) => "value",
                        Some(Err(_)) => "error",
                    },
                ),
            Err(_) => d.field("running", &true),
        };
        d.finish()
    }
}

impl<E: fmt::Debug + 'static> Chain<E> {
    pub(crate) fn new(creator: &'static Location<'static>) -> Rc<Self> {
        count_created();
        Rc::new(Chain {
            st: RefCell::new(State {
                result: None,
                called: false,
                running: false,
                suppress: false,
                paused: 0,
                waiting: None,
                stages: Stages::new(),
                outer: None,
                canceller: None,
                waker: None,
            }),
            creator,
            log: log_unhandled::<E>,
        })
    }
}

impl<E: 'static> Chain<E> {
    pub(crate) fn creator(&self) -> &'static Location<'static> {
        self.creator
    }

    pub(crate) fn set_canceller(&self, c: Canceller<E>) {
        self.st.borrow_mut().canceller = Some(c);
    }

    pub(crate) fn is_called(&self) -> bool {
        self.st.borrow().called
    }

    /// Fires the chain. `Err(())` when it already fired (and no cancel asked for
    /// one fire to be swallowed).
    pub(crate) fn fire(self: &Rc<Self>, r: Outcome<E>) -> Result<(), ()> {
        {
            let mut s = self.st.borrow_mut();
            if s.called {
                if s.suppress {
                    s.suppress = false;
                    return Ok(());
                }
                return Err(());
            }
            s.called = true;
            count_settled();
            s.canceller = None;
            s.result = Some(r);
            if s.stages.is_empty() && s.outer.is_none() && s.waker.is_none() {
                // Nothing to run or tell: the common "fire, then add" case.
                return Ok(());
            }
        }
        run(self);
        Ok(())
    }

    /// Adds a stage: queued on an unfired chain; run at once, never boxed,
    /// on a settled one (fired, idle, nothing queued); otherwise queued and
    /// the chain run.
    #[inline]
    pub(crate) fn add(self: &Rc<Self>, f: impl FnOnce(Outcome<E>) -> Step<E> + 'static) {
        let mut s = self.st.borrow_mut();
        if !s.called {
            s.stages.push(Box::new(f));
            return;
        }
        if s.settled() {
            if let Some(input) = s.result.take() {
                s.running = true;
                drop(s);
                let guard = Running(self);
                let step = f(input);
                std::mem::forget(guard);
                self.finish_now(step);
                return;
            }
        }
        s.stages.push(Box::new(f));
        drop(s);
        run(self);
    }

    /// Ends a stage run at once by [`add`](Self::add).
    fn finish_now(self: &Rc<Self>, step: Step<E>) {
        let more = {
            let mut s = self.st.borrow_mut();
            s.running = false;
            // Waiting on an inner chain: it resumes this one when done.
            settle(self, &mut s, step)
                && (!s.stages.is_empty() || s.outer.is_some() || s.waker.is_some())
        };
        if more {
            run(self);
        }
    }

    pub(crate) fn pause(&self) {
        self.st.borrow_mut().paused += 1;
    }

    pub(crate) fn unpause(self: &Rc<Self>) {
        let go = {
            let mut s = self.st.borrow_mut();
            s.paused = s.paused.saturating_sub(1);
            s.paused == 0 && s.called
        };
        if go {
            run(self);
        }
    }

    /// Whether the final result is there: fired, nothing left to run, not paused.
    pub(crate) fn is_ready(&self) -> bool {
        let s = self.st.borrow();
        s.result.is_some() && !s.running && s.paused == 0 && s.waiting.is_none()
    }

    /// Takes the final result if it is there.
    pub(crate) fn take(&self) -> Option<Outcome<E>> {
        let mut s = self.st.borrow_mut();
        if s.running || s.paused > 0 || s.waiting.is_some() {
            return None;
        }
        s.result.take()
    }

    pub(crate) fn set_waker(&self, w: &Waker) {
        let mut s = self.st.borrow_mut();
        match &s.waker {
            Some(old) if old.will_wake(w) => {}
            _ => s.waker = Some(w.clone()),
        }
    }

    /// Cancels: an unfired chain runs its canceller, then (if still unfired) is
    /// failed with `err()`, and one later fire is swallowed; a chain waiting on
    /// an inner one cancels that one (iteratively, down the nesting); a fired
    /// chain is left alone. With `err == None` an unfired chain whose canceller
    /// did not fire it is left pending (used when the error type has no
    /// "cancelled" value).
    pub(crate) fn cancel(self: &Rc<Self>, err: Option<&dyn Fn() -> E>) {
        let mut cur = self.clone();
        loop {
            let mut s = cur.st.borrow_mut();
            if !s.called {
                let c = s.canceller.take();
                drop(s);
                if let Some(c) = c {
                    c(&cur);
                }
                if let (false, Some(err)) = (cur.is_called(), err) {
                    let _ = cur.fire(Err(err()));
                }
                cur.st.borrow_mut().suppress = true;
                return;
            }
            let Some(inner) = s.waiting.as_ref().and_then(Weak::upgrade) else {
                return;
            };
            drop(s);
            cur = inner;
        }
    }
}

/// Stores what a stage of `current` returned. `false` when the chain now waits
/// on an inner one (which will hand its result over when it is done).
#[inline]
fn settle<E>(current: &Rc<Chain<E>>, s: &mut State<E>, step: Step<E>) -> bool {
    match step {
        Step::Ready(r) => {
            s.result = Some(r);
            true
        }
        Step::Wait(inner) => wait_on(current, s, inner),
    }
}

/// A stage returned `inner`: take its result if it is final, else link the
/// two so `inner` hands its result over when done.
#[cold]
#[inline(never)]
fn wait_on<E>(current: &Rc<Chain<E>>, s: &mut State<E>, inner: Rc<Chain<E>>) -> bool {
    if Rc::ptr_eq(&inner, current) {
        unreachable!("a Deferred cannot be returned into its own chain");
    }
    let mut i = inner.st.borrow_mut();
    if i.settled() {
        // Already fired: move its result over at once.
        s.result = i.result.take();
        true
    } else {
        i.outer = Some(current.clone());
        s.waiting = Some(Rc::downgrade(&inner));
        false
    }
}

/// Runs the stages of `start` and of every chain its result reaches, without
/// recursion: a chain that waits on an inner one is resumed from this loop when
/// the inner one finishes.
fn run<E: 'static>(start: &Rc<Chain<E>>) {
    let Some(mut current) = run_one(start) else {
        return;
    };
    while let Some(outer) = run_one(&current) {
        current = outer;
    }
}

/// Runs the stages of one chain. When it is done and an outer chain waits on
/// it, hands the result over and returns the outer chain, to be run next.
fn run_one<E: 'static>(current: &Rc<Chain<E>>) -> Option<Rc<Chain<E>>> {
    let mut s = current.st.borrow_mut();
    if s.running || s.paused > 0 || s.waiting.is_some() || !s.called {
        // Not ready to go on; whatever waits on it waits longer. A running
        // chain picks up new stages itself when its callback returns.
        return None;
    }
    while let Some(f) = s.stages.pop() {
        let Some(input) = s.result.take() else {
            // Only after a stage panicked: nothing to pass on.
            return None;
        };
        s.running = true;
        drop(s);
        let step = {
            let guard = Running(current);
            let step = f(input);
            std::mem::forget(guard);
            step
        };
        s = current.st.borrow_mut();
        s.running = false;
        if !settle(current, &mut s, step) {
            return None;
        }
    }
    let outer = s.outer.take();
    let r = if outer.is_some() {
        s.result.take()
    } else {
        None
    };
    let waker = s.waker.take();
    drop(s);
    if let Some(outer) = &outer {
        let mut o = outer.st.borrow_mut();
        o.result = r;
        o.waiting = None;
    }
    if let Some(w) = waker {
        w.wake();
    }
    outer
}

/// Clears the running flag if a stage panics, so the chain is not wedged.
struct Running<'a, E>(&'a Rc<Chain<E>>);

impl<E> Drop for Running<'_, E> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.st.try_borrow_mut() {
            s.running = false;
        }
    }
}

impl<E> Drop for Chain<E> {
    fn drop(&mut self) {
        let s = self.st.get_mut();
        if !s.called {
            count_settled();
        }
        if let Some(Err(e)) = &s.result {
            (self.log)(e, self.creator);
        }
        // Long nestings (inner handing on to outer handing on to ...) would
        // drop recursively; unlink them here one at a time instead.
        let mut next = s.outer.take();
        while let Some(c) = next {
            next = match Rc::try_unwrap(c) {
                Ok(mut outer) => outer.st.get_mut().outer.take(),
                Err(_) => None,
            };
        }
    }
}
