//! Reactor semantics: run/stop, timers, cross-thread calls.
mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::{Error, Reactor};

#[test]
fn stop_when_not_running_is_an_error() {
    let mut r = Reactor::new().unwrap();
    assert!(matches!(r.stop(), Err(Error::NotRunning)));
    assert!(matches!(r.reactor_handle().stop(), Err(Error::NotRunning)));
}

#[test]
fn run_returns_after_stop_and_can_run_again() {
    let mut r = Reactor::new().unwrap();
    let runs = Rc::new(RefCell::new(0));
    for _ in 0..3 {
        let n = runs.clone();
        r.call_later(Duration::ZERO, move |core| {
            *n.borrow_mut() += 1;
            core.stop().unwrap();
        });
        r.run().unwrap();
        assert!(!r.is_running());
    }
    assert_eq!(*runs.borrow(), 3);
}

#[test]
fn equal_deadlines_run_in_scheduling_order() {
    let mut r = Reactor::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    for i in 0..100 {
        let log = log.clone();
        let d = Duration::from_millis(if i % 2 == 0 { 5 } else { 0 });
        r.call_later(d, move |_| log.borrow_mut().push(i));
    }
    r.call_later(Duration::from_millis(5), |core| core.stop().unwrap());
    r.run().unwrap();
    let expect: Vec<i32> = (0..100)
        .filter(|i| i % 2 == 1)
        .chain((0..100).filter(|i| i % 2 == 0))
        .collect();
    assert_eq!(*log.borrow(), expect);
}

#[test]
fn zero_delay_call_runs_on_the_next_turn_not_inside_the_current_one() {
    let mut r = Reactor::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    r.call_later(Duration::ZERO, move |core| {
        l.borrow_mut().push("outer-start");
        let l2 = l.clone();
        core.call_later(Duration::ZERO, move |core| {
            l2.borrow_mut().push("inner");
            core.stop().unwrap();
        });
        l.borrow_mut().push("outer-end");
    });
    // One turn runs the outer call only.
    r.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*log.borrow(), vec!["outer-start", "outer-end"]);
    r.run().unwrap();
    assert_eq!(*log.borrow(), vec!["outer-start", "outer-end", "inner"]);
}

#[test]
fn cancel_reset_delay_active() {
    let mut r = Reactor::new().unwrap();
    let fired = Rc::new(RefCell::new(Vec::new()));
    let f = fired.clone();
    let a = r.call_later(Duration::from_secs(3600), move |_| f.borrow_mut().push("a"));
    assert!(a.active(&r));
    a.cancel(&mut r).unwrap();
    assert!(!a.active(&r));
    assert!(matches!(a.cancel(&mut r), Err(Error::AlreadyCalled)));
    assert!(matches!(
        a.reset(&mut r, Duration::ZERO),
        Err(Error::AlreadyCalled)
    ));
    assert!(matches!(
        a.delay(&mut r, Duration::ZERO),
        Err(Error::AlreadyCalled)
    ));

    // reset moves a far call to now; delay pushes a near one far away.
    let f = fired.clone();
    let b = r.call_later(Duration::from_secs(3600), move |_| f.borrow_mut().push("b"));
    b.reset(&mut r, Duration::ZERO).unwrap();
    let f = fired.clone();
    let c = r.call_later(Duration::ZERO, move |_| f.borrow_mut().push("c"));
    c.delay(&mut r, Duration::from_secs(3600)).unwrap();
    let due = c.time(&r).unwrap();
    assert!(due >= r.now() + Duration::from_secs(3599));
    let done = r
        .run_until(util::DEADLINE, |_| !fired.borrow().is_empty())
        .unwrap();
    assert!(done);
    assert_eq!(*fired.borrow(), vec!["b"]);
    assert!(!b.active(&r));
    assert!(matches!(b.cancel(&mut r), Err(Error::AlreadyCalled)));
    assert!(c.active(&r));
    c.cancel(&mut r).unwrap();
}

#[test]
fn timers_respect_their_delay_on_a_monotonic_clock() {
    let mut r = Reactor::new().unwrap();
    let start = Instant::now();
    let at = Rc::new(RefCell::new(None));
    let a = at.clone();
    r.call_later(Duration::from_millis(30), move |core| {
        *a.borrow_mut() = Some(Instant::now());
        core.stop().unwrap();
    });
    r.run().unwrap();
    // Never early (a lower bound is not a timing-based pass/fail: it is the contract).
    assert!(at.borrow().unwrap() - start >= Duration::from_millis(30));
}

#[test]
fn call_from_thread_wakes_a_sleeping_reactor_and_keeps_order() {
    let mut r = Reactor::new().unwrap();
    let handle = r.reactor_handle();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = log.clone();
    let t = std::thread::spawn(move || {
        for i in 0..1000 {
            let l = l.clone();
            handle.call_from_thread(move |_| l.lock().unwrap().push(i));
        }
        handle.call_from_thread(|core| core.stop().unwrap());
    });
    // Nothing else is scheduled: without the waker this would sleep forever.
    r.run().unwrap();
    t.join().unwrap();
    assert_eq!(*log.lock().unwrap(), (0..1000).collect::<Vec<_>>());
}

#[test]
fn handle_stop_from_another_thread() {
    let mut r = Reactor::new().unwrap();
    let handle = r.reactor_handle();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    r.call_later(Duration::ZERO, move |_| tx.send(()).unwrap());
    let t = std::thread::spawn(move || {
        rx.recv().unwrap(); // the reactor is running once this arrives
        handle.stop().unwrap();
    });
    r.run().unwrap();
    t.join().unwrap();
}

#[test]
fn a_panicking_timer_does_not_kill_the_reactor() {
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(torsion::PanicPolicy::Record);
    r.call_later(Duration::ZERO, |_| panic!("boom"));
    let ok = Rc::new(RefCell::new(false));
    let o = ok.clone();
    r.call_later(Duration::from_millis(1), move |core| {
        *o.borrow_mut() = true;
        core.stop().unwrap();
    });
    r.run().unwrap();
    assert!(*ok.borrow());
    assert_eq!(r.take_panics(), vec!["boom".to_string()]);
}

#[test]
fn stop_reactor_panic_policy_returns_an_error() {
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(torsion::PanicPolicy::StopReactor);
    r.call_later(Duration::ZERO, |_| panic!("bad timer"));
    match r.run() {
        Err(Error::Panicked(m)) => assert_eq!(m, "bad timer"),
        other => panic!("expected Panicked, got {other:?}"),
    }
}
