//! Chain semantics, without sockets or time.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::*;

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// Runs `f` with a tracing subscriber that records error-level events.
pub(crate) fn capture_errors(f: impl FnOnce()) -> Vec<String> {
    crate::test_logs::capture_logs(tracing::Level::ERROR, f)
}

#[test]
fn callbacks_change_type_and_errors_switch_paths() {
    let (d, t) = Deferred::<u32, Failure>::new();
    let seen = log();
    let s = seen.clone();
    let mut d = d
        .add_callback(|n| Ok(n + 1))
        .add_callback(|n| Ok(format!("n={n}")))
        .add_errback(|_| -> Result<String, Failure> { unreachable!("no error yet") })
        .add_callback(|s| -> Result<usize, Failure> { Err(Failure::msg(s)) })
        .add_callback(|_| -> Result<usize, Failure> { unreachable!("on the error path") })
        .add_errback(move |e| {
            s.borrow_mut().push(e.to_string());
            Ok(7)
        })
        .add_both(|r| Ok(r.unwrap() * 6));
    assert!(!d.has_result());
    t.callback(1).unwrap();
    assert_eq!(*seen.borrow(), ["n=2"]);
    assert_eq!(d.take_result().unwrap().unwrap(), 42);
}

#[test]
fn add_callbacks_runs_exactly_one_side() {
    let (d, t) = Deferred::<u32, Failure>::new();
    let mut d = d
        .add_callbacks(
            |_| -> Result<u32, Failure> { Err(Failure::msg("from callback")) },
            |_| Ok(0),
        )
        .add_errback(|e| Ok(e.to_string().len() as u32));
    t.callback(1).unwrap();
    // The callback's error skipped its own errback and reached the next one.
    assert_eq!(
        d.take_result().unwrap().unwrap(),
        "from callback".len() as u32
    );

    let mut d = fail::<u32, Failure>(Failure::msg("x")).add_callbacks(|_| Ok(1), |_| Ok(2));
    assert_eq!(d.take_result().unwrap().unwrap(), 2);
}

#[test]
fn firing_twice_is_an_error_value() {
    let (d, t) = Deferred::<u32, Failure>::new();
    assert!(!t.is_called() && !d.is_called());
    t.callback(1).unwrap();
    assert_eq!(t.callback(2), Err(AlreadyCalled));
    assert_eq!(t.errback(Failure::msg("late")).unwrap_err(), AlreadyCalled);
    assert!(d.is_called());
    let mut d = d;
    assert_eq!(d.take_result().unwrap().unwrap(), 1);
}

#[test]
fn callbacks_added_after_firing_run_at_once() {
    let mut d = succeed::<_, Failure>(2);
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    d = d.add_callback(move |n| {
        r.set(true);
        Ok(n)
    });
    assert!(ran.get());
    assert_eq!(d.take_result().unwrap().unwrap(), 2);
}

#[test]
fn returned_deferred_pauses_the_chain_and_moves_its_result() {
    let (outer, t_outer) = Deferred::<u32, Failure>::new();
    let (inner, t_inner) = Deferred::<String, Failure>::new();
    let inner = Rc::new(RefCell::new(Some(inner)));
    let i = inner.clone();
    let mut d = outer
        .add_callback(move |_| i.borrow_mut().take().unwrap())
        .add_callback(|s: String| Ok(s.len()));
    t_outer.callback(0).unwrap();
    assert!(d.is_called());
    assert!(!d.has_result(), "waits for the inner Deferred");
    t_inner.callback("four".into()).unwrap();
    assert_eq!(d.take_result().unwrap().unwrap(), 4);

    // An inner Deferred that already fired hands its result over at once.
    let mut d = succeed::<_, Failure>(1).add_callback(|n| succeed(n + 1));
    assert_eq!(d.take_result().unwrap().unwrap(), 2);
}

