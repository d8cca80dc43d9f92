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
