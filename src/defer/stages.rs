//! A chain's queue of stages: the first [`INLINE`] inside the chain, the rest
//! in a queue made on first use. Built of `Cell`s, so pushing or popping never
//! borrows anything and a stage may add to its own chain while it runs.

use std::cell::Cell;
use std::collections::VecDeque;

use super::chain::{Chain, Flow};

/// One stage: runs with the chain (whose current result it reads and
/// replaces in place), says whether the chain goes on or waits.
pub(crate) type StageFn<E> = Box<dyn FnOnce(&Chain<E>) -> Flow<E>>;

/// How many stages a chain holds without allocating a queue.
pub(crate) const INLINE: usize = 4;

/// A FIFO of stages. Inline entries always come before queued ones: once the
/// queue holds anything, new stages go behind it, so order is kept.
pub(crate) struct Stages<E> {
    inline: [Cell<Option<StageFn<E>>>; INLINE],
    head: Cell<u8>,
    len: Cell<u8>,
    /// Boxed on purpose: an empty `VecDeque` is four words to initialise,
    /// move and drop in every chain; the box is one, and rarely made.
    #[allow(clippy::box_collection)]
    spill: Cell<Option<Box<VecDeque<StageFn<E>>>>>,
    /// Mirrors "the spill queue is not empty", so the hot checks need not
    /// take the queue out of its `Cell`.
    spilled: Cell<bool>,
}

impl<E> Stages<E> {
    #[inline(always)]
    pub(crate) const fn new() -> Self {
        Stages {
            inline: [const { Cell::new(None) }; INLINE],
            head: Cell::new(0),
            len: Cell::new(0),
            spill: Cell::new(None),
            spilled: Cell::new(false),
        }
    }

    #[inline(always)]
    pub(crate) fn push(&self, f: StageFn<E>) {
        let end = usize::from(self.head.get() + self.len.get());
        if end < INLINE && !self.spilled.get() {
            self.inline[end].set(Some(f));
            self.len.set(self.len.get() + 1);
        } else {
            self.push_spill(f);
        }
    }

    #[cold]
    #[inline(never)]
    fn push_spill(&self, f: StageFn<E>) {
        let mut q = self.spill.take().unwrap_or_default();
        q.push_back(f);
        self.spill.set(Some(q));
        self.spilled.set(true);
    }

    #[inline(always)]
    pub(crate) fn pop(&self) -> Option<StageFn<E>> {
        let len = self.len.get();
        if len == 0 {
            return if self.spilled.get() {
                self.pop_spill()
            } else {
                None
            };
        }
        let head = self.head.get();
        let f = self.inline[usize::from(head)].take();
        self.len.set(len - 1);
        self.head.set(if len == 1 { 0 } else { head + 1 });
        f
    }

    #[cold]
    #[inline(never)]
    fn pop_spill(&self) -> Option<StageFn<E>> {
        let mut q = self.spill.take()?;
        let f = q.pop_front();
        self.spilled.set(!q.is_empty());
        self.spill.set(Some(q));
        f
    }

    pub(crate) fn len(&self) -> usize {
        let q = self.spill.take();
        let n = q.as_ref().map_or(0, |q| q.len());
        self.spill.set(q);
        usize::from(self.len.get()) + n
    }

    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len.get() == 0 && !self.spilled.get()
    }
}
