//! A pure timer queue: deadlines in, expired entries out, `now` always passed in.
//!
//! The queue never reads a clock. The real [`Reactor`](crate::Reactor) hands it
//! `Instant::now()` once per turn; the fake clock of the `testing` module hands it
//! whatever time the test has advanced to. Both therefore see exactly the same
//! semantics:
//!
//! * entries fire in deadline order; equal deadlines fire in the order they were
//!   scheduled (or last [`reset`](TimerQueue::reset));
//! * [`cancel`](TimerQueue::cancel) and [`reset`](TimerQueue::reset) of an entry
//!   that already fired or was cancelled are error values, never panics;
//! * cancel is O(1) and reset is O(log n) (a binary heap with lazy deletion that
//!   is compacted when more than half of it is stale), so a million armed timers
//!   that are mostly cancelled, the common case for network timeouts, stay cheap.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use torsion::reactor::timers::TimerQueue;
//!
//! let t0 = Instant::now();
//! let mut q = TimerQueue::new();
//! let a = q.schedule(t0 + Duration::from_millis(20), "a");
//! let _b = q.schedule(t0 + Duration::from_millis(10), "b");
//! q.cancel(a).unwrap();
//! assert!(q.cancel(a).is_err());
//! assert_eq!(q.pop_expired(t0 + Duration::from_millis(30)), Some("b"));
//! assert_eq!(q.pop_expired(t0 + Duration::from_millis(30)), None);
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Identifies one scheduled entry of a [`TimerQueue`]. Stale ids (of entries that
/// fired or were cancelled) are recognised, even after their slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    slot: u32,
    gen: u32,
}

/// Why a timer operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// The entry already fired or was cancelled.
    #[error("the call already ran or was cancelled")]
    NotActive,
}

#[derive(Debug)]
struct Slot<T> {
    gen: u32,
    /// `Some` while the entry is pending.
    entry: Option<Pending<T>>,
}

#[derive(Debug)]
struct Pending<T> {
    deadline: Instant,
    /// Sequence number of the live heap node for this entry.
    seq: u64,
    value: T,
}

