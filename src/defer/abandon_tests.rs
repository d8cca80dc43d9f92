//! Abandoned Deferreds: every trigger dropped before firing.

use std::cell::Cell;
use std::rc::Rc;

use super::*;

#[test]
fn dropping_the_last_trigger_fails_an_opted_in_chain() {
    let base = stats();
    let (d, t) = Deferred::<u32, Failure>::new();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let mut d = d
        .fail_if_abandoned()
        .add_callback(move |n| {
            r.set(true);
            Ok(n)
        })
        .add_errback(Err::<u32, _>);
    let t2 = t.clone();
    drop(t);
    // One trigger is still there: not abandoned.
    assert!(!d.is_called());
    drop(t2);
    assert!(!ran.get(), "the callback is passed by");
    assert!(d.take_result().unwrap().unwrap_err().is::<Abandoned>());
    let s = stats();
    assert_eq!((s.abandoned - base.abandoned, s.pending), (1, base.pending));
}

#[test]
fn or_abandoned_takes_any_error_and_applies_when_set_late() {
    #[derive(Debug, PartialEq)]
    enum MyError {
        Gone,
    }
    let (d, t) = Deferred::<u32, MyError>::new();
    drop(t);
    // Without a handler the chain just stays unfired (and is not pending).
    assert!(!d.is_called());
    let mut d = d.add_callback(|n| Ok(n + 1));
    assert!(!d.has_result());
    // Opting in afterwards fails it at once.
    let mut d2 = d.or_abandoned(|| MyError::Gone);
    assert_eq!(d2.take_result(), Some(Err(MyError::Gone)));
    assert!(d2.take_result().is_none());
    d = d2;
    assert!(d.is_called());
}

#[test]
fn fired_or_cancelled_chains_are_not_abandoned() {
    let base = stats();
    let (d, t) = Deferred::<u32, Failure>::new();
    let mut d = d.fail_if_abandoned();
    t.callback(7).unwrap();
    drop(t);
    assert_eq!(d.take_result().unwrap().unwrap(), 7);

    let cancelled = Rc::new(Cell::new(0));
    let c = cancelled.clone();
    let (d, t) = Deferred::<u32, Failure>::with_canceller(move |_| c.set(c.get() + 1));
    let mut d = d.fail_if_abandoned();
    d.cancel();
    drop(t);
    assert!(d.take_result().unwrap().unwrap_err().is::<Cancelled>());
    assert_eq!(cancelled.get(), 1);
    assert_eq!(stats().abandoned, base.abandoned);
}

#[test]
fn cancelling_an_abandoned_chain_fails_it_with_cancelled() {
    let seen = Rc::new(Cell::new(false));
    let s = seen.clone();
    // The canceller sees a trigger even though the real ones are gone, and
    // may fire it.
    let (d, t) = Deferred::<u32, Failure>::with_canceller(move |t| {
        s.set(true);
        assert!(!t.is_called());
    });
    drop(t);
    let mut d = d;
    d.cancel();
    assert!(seen.get());
    assert!(d.take_result().unwrap().unwrap_err().is::<Cancelled>());

    // A canceller that fires with a value wins over Cancelled.
    let (d, t) = Deferred::<u32, Failure>::with_canceller(|t| t.callback(9).unwrap());
    drop(t);
    let mut d = d;
    d.cancel();
    assert_eq!(d.take_result().unwrap().unwrap(), 9);
}

#[test]
fn an_outer_chain_waiting_on_an_abandoned_inner_one_is_abandoned() {
    let base = stats();
    let (inner, ti) = Deferred::<u32, Failure>::new();
    let (outer, to) = Deferred::<u32, Failure>::new();
    let mut outer = outer
        .fail_if_abandoned()
        .add_callback(move |_| inner)
        .add_callback(|n| Ok(n * 10));
    to.callback(1).unwrap();
    drop(to); // fired: the outer chain itself is not abandoned
    assert!(outer.is_called() && !outer.has_result());
    drop(ti); // the inner one is, and so the outer one too
    let e = outer.take_result().unwrap().unwrap_err();
    assert!(e.is::<Abandoned>(), "{e}");
    // Both were counted: the inner (no handler) and the outer.
    assert_eq!(stats().abandoned - base.abandoned, 2);
}

#[test]
fn an_inner_chain_with_its_own_handler_fails_itself() {
    let (inner, ti) = Deferred::<u32, Failure>::new();
    let inner = inner.or_abandoned(|| Failure::msg("inner gone"));
    let mut outer = succeed::<u32, Failure>(1)
        .fail_if_abandoned()
        .add_callback(move |_| inner);
    drop(ti);
    assert_eq!(
        outer.take_result().unwrap().unwrap_err().to_string(),
        "inner gone"
    );
}