#[test]
fn nested_error_is_handed_on_not_logged_twice() {
    let lines = capture_errors(|| {
        let (inner, t) = Deferred::<u32, Failure>::new();
        let d = succeed::<u32, Failure>(0).add_callback(move |_| inner);
        t.errback(Failure::msg("boom")).unwrap();
        drop(t);
        drop(d); // the outer's final result is the error: logged once
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("boom"), "{lines:?}");
    assert!(lines[0].contains("src/defer/tests.rs"), "{lines:?}");
}

#[test]
fn unhandled_error_is_logged_on_last_drop_with_creation_site() {
    let line = line!() + 1;
    let (d, t) = Deferred::<(), Failure>::new();
    t.errback(Failure::msg("lost")).unwrap();
    // The trigger still holds the chain: not yet.
    assert!(capture_errors(|| drop(d)).is_empty());
    let lines = capture_errors(|| drop(t));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("ERROR"));
    assert!(lines[0].contains("lost"));
    assert!(
        lines[0].contains(&format!("src/defer/tests.rs:{line}")),
        "{lines:?}"
    );
}

#[test]
fn handled_errors_are_not_logged() {
    let lines = capture_errors(|| {
        // Taken.
        let mut d = fail::<(), Failure>(Failure::msg("a"));
        assert!(d.take_result().unwrap().is_err());
        // Recovered.
        let d = fail::<u32, Failure>(Failure::msg("b")).add_errback(|_| Ok(1));
        drop(d);
        // Success.
        drop(succeed::<u32, Failure>(1));
        // Never fired.
        drop(Deferred::<u32, Failure>::new());
    });
    assert!(lines.is_empty(), "{lines:?}");
}

/// `n + 1` Deferreds where the callback of each returns the next, every level
/// but the innermost fired: an outer chain waiting `n` levels deep.
fn nesting(n: usize) -> (Deferred<usize, Failure>, Vec<Trigger<usize, Failure>>) {
    let mut triggers = Vec::with_capacity(n + 1);
    let mut ds = Vec::with_capacity(n + 1);
    for _ in 0..=n {
        let (d, t) = Deferred::<usize, Failure>::new();
        ds.push(d);
        triggers.push(t);
    }
    let mut next = ds.pop().unwrap();
    while let Some(d) = ds.pop() {
        let inner = next;
        next = d.add_callback(move |_| inner);
    }
    for t in &triggers[..n] {
        t.callback(0).unwrap();
    }
    (next, triggers)
}

#[test]
fn a_hundred_thousand_nested_deferreds_do_not_overflow() {
    const N: usize = 100_000;
    let (mut head, triggers) = nesting(N);
    assert!(head.is_called() && !head.has_result());
    triggers[N].callback(99).unwrap();
    assert_eq!(head.take_result().unwrap().unwrap(), 99);

    // Cancelling walks down the nesting to the innermost one.
    let (mut head, _triggers) = nesting(N);
    head.cancel();
    assert!(head.take_result().unwrap().unwrap_err().is::<Cancelled>());

    // Dropped unfired, the nesting must not drop recursively either.
    let (head, triggers) = nesting(N);
    drop(head);
    drop(triggers);
}

#[test]
fn deep_chain_of_ready_deferreds_is_iterative() {
    let mut d = succeed::<u64, Failure>(0);
    for _ in 0..100_000 {
        d = d.add_callback(|n| succeed(n + 1));
    }
    assert_eq!(d.take_result().unwrap().unwrap(), 100_000);
}

#[test]
fn callback_adding_to_its_own_deferred_does_not_recurse() {
    let order = log();
    let slot: Rc<RefCell<Option<Deferred<u32, Failure>>>> = Rc::new(RefCell::new(None));
    let (d, t) = Deferred::<u32, Failure>::new();
    let (o, s) = (order.clone(), slot.clone());
    let d = d.add_callback(move |n| {
        let d = s.borrow_mut().take().unwrap();
        let o2 = o.clone();
        let d = d.add_callback(move |n| {
            o2.borrow_mut().push("added".to_string());
            Ok(n * 10)
        });
        *s.borrow_mut() = Some(d);
        o.borrow_mut().push("first returns".to_string());
        Ok(n + 1)
    });
    *slot.borrow_mut() = Some(d);
    t.callback(1).unwrap();
    assert_eq!(*order.borrow(), ["first returns", "added"]);
    let mut d = slot.borrow_mut().take().unwrap();
    assert_eq!(d.take_result().unwrap().unwrap(), 20);
}

#[test]
fn pause_and_unpause() {
    let (d, t) = Deferred::<u32, Failure>::new();
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    let d = d.add_callback(move |n| {
        r.set(r.get() + 1);
        Ok(n)
    });
    d.pause();
    d.pause();
    t.callback(5).unwrap();
    assert_eq!(ran.get(), 0);
    d.unpause();
    assert_eq!(ran.get(), 0);
    d.unpause();
    assert_eq!(ran.get(), 1);
    let mut d = d;
    assert_eq!(d.take_result().unwrap().unwrap(), 5);
}