/// A queue of values keyed by deadline. See the [module docs](self).
///
/// ```
/// use std::time::{Duration, Instant};
/// use torsion::reactor::timers::TimerQueue;
///
/// let now = Instant::now();
/// let mut q = TimerQueue::new();
/// let retry = q.schedule(now + Duration::from_secs(5), "retry");
/// q.schedule(now + Duration::from_secs(1), "ping");
/// assert_eq!(q.cancel(retry), Ok("retry"));
/// assert_eq!(q.pop_expired(now + Duration::from_secs(2)), Some("ping"));
/// assert!(q.is_empty());
/// ```
#[derive(Debug)]
pub struct TimerQueue<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    /// (deadline, seq, slot): min-heap through `Reverse`.
    heap: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    next_seq: u64,
    live: usize,
    /// The heap's top node is known to be live (checked since the last
    /// cancel, reset or pop): asking for the next deadline, once per turn at
    /// least, is then a peek.
    top_live: bool,
    /// A tick count the owner sets (the reactor's turn clock: see
    /// `core::turn_clock`), cleared whenever the [`mark`](Self::mark) moves:
    /// while it is ahead, nothing was scheduled or reset since it was set.
    horizon: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        TimerQueue {
            slots: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            next_seq: 0,
            live: 0,
            top_live: true,
            horizon: 0,
        }
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no entry is pending.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Schedules `value` to expire at `deadline`.
    pub fn schedule(&mut self, deadline: Instant, value: T) -> TimerId {
        let seq = self.bump_seq();
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    entry: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[slot as usize];
        s.entry = Some(Pending {
            deadline,
            seq,
            value,
        });
        self.heap.push(Reverse((deadline, seq, slot)));
        self.live += 1;
        TimerId { slot, gen: s.gen }
    }

    fn bump_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        self.horizon = 0;
        s
    }

    /// See [`horizon`](Self::horizon).
    #[inline]
    pub(crate) fn set_horizon(&mut self, ticks: u64) {
        self.horizon = ticks;
    }

    /// The tick count last set with [`set_horizon`](Self::set_horizon), or 0
    /// if the mark moved since (an entry was scheduled or reset).
    #[inline]
    pub(crate) fn horizon(&self) -> u64 {
        self.horizon
    }

    /// The sequence number the next scheduled or reset entry will get. Entries
    /// scheduled before this mark can be told from later ones with
    /// [`pop_expired_before`](Self::pop_expired_before).
    pub fn mark(&self) -> u64 {
        self.next_seq
    }

    fn pending(&self, id: TimerId) -> Option<&Pending<T>> {
        let s = self.slots.get(id.slot as usize)?;
        if s.gen != id.gen {
            return None;
        }
        s.entry.as_ref()
    }

    /// Whether `id` is still pending.
    pub fn is_active(&self, id: TimerId) -> bool {
        self.pending(id).is_some()
    }

    /// The deadline of a pending entry.
    pub fn deadline(&self, id: TimerId) -> Option<Instant> {
        self.pending(id).map(|p| p.deadline)
    }

    /// Removes a pending entry and returns its value.
    ///
    /// # Errors
    /// [`TimerError::NotActive`] if the entry already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Result<T, TimerError> {
        if self.pending(id).is_none() {
            return Err(TimerError::NotActive);
        }
        let s = &mut self.slots[id.slot as usize];
        let p = s.entry.take().expect("checked above");
        s.gen = s.gen.wrapping_add(1);
        self.free.push(id.slot);
        self.live -= 1;
        self.top_live = false;
        self.maybe_compact();
        Ok(p.value)
    }

    /// Moves a pending entry to a new deadline. It then runs after every entry
    /// already scheduled for the same deadline.
    ///
    /// # Errors
    /// [`TimerError::NotActive`] if the entry already fired or was cancelled.
    pub fn reset(&mut self, id: TimerId, deadline: Instant) -> Result<(), TimerError> {
        if self.pending(id).is_none() {
            return Err(TimerError::NotActive);
        }
        let seq = self.bump_seq();
        let p = self.slots[id.slot as usize]
            .entry
            .as_mut()
            .expect("checked above");
        p.deadline = deadline;
        p.seq = seq;
        self.top_live = false;
        self.heap.push(Reverse((deadline, seq, id.slot)));
        self.maybe_compact();
        Ok(())
    }

    /// Drops heap nodes whose entry was cancelled or reset since.
    #[inline]
    fn skip_stale(&mut self) {
        if self.top_live {
            return;
        }
        while let Some(Reverse((_, seq, slot))) = self.heap.peek() {
            let live = matches!(&self.slots[*slot as usize].entry, Some(p) if p.seq == *seq);
            if live {
                break;
            }
            self.heap.pop();
        }
        // Live, or empty: a node pushed next is live and on top.
        self.top_live = true;
    }

    fn maybe_compact(&mut self) {
        let stale = self.heap.len() - self.live;
        if stale > 64 && stale > self.live {
            let slots = &self.slots;
            self.heap.retain(|Reverse((_, seq, slot))| {
                matches!(&slots[*slot as usize].entry, Some(p) if p.seq == *seq)
            });
        }
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_stale();
        self.heap.peek().map(|Reverse((d, _, _))| *d)
    }

    /// The earliest pending deadline, without tidying the queue (for
    /// snapshots): the head when it is live, else a scan of the heap.
    pub fn peek_deadline(&self) -> Option<Instant> {
        let live = |seq: u64, slot: u32| matches!(&self.slots[slot as usize].entry, Some(p) if p.seq == seq);
        let Reverse((d, seq, slot)) = *self.heap.peek()?;
        if live(seq, slot) {
            return Some(d);
        }
        self.heap
            .iter()
            .filter(|Reverse((_, seq, slot))| live(*seq, *slot))
            .map(|Reverse((d, _, _))| *d)
            .min()
    }

    /// Removes and returns the earliest entry whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<T> {
        self.pop_expired_before(now, u64::MAX)
    }

    /// Like [`pop_expired`](Self::pop_expired), but only entries scheduled (or last
    /// reset) before `mark` (from [`mark`](Self::mark)). A reactor uses this so that
    /// a call scheduled with zero delay by a call running now waits for the next turn.
    pub fn pop_expired_before(&mut self, now: Instant, mark: u64) -> Option<T> {
        self.skip_stale();
        let Reverse((deadline, seq, slot)) = *self.heap.peek()?;
        if deadline > now {
            return None;
        }
        if seq >= mark {
            // Heap order is (deadline, seq): an entry with a later deadline and an
            // older seq can hide behind this one. Look past it without losing it.
            return self.pop_expired_scan(now, mark);
        }
        self.heap.pop();
        Some(self.take(slot))
    }

    fn take(&mut self, slot: u32) -> T {
        self.top_live = false;
        let s = &mut self.slots[slot as usize];
        let p = s.entry.take().expect("live heap node has an entry");
        s.gen = s.gen.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
        p.value
    }

    /// Slow path: the head is too new for `mark`; find the earliest expired live
    /// entry older than `mark`, if any.
    fn pop_expired_scan(&mut self, now: Instant, mark: u64) -> Option<T> {
        let mut best: Option<(Instant, u64, u32)> = None;
        for Reverse((d, seq, slot)) in self.heap.iter() {
            if *d > now || *seq >= mark {
                continue;
            }
            let live = matches!(&self.slots[*slot as usize].entry, Some(p) if p.seq == *seq);
            if live && best.is_none_or(|b| (*d, *seq) < (b.0, b.1)) {
                best = Some((*d, *seq, *slot));
            }
        }
        let (_, _, slot) = best?;
        // The heap node stays behind and is skipped as stale later.
        Some(self.take(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn next_deadline_follows_cancels_resets_and_pops_after_a_peek() {
        // The top node's liveness is cached between calls: every change that
        // can make it stale must be seen.
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let a = q.schedule(t0 + ms(1), "a");
        let b = q.schedule(t0 + ms(2), "b");
        assert_eq!(q.next_deadline(), Some(t0 + ms(1)));
        q.cancel(a).unwrap();
        assert_eq!(q.next_deadline(), Some(t0 + ms(2)));
        q.reset(b, t0 + ms(5)).unwrap();
        assert_eq!(q.next_deadline(), Some(t0 + ms(5)));
        q.schedule(t0 + ms(3), "c");
        assert_eq!(q.next_deadline(), Some(t0 + ms(3)));
        assert_eq!(q.pop_expired(t0 + ms(3)), Some("c"));
        assert_eq!(q.next_deadline(), Some(t0 + ms(5)));
        assert_eq!(q.pop_expired(t0 + ms(9)), Some("b"));
        assert_eq!(q.next_deadline(), None);
        q.schedule(t0 + ms(4), "d");
        assert_eq!(q.next_deadline(), Some(t0 + ms(4)));
    }

    #[test]
    fn fires_in_deadline_then_schedule_order() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.schedule(t0 + ms(5), 3);
        q.schedule(t0 + ms(1), 1);
        q.schedule(t0 + ms(5), 4);
        q.schedule(t0 + ms(1), 2);
        q.schedule(t0 + ms(9), 5);
        let mut out = vec![];
        while let Some(v) = q.pop_expired(t0 + ms(5)) {
            out.push(v);
        }
        assert_eq!(out, vec![1, 2, 3, 4]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_deadline(), Some(t0 + ms(9)));
    }

    #[test]
    fn cancel_twice_and_after_firing_are_errors() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let a = q.schedule(t0, "a");
        let b = q.schedule(t0, "b");
        assert_eq!(q.cancel(a), Ok("a"));
        assert_eq!(q.cancel(a), Err(TimerError::NotActive));
        assert_eq!(q.pop_expired(t0), Some("b"));
        assert_eq!(q.cancel(b), Err(TimerError::NotActive));
        assert_eq!(q.reset(b, t0), Err(TimerError::NotActive));
        assert!(!q.is_active(b));
        // A reused slot does not revive the stale id.
        let c = q.schedule(t0, "c");
        assert!(q.is_active(c));
        assert!(!q.is_active(a) && !q.is_active(b));
        assert_eq!(q.cancel(a), Err(TimerError::NotActive));
        assert!(q.is_active(c));
    }

    #[test]
    fn reset_moves_entry_and_goes_after_equal_deadlines() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let a = q.schedule(t0 + ms(1), "a");
        q.schedule(t0 + ms(10), "b");
        q.reset(a, t0 + ms(10)).unwrap();
        assert_eq!(q.deadline(a), Some(t0 + ms(10)));
        assert_eq!(q.pop_expired(t0 + ms(5)), None);
        assert_eq!(q.pop_expired(t0 + ms(10)), Some("b"));
        assert_eq!(q.pop_expired(t0 + ms(10)), Some("a"));
        assert!(q.is_empty());
    }

    #[test]
    fn mark_holds_back_entries_scheduled_later() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.schedule(t0 + ms(3), "old-late");
        let mark = q.mark();
        q.schedule(t0, "new-early");
        // The newer entry has the earlier deadline but must wait for the next turn.
        assert_eq!(q.pop_expired_before(t0 + ms(3), mark), Some("old-late"));
        assert_eq!(q.pop_expired_before(t0 + ms(3), mark), None);
        assert_eq!(
            q.pop_expired_before(t0 + ms(3), q.mark()),
            Some("new-early")
        );
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn million_cancelled_timers_compact() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        for round in 0..10 {
            let ids: Vec<_> = (0..100_000)
                .map(|i| q.schedule(t0 + ms(1000 + i), round))
                .collect();
            for id in ids {
                q.cancel(id).unwrap();
            }
        }
        assert!(q.is_empty());
        assert!(
            q.heap.len() <= 64 + 1,
            "heap kept {} stale nodes",
            q.heap.len()
        );
        assert!(q.slots.len() <= 100_000);
    }

    #[test]
    fn random_operations_match_a_model() {
        // A tiny deterministic model check: compare against a sorted Vec.
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let mut model: Vec<(u64, u64, u32)> = vec![]; // (deadline ms, order, value)
        let mut ids = vec![];
        let mut order = 0u64;
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut now = 0u64;
        for v in 0..5000u32 {
            match rnd() % 4 {
                0 | 1 => {
                    let d = now + rnd() % 50;
                    ids.push((q.schedule(t0 + ms(d), v), v));
                    model.push((d, order, v));
                    order += 1;
                }
                2 if !ids.is_empty() => {
                    let i = (rnd() as usize) % ids.len();
                    let (id, val) = ids.swap_remove(i);
                    let in_model = model.iter().position(|m| m.2 == val);
                    match (q.cancel(id), in_model) {
                        (Ok(got), Some(p)) => {
                            assert_eq!(got, val);
                            model.remove(p);
                        }
                        (Err(_), None) => {}
                        other => panic!("mismatch {other:?}"),
                    }
                }
                _ => {
                    now += rnd() % 20;
                    model.sort();
                    let mut expect = vec![];
                    while model.first().is_some_and(|m| m.0 <= now) {
                        expect.push(model.remove(0).2);
                    }
                    let mut got = vec![];
                    while let Some(v) = q.pop_expired(t0 + ms(now)) {
                        got.push(v);
                    }
                    assert_eq!(got, expect);
                }
            }
            assert_eq!(q.len(), model.len());
        }
    }
}
