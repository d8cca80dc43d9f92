//! The untyped engine under [`Deferred`](super::Deferred): one chain of stages,
//! run iteratively so that nested chains never grow the Rust stack.
//!
//! A stage may change the value's type, so values travel type-erased; the
//! typed handles (`Deferred<T, E>`, `Trigger<T, E>`) guarantee that every value
//! has the type the next stage expects. The error type `E` is the same for the
//! whole chain and is kept unboxed.
//!
//! Cost (the hot case is "new, a few callbacks, fire, take"): one allocation
//! per chain. The chain's `Rc` allocation ends in a typed value slot, an
//! `Option<T>` for the trigger's `T` (the struct's last field is unsized:
//! `Rc<Chain<E, Option<T>>>` coerces to `Rc<Chain<E, dyn Slot>>`, safe Rust),
//! and a value whose type matches the slot travels in it; only a value of
//! another type is boxed, and a box is reused while stages keep its type. The
//! first [`INLINE`] stages live inside the chain (no queue allocation), and a
//! callback added to a fired, idle chain runs at once without being boxed (see
//! `Deferred::stage`). The creation and pending counters are two thread-local
//! `Cell`s; the trigger count (for abandoned chains) is a `Cell` checked when a
//! `Trigger` drops.

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
#[inline]
fn count_created() {
    COUNTERS.with(|c| {
        c.created.set(c.created.get().wrapping_add(1));
        c.pending.set(c.pending.get().wrapping_add(1));
    });
}

/// A chain stopped being pending (fired, abandoned, or dropped unfired).
#[inline]
fn count_settled() {
    COUNTERS.with(|c| c.pending.set(c.pending.get().saturating_sub(1)));
}

fn count_abandoned() {
    COUNTERS.with(|c| c.abandoned.set(c.abandoned.get().wrapping_add(1)));
}

/// The typed value slot at the end of a chain's allocation: an `Option<T>`
/// seen through this trait.
#[doc(hidden)]
pub trait Slot: Any {
    /// Moves the value out into a box (holding an `Option<T>`).
    fn take_boxed(&mut self) -> Box<dyn Any>;
    /// Moves the value into `to` if that is an empty slot of the same type.
    fn move_into(&mut self, to: &mut dyn Slot) -> bool;
}

impl<T: 'static> Slot for Option<T> {
    fn take_boxed(&mut self) -> Box<dyn Any> {
        Box::new(self.take())
    }

    fn move_into(&mut self, to: &mut dyn Slot) -> bool {
        match (to as &mut dyn Any).downcast_mut::<Option<T>>() {
            Some(o) if o.is_none() => {
                *o = self.take();
                true
            }
            _ => false,
        }
    }
}

/// A value in flight: in the chain's own slot, or boxed (a box holding an
/// `Option<T>`, `Some` while in flight) when its type is not the slot's.
#[doc(hidden)]
pub enum Val {
    /// In the slot of the chain that holds this `Val`.
    Slot,
    /// In a box of its own.
    Boxed(Box<dyn Any>),
}

/// A result in flight.
pub type Outcome<E> = Result<Val, E>;

/// The slot of a chain, as stages see it.
pub type SlotRef<'a> = &'a RefCell<dyn Slot>;

/// Puts a value into the slot if the slot holds its type (and is empty),
/// else into a new box.
#[inline]
pub(crate) fn put_val<T: 'static>(v: T, slot: SlotRef<'_>) -> Val {
    {
        let mut s = slot.borrow_mut();
        if let Some(o) = (&mut *s as &mut dyn Any).downcast_mut::<Option<T>>() {
            if o.is_none() {
                *o = Some(v);
                return Val::Slot;
            }
        }
    }
    Val::Boxed(Box::new(Some(v)))
}

/// Takes the value out of the slot or its box.
#[inline]
pub(crate) fn take_val<T: 'static>(v: Val, slot: SlotRef<'_>) -> T {
    match v {
        Val::Slot => (&mut *slot.borrow_mut() as &mut dyn Any)
            .downcast_mut::<Option<T>>()
            .and_then(Option::take),
        Val::Boxed(mut b) => b.downcast_mut::<Option<T>>().and_then(Option::take),
    }
    .expect(WRONG_TYPE)
}