#[test]
fn cancel_without_canceller_fails_and_swallows_one_fire() {
    let (mut d, t) = Deferred::<u32, Failure>::new();
    d.cancel();
    assert!(d.take_result().unwrap().unwrap_err().is::<Cancelled>());
    assert_eq!(t.callback(1), Ok(()), "one late fire is swallowed");
    assert_eq!(t.callback(2), Err(AlreadyCalled));
}

#[test]
fn canceller_runs_once_and_may_fire_itself() {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let (mut d, _t) = Deferred::<u32, Failure>::with_canceller(move |t| {
        c.set(c.get() + 1);
        t.errback(Failure::msg("stopped by canceller")).unwrap();
    });
    d.cancel();
    d.cancel();
    assert_eq!(calls.get(), 1);
    assert_eq!(
        d.take_result().unwrap().unwrap_err().to_string(),
        "stopped by canceller"
    );
}

#[test]
fn cancel_after_firing_does_nothing() {
    let called = Rc::new(Cell::new(false));
    let c = called.clone();
    let (mut d, t) = Deferred::<u32, Failure>::with_canceller(move |_| c.set(true));
    t.callback(3).unwrap();
    d.cancel();
    assert!(!called.get());
    assert_eq!(d.take_result().unwrap().unwrap(), 3);
}

#[test]
fn cancelling_an_outer_deferred_cancels_the_inner_one() {
    let inner_cancelled = Rc::new(Cell::new(false));
    let ic = inner_cancelled.clone();
    let (inner, _ti) = Deferred::<u32, Failure>::with_canceller(move |_| ic.set(true));
    let mut d = succeed::<u32, Failure>(0).add_callback(move |_| inner);
    assert!(!d.has_result());
    d.cancel();
    assert!(inner_cancelled.get());
    assert!(d.take_result().unwrap().unwrap_err().is::<Cancelled>());
}

#[test]
fn succeed_fail_maybe_deferred() {
    assert_eq!(
        succeed::<_, Failure>("x").take_result().unwrap().unwrap(),
        "x"
    );
    let mut f = fail::<(), _>(Failure::msg("e"));
    assert_eq!(f.take_result().unwrap().unwrap_err().to_string(), "e");
    let mut m = maybe_deferred(|| Err::<u8, _>(Failure::msg("m")));
    assert!(m.take_result().unwrap().is_err());
    let (inner, t) = Deferred::<u8, Failure>::new();
    let mut m = maybe_deferred(move || inner);
    assert!(!m.has_result());
    t.callback(9).unwrap();
    assert_eq!(m.take_result().unwrap().unwrap(), 9);
}

#[test]
fn map_err_changes_the_error_type() {
    let (d, t) = Deferred::<u8, std::io::Error>::new();
    let mut d = d.map_err(Failure::from);
    t.errback(std::io::Error::other("disk")).unwrap();
    let e = d.take_result().unwrap().unwrap_err();
    assert!(e.is::<std::io::Error>());
}

fn pending<T: 'static>() -> (Deferred<T, Failure>, Trigger<T, Failure>) {
    Deferred::new()
}

#[test]
fn deferred_list_default_waits_for_all_in_order() {
    let (a, ta) = pending::<u32>();
    let (b, tb) = pending::<u32>();
    let mut d = DeferredList::new(vec![a, b]).into_deferred();
    tb.errback(Failure::msg("b failed")).unwrap();
    assert!(!d.has_result());
    ta.callback(1).unwrap();
    let ListResult::All(rs) = d.take_result().unwrap().unwrap() else {
        panic!("expected All")
    };
    assert_eq!(*rs[0].as_ref().unwrap(), 1);
    assert_eq!(rs[1].as_ref().unwrap_err().to_string(), "b failed");
}

