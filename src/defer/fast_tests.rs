//! Edge cases of the engine's fast paths: the reused value box (type changes),
//! inline stages spilling into the queue, stages run at once on a settled
//! chain (nesting, errors, cancel, panics, unhandled errors).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use super::tests::capture_errors;
use super::*;

#[test]
fn reused_box_follows_type_changes_queued_and_at_once() {
    // Same type, smaller type, bigger type, back: queued before the fire...
    let (d, t) = Deferred::<u64, Failure>::new();
    let mut queued = d
        .add_callback(|n| Ok(n + 1))
        .add_callback(|n| Ok(u8::try_from(n).unwrap()))
        .add_callback(|b| Ok([u64::from(b); 4]))
        .add_callback(|a| Ok(a.iter().sum::<u64>()))
        .add_callback(|n| Ok(n.to_string()));
    t.callback(9).unwrap();
    assert_eq!(queued.take_result().unwrap().unwrap(), "40");
    // ...and run at once on a fired chain.
    let mut now = succeed::<u64, Failure>(9)
        .add_callback(|n| Ok(n + 1))
        .add_callback(|n| Ok(u8::try_from(n).unwrap()))
        .add_callback(|b| Ok([u64::from(b); 4]))
        .add_both(|r| Ok(r.unwrap().iter().sum::<u64>()))
        .add_callbacks(|n| Ok(n.to_string()), |_| unreachable!());
    assert_eq!(now.take_result().unwrap().unwrap(), "40");
}

#[test]
fn errors_skip_callbacks_and_recover_with_a_new_box() {
    let mut d = succeed::<u32, Failure>(1)
        .add_callback(|_| -> Result<u32, Failure> { Err(Failure::msg("boom")) })
        .add_callback(|_| -> Result<u32, Failure> { unreachable!("error path") })
        .add_errback(|e| Ok(e.to_string().len() as u32))
        .add_callback(|n| Ok(n * 10));
    assert_eq!(d.take_result().unwrap().unwrap(), 40);
}

#[test]
fn more_stages_than_inline_keep_their_order() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (mut d, t) = Deferred::<usize, Failure>::new();
    for i in 0..(chain::INLINE * 3 + 1) {
        let s = seen.clone();
        d = d.add_callback(move |n| {
            s.borrow_mut().push(i);
            Ok(n + 1)
        });
    }
    t.callback(0).unwrap();
    // Added after the fire: run at once, in order, after the queued ones.
    for i in 100..103 {
        let s = seen.clone();
        d = d.add_callback(move |n| {
            s.borrow_mut().push(i);
            Ok(n + 1)
        });
    }
    let want: Vec<usize> = (0..chain::INLINE * 3 + 1).chain(100..103).collect();
    assert_eq!(*seen.borrow(), want);
    assert_eq!(d.take_result().unwrap().unwrap(), want.len());
}

#[test]
fn at_once_stage_returning_a_pending_deferred_waits_then_goes_on() {
    let (inner, ti) = Deferred::<u32, Failure>::new();
    // The stage runs at once and returns a pending Deferred: later stages
    // queue behind it, and a pause in between holds them.
    let mut d = succeed::<u32, Failure>(1)
        .add_callback(move |_| inner)
        .add_callback(|n| Ok(format!("got {n}")));
    assert!(d.is_called() && !d.has_result());
    d.pause();
    ti.callback(5).unwrap();
    assert!(!d.has_result());
    d.unpause();
    assert_eq!(d.take_result().unwrap().unwrap(), "got 5");
    // Returning an already fired Deferred takes its result at once.
    let mut d = succeed::<u32, Failure>(1).add_callback(|n| succeed::<_, Failure>(n + 1));
    assert_eq!(d.take_result().unwrap().unwrap(), 2);
}

#[test]
fn cancel_reaches_a_deferred_returned_by_an_at_once_stage() {
    let (inner, _ti) = Deferred::<u32, Failure>::new();
    let mut d = succeed::<u32, Failure>(1).add_callback(move |_| inner);
    d.cancel();
    assert!(d.take_result().unwrap().unwrap_err().is::<Cancelled>());
}

