//! The untyped engine under [`Deferred`](super::Deferred): one chain of stages,
//! run iteratively so that nested chains never grow the Rust stack.
//!
//! A stage may change the value's type, so values travel type-erased; the
//! typed handles (`Deferred<T, E>`, `Trigger<T, E>`) guarantee that every value
//! has the type the next stage expects. The error type `E` is the same for the
//! whole chain and is kept unboxed.
//!
//! Cost (the hot case is "new, a few callbacks, fire, take"): no allocation
//! in the steady state (a freed chain is kept for reuse, see
//! [`pool`](super::pool); otherwise one), no `RefCell` borrow and no move of
//! the result between stages. The chain is a record of `Cell`s (so a stage
//! may reach its own chain while it runs: add to it, pause it, fire or cancel
//! it, without a borrow to conflict with). The current result stays where it
//! is (see [`value`](super::value)): in a typed value slot at the end of the
//! chain's `Rc` allocation, a `Cell<Option<T>>` for the trigger's `T` (the
//! struct's last field is unsized: `Rc<Chain<E, Cell<Option<T>>>>` coerces to
//! `Rc<Chain<E, dyn Slot>>`, safe Rust), in the chain's one box for a value of
//! another type, or in its error cell; each stage reads and replaces it in
//! place. The first [`INLINE`](super::stages::INLINE) stages live inside the
//! chain, and a callback added to a fired, idle chain runs at once without
//! being boxed. The creation and pending counters are thread-local `Cell`s;
//! the trigger count (for abandoned chains) is a `Cell` checked when a
//! `Trigger` drops.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::task::Waker;

use super::pool::{self, ChainRef};
use super::stages::Stages;
#[cfg(test)]
pub(crate) use super::stages::INLINE;
use super::stats::{count_created, count_settled};
use super::value::{status, Slot};

/// Bits of [`Chain::flags`].
pub(crate) mod flag {
    /// Fired (or cancelled): a later fire is an error.
    pub(crate) const CALLED: u8 = 1;
    /// A stage of this chain is running.
    pub(crate) const RUNNING: u8 = 2;
    /// Swallow the next fire (one fire after a cancel is expected).
    pub(crate) const SUPPRESS: u8 = 4;
    /// Abandoned and stuck: every trigger dropped before firing (or, for a
    /// fired chain, the inner chain it waits on was abandoned), and no
    /// `on_abandon` was there to fail it. Not counted as pending any more.
    pub(crate) const ABANDONED: u8 = 8;
    /// Waiting on an inner chain (`waiting` is set).
    pub(crate) const WAITING: u8 = 16;
    /// `outer` or `waker` may be set: someone is told when the chain is done.
    pub(crate) const NOTIFY: u8 = 32;
    /// One of the rarely used fields (`outer`, `waiting`, `waker`,
    /// `canceller`, `on_abandon`) may be set: ending the chain clears them.
    pub(crate) const DIRTY: u8 = 64;
}

/// What a stage hands on: done (the chain's current result is its output), or
/// wait for this chain and take its result.
#[doc(hidden)]
pub enum Flow<E> {
    /// The stage left its output as the chain's current result.
    Done,
    /// Wait for this chain and take its result.
    Wait(ChainRef<E>),
}

pub(crate) type OnAbandon<E> = Box<dyn FnOnce() -> E>;

pub(crate) type Canceller<E> = Box<dyn FnOnce(&Rc<Chain<E>>)>;

/// One chain. Shared (through `Rc`) by its `Deferred`, its `Trigger`s, and an
/// inner chain it waits on. `V` is the value slot, `Cell<Option<T>>` when
/// made and `dyn Slot` everywhere else.
#[doc(hidden)]
pub struct Chain<E, V: ?Sized = dyn Slot> {
    pub(crate) flags: Cell<u8>,
    /// Which place holds the current result ([`status`]).
    pub(crate) status: Cell<u8>,
    pub(crate) paused: Cell<u32>,
    /// Live `Trigger`s (checked when one drops).
    pub(crate) triggers: Cell<u32>,
    /// The current error, when `status` is `ERR`.
    pub(crate) err: Cell<Option<E>>,
    /// The current value when its type is not the slot's (an `Option<T>`,
    /// `Some` while current), kept for reuse while stages keep its type.
    pub(crate) boxed: Cell<Option<Box<dyn Any>>>,
    pub(crate) stages: Stages<E>,
    /// The chain waiting on this one: it gets this one's result once every
    /// stage has run. Only a chain whose `Deferred` was returned from a
    /// callback has one, so no stage is ever added after it.
    pub(crate) outer: Cell<Option<Rc<Chain<E>>>>,
    /// Set while this chain waits on an inner one.
    pub(crate) waiting: Cell<Option<Weak<Chain<E>>>>,
    pub(crate) waker: Cell<Option<Waker>>,
    pub(crate) canceller: Cell<Option<Canceller<E>>>,
    /// What to fail with if abandoned (`Deferred::or_abandoned`).
    pub(crate) on_abandon: Cell<Option<OnAbandon<E>>>,
    pub(crate) creator: Cell<&'static Location<'static>>,
    pub(crate) fns: Fns<E>,
    /// The typed value slot (last: it is the unsized part).
    pub(crate) slot: V,
}

