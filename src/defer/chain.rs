//! The untyped engine under [`Deferred`](super::Deferred): one chain of stages,
//! run iteratively so that nested chains never grow the Rust stack.
//!
//! Values travel as `Box<dyn Any>` so a stage may change the value's type; the
//! typed handles (`Deferred<T, E>`, `Trigger<T, E>`) guarantee that every box
//! holds the type the next stage expects. The error type `E` is the same for the
//! whole chain and is kept unboxed.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::task::Waker;

/// A value in flight.
pub type Val = Box<dyn Any>;
/// A result in flight.
pub type Outcome<E> = Result<Val, E>;

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

type StageFn<E> = Box<dyn FnOnce(Outcome<E>) -> Step<E>>;

pub(crate) enum Stage<E> {
    Call(StageFn<E>),
    /// An outer chain waits on this one: hand the result over.
    Continue(Rc<Chain<E>>),
}

pub(crate) type Canceller<E> = Box<dyn FnOnce(&Rc<Chain<E>>)>;

pub(crate) struct State<E> {
    /// The current result: `None` before firing, while a stage runs, after the
    /// result was taken or handed on.
    pub(crate) result: Option<Outcome<E>>,
    pub(crate) called: bool,
    running: bool,
    paused: u32,
    /// Set while this chain waits on an inner one.
    waiting: Option<Weak<Chain<E>>>,
    stages: VecDeque<Stage<E>>,
    canceller: Option<Canceller<E>>,
    /// Swallow the next fire (one fire after a cancel is expected).
    suppress: bool,
    waker: Option<Waker>,
}

/// One chain. Shared (through `Rc`) by its `Deferred`, its `Trigger`s, and an
/// outer chain's stage while it is being waited on.
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
        Rc::new(Chain {
            st: RefCell::new(State {
                result: None,
                called: false,
                running: false,
                paused: 0,
                waiting: None,
                stages: VecDeque::new(),
                canceller: None,
                suppress: false,
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
            s.canceller = None;
            s.result = Some(r);
        }
        run(self.clone());
        Ok(())
    }

    pub(crate) fn push(self: &Rc<Self>, f: StageFn<E>) {
        let called = {
            let mut s = self.st.borrow_mut();
            s.stages.push_back(Stage::Call(f));
            s.called
        };
        if called {
            run(self.clone());
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
            run(self.clone());
        }
    }

    /// Whether the final result is there: fired, nothing left to run, not paused.
    pub(crate) fn is_ready(&self) -> bool {
        let s = self.st.borrow();
        s.result.is_some() && !s.running && s.paused == 0 && s.waiting.is_none()
    }

    /// Takes the final result if it is there.
    pub(crate) fn take(&self) -> Option<Outcome<E>> {
        if !self.is_ready() {
            return None;
        }
        self.st.borrow_mut().result.take()
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

/// Runs the stages of `start` and of every chain its result reaches, without
/// recursion: a chain that waits on an inner one is resumed from this loop when
/// the inner one finishes.
fn run<E: 'static>(start: Rc<Chain<E>>) {
    // Chains whose result was handed on and that resume once the outer one
    // is done (empty, so not allocated, unless a nested Deferred fired).
    let mut stack: Vec<Rc<Chain<E>>> = Vec::new();
    let mut current = start;
    loop {
        let mut s = current.st.borrow_mut();
        if s.running || s.paused > 0 || s.waiting.is_some() || !s.called {
            // Not ready to go on; whatever waits on it waits longer. A running
            // chain picks up new stages itself when its callback returns.
            return;
        }
        let mut handed_on = None;
        while let Some(stage) = s.stages.pop_front() {
            match stage {
                Stage::Continue(outer) => {
                    let r = s.result.take();
                    drop(s);
                    {
                        let mut o = outer.st.borrow_mut();
                        o.result = r;
                        o.waiting = None;
                    }
                    handed_on = Some(outer);
                    s = current.st.borrow_mut();
                    break;
                }
                Stage::Call(f) => {
                    let Some(input) = s.result.take() else {
                        // Only after a stage panicked: nothing to pass on.
                        break;
                    };
                    s.running = true;
                    drop(s);
                    let step = {
                        let guard = Running(&current);
                        let step = f(input);
                        std::mem::forget(guard);
                        step
                    };
                    s = current.st.borrow_mut();
                    s.running = false;
                    match step {
                        Step::Ready(r) => s.result = Some(r),
                        Step::Wait(inner) => {
                            if Rc::ptr_eq(&inner, &current) {
                                unreachable!("a Deferred cannot be returned into its own chain");
                            }
                            let mut i = inner.st.borrow_mut();
                            let ready = i.called
                                && !i.running
                                && i.paused == 0
                                && i.waiting.is_none()
                                && i.stages.is_empty()
                                && i.result.is_some();
                            if ready {
                                // Already fired: move its result over at once.
                                s.result = i.result.take();
                            } else {
                                i.stages.push_back(Stage::Continue(current.clone()));
                                s.waiting = Some(Rc::downgrade(&inner));
                                break;
                            }
                        }
                    }
                }
            }
        }
        if let Some(outer) = handed_on {
            // Run the outer chain first; come back to this one afterwards.
            drop(s);
            stack.push(std::mem::replace(&mut current, outer));
            continue;
        }
        let waker = if s.waiting.is_none() && s.stages.is_empty() {
            s.waker.take()
        } else {
            None
        };
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        match stack.pop() {
            Some(c) => current = c,
            None => return,
        }
    }
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
        if let Some(Err(e)) = &s.result {
            (self.log)(e, self.creator);
        }
        // Long nestings (outer waiting on inner waiting on ...) would drop
        // recursively; unlink them here one at a time instead.
        let mut pending: Vec<Rc<Chain<E>>> = Vec::new();
        take_continues(&mut s.stages, &mut pending);
        while let Some(c) = pending.pop() {
            if let Ok(mut inner) = Rc::try_unwrap(c) {
                take_continues(&mut inner.st.get_mut().stages, &mut pending);
            }
        }
    }
}

fn take_continues<E>(stages: &mut VecDeque<Stage<E>>, out: &mut Vec<Rc<Chain<E>>>) {
    for st in stages.drain(..) {
        if let Stage::Continue(c) = st {
            out.push(c);
        }
    }
}