#[test]
fn panicking_at_once_stage_does_not_wedge_the_chain() {
    let d = succeed::<u32, Failure>(1);
    let r = catch_unwind(AssertUnwindSafe(|| {
        d.add_callback(|_| -> Result<u32, Failure> { panic!("in a callback") })
    }));
    assert!(r.is_err());
    // A chain whose stage panicked has no result, and is not stuck running.
    let (d, t) = Deferred::<u32, Failure>::new();
    let d = d.add_callback(|_| -> Result<u32, Failure> { panic!("queued") });
    assert!(catch_unwind(AssertUnwindSafe(|| t.callback(1))).is_err());
    let mut d = d.add_callback(|n| Ok(n + 1));
    assert!(!d.has_result());
    assert!(d.take_result().is_none());
}

#[test]
fn unhandled_error_from_an_at_once_stage_is_logged_with_creation_site() {
    let mut line = 0;
    let lines = capture_errors(|| {
        let (l, d) = (line!(), succeed::<u32, Failure>(1));
        line = l;
        let d = d.add_callback(|_| -> Result<u32, Failure> { Err(Failure::msg("late")) });
        drop(d);
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("late"), "{lines:?}");
    assert!(
        lines[0].contains(&format!("fast_tests.rs:{line}:")),
        "{lines:?}"
    );
}

/// Counts its drops.
struct Counted(Rc<std::cell::Cell<u32>>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn a_freed_chain_is_ended_at_once_and_reused_like_a_new_one() {
    let drops = Rc::new(std::cell::Cell::new(0));
    // An unfired chain holding a stage, a canceller and a value in flight:
    // everything it holds is dropped when its last handle goes, not when
    // its allocation is reused.
    let (d, t) = Deferred::<Counted, Failure>::with_canceller({
        let c = Counted(drops.clone());
        move |_| drop(c)
    });
    let held = Counted(drops.clone());
    let d = d.add_callback(move |v| {
        drop(held);
        Ok(v)
    });
    drop((d, t));
    assert_eq!(drops.get(), 2, "canceller and stage dropped with the chain");
    // A fired one whose value was never taken.
    let d = succeed::<Counted, Failure>(Counted(drops.clone()));
    drop(d);
    assert_eq!(drops.get(), 3, "the value dropped with the chain");
    // The next chains of those types start clean.
    let line = line!() + 1;
    let (mut d, t) = Deferred::<Counted, Failure>::new();
    assert!(d.creator().line() == line && !d.is_called() && !d.has_result());
    assert!(d.take_result().is_none());
    t.callback(Counted(drops.clone())).unwrap();
    assert!(d.take_result().unwrap().is_ok());
    assert!(t.callback(Counted(drops.clone())).is_err(), "fired twice");
}

#[test]
fn an_unhandled_error_of_a_reused_chain_is_logged_once_with_its_own_site() {
    let mut lines_at = Vec::new();
    let lines = capture_errors(|| {
        for i in 0..3 {
            let (l, d) = (line!(), fail::<u64, Failure>(Failure::msg(format!("e{i}"))));
            lines_at.push(l);
            drop(d);
        }
    });
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (i, (line, at)) in lines.iter().zip(&lines_at).enumerate() {
        assert!(line.contains(&format!("e{i}")), "{line}");
        assert!(line.contains(&format!("fast_tests.rs:{at}:")), "{line}");
    }
}

#[test]
fn a_chain_still_reachable_through_a_weak_handle_is_not_reused() {
    let (d, t) = Deferred::<u64, Failure>::new();
    let handle = d.cancel_handle();
    drop((d, t));
    // Not kept: the handle cannot reach a new chain.
    let (mut d2, t2) = Deferred::<u64, Failure>::new();
    handle.cancel();
    assert!(!d2.is_called());
    t2.callback(7).unwrap();
    assert_eq!(d2.take_result().unwrap().unwrap(), 7);
}

#[test]
fn pooled_chains_keep_counting_in_stats() {
    let base = stats();
    for _ in 0..(pool::KEEP * 2) {
        let (d, t) = Deferred::<u8, Failure>::new();
        drop((t, d));
    }
    let s = stats();
    assert_eq!(s.created - base.created, (pool::KEEP * 2) as u64);
    assert_eq!(s.abandoned - base.abandoned, (pool::KEEP * 2) as u64);
    assert_eq!(s.pending, base.pending);
}