#[test]
fn abandonment_goes_up_a_deep_nesting() {
    // outer <- mid <- innermost: only the outermost opted in.
    let (innermost, ti) = Deferred::<u32, Failure>::new();
    let mid = succeed::<u32, Failure>(0).add_callback(move |_| innermost);
    let mut outer = succeed::<u32, Failure>(0)
        .fail_if_abandoned()
        .add_callback(move |_| mid);
    assert!(!outer.has_result());
    drop(ti);
    assert!(outer.take_result().unwrap().unwrap_err().is::<Abandoned>());
}

#[test]
fn cancelling_an_outer_stuck_on_an_abandoned_inner_fails_it() {
    let (inner, ti) = Deferred::<u32, Failure>::new();
    let mut outer = succeed::<u32, Failure>(0).add_callback(move |_| inner);
    drop(ti);
    assert!(!outer.has_result());
    outer.cancel();
    assert!(outer.take_result().unwrap().unwrap_err().is::<Cancelled>());
}

#[test]
fn map_err_passes_abandonment_on() {
    let (d, t) = Deferred::<u32, Failure>::new();
    let mut d = d
        .map_err(|e| e.to_string())
        .or_abandoned(|| "abandoned".to_owned());
    drop(t);
    assert_eq!(d.take_result(), Some(Err("abandoned".to_owned())));
}

#[test]
fn awaiting_an_abandoned_deferred_gets_the_error_instead_of_hanging() {
    let exec = LocalExecutor::new();
    let (d, t) = Deferred::<u32, Failure>::new();
    let d = d.fail_if_abandoned();
    let mut out = exec.spawn(async move {
        match d.await {
            Ok(n) => Ok(n),
            Err(e) if e.is::<Abandoned>() => Ok(0),
            Err(e) => Err(e),
        }
    });
    exec.run_ready();
    assert!(!out.has_result(), "waiting");
    drop(t);
    exec.run_ready();
    assert_eq!(out.take_result().unwrap().unwrap(), 0);
}

#[test]
fn a_dropped_task_abandons_the_deferred_of_its_output() {
    let exec = LocalExecutor::new();
    let (never, _keep) = Deferred::<u32, Failure>::new();
    let out = exec.spawn(async move { Ok::<_, Failure>(never.await? + 1) });
    exec.run_ready();
    let mut out = out.fail_if_abandoned();
    assert!(!out.has_result());
    drop(exec); // the task, and the trigger of its output, go away
    assert!(out.take_result().unwrap().unwrap_err().is::<Abandoned>());
}

#[test]
fn values_of_every_type_travel_through_slot_and_boxes() {
    // u32 (the slot's type) -> String (boxed) -> u32 (back in the slot) ->
    // String -> String (box reused), nested on a chain of another type.
    let (d, t) = Deferred::<u32, Failure>::new();
    let (inner, ti) = Deferred::<String, Failure>::new();
    let mut d = d
        .add_callback(|n| Ok(n.to_string()))
        .add_callback(|s: String| Ok(s.len() as u32 + 40))
        .add_callback(|n| Ok(format!("{n}")))
        .add_callback(|s| Ok(s + "!"))
        .add_callback(move |s: String| inner.add_callback(move |i| Ok(format!("{s}{i}"))))
        .add_callback(|s: String| Ok(s.len() as u32));
    t.callback(7).unwrap();
    ti.callback("abc".into()).unwrap();
    // "41!abc"
    assert_eq!(d.take_result().unwrap().unwrap(), 6);
}

#[test]
fn a_callback_returning_an_already_abandoned_deferred_abandons_its_chain() {
    let base = stats();
    let (inner, ti) = Deferred::<u32, Failure>::new();
    drop(ti); // abandoned before anyone waits on it
    let mut outer = succeed::<u32, Failure>(0)
        .fail_if_abandoned()
        .add_callback(move |_| inner)
        .add_callback(|_| -> Result<u32, Failure> { unreachable!("error path") });
    let e = outer.take_result().unwrap().unwrap_err();
    assert!(e.is::<Abandoned>(), "{e}");
    assert_eq!(stats().abandoned - base.abandoned, 2);
    // Without a handler it stays stuck, and cancelling fails it.
    let (inner, ti) = Deferred::<u32, Failure>::new();
    drop(ti);
    let mut outer = succeed::<u32, Failure>(0).add_callback(move |_| inner);
    assert!(outer.is_called() && !outer.has_result());
    outer.cancel();
    assert!(outer.take_result().unwrap().unwrap_err().is::<Cancelled>());
}