/// What the chain does that needs `E`'s and the slot type's bounds, as
/// function pointers, so that handles' `Drop`s need none.
#[derive(Clone, Copy)]
pub(crate) struct Fns<E> {
    log: fn(&E, &'static Location<'static>),
    /// Run when the last trigger of an unfired chain drops.
    pub(crate) last_trigger: fn(&Rc<Chain<E>>),
    /// Run when the last user handle of an otherwise unreferenced chain
    /// drops: [`pool::recycle`] for the chain's type.
    pub(crate) recycle: fn(&Rc<Chain<E>>),
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
        let fl = self.flags.get();
        let mut d = f.debug_struct("Deferred");
        d.field("created_at", &format_args!("{}", self.creator.get()));
        if fl & flag::RUNNING != 0 {
            d.field("running", &true);
        }
        d.field("called", &(fl & flag::CALLED != 0))
            .field("paused", &self.paused.get())
            .field("waiting", &(fl & flag::WAITING != 0))
            .field("callbacks", &self.stages.len())
            .field("abandoned", &(fl & flag::ABANDONED != 0))
            .field(
                "result",
                &match self.status.get() {
                    status::NONE => "none",
                    status::ERR => "error",
                    _ => "value",
                },
            );
        d.finish()
    }
}

impl<E: fmt::Debug + 'static> Chain<E> {
    /// A new unfired chain for values of type `T`, with one trigger.
    #[inline]
    pub(crate) fn new<T: 'static>(creator: &'static Location<'static>) -> Rc<Self> {
        count_created();
        if let Some(c) = pool::take::<E, T>() {
            // Ended when it was kept: only these differ from a new chain.
            c.flags.set(0);
            c.triggers.set(1);
            c.creator.set(creator);
            return c;
        }
        let chain: Rc<Chain<E, Cell<Option<T>>>> = Rc::new(Chain {
            flags: Cell::new(0),
            status: Cell::new(status::NONE),
            paused: Cell::new(0),
            triggers: Cell::new(1),
            err: Cell::new(None),
            boxed: Cell::new(None),
            stages: Stages::new(),
            outer: Cell::new(None),
            waiting: Cell::new(None),
            waker: Cell::new(None),
            canceller: Cell::new(None),
            on_abandon: Cell::new(None),
            creator: Cell::new(creator),
            fns: Fns {
                log: log_unhandled::<E>,
                last_trigger: Chain::<E>::last_trigger_dropped,
                recycle: pool::recycle::<E, T>,
            },
            slot: Cell::new(None),
        });
        chain
    }
}

impl<E> Chain<E> {
    #[inline(always)]
    pub(crate) fn has(&self, bits: u8) -> bool {
        self.flags.get() & bits != 0
    }

    #[inline(always)]
    pub(crate) fn set(&self, bits: u8) {
        self.flags.set(self.flags.get() | bits);
    }

    #[inline(always)]
    pub(crate) fn clear(&self, bits: u8) {
        self.flags.set(self.flags.get() & !bits);
    }

    pub(crate) fn is_called(&self) -> bool {
        self.has(flag::CALLED)
    }

    /// Fired, nothing left to run, not paused, not waiting: the result is final.
    #[inline(always)]
    pub(crate) fn settled(&self) -> bool {
        self.flags.get() & (flag::CALLED | flag::RUNNING | flag::WAITING) == flag::CALLED
            && self.paused.get() == 0
            && self.stages.is_empty()
            && self.status.get() != status::NONE
    }
}

