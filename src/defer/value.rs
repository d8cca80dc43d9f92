//! Where a chain's current result lives, and how a stage reads and replaces
//! it in place.
//!
//! The result is not moved from stage to stage: a value of the chain's slot
//! type (the trigger's `T`) stays in the typed slot at the end of the chain's
//! allocation, a value of another type in the chain's one box (reused while
//! the stages keep its type), an error in the chain's error cell. A stage
//! takes its input from there and puts its output back; a stage the result
//! passes by (a callback on the error path, an errback on the success path)
//! touches nothing. The chain's `status` says which of the three holds the
//! result.

use std::any::Any;
use std::cell::Cell;

use super::chain::{Chain, Flow};

/// The typed value slot at the end of a chain's allocation: a
/// `Cell<Option<T>>` seen through this trait (a `Cell`, so reaching the
/// value is a type check and a move, no borrow).
#[doc(hidden)]
pub trait Slot: Any {
    /// Moves the value out into a box (holding an `Option<T>`).
    fn take_boxed(&self) -> Box<dyn Any>;
    /// Moves the value into `to` if that is a slot of the same type.
    fn move_into(&self, to: &dyn Slot) -> bool;
    /// Drops the value, if any.
    fn clear(&self);
}

impl<T: 'static> Slot for Cell<Option<T>> {
    fn take_boxed(&self) -> Box<dyn Any> {
        Box::new(self.take())
    }

    fn move_into(&self, to: &dyn Slot) -> bool {
        match (to as &dyn Any).downcast_ref::<Cell<Option<T>>>() {
            Some(o) => {
                o.set(self.take());
                true
            }
            None => false,
        }
    }

    #[inline]
    fn clear(&self) {
        self.set(None);
    }
}

/// The slot of `c` if it holds `T`s.
#[inline(always)]
fn typed<T: 'static, E>(c: &Chain<E>) -> Option<&Cell<Option<T>>> {
    (&c.slot as &dyn Any).downcast_ref::<Cell<Option<T>>>()
}

/// Which place holds a chain's current result.
pub(crate) mod status {
    /// No result: unfired, waiting on an inner chain, taken or handed on, or
    /// lost to a panicking stage.
    pub(crate) const NONE: u8 = 0;
    /// A value, in the chain's typed slot.
    pub(crate) const SLOT: u8 = 1;
    /// A value, in the chain's box.
    pub(crate) const BOXED: u8 = 2;
    /// An error, in the chain's error cell.
    pub(crate) const ERR: u8 = 3;
}

const WRONG_TYPE: &str = "torsion bug: a Deferred stage received a value of the wrong type";

/// What a callback returned, typed: a result, or a chain to wait for.
#[doc(hidden)]
#[derive(Debug)]
pub enum Next<U, E> {
    /// Go on with this result.
    Ready(Result<U, E>),
    /// Wait for this chain and take its result.
    Wait(super::pool::ChainRef<E>),
}

impl<E> Chain<E> {
    /// Whether the current result is an error.
    #[inline(always)]
    pub(crate) fn is_err(&self) -> bool {
        self.status.get() == status::ERR
    }

    /// Makes `v` the current value: in the slot if it holds `T`, else in
    /// the box. (The slot is empty: it holds a value only while `status`
    /// says so.)
    #[inline]
    pub(crate) fn put<T: 'static>(&self, v: T) {
        if let Some(o) = typed::<T, E>(self) {
            o.set(Some(v));
            self.status.set(status::SLOT);
        } else {
            self.boxed.set(Some(Box::new(Some(v))));
            self.status.set(status::BOXED);
        }
    }

    /// Makes `e` the current result.
    #[inline(always)]
    pub(crate) fn put_err(&self, e: E) {
        self.err.set(Some(e));
        self.status.set(status::ERR);
    }

    /// Makes what a stage returned the current result (or waits for it).
    #[inline(always)]
    fn settle_next<U: 'static>(&self, next: Next<U, E>) -> Flow<E> {
        match next {
            Next::Ready(Ok(u)) => self.put(u),
            Next::Ready(Err(e)) => self.put_err(e),
            Next::Wait(c) => return Flow::Wait(c),
        }
        Flow::Done
    }

    /// Takes the current result out, typed (`T` is the chain's value type,
    /// which the typed handles guarantee).
    #[inline]
    pub(crate) fn take_current<T: 'static>(&self) -> Option<Result<T, E>> {
        let r = match self.status.replace(status::NONE) {
            status::NONE => return None,
            status::SLOT => Ok(typed::<T, E>(self).and_then(Cell::take).expect(WRONG_TYPE)),
            status::BOXED => Ok(self
                .boxed
                .take()
                .and_then(|mut b| b.downcast_mut::<Option<T>>().and_then(Option::take))
                .expect(WRONG_TYPE)),
            _ => Err(self.err.take().expect(WRONG_TYPE)),
        };
        Some(r)
    }

    /// Hands the current result over to `to` (a nested chain finishing into
    /// the one that waits on it).
    pub(crate) fn move_result(&self, to: &Chain<E>) {
        match self.status.replace(status::NONE) {
            status::SLOT => {
                if self.slot.move_into(&to.slot) {
                    to.status.set(status::SLOT);
                } else {
                    to.boxed.set(Some(self.slot.take_boxed()));
                    to.status.set(status::BOXED);
                }
            }
            status::BOXED => {
                to.boxed.set(self.boxed.take());
                to.status.set(status::BOXED);
            }
            status::ERR => {
                to.err.set(self.err.take());
                to.status.set(status::ERR);
            }
            _ => to.status.set(status::NONE),
        }
    }
}

