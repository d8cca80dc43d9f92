//! A delay past the clock's range (`Duration::MAX`) means "never": no panic in
//! `call_later`, `reset`, `delay`, connect and idle timeouts or `run_until`.
mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use torsion::testing::Clock;
use torsion::{client_factory, factory, Context, Protocol, Reactor};
use util::{localhost, run_until, Echo};

#[test]
fn call_later_reset_and_delay_with_duration_max_never_run() {
    let mut r = Reactor::new().unwrap();
    let ran = Rc::new(Cell::new(0));
    let a = {
        let ran = ran.clone();
        r.call_later(Duration::MAX, move |_| ran.set(ran.get() + 1))
    };
    let b = {
        let ran = ran.clone();
        r.call_later(Duration::ZERO, move |_| ran.set(ran.get() + 10))
    };
    b.reset(&mut r, Duration::MAX).unwrap();
    let c = {
        let ran = ran.clone();
        r.call_later(Duration::from_secs(1), move |_| ran.set(ran.get() + 100))
    };
    c.delay(&mut r, Duration::MAX).unwrap();
    a.delay(&mut r, Duration::MAX).unwrap();
    for _ in 0..3 {
        r.run_once(Some(Duration::from_millis(1))).unwrap();
    }
    assert_eq!(ran.get(), 0);
    assert!(a.active(&r) && b.active(&r) && c.active(&r));
    a.cancel(&mut r).unwrap();
    // `run_until` with an endless timeout returns when the condition holds.
    assert!(r.run_until(Duration::MAX, |_| true).unwrap());
}

#[test]
fn the_fake_clock_takes_duration_max_too() {
    let mut clock = Clock::new();
    let ran = Rc::new(Cell::new(false));
    let r2 = ran.clone();
    let call = clock.call_later(Duration::MAX, move |_| r2.set(true));
    call.delay(&mut clock, Duration::MAX).unwrap();
    clock.advance(Duration::from_secs(3600 * 24 * 365));
    assert!(!ran.get());
    assert!(call.active(&clock));
    // Advancing by the largest duration saturates instead of panicking.
    clock.advance(Duration::MAX);
    clock.advance(Duration::MAX);
}

#[test]
fn connect_and_idle_timeouts_of_duration_max_mean_none() {
    struct Idle(Rc<Cell<u32>>);
    impl Protocol for Idle {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            ctx.set_idle_timeout(Some(Duration::MAX));
            ctx.write(b"ping");
        }
        fn data_received(&mut self, ctx: &mut Context<'_>, _data: &[u8]) {
            self.0.set(self.0.get() + 1);
            ctx.reset_idle_timeout();
        }
    }
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), factory(|_peer| Echo)).unwrap();
    let got = Rc::new(Cell::new(0));
    let g = got.clone();
    r.connect_tcp(
        port.local_addr(),
        client_factory(move |_peer| Idle(g.clone())),
        Duration::MAX,
    );
    run_until(&mut r, || got.get() > 0);
    assert_eq!(r.connection_count(), 2);
}