impl<E: 'static> Chain<E> {
    /// Marks the chain fired. `Ok(true)`: go on and store the result;
    /// `Ok(false)`: a fire after a cancel, swallowed; `Err(())`: it already
    /// fired.
    #[inline(always)]
    fn begin_fire(&self) -> Result<bool, ()> {
        let f = self.flags.get();
        if f & flag::CALLED != 0 {
            if f & flag::SUPPRESS != 0 {
                self.flags.set(f & !flag::SUPPRESS);
                return Ok(false);
            }
            return Err(());
        }
        if f & flag::ABANDONED != 0 {
            // Already not counted as pending.
            self.flags.set((f | flag::CALLED) & !flag::ABANDONED);
        } else {
            self.flags.set(f | flag::CALLED);
            count_settled();
        }
        drop(self.canceller.take());
        Ok(true)
    }

    /// Fires the chain with a typed result. `Err(())` when it already fired
    /// (and no cancel asked for one fire to be swallowed). With stages
    /// attached, they run at once, each reading and replacing the value in
    /// place.
    #[inline]
    pub(crate) fn fire<T: 'static>(self: &Rc<Self>, r: Result<T, E>) -> Result<(), ()> {
        if !self.begin_fire()? {
            return Ok(());
        }
        match r {
            Ok(v) => self.put(v),
            Err(e) => self.put_err(e),
        }
        self.go();
        Ok(())
    }

    /// Fires the chain with an error.
    pub(crate) fn fire_err(self: &Rc<Self>, e: E) -> Result<(), ()> {
        self.fire::<()>(Err(e))
    }

    /// Runs the chain if there is anything to run or anyone to tell.
    #[inline(always)]
    pub(crate) fn go(self: &Rc<Self>) {
        if !self.stages.is_empty() || self.has(flag::NOTIFY) {
            run(self);
        }
    }

    /// Adds a stage: queued on an unfired chain; run at once, never boxed,
    /// on a settled one (fired, idle, nothing queued); otherwise queued and
    /// the chain run.
    #[inline]
    pub(crate) fn add(self: &Rc<Self>, f: impl FnOnce(&Chain<E>) -> Flow<E> + 'static) {
        if !self.has(flag::CALLED) {
            self.stages.push(Box::new(f));
            return;
        }
        if self.settled() {
            self.set(flag::RUNNING);
            let guard = Running(self);
            let flow = f(self);
            std::mem::forget(guard);
            self.clear(flag::RUNNING);
            if let Flow::Wait(inner) = flow {
                if !wait_on(self, inner) {
                    // The inner chain resumes this one when done.
                    return;
                }
            }
            // A stage may have added stages or paused the chain.
            self.go();
            return;
        }
        self.stages.push(Box::new(f));
        run(self);
    }

    /// Whether the final result is there: fired, nothing left to run, not paused.
    pub(crate) fn is_ready(&self) -> bool {
        self.status.get() != status::NONE
            && !self.has(flag::RUNNING | flag::WAITING)
            && self.paused.get() == 0
    }

    /// Takes the final result if it is there.
    #[inline]
    pub(crate) fn take<T: 'static>(&self) -> Option<Result<T, E>> {
        if self.has(flag::RUNNING | flag::WAITING) || self.paused.get() > 0 {
            return None;
        }
        self.take_current()
    }
}

/// A stage returned `inner`: take its result if it is final, else link the
/// two so `inner` hands its result over when done. `false` when the chain
/// now waits.
#[cold]
#[inline(never)]
fn wait_on<E: 'static>(current: &Rc<Chain<E>>, inner: ChainRef<E>) -> bool {
    if Rc::ptr_eq(&inner.0, current) {
        unreachable!("a Deferred cannot be returned into its own chain");
    }
    if inner.settled() {
        // Already fired: move its result over at once.
        inner.move_result(current);
        return true;
    }
    current.waiting.set(Some(Rc::downgrade(&inner.0)));
    current.set(flag::WAITING | flag::DIRTY);
    if inner.has(flag::ABANDONED) && !inner.has(flag::CALLED) {
        // It can never fire, so this chain never goes on either.
        current.abandon();
        return false;
    }
    inner.outer.set(Some(current.clone()));
    inner.set(flag::NOTIFY | flag::DIRTY);
    false
}

/// Runs the stages of `start` and of every chain its result reaches, without
/// recursion: a chain that waits on an inner one is resumed from this loop when
/// the inner one finishes.
pub(crate) fn run<E: 'static>(start: &Rc<Chain<E>>) {
    let Some(mut current) = run_one(start) else {
        return;
    };
    while let Some(outer) = run_one(&current) {
        current = outer;
    }
}