/// A stage's success path: `f` gets the current value (a `T`) and what it
/// returns becomes the current result. An output of the input's type goes
/// back where the input was (decided at compile time), another type into the
/// slot if that holds it, else into the box.
#[inline(always)]
pub(crate) fn on_value<T: 'static, U: 'static, E>(
    c: &Chain<E>,
    f: impl FnOnce(T) -> Next<U, E>,
) -> Flow<E> {
    if c.status.get() == status::SLOT {
        // One type check per stage: an output of the input's type goes back
        // into the same slot (that check is resolved at compile time).
        let inslot = typed::<T, E>(c).expect(WRONG_TYPE);
        let x = inslot.take().expect(WRONG_TYPE);
        c.status.set(status::NONE);
        // Only the same-type path is inline: the rest is out of line so
        // that this stays a small leaf-like function.
        match f(x) {
            Next::Ready(Ok(u)) => {
                if let Some(same) = (inslot as &dyn Any).downcast_ref::<Cell<Option<U>>>() {
                    same.set(Some(u));
                    c.status.set(status::SLOT);
                } else {
                    put_boxed(c, u);
                }
                Flow::Done
            }
            Next::Ready(Err(e)) => {
                put_err_cold(c, e);
                Flow::Done
            }
            Next::Wait(inner) => Flow::Wait(inner),
        }
    } else {
        on_boxed(c, f)
    }
}

/// A value of a type other than the slot's becomes the current one.
#[inline(never)]
fn put_boxed<U: 'static, E>(c: &Chain<E>, u: U) {
    c.boxed.set(Some(Box::new(Some(u))));
    c.status.set(status::BOXED);
}

#[cold]
#[inline(never)]
fn put_err_cold<E>(c: &Chain<E>, e: E) {
    c.put_err(e);
}

/// [`on_value`] for a value in the box.
#[inline(never)]
fn on_boxed<T: 'static, U: 'static, E>(c: &Chain<E>, f: impl FnOnce(T) -> Next<U, E>) -> Flow<E> {
    c.status.set(status::NONE);
    let mut b = c.boxed.take().expect(WRONG_TYPE);
    let inbox = b.downcast_mut::<Option<T>>().expect(WRONG_TYPE);
    let x = inbox.take().expect(WRONG_TYPE);
    match f(x) {
        Next::Ready(Ok(u)) => {
            if let Some(same) = (inbox as &mut dyn Any).downcast_mut::<Option<U>>() {
                *same = Some(u);
                c.boxed.set(Some(b));
                c.status.set(status::BOXED);
            } else {
                c.put(u);
            }
            Flow::Done
        }
        Next::Ready(Err(e)) => {
            c.put_err(e);
            Flow::Done
        }
        Next::Wait(inner) => Flow::Wait(inner),
    }
}

/// A stage's error path: `f` gets the current error and what it returns
/// becomes the current result.
#[inline(always)]
pub(crate) fn on_error<U: 'static, E>(c: &Chain<E>, f: impl FnOnce(E) -> Next<U, E>) -> Flow<E> {
    c.status.set(status::NONE);
    let e = c.err.take().expect(WRONG_TYPE);
    c.settle_next(f(e))
}
