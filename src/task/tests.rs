//! `defer_later`, `add_timeout` and `LoopingCall` on a hand-driven `Core`: no
//! sockets, no real time.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::context::Timed;
use crate::defer::{Deferred, Failure};

/// A minimal fake clock over a plain `Core`, with the reactor's turn rules.
struct Clock {
    core: Core,
    t0: Instant,
}

impl Clock {
    fn new() -> Self {
        let t0 = Instant::now();
        Clock {
            core: Core::new(t0, None),
            t0,
        }
    }

    /// One reactor turn at the current time.
    fn turn(&mut self) -> bool {
        let now = self.core.now();
        let mark = self.core.timers.mark();
        let mut ran = false;
        while let Some(t) = self.core.timers.pop_expired_before(now, mark) {
            if let Timed::Call(f) = t {
                f(&mut self.core);
            }
            ran = true;
        }
        self.core.run_local();
        ran
    }

    /// Moves time forward and runs turns until nothing is due.
    fn advance(&mut self, by: Duration) {
        let now = self.core.now() + by;
        self.core.set_now(now);
        while self.turn() {}
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn defer_later_fires_after_the_delay() {
    let mut c = Clock::new();
    let mut d: Deferred<Duration, Failure> = defer_later(&mut c.core, secs(2.0), {
        let t0 = c.t0;
        move |core| Ok(core.now() - t0)
    });
    c.advance(secs(1.9));
    assert!(!d.has_result());
    c.advance(secs(0.1));
    assert_eq!(d.take_result().unwrap().unwrap(), secs(2.0));
}

#[test]
fn cancelled_defer_later_never_calls_and_frees_its_timer() {
    let mut c = Clock::new();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let mut d: Deferred<(), Failure> = defer_later(&mut c.core, secs(1.0), move |_| {
        r.set(true);
        Ok(())
    });
    assert_eq!(c.core.timers.len(), 1);
    d.cancel();
    assert!(d.take_result().unwrap().unwrap_err().is::<Cancelled>());
    c.turn();
    assert_eq!(c.core.timers.len(), 0, "the timer was cancelled");
    c.advance(secs(5.0));
    assert!(!ran.get());
}

#[test]
fn defer_later_may_return_a_deferred() {
    let mut c = Clock::new();
    let (inner, t) = Deferred::<u8, Failure>::new();
    let mut d = defer_later(&mut c.core, secs(1.0), move |_| inner);
    c.advance(secs(1.0));
    assert!(!d.has_result());
    t.callback(3).unwrap();
    assert_eq!(d.take_result().unwrap().unwrap(), 3);
}

#[test]
fn timeout_fails_with_timed_out_and_cancels() {
    let mut c = Clock::new();
    let cancelled = Rc::new(Cell::new(false));
    let cc = cancelled.clone();
    let (d, _t) = Deferred::<u8, Failure>::with_canceller(move |_| cc.set(true));
    let mut d = d.add_timeout(&mut c.core, secs(3.0));
    c.advance(secs(2.9));
    assert!(!d.has_result());
    c.advance(secs(0.1));
    assert!(cancelled.get());
    assert!(d.take_result().unwrap().unwrap_err().is::<TimedOut>());
}

#[test]
fn result_before_timeout_cancels_the_timer() {
    let mut c = Clock::new();
    let (d, t) = Deferred::<u8, Failure>::new();
    let mut d = d.add_timeout(&mut c.core, secs(3.0));
    assert_eq!(c.core.timers.len(), 1);
    t.callback(1).unwrap();
    c.turn();
    assert_eq!(c.core.timers.len(), 0);
    c.advance(secs(10.0));
    assert_eq!(d.take_result().unwrap().unwrap(), 1);
}

#[test]
fn manual_cancel_before_timeout_stays_cancelled() {
    let mut c = Clock::new();
    let (d, _t) = Deferred::<u8, Failure>::new();
    let mut d = d.add_timeout(&mut c.core, secs(3.0));
    d.cancel();
    c.advance(secs(10.0));
    assert!(d.take_result().unwrap().unwrap_err().is::<Cancelled>());
}

#[test]
fn errback_added_before_the_timeout_sees_the_cancel_and_may_recover() {
    let mut c = Clock::new();
    let saw = Rc::new(Cell::new(false));
    let s = saw.clone();
    let (d, _t) = Deferred::<u8, Failure>::new();
    let mut d = d
        .add_errback(move |e| {
            s.set(e.is::<Cancelled>());
            Ok(0)
        })
        .add_timeout(&mut c.core, secs(1.0));
    c.advance(secs(1.0));
    assert!(saw.get());
    assert_eq!(d.take_result().unwrap().unwrap(), 0);
}

#[test]
fn timeout_covers_a_nested_deferred() {
    let mut c = Clock::new();
    let inner_cancelled = Rc::new(Cell::new(false));
    let ic = inner_cancelled.clone();
    let (inner, _ti) = Deferred::<u8, Failure>::with_canceller(move |_| ic.set(true));
    let mut d = crate::defer::succeed::<u8, Failure>(0)
        .add_callback(move |_| inner)
        .add_timeout(&mut c.core, secs(1.0));
    c.advance(secs(1.0));
    assert!(inner_cancelled.get());
    assert!(d.take_result().unwrap().unwrap_err().is::<TimedOut>());
}

type Calls = Rc<RefCell<Vec<(Duration, u64)>>>;

fn recording(t0: Instant, calls: &Calls) -> LoopingCall<Failure> {
    let calls = calls.clone();
    LoopingCall::new(move |core, lc| {
        calls.borrow_mut().push((core.now() - t0, lc.intervals()));
        Ok(())
    })
}

#[test]
fn looping_call_runs_on_a_grid_now_or_later() {
    for now in [true, false] {
        let mut c = Clock::new();
        let calls = Calls::default();
        let lc = recording(c.t0, &calls);
        let _done = lc.start(&mut c.core, secs(1.0), now).unwrap();
        c.turn();
        for _ in 0..6 {
            c.advance(secs(0.5));
        }
        let times: Vec<f64> = calls
            .borrow()
            .iter()
            .map(|(t, _)| t.as_secs_f64())
            .collect();
        if now {
            assert_eq!(times, [0.0, 1.0, 2.0, 3.0]);
        } else {
            assert_eq!(times, [1.0, 2.0, 3.0]);
        }
        assert!(lc.is_running());
        assert_eq!(
            lc.start(&mut c.core, secs(1.0), true).unwrap_err(),
            LoopingCallError::AlreadyRunning
        );
    }
}

#[test]
fn looping_call_skips_missed_intervals_and_counts_them() {
    let mut c = Clock::new();
    let calls = Calls::default();
    let lc = recording(c.t0, &calls);
    let _done = lc.start(&mut c.core, secs(1.0), true).unwrap();
    c.advance(secs(3.5)); // late: 1, 2 and 3 missed
    c.advance(secs(0.5));
    assert_eq!(
        *calls.borrow(),
        [(secs(0.0), 1), (secs(3.5), 3), (secs(4.0), 1)],
        "one catch-up call at 3.5, then back on the grid at 4"
    );
}

#[test]
fn looping_call_waits_for_a_returned_deferred() {
    let mut c = Clock::new();
    let pending: Rc<RefCell<Vec<Trigger<(), Failure>>>> = Rc::default();
    let p = pending.clone();
    let t0 = c.t0;
    let times = Rc::new(RefCell::new(Vec::new()));
    let ts = times.clone();
    let lc = LoopingCall::<Failure>::new(move |core, _| {
        ts.borrow_mut().push(core.now() - t0);
        let (d, t) = Deferred::new();
        p.borrow_mut().push(t);
        d
    });
    let _done = lc.start(&mut c.core, secs(1.0), true).unwrap();
    c.advance(secs(2.5));
    assert_eq!(
        times.borrow().len(),
        1,
        "no call while the Deferred is pending"
    );
    let t = pending.borrow_mut().remove(0);
    t.callback(()).unwrap();
    c.turn();
    c.advance(secs(0.5));
    assert_eq!(*times.borrow(), [secs(0.0), secs(3.0)]);
}

#[test]
fn failing_call_stops_the_loop_and_fails_start() {
    let mut c = Clock::new();
    let mut n = 0;
    let lc = LoopingCall::<Failure>::new(move |_, _| {
        n += 1;
        if n == 2 {
            Err(Failure::msg("second call failed"))
        } else {
            Ok(())
        }
    });
    let mut done = lc.start(&mut c.core, secs(1.0), true).unwrap();
    c.advance(secs(1.0));
    assert!(!lc.is_running());
    assert_eq!(
        done.take_result().unwrap().unwrap_err().to_string(),
        "second call failed"
    );
    assert_eq!(c.core.timers.len(), 0);
}

#[test]
fn failing_deferred_stops_the_loop_too() {
    let mut c = Clock::new();
    let lc = LoopingCall::<Failure>::new(|_, _| {
        crate::defer::fail::<(), Failure>(Failure::msg("async failure"))
    });
    let mut done = lc.start(&mut c.core, secs(1.0), true).unwrap();
    assert!(!lc.is_running());
    assert!(done.take_result().unwrap().is_err());
}

#[test]
fn stop_from_inside_the_call() {
    let mut c = Clock::new();
    let count = Rc::new(Cell::new(0));
    let n = count.clone();
    let lc = LoopingCall::<Failure>::new(move |core, lc| {
        n.set(n.get() + 1);
        if n.get() == 3 {
            lc.stop(core);
        }
        Ok(())
    });
    let mut done = lc.start(&mut c.core, secs(1.0), true).unwrap();
    for _ in 0..10 {
        c.advance(secs(1.0));
    }
    assert_eq!(count.get(), 3);
    assert!(done.take_result().unwrap().is_ok());
    assert_eq!(c.core.timers.len(), 0);
}

#[test]
fn stop_while_waiting_fires_when_the_call_finishes() {
    let mut c = Clock::new();
    let slot: Rc<RefCell<Option<Trigger<(), Failure>>>> = Rc::default();
    let s = slot.clone();
    let lc = LoopingCall::<Failure>::new(move |_, _| {
        let (d, t) = Deferred::new();
        *s.borrow_mut() = Some(t);
        d
    });
    let mut done = lc.start(&mut c.core, secs(1.0), true).unwrap();
    lc.stop(&mut c.core);
    assert!(!done.has_result());
    slot.borrow_mut().take().unwrap().callback(()).unwrap();
    assert!(done.take_result().unwrap().is_ok());
    c.advance(secs(5.0));
    assert_eq!(c.core.timers.len(), 0);
    // Stopped: it can start again.
    let _again = lc.start(&mut c.core, secs(1.0), false).unwrap();
}

#[test]
fn reset_restarts_the_grid() {
    let mut c = Clock::new();
    let calls = Calls::default();
    let lc = recording(c.t0, &calls);
    let _done = lc.start(&mut c.core, secs(1.0), false).unwrap();
    c.advance(secs(0.6));
    lc.reset(&mut c.core);
    c.advance(secs(0.6));
    assert!(calls.borrow().is_empty());
    c.advance(secs(0.4));
    c.advance(secs(1.0));
    let times: Vec<Duration> = calls.borrow().iter().map(|c| c.0).collect();
    assert_eq!(times, [secs(1.6), secs(2.6)]);
}

#[test]
fn zero_interval_calls_once_per_turn() {
    let mut c = Clock::new();
    let calls = Calls::default();
    let lc = recording(c.t0, &calls);
    let _done = lc.start(&mut c.core, Duration::ZERO, true).unwrap();
    assert_eq!(calls.borrow().len(), 1);
    c.turn();
    c.turn();
    assert_eq!(calls.borrow().len(), 3);
    lc.stop(&mut c.core);
    c.turn();
    assert_eq!(calls.borrow().len(), 3);
}