/// Runs the stages of one chain. When it is done and an outer chain waits on
/// it, hands the result over and returns the outer chain, to be run next.
fn run_one<E: 'static>(c: &Rc<Chain<E>>) -> Option<Rc<Chain<E>>> {
    let f = c.flags.get();
    if f & (flag::CALLED | flag::RUNNING | flag::WAITING) != flag::CALLED || c.paused.get() > 0 {
        // Not ready to go on; whatever waits on it waits longer. A running
        // chain picks up new stages itself when its callback returns.
        return None;
    }
    if !c.stages.is_empty() {
        if c.status.get() == status::NONE {
            // Only after a stage panicked: nothing to pass on.
            return None;
        }
        c.flags.set(f | flag::RUNNING);
        let guard = Running(c);
        while let Some(stage) = c.stages.pop() {
            if let Flow::Wait(inner) = stage(c) {
                if !wait_on(c, inner) {
                    std::mem::forget(guard);
                    c.clear(flag::RUNNING);
                    return None;
                }
            }
            if c.paused.get() > 0 {
                // Paused by a stage: `unpause` goes on from here.
                std::mem::forget(guard);
                c.clear(flag::RUNNING);
                return None;
            }
        }
        std::mem::forget(guard);
        c.clear(flag::RUNNING);
    }
    if !c.has(flag::NOTIFY) {
        return None;
    }
    c.clear(flag::NOTIFY);
    let outer = c.outer.take();
    if let Some(o) = &outer {
        c.move_result(o);
        o.clear(flag::WAITING);
        o.waiting.set(None);
    }
    if let Some(w) = c.waker.take() {
        w.wake();
    }
    outer
}

/// Clears the running flag if a stage panics, so the chain is not wedged
/// (its result is gone: the stage had taken it).
struct Running<'a, E>(&'a Chain<E>);

impl<E> Drop for Running<'_, E> {
    fn drop(&mut self) {
        self.0.clear(flag::RUNNING);
        self.0.status.set(status::NONE);
    }
}

impl<E, V: ?Sized> Drop for Chain<E, V> {
    fn drop(&mut self) {
        if self.flags.get() & (flag::CALLED | flag::ABANDONED) == 0 {
            count_settled();
        }
        if self.status.get() == status::ERR {
            if let Some(e) = self.err.get_mut() {
                (self.fns.log)(e, self.creator.get());
            }
        }
        unlink(self.outer.take());
    }
}

/// Drops a chain's link to the chain waiting on it. Long nestings (inner
/// handing on to outer handing on to ...) would drop recursively; they are
/// unlinked here one at a time instead.
fn unlink<E>(mut next: Option<Rc<Chain<E>>>) {
    while let Some(c) = next {
        // The last strong handle: take its link before it drops.
        next = if Rc::strong_count(&c) == 1 {
            c.outer.take()
        } else {
            None
        };
    }
}

impl<E> Chain<E> {
    /// Ends the chain as dropping it would (the pending count, the
    /// unhandled-error log, every stage, value, waker and canceller it holds
    /// dropped) and leaves it clean, to be reused by [`Chain::new`]. Only for
    /// a chain nothing else references: user code run by the drops cannot
    /// reach it.
    #[inline]
    pub(crate) fn end(&self) {
        let f = self.flags.replace(flag::CALLED);
        if f & (flag::CALLED | flag::ABANDONED) == 0 {
            count_settled();
        }
        self.paused.set(0);
        // Each place holds something only while `status` says so.
        let st = self.status.replace(status::NONE);
        if st != status::NONE {
            self.drop_result(st);
        }
        if !self.stages.is_empty() {
            self.drop_stages();
        }
        if f & flag::DIRTY != 0 {
            self.drop_links();
        }
    }

    #[cold]
    #[inline(never)]
    fn drop_result(&self, st: u8) {
        match st {
            status::SLOT => self.slot.clear(),
            status::BOXED => drop(self.boxed.take()),
            _ => {
                if let Some(e) = self.err.take() {
                    (self.fns.log)(&e, self.creator.get());
                }
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn drop_stages(&self) {
        while let Some(stage) = self.stages.pop() {
            drop(stage);
        }
    }

    #[cold]
    #[inline(never)]
    fn drop_links(&self) {
        drop(self.waiting.take());
        drop(self.waker.take());
        drop(self.canceller.take());
        drop(self.on_abandon.take());
        unlink(self.outer.take());
    }
}