#[test]
fn deferred_list_fire_on_one_callback_and_errback() {
    let (a, ta) = pending::<u32>();
    let (b, tb) = pending::<u32>();
    let mut d = DeferredList::new(vec![a, b])
        .fire_on_one_callback(true)
        .into_deferred();
    tb.callback(7).unwrap();
    assert!(matches!(
        d.take_result().unwrap().unwrap(),
        ListResult::First { index: 1, value: 7 }
    ));
    ta.callback(1).unwrap(); // after the list fired: dropped quietly

    let (a, ta) = pending::<u32>();
    let (b, _tb) = pending::<u32>();
    let mut d = DeferredList::new(vec![a, b])
        .fire_on_one_errback(true)
        .into_deferred();
    ta.errback(Failure::msg("first")).unwrap();
    let e = d.take_result().unwrap().unwrap_err();
    assert_eq!(e.index, 0);
    assert_eq!(e.error.to_string(), "first");
}

#[test]
fn deferred_list_consume_errors_decides_about_late_errors() {
    for consume in [false, true] {
        let lines = capture_errors(|| {
            let (a, ta) = pending::<u32>();
            let (b, tb) = pending::<u32>();
            let mut d = DeferredList::new(vec![a, b])
                .fire_on_one_callback(true)
                .consume_errors(consume)
                .into_deferred();
            ta.callback(1).unwrap();
            assert!(d.take_result().unwrap().is_ok());
            tb.errback(Failure::msg("late")).unwrap();
        });
        assert_eq!(lines.len(), usize::from(!consume), "{consume}: {lines:?}");
    }
}

#[test]
fn empty_list_fires_at_once_in_every_mode() {
    for (one_cb, one_eb) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut d = DeferredList::<u32, Failure>::new(vec![])
            .fire_on_one_callback(one_cb)
            .fire_on_one_errback(one_eb)
            .into_deferred();
        assert!(matches!(d.take_result().unwrap().unwrap(), ListResult::All(v) if v.is_empty()));
    }
    assert!(gather_results::<u32, Failure>(vec![])
        .take_result()
        .unwrap()
        .unwrap()
        .is_empty());
    assert!(race::<u32, Failure>(vec![])
        .take_result()
        .unwrap()
        .unwrap_err()
        .0
        .is_empty());
}

#[test]
fn cancelling_a_list_cancels_its_members() {
    let cancelled = Rc::new(Cell::new(0));
    let members: Vec<_> = (0..3)
        .map(|_| {
            let c = cancelled.clone();
            Deferred::<u32, Failure>::with_canceller(move |_| c.set(c.get() + 1))
        })
        .collect();
    let (ds, _ts): (Vec<_>, Vec<_>) = members.into_iter().unzip();
    let mut d = gather_results(ds);
    d.cancel();
    assert_eq!(cancelled.get(), 3);
    assert!(d.take_result().unwrap().unwrap_err().is::<Cancelled>());
}

#[test]
fn gather_results_fails_with_the_error_itself() {
    let (a, ta) = pending::<u32>();
    let (b, tb) = pending::<u32>();
    let mut d = gather_results(vec![a, b]);
    tb.errback(Failure::new(std::io::Error::other("io")))
        .unwrap();
    let e = d.take_result().unwrap().unwrap_err();
    assert!(e.is::<std::io::Error>(), "not wrapped: {e:?}");
    ta.callback(1).unwrap();

    let mut d = gather_results(vec![succeed::<_, Failure>(1), succeed(2), succeed(3)]);
    assert_eq!(d.take_result().unwrap().unwrap(), vec![1, 2, 3]);
}

#[test]
fn race_first_success_wins_and_the_rest_are_cancelled() {
    let cancelled = Rc::new(RefCell::new(Vec::new()));
    let mut ds = Vec::new();
    let mut ts = Vec::new();
    for i in 0..3 {
        let c = cancelled.clone();
        let (d, t) = Deferred::<u32, Failure>::with_canceller(move |_| c.borrow_mut().push(i));
        ds.push(d);
        ts.push(t);
    }
    let mut d = race(ds);
    ts[0].errback(Failure::msg("loser")).unwrap();
    assert!(!d.has_result(), "a failure does not end the race");
    ts[2].callback(5).unwrap();
    assert_eq!(d.take_result().unwrap().unwrap(), (2, 5));
    assert_eq!(*cancelled.borrow(), [1]);

    let (a, ta) = pending::<u32>();
    let (b, tb) = pending::<u32>();
    let mut d = race(vec![a, b]);
    tb.errback(Failure::msg("b")).unwrap();
    ta.errback(Failure::msg("a")).unwrap();
    let group = d.take_result().unwrap().unwrap_err();
    let msgs: Vec<_> = group.0.iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs, ["a", "b"]);
}

