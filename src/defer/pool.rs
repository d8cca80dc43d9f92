//! Freed chains kept for reuse, per thread and per chain type.
//!
//! A chain is one `Rc` allocation of a couple of hundred bytes; making one
//! (allocate, initialise on the stack, copy in) and freeing one (drop every
//! field, free) cost more than the rest of a short chain's life. So when the
//! last handle a user holds (a [`Deferred`](super::Deferred) or a
//! [`Trigger`](super::Trigger)) lets go of a chain that nothing else
//! references (no other strong handle, no `Weak`), the chain is ended as a
//! drop would end it (counters, the unhandled-error log, every stage,
//! canceller and value it holds dropped) and its allocation is kept, up to
//! [`KEEP`] per type; the next chain of that type on this thread reuses it.
//! Nothing can tell a reused chain from a new one: no handle to the old one
//! is left.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::ops::Deref;
use std::rc::Rc;

use super::chain::Chain;

/// How many freed chains of one type a thread keeps.
pub(crate) const KEEP: usize = 32;

/// One list of freed chains: a `Vec<Rc<Chain<E>>>` of the chain type `key`.
struct List {
    key: TypeId,
    chains: Box<dyn Any>,
}

thread_local! {
    static POOL: RefCell<Vec<List>> = const { RefCell::new(Vec::new()) };
}

/// A freed chain of type `Chain<E, Cell<Option<T>>>`, if this thread keeps one.
#[inline]
pub(crate) fn take<E: 'static, T: 'static>() -> Option<Rc<Chain<E>>> {
    let key = TypeId::of::<Chain<E, Cell<Option<T>>>>();
    POOL.try_with(|p| {
        let mut p = p.try_borrow_mut().ok()?;
        let list = p.iter_mut().find(|l| l.key == key)?;
        list.chains.downcast_mut::<Vec<Rc<Chain<E>>>>()?.pop()
    })
    .ok()
    .flatten()
}

/// Keeps `c` (ended, and referenced by nothing else) for reuse; hands it back
/// when the list is full (or the thread is going away), to be freed.
#[inline]
fn give<E: 'static, T: 'static>(c: Rc<Chain<E>>) -> Option<Rc<Chain<E>>> {
    let key = TypeId::of::<Chain<E, Cell<Option<T>>>>();
    let mut c = Some(c);
    let _ = POOL.try_with(|p| {
        let Ok(mut p) = p.try_borrow_mut() else {
            return;
        };
        let list = match p.iter().position(|l| l.key == key) {
            Some(i) => &mut p[i],
            None => {
                p.push(List {
                    key,
                    chains: Box::new(Vec::<Rc<Chain<E>>>::with_capacity(KEEP)),
                });
                p.last_mut().expect("just pushed")
            }
        };
        if let Some(v) = list.chains.downcast_mut::<Vec<Rc<Chain<E>>>>() {
            if v.len() < KEEP {
                if let Some(c) = c.take() {
                    v.push(c);
                }
            }
        }
    });
    c
}

/// Ends a chain whose last user handle is going away and keeps it for reuse
/// (the [`Chain::recycle`] of chains of type `Chain<E, Cell<Option<T>>>`).
pub(crate) fn recycle<E: 'static, T: 'static>(c: &Rc<Chain<E>>) {
    c.end();
    // Freed outside the pool's borrow if not kept.
    drop(give::<E, T>(c.clone()));
}

/// A user's strong handle to a chain (inside a `Deferred`, a `Trigger`, or a
/// `Deferred` returned from a callback): when the last one goes and nothing
/// else references the chain, the chain goes back to the pool.
#[doc(hidden)]
pub struct ChainRef<E>(pub(crate) Rc<Chain<E>>);

impl<E> std::fmt::Debug for ChainRef<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl<E> Deref for ChainRef<E> {
    type Target = Rc<Chain<E>>;

    #[inline(always)]
    fn deref(&self) -> &Rc<Chain<E>> {
        &self.0
    }
}

impl<E> Drop for ChainRef<E> {
    #[inline]
    fn drop(&mut self) {
        if Rc::strong_count(&self.0) == 1 && Rc::weak_count(&self.0) == 0 {
            (self.0.fns.recycle)(&self.0);
        }
    }
}
