//! The chain's slower paths: pause, waker, cancellation and abandonment.

use std::rc::Rc;
use std::task::Waker;

use super::chain::{flag, run, Canceller, Chain, OnAbandon};
use super::stats::{count_abandoned, count_settled};

impl<E: 'static> Chain<E> {
    pub(crate) fn set_canceller(&self, c: Canceller<E>) {
        self.canceller.set(Some(c));
        self.set(flag::DIRTY);
    }

    pub(crate) fn pause(&self) {
        self.paused.set(self.paused.get().saturating_add(1));
    }

    pub(crate) fn unpause(self: &Rc<Self>) {
        let n = self.paused.get().saturating_sub(1);
        self.paused.set(n);
        if n == 0 && self.is_called() {
            run(self);
        }
    }

    pub(crate) fn set_waker(&self, w: &Waker) {
        let old = self.waker.take();
        match old {
            Some(old) if old.will_wake(w) => self.waker.set(Some(old)),
            _ => self.waker.set(Some(w.clone())),
        }
        self.set(flag::NOTIFY | flag::DIRTY);
    }

    /// The chain this one waits on, if it is still alive.
    fn inner(&self) -> Option<Rc<Chain<E>>> {
        let w = self.waiting.take();
        let inner = w.as_ref().and_then(std::rc::Weak::upgrade);
        self.waiting.set(w);
        inner
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
            if !cur.is_called() {
                if let Some(c) = cur.canceller.take() {
                    c(&cur);
                }
                if let (false, Some(err)) = (cur.is_called(), err) {
                    let _ = cur.fire_err(err());
                }
                cur.set(flag::SUPPRESS);
                return;
            }
            if !cur.has(flag::WAITING) {
                return;
            }
            let Some(inner) = cur.inner() else {
                // Stuck on an abandoned inner chain: cancelling fails it.
                if let (true, Some(err)) = (cur.has(flag::ABANDONED), err) {
                    cur.resume_with_err(err());
                }
                return;
            };
            cur = inner;
        }
    }

    /// The last `Trigger` was dropped. An unfired chain is abandoned: it can
    /// never fire.
    #[cold]
    #[inline(never)]
    pub(crate) fn last_trigger_dropped(self: &Rc<Self>) {
        if !self.has(flag::CALLED | flag::ABANDONED) {
            self.abandon();
        }
    }

    /// Abandons this chain (unfired with no trigger left, or fired and
    /// waiting on such a chain) and, when it has no `on_abandon` to fail
    /// with, whatever waits on it, up the nesting.
    #[cold]
    #[inline(never)]
    pub(crate) fn abandon(self: &Rc<Self>) {
        let mut cur = self.clone();
        loop {
            if cur.has(flag::ABANDONED) {
                return;
            }
            count_abandoned();
            let unfired = !cur.is_called();
            if let Some(f) = cur.on_abandon.take() {
                let e = f();
                if unfired {
                    let _ = cur.fire_err(e);
                } else {
                    cur.resume_with_err(e);
                }
                return;
            }
            cur.set(flag::ABANDONED);
            if unfired {
                count_settled();
            }
            tracing::debug!(
                created_at = %cur.creator.get(),
                "Deferred abandoned: it can never fire (every Trigger dropped, or it waits on such a Deferred)"
            );
            // Whatever waits on this chain waits forever too.
            let Some(outer) = cur.outer.take() else {
                return;
            };
            cur = outer;
        }
    }

    /// Sets what an abandoned chain fails with; used at once if it already is.
    pub(crate) fn set_on_abandon(self: &Rc<Self>, f: OnAbandon<E>) {
        if !self.has(flag::ABANDONED) {
            self.on_abandon.set(Some(f));
            self.set(flag::DIRTY);
            return;
        }
        let e = f();
        if self.is_called() {
            self.resume_with_err(e);
        } else {
            let _ = self.fire_err(e);
        }
    }

    /// Goes on, with the error `e`, a fired chain stuck on an abandoned inner
    /// one.
    fn resume_with_err(self: &Rc<Self>, e: E) {
        self.clear(flag::ABANDONED | flag::WAITING);
        self.waiting.set(None);
        self.put_err(e);
        run(self);
    }
}