/// Moves a value from the chain with slot `from` to the chain with slot `to`
/// (a nested chain handing its result on).
fn move_val(v: Val, from: SlotRef<'_>, to: SlotRef<'_>) -> Val {
    match v {
        Val::Slot => {
            let mut f = from.borrow_mut();
            if f.move_into(&mut *to.borrow_mut()) {
                Val::Slot
            } else {
                Val::Boxed(f.take_boxed())
            }
        }
        boxed => boxed,
    }
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
    /// The untyped step: a value goes into the slot or a box.
    #[inline]
    pub(crate) fn into_step(self, slot: SlotRef<'_>) -> Step<E> {
        match self {
            Next::Ready(Ok(u)) => Step::Ready(Ok(put_val(u, slot))),
            Next::Ready(Err(e)) => Step::Ready(Err(e)),
            Next::Wait(c) => Step::Wait(c),
        }
    }
}

/// Calls `f` with the value in `v`. The output goes into the chain's slot
/// when it has the slot's type, else back into the input's box when it has
/// the input's type, else into a new box (the type checks on a known box are
/// resolved at compile time).
#[inline]
pub(crate) fn call_with<T: 'static, U: 'static, E>(
    v: Val,
    slot: SlotRef<'_>,
    f: impl FnOnce(T) -> Next<U, E>,
) -> Step<E> {
    match v {
        Val::Slot => {
            // The slot stays borrowed while the callback runs: nothing else
            // reaches a running chain's value (`take` waits for the run to
            // end, and a chain only receives a nested result while waiting),
            // so this is one type check per stage, and an output of the same
            // type goes back in place (that check is resolved at compile time).
            let mut guard = slot.borrow_mut();
            let inslot = (&mut *guard as &mut dyn Any)
                .downcast_mut::<Option<T>>()
                .expect(WRONG_TYPE);
            let x = inslot.take().expect(WRONG_TYPE);
            match f(x) {
                Next::Ready(Ok(u)) => {
                    if let Some(same) = (inslot as &mut dyn Any).downcast_mut::<Option<U>>() {
                        *same = Some(u);
                        return Step::Ready(Ok(Val::Slot));
                    }
                    Step::Ready(Ok(Val::Boxed(Box::new(Some(u)))))
                }
                Next::Ready(Err(e)) => Step::Ready(Err(e)),
                Next::Wait(c) => Step::Wait(c),
            }
        }
        Val::Boxed(mut b) => {
            let inbox = b.downcast_mut::<Option<T>>().expect(WRONG_TYPE);
            let x = inbox.take().expect(WRONG_TYPE);
            match f(x) {
                Next::Ready(Ok(u)) => {
                    if let Some(same) = (inbox as &mut dyn Any).downcast_mut::<Option<U>>() {
                        *same = Some(u);
                        return Step::Ready(Ok(Val::Boxed(b)));
                    }
                    Step::Ready(Ok(put_val(u, slot)))
                }
                Next::Ready(Err(e)) => Step::Ready(Err(e)),
                Next::Wait(c) => Step::Wait(c),
            }
        }
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

pub(crate) type StageFn<E> = Box<dyn FnOnce(Outcome<E>, SlotRef<'_>) -> Step<E>>;

pub(crate) type OnAbandon<E> = Box<dyn FnOnce() -> E>;

pub(crate) type Canceller<E> = Box<dyn FnOnce(&Rc<Chain<E>>)>;

/// How many stages a chain holds without allocating a queue.
pub(crate) const INLINE: usize = 4;

/// A FIFO of stages: the first [`INLINE`] inside the chain, the rest in a
/// queue. Once the queue is used, new stages go behind it, so order is kept.
/// The queue is boxed (and made on first use): a chain that never spills
/// carries, moves and drops one pointer for it.
struct Stages<E> {
    inline: [Option<StageFn<E>>; INLINE],
    head: u8,
    len: u8,
    // Boxed on purpose: an empty `VecDeque` is four words to initialise,
    // move and drop in every chain; the box is one, and rarely made.
    #[allow(clippy::box_collection)]
    spill: Option<Box<VecDeque<StageFn<E>>>>,
}

impl<E> Stages<E> {
    fn new() -> Self {
        Stages {
            inline: [None, None, None, None],
            head: 0,
            len: 0,
            spill: None,
        }
    }

    #[inline(always)]
    fn spill_is_empty(&self) -> bool {
        self.spill.as_ref().is_none_or(|q| q.is_empty())
    }

    #[inline(always)]
    fn push(&mut self, f: StageFn<E>) {
        let end = usize::from(self.head + self.len);
        if end < INLINE && self.spill_is_empty() {
            self.inline[end] = Some(f);
            self.len += 1;
        } else {
            self.spill.get_or_insert_with(Box::default).push_back(f);
        }
    }

    #[inline]
    fn pop(&mut self) -> Option<StageFn<E>> {
        if self.len == 0 {
            return self.spill.as_mut().and_then(|q| q.pop_front());
        }
        let f = self.inline[usize::from(self.head)].take();
        self.len -= 1;
        self.head = if self.len == 0 { 0 } else { self.head + 1 };
        f
    }

    fn len(&self) -> usize {
        usize::from(self.len) + self.spill.as_ref().map_or(0, |q| q.len())
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.len == 0 && self.spill_is_empty()
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
    /// Abandoned and stuck: every trigger dropped before firing (or, for a
    /// fired chain, the inner chain it waits on was abandoned), and no
    /// `on_abandon` was there to fail it. Not counted as pending any more.
    abandoned: bool,
    /// What to fail with if abandoned (`Deferred::or_abandoned`).
    on_abandon: Option<OnAbandon<E>>,
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
/// inner chain it waits on. `V` is the value slot, `Option<T>` when made and
/// `dyn Slot` everywhere else.
#[doc(hidden)]
pub struct Chain<E, V: ?Sized = dyn Slot> {
    pub(crate) st: RefCell<State<E>>,
    /// Live `Trigger`s (a `Cell`, so dropping one never borrows the state).
    pub(crate) triggers: Cell<u32>,
    creator: &'static Location<'static>,
    log: fn(&E, &'static Location<'static>),
    /// Run when the last trigger drops (a function pointer, so `Trigger`'s
    /// `Drop` needs no bounds).
    pub(crate) last_trigger: fn(&Rc<Chain<E>>),
    /// The typed value slot (last: it is the unsized part).
    pub(crate) slot: RefCell<V>,
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
                .field("abandoned", &s.abandoned)
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
    /// A new unfired chain for values of type `T`, with one trigger.
    #[inline]
    pub(crate) fn new<T: 'static>(creator: &'static Location<'static>) -> Rc<Self> {
        count_created();
        let chain: Rc<Chain<E, Option<T>>> = Rc::new(Chain {
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
                abandoned: false,
                on_abandon: None,
            }),
            triggers: Cell::new(1),
            creator,
            log: log_unhandled::<E>,
            last_trigger: Chain::<E>::last_trigger_dropped,
            slot: RefCell::new(None),
        });
        chain
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

    /// Fires the chain with a typed result. `Err(())` when it already fired
    /// (and no cancel asked for one fire to be swallowed).
    #[inline]
    pub(crate) fn fire<T: 'static>(self: &Rc<Self>, r: Result<T, E>) -> Result<(), ()> {
        self.fire_with(move |slot| r.map(|v| put_val(v, slot)))
    }

    /// Fires the chain with what `make` returns (called only if it fires).
    #[inline]
    pub(crate) fn fire_with(
        self: &Rc<Self>,
        make: impl FnOnce(SlotRef<'_>) -> Outcome<E>,
    ) -> Result<(), ()> {
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
            if s.abandoned {
                // Already not counted as pending.
                s.abandoned = false;
            } else {
                count_settled();
            }
            s.canceller = None;
            s.result = Some(make(&self.slot));
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
    pub(crate) fn add(
        self: &Rc<Self>,
        f: impl for<'a> FnOnce(Outcome<E>, SlotRef<'a>) -> Step<E> + 'static,
    ) {
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
                let step = f(input, &self.slot);
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
                    let _ = cur.fire_with(|_| Err(err()));
                }
                cur.st.borrow_mut().suppress = true;
                return;
            }
            let Some(inner) = s.waiting.as_ref().and_then(Weak::upgrade) else {
                // Stuck on an abandoned inner chain: cancelling fails it.
                if let (true, Some(err)) = (s.abandoned, err) {
                    drop(s);
                    cur.resume_with(Err(err()));
                }
                return;
            };
            drop(s);
            cur = inner;
        }
    }

    /// The last `Trigger` was dropped. An unfired chain is abandoned: it can
    /// never fire.
    #[cold]
    #[inline(never)]
    pub(crate) fn last_trigger_dropped(self: &Rc<Self>) {
        let unfired = self
            .st
            .try_borrow()
            .is_ok_and(|s| !s.called && !s.abandoned);
        if unfired {
            self.abandon();
        }
    }

    /// Abandons this chain (unfired, no trigger left) and, when it has no
    /// `on_abandon` to fail with, whatever waits on it, up the nesting.
    #[cold]
    #[inline(never)]
    fn abandon(self: &Rc<Self>) {
        let mut cur = self.clone();
        loop {
            let Ok(mut s) = cur.st.try_borrow_mut() else {
                return;
            };
            if s.abandoned {
                return;
            }
            count_abandoned();
            let unfired = !s.called;
            if let Some(f) = s.on_abandon.take() {
                drop(s);
                let e = f();
                if unfired {
                    let _ = cur.fire_with(|_| Err(e));
                } else {
                    cur.resume_with(Err(e));
                }
                return;
            }
            s.abandoned = true;
            if unfired {
                count_settled();
            }
            tracing::debug!(
                created_at = %cur.creator,
                "Deferred abandoned: it can never fire (every Trigger dropped, or it waits on such a Deferred)"
            );
            // Whatever waits on this chain waits forever too.
            let Some(outer) = s.outer.take() else {
                return;
            };
            drop(s);
            cur = outer;
        }
    }

    /// Sets what an abandoned chain fails with; used at once if it already is.
    pub(crate) fn set_on_abandon(self: &Rc<Self>, f: OnAbandon<E>) {
        let mut s = self.st.borrow_mut();
        if !s.abandoned {
            s.on_abandon = Some(f);
            return;
        }
        let unfired = !s.called;
        drop(s);
        let e = f();
        if unfired {
            let _ = self.fire_with(|_| Err(e));
        } else {
            self.resume_with(Err(e));
        }
    }

    /// Goes on, with `r`, a fired chain stuck on an abandoned inner one.
    fn resume_with(self: &Rc<Self>, r: Outcome<E>) {
        {
            let mut s = self.st.borrow_mut();
            s.abandoned = false;
            s.waiting = None;
            s.result = Some(r);
        }
        run(self);
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
        s.result = i
            .result
            .take()
            .map(|r| r.map(|v| move_val(v, &inner.slot, &current.slot)));
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
    if let Some(mut f) = s.stages.pop() {
        let Some(mut input) = s.result.take() else {
            // Only after a stage panicked: nothing to pass on.
            return None;
        };
        s.running = true;
        loop {
            drop(s);
            let step = {
                let guard = Running(current);
                let step = f(input, &current.slot);
                std::mem::forget(guard);
                step
            };
            s = current.st.borrow_mut();
            match step {
                // The common case: a result handed straight to the next
                // stage, not stored in between (nothing can look at it: the
                // chain is `running`).
                Step::Ready(r) => {
                    if s.paused == 0 {
                        if let Some(next) = s.stages.pop() {
                            (f, input) = (next, r);
                            continue;
                        }
                    }
                    s.running = false;
                    s.result = Some(r);
                }
                wait => {
                    s.running = false;
                    if !settle(current, &mut s, wait) {
                        return None;
                    }
                    // The inner chain had its result already.
                    if s.paused == 0 {
                        if let Some(next) = s.stages.pop() {
                            let r = s.result.take()?;
                            (f, input) = (next, r);
                            s.running = true;
                            continue;
                        }
                    }
                }
            }
            if s.paused > 0 {
                // Paused by a stage: `unpause` goes on from here.
                return None;
            }
            break;
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
        let r = r.map(|r| r.map(|v| move_val(v, &current.slot, &outer.slot)));
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

impl<E, V: ?Sized> Drop for Chain<E, V> {
    fn drop(&mut self) {
        let s = self.st.get_mut();
        if !s.called && !s.abandoned {
            count_settled();
        }
        if let Some(Err(e)) = &s.result {
            (self.log)(e, self.creator);
        }
        // Long nestings (inner handing on to outer handing on to ...) would
        // drop recursively; unlink them here one at a time instead.
        let mut next = s.outer.take();
        while let Some(c) = next {
            // The last strong handle: take its link before it drops.
            next = if Rc::strong_count(&c) == 1 {
                c.st.try_borrow_mut().ok().and_then(|mut o| o.outer.take())
            } else {
                None
            };
        }
    }
}
