//! Stall detection: a connection (or a UDP flow, or a connect-request-close
//! slot) that has something outstanding and makes no progress for the stall
//! threshold counts one stall, an error: a run whose link froze is not `ok`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One connection's progress, as the watchdog sees it.
#[derive(Debug)]
pub struct Watch {
    /// Which connection (for the error detail).
    pub id: usize,
    /// Since when it has waited without progress (`None`: nothing outstanding).
    waiting_since: Option<Instant>,
    /// The current wait was already counted as a stall.
    counted: bool,
}

/// A watch shared by a connection and its thread's watchdog.
pub type WatchRef = Rc<RefCell<Watch>>;

impl Watch {
    /// A watch with nothing outstanding.
    pub fn new(id: usize) -> WatchRef {
        Rc::new(RefCell::new(Watch {
            id,
            waiting_since: None,
            counted: false,
        }))
    }

    /// Something is outstanding from `now` (no-op if it already was).
    pub fn busy(&mut self, now: Instant) {
        if self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
    }

    /// Progress at `now`, with more outstanding (`more`) or not. Returns how long
    /// the wait that just ended lasted if it had been counted as a stall.
    pub fn progress(&mut self, now: Instant, more: bool) -> Option<Duration> {
        let ended = self
            .waiting_since
            .filter(|_| self.counted)
            .map(|t| now.saturating_duration_since(t));
        self.counted = false;
        self.waiting_since = more.then_some(now);
        ended
    }

    /// Nothing outstanding any more (the connection closed or finished).
    pub fn idle(&mut self) {
        self.waiting_since = None;
        self.counted = false;
    }

    /// Whether the wait has reached `threshold` at `now` and was not counted yet;
    /// if so it is counted now.
    pub fn check(&mut self, now: Instant, threshold: Duration) -> Option<Duration> {
        let since = self.waiting_since?;
        let waited = now.saturating_duration_since(since);
        if self.counted || waited < threshold {
            return None;
        }
        self.counted = true;
        Some(waited)
    }

    /// How long the current wait has lasted, if counted as a stall.
    pub fn open_stall(&self, now: Instant) -> Option<Duration> {
        self.waiting_since
            .filter(|_| self.counted)
            .map(|t| now.saturating_duration_since(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_past_the_threshold_counts_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let w = Watch::new(1);
        let mut w = w.borrow_mut();
        assert_eq!(w.check(t0 + ms(500), ms(100)), None, "nothing outstanding");
        w.busy(t0);
        assert_eq!(w.check(t0 + ms(50), ms(100)), None);
        assert_eq!(w.check(t0 + ms(150), ms(100)), Some(ms(150)));
        assert_eq!(w.check(t0 + ms(300), ms(100)), None, "counted once");
        assert_eq!(w.progress(t0 + ms(400), true), Some(ms(400)));
        assert_eq!(w.check(t0 + ms(450), ms(100)), None);
        assert_eq!(w.progress(t0 + ms(460), false), None, "short wait");
        assert_eq!(w.check(t0 + ms(900), ms(100)), None, "idle");
    }
}