#[test]
fn executor_awaits_deferreds_and_cancel_drops_the_future() {
    let exec = LocalExecutor::new();
    let (a, ta) = pending::<u32>();
    let (b, tb) = pending::<u32>();
    let mut sum = exec.spawn(async move { Ok::<_, Failure>(a.await? + b.await?) });
    exec.run_ready();
    tb.callback(2).unwrap();
    exec.run_ready();
    assert!(!sum.has_result());
    ta.callback(40).unwrap();
    exec.run_ready();
    assert_eq!(sum.take_result().unwrap().unwrap(), 42);
    assert!(exec.is_empty());

    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let dropped = Rc::new(Cell::new(false));
    let flag = Flag(dropped.clone());
    let (never, _t) = pending::<u32>();
    let mut task = exec.spawn(async move {
        let _flag = flag;
        never.await
    });
    exec.run_ready();
    assert!(!dropped.get());
    task.cancel();
    assert!(task.take_result().unwrap().unwrap_err().is::<Cancelled>());
    exec.run_ready();
    assert!(dropped.get(), "the cancelled future was dropped");
    assert!(exec.is_empty());
}

#[test]
fn awaiting_a_failed_deferred_handles_the_error() {
    let lines = capture_errors(|| {
        let exec = LocalExecutor::new();
        let d = fail::<u32, Failure>(Failure::msg("seen"));
        let mut out = exec.spawn(async move {
            let e = d.await.unwrap_err();
            Ok::<_, Failure>(e.to_string())
        });
        exec.run_ready();
        assert_eq!(out.take_result().unwrap().unwrap(), "seen");
    });
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn counters_follow_creation_firing_cancel_and_drop() {
    // Tests run on their own threads, and the counters are per thread.
    let base = stats();
    let (d1, t1) = Deferred::<u32, Failure>::new();
    let (d2, _t2) = Deferred::<u32, Failure>::new();
    let (d3, t3) = Deferred::<u32, Failure>::new();
    let s = stats();
    assert_eq!((s.created - base.created, s.pending - base.pending), (3, 3));
    // Fired: no longer pending, even with callbacks still to add.
    t1.callback(1).unwrap();
    assert_eq!(stats().pending - base.pending, 2);
    // A second fire changes nothing.
    assert!(t1.callback(2).is_err());
    assert_eq!(stats().pending - base.pending, 2);
    // Cancelled: fired with `Cancelled`.
    d2.cancel();
    assert_eq!(stats().pending - base.pending, 1);
    // Every handle dropped unfired: not pending any more.
    drop((d3, t3));
    assert_eq!(stats().pending, base.pending);
    // A chain built on a fired one is the same chain: nothing new.
    let d1 = d1.add_callback(|n| Ok(n + 1));
    assert_eq!(stats().created - base.created, 3);
    // succeed() is a Deferred created and fired at once.
    drop((d1, d2, succeed::<u8, Failure>(1)));
    let s = stats();
    assert_eq!((s.created - base.created, s.pending), (4, base.pending));
}

#[test]
fn a_callback_pausing_its_own_chain_stops_it_until_unpaused() {
    let slot: Rc<RefCell<Option<Deferred<u32, Failure>>>> = Rc::new(RefCell::new(None));
    let ran = Rc::new(Cell::new(0));
    let (d, t) = Deferred::<u32, Failure>::new();
    let s = slot.clone();
    let (r1, r2) = (ran.clone(), ran.clone());
    let d = d
        .add_callback(move |n| {
            r1.set(r1.get() + 1);
            s.borrow().as_ref().unwrap().pause();
            Ok(n + 1)
        })
        .add_callback(move |n| {
            r2.set(r2.get() + 1);
            Ok(n * 10)
        });
    *slot.borrow_mut() = Some(d);
    t.callback(1).unwrap();
    assert_eq!(ran.get(), 1, "the second callback waits for unpause");
    assert!(!slot.borrow().as_ref().unwrap().has_result());
    slot.borrow().as_ref().unwrap().unpause();
    assert_eq!(ran.get(), 2);
    let mut d = slot.borrow_mut().take().unwrap();
    assert_eq!(d.take_result().unwrap().unwrap(), 20);
}
