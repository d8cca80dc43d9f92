//! `Core::watch_signals`: real signals raised in this process reach the
//! callback on the reactor's thread. The tests run in parallel threads of one
//! process, so each uses signals of its own (raise(3) delivers to the thread
//! that raises, whose handler writes to every watcher of that signal).

mod util;

use std::cell::RefCell;
use std::io::ErrorKind;
use std::rc::Rc;
use std::time::Duration;

use torsion::{Core, Error, Reactor, SignalWatch};
use util::run_until;

fn raise(sig: i32) {
    // SAFETY: raise(3) takes an integer; every signal raised here has a
    // handler installed by the test that raises it.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

/// A callback that records the signals it saw.
type Seen = Rc<RefCell<Vec<i32>>>;

fn recorder() -> (Seen, impl FnMut(&mut Core, i32) + 'static) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    (seen, move |_core: &mut Core, sig| s.borrow_mut().push(sig))
}

#[test]
fn a_signal_raised_before_the_reactor_runs_reaches_the_callback() {
    let mut reactor = Reactor::new().unwrap();
    let (seen, on_signal) = recorder();
    let watch = reactor.watch_signals(&[libc::SIGUSR1], on_signal).unwrap();
    // Installed at once: nothing is lost while the source is not registered.
    raise(libc::SIGUSR1);
    run_until(&mut reactor, || !seen.borrow().is_empty());
    assert_eq!(*seen.borrow(), [libc::SIGUSR1]);
    assert!(format!("{watch:?}").contains(&libc::SIGUSR1.to_string()));
}

#[test]
fn the_callback_runs_in_the_loop_and_can_use_the_core() {
    let mut reactor = Reactor::new().unwrap();
    let timer_ran = Rc::new(RefCell::new(false));
    let t = timer_ran.clone();
    let _watch = reactor
        .watch_signals(&[libc::SIGALRM], move |core, sig| {
            assert_eq!(sig, libc::SIGALRM);
            let t = t.clone();
            core.call_later(Duration::ZERO, move |_| *t.borrow_mut() = true);
        })
        .unwrap();
    // Raised from a callback of the running loop.
    reactor.call_later(Duration::ZERO, |_| raise(libc::SIGALRM));
    run_until(&mut reactor, || *timer_ran.borrow());
}

#[test]
fn every_arrival_is_delivered_in_order() {
    let mut reactor = Reactor::new().unwrap();
    let (seen, on_signal) = recorder();
    let _watch = reactor
        .watch_signals(&[libc::SIGURG, libc::SIGWINCH], on_signal)
        .unwrap();
    // raise(3) runs the handler before it returns: three arrivals, in order.
    raise(libc::SIGURG);
    raise(libc::SIGWINCH);
    raise(libc::SIGURG);
    run_until(&mut reactor, || seen.borrow().len() == 3);
    assert_eq!(*seen.borrow(), [libc::SIGURG, libc::SIGWINCH, libc::SIGURG]);
}

#[test]
fn two_watchers_of_one_signal_are_both_called() {
    let mut reactor = Reactor::new().unwrap();
    let (first, on_first) = recorder();
    let (second, on_second) = recorder();
    let _a = reactor.watch_signals(&[libc::SIGUSR2], on_first).unwrap();
    // And one on another reactor (another thread's, say): it hears it too.
    let mut other = Reactor::new().unwrap();
    let _b = other.watch_signals(&[libc::SIGUSR2], on_second).unwrap();
    raise(libc::SIGUSR2);
    run_until(&mut reactor, || first.borrow().len() == 1);
    run_until(&mut other, || second.borrow().len() == 1);
    assert_eq!(*first.borrow(), [libc::SIGUSR2]);
    assert_eq!(*second.borrow(), [libc::SIGUSR2]);
}

#[test]
fn a_dropped_watch_is_not_called_and_its_source_goes() {
    let mut reactor = Reactor::new().unwrap();
    let (kept, on_kept) = recorder();
    let (dropped, on_dropped) = recorder();
    let keep = reactor.watch_signals(&[libc::SIGHUP], on_kept).unwrap();
    let gone = reactor.watch_signals(&[libc::SIGHUP], on_dropped).unwrap();
    until(&mut reactor, |r| r.source_count() == 2);
    // A signal on its way when the watch is dropped is not called back.
    raise(libc::SIGHUP);
    gone.cancel();
    raise(libc::SIGHUP);
    run_until(&mut reactor, || kept.borrow().len() == 2);
    until(&mut reactor, |r| r.source_count() == 1);
    assert!(dropped.borrow().is_empty(), "{:?}", dropped.borrow());
    drop(keep);
    until(&mut reactor, |r| r.source_count() == 0);
}

/// Runs `reactor` until `done` holds of it (the deadline only catches hangs).
fn until(reactor: &mut Reactor, done: impl FnMut(&mut Reactor) -> bool) {
    assert!(
        reactor.run_until(util::DEADLINE, done).unwrap(),
        "not within the deadline"
    );
}

#[test]
fn a_watch_dropped_before_the_loop_turned_registers_nothing() {
    let mut reactor = Reactor::new().unwrap();
    let (seen, on_signal) = recorder();
    drop(reactor.watch_signals(&[libc::SIGPROF], on_signal).unwrap());
    // A watcher that stays, so that the raised signal has a handler and the
    // loop has something to wait for.
    let (other, on_other) = recorder();
    let _w = reactor.watch_signals(&[libc::SIGPROF], on_other).unwrap();
    raise(libc::SIGPROF);
    run_until(&mut reactor, || other.borrow().len() == 1);
    assert!(seen.borrow().is_empty());
    assert_eq!(reactor.source_count(), 1);
}

#[test]
fn the_callback_may_drop_its_own_watch() {
    let mut reactor = Reactor::new().unwrap();
    let slot: Rc<RefCell<Option<SignalWatch>>> = Rc::new(RefCell::new(None));
    let calls = Rc::new(RefCell::new(0));
    let (s, c) = (slot.clone(), calls.clone());
    let watch = reactor
        .watch_signals(&[libc::SIGVTALRM], move |_, _| {
            *c.borrow_mut() += 1;
            s.borrow_mut().take();
        })
        .unwrap();
    *slot.borrow_mut() = Some(watch);
    // Both arrive before the loop reads either: the second is not called.
    raise(libc::SIGVTALRM);
    raise(libc::SIGVTALRM);
    until(&mut reactor, |r| {
        *calls.borrow() == 1 && r.source_count() == 0
    });
    assert_eq!(*calls.borrow(), 1);
}

#[test]
fn a_panicking_callback_costs_that_call_only() {
    let mut reactor = Reactor::new().unwrap();
    reactor.set_panic_policy(torsion::PanicPolicy::Record);
    let calls = Rc::new(RefCell::new(0));
    let c = calls.clone();
    let _watch = reactor
        .watch_signals(&[libc::SIGXFSZ], move |_, _| {
            *c.borrow_mut() += 1;
            if *c.borrow() == 1 {
                panic!("the first call panics");
            }
        })
        .unwrap();
    raise(libc::SIGXFSZ);
    run_until(&mut reactor, || *calls.borrow() == 1);
    raise(libc::SIGXFSZ);
    run_until(&mut reactor, || *calls.borrow() == 2);
    assert_eq!(reactor.take_panics().len(), 1);
}

fn invalid_input(res: torsion::Result<SignalWatch>) -> bool {
    matches!(res, Err(Error::Io(e)) if e.kind() == ErrorKind::InvalidInput)
}

#[test]
fn bad_signal_numbers_are_errors_not_panics() {
    let mut reactor = Reactor::new().unwrap();
    for sig in [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGILL,
        libc::SIGFPE,
    ] {
        let res = reactor.watch_signals(&[sig], |_, _| {});
        assert!(invalid_input(res), "signal {sig}");
    }
    for sig in [0, -1, 256, 1000, i32::MAX] {
        let res = reactor.watch_signals(&[sig], |_, _| {});
        assert!(res.is_err(), "signal {sig} accepted");
    }
    // One bad number in a list: nothing is kept.
    let res = reactor.watch_signals(&[libc::SIGTSTP, libc::SIGKILL], |_, _| {});
    assert!(invalid_input(res));
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(reactor.source_count(), 0);
}

#[test]
fn the_fake_clock_has_no_signals() {
    let mut clock = torsion::testing::Clock::new();
    match clock.watch_signals(&[libc::SIGUSR1], |_, _| {}) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), ErrorKind::Unsupported),
        other => panic!("{other:?}"),
    }
}

#[cfg(target_os = "linux")]
#[test]
fn once_the_last_watch_is_gone_the_signal_is_ignored() {
    let mut reactor = Reactor::new().unwrap();
    let (seen, on_signal) = recorder();
    // SIGPWR's default action ends the process.
    let watch = reactor.watch_signals(&[libc::SIGPWR], on_signal).unwrap();
    drop(watch);
    raise(libc::SIGPWR);
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert!(seen.borrow().is_empty());
    // Still here: not restored to the default.
}

#[test]
fn a_slow_signal_callback_is_counted_as_one() {
    let mut reactor = Reactor::new().unwrap();
    reactor.set_slow_callback_threshold(Some(Duration::from_millis(10)));
    let done = Rc::new(RefCell::new(false));
    let d = done.clone();
    let _watch = reactor
        .watch_signals(&[libc::SIGTRAP], move |_, _| {
            // Busy for 40 ms: four times the threshold.
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_millis(40) {}
            *d.borrow_mut() = true;
        })
        .unwrap();
    raise(libc::SIGTRAP);
    run_until(&mut reactor, || *done.borrow());
    assert_eq!(reactor.counters().slow_callbacks, 1);
}
