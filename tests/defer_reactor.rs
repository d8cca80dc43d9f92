//! Deferreds on the real reactor: local futures, run_until_complete, timeouts,
//! the thread pool, resolve and connect.
mod util;

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use torsion::defer::{Cancelled, Deferred, Failure, Panicked, TimedOut};
use torsion::task::{defer_later, DeferredExt, LoopingCall};
use torsion::{Context, DisconnectReason, Error, PanicPolicy, Protocol, Reactor};
use util::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn async_code_awaits_deferreds_fired_by_timers() {
    let mut r = Reactor::new().unwrap();
    let a: Deferred<u32, Failure> = defer_later(&mut r, ms(3), |_| Ok(40));
    let b: Deferred<u32, Failure> = defer_later(&mut r, ms(1), |_| Ok(2));
    let local = r.local();
    let d = r.spawn_local(async move {
        let a = a.await?;
        // A Deferred created from inside the task, through the local handle.
        let c = local
            .spawn_local(async move { Ok::<_, Failure>(b.await? * 10) })
            .unwrap();
        Ok::<_, Failure>(a + c.await?)
    });
    assert_eq!(r.run_until_complete(d).unwrap().unwrap(), 60);
}

#[test]
fn run_until_complete_of_a_fired_deferred_does_not_run() {
    let mut r = Reactor::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let flag = ran.clone();
    r.call_later(Duration::ZERO, move |_| flag.set(true));
    let d = torsion::defer::succeed::<_, Failure>(5);
    assert_eq!(r.run_until_complete(d).unwrap().unwrap(), 5);
    assert!(!ran.get());
}

#[test]
fn run_until_complete_reports_a_stop_before_the_result() {
    let mut r = Reactor::new().unwrap();
    let (d, t) = Deferred::<u32, Failure>::new();
    r.call_later(ms(1), |core| core.stop().unwrap());
    assert!(matches!(r.run_until_complete(d), Err(Error::Stopped)));
    // Firing later does not stop a later run by surprise.
    t.callback(1).unwrap();
    let d2: Deferred<u32, Failure> = defer_later(&mut r, ms(2), |_| Ok(2));
    assert_eq!(r.run_until_complete(d2).unwrap().unwrap(), 2);
}

#[test]
fn timeout_on_the_real_reactor() {
    let mut r = Reactor::new().unwrap();
    let (never, _t) = Deferred::<u8, Failure>::new();
    let d = never.add_timeout(&mut r, ms(5));
    assert!(r
        .run_until_complete(d)
        .unwrap()
        .unwrap_err()
        .is::<TimedOut>());

    let quick: Deferred<u8, Failure> = defer_later(&mut r, ms(1), |_| Ok(1));
    let d = quick.add_timeout(&mut r, Duration::from_secs(30));
    assert_eq!(r.run_until_complete(d).unwrap().unwrap(), 1);
}

#[test]
fn cancelling_a_spawned_task_drops_it() {
    let mut r = Reactor::new().unwrap();
    let (never, _t) = Deferred::<u8, Failure>::new();
    let task = r.spawn_local(async move { Ok::<_, Failure>(never.await? + 1) });
    r.run_once(Some(Duration::ZERO)).unwrap();
    task.cancel();
    let err = r.run_until_complete(task).unwrap().unwrap_err();
    assert!(err.is::<Cancelled>());
}

#[test]
fn a_panicking_task_costs_only_itself() {
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(PanicPolicy::Record);
    let bad = r.spawn_local(async move {
        if true {
            panic!("task bug");
        }
        Ok::<u8, Failure>(0)
    });
    drop(bad);
    let good = r.spawn_local(async move { Ok::<_, Failure>(1) });
    assert_eq!(r.run_until_complete(good).unwrap().unwrap(), 1);
    assert_eq!(r.take_panics(), ["task bug"]);
}

#[test]
fn looping_call_waiting_on_timers() {
    let mut r = Reactor::new().unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let lc = LoopingCall::<Failure>::new(move |core, lc| {
        c.set(c.get() + 1);
        if c.get() == 3 {
            lc.stop(core);
        }
        defer_later(core, ms(1), |_| Ok(()))
    });
    let done = lc.start(&mut r, ms(2), true).unwrap();
    r.run_until_complete(done).unwrap().unwrap();
    assert_eq!(calls.get(), 3);
}

#[test]
fn defer_to_thread_fires_on_the_reactor_thread() {
    let mut r = Reactor::new().unwrap();
    let me = std::thread::current().id();
    let d = r
        .defer_to_thread(|| Ok::<_, Failure>(std::thread::current().id()))
        .add_callback(move |worker| Ok((worker, std::thread::current().id())));
    let (worker, fired_on) = r.run_until_complete(d).unwrap().unwrap();
    assert_ne!(worker, me);
    assert_eq!(fired_on, me);

    let d = r.defer_to_thread(|| -> Result<u8, Failure> { panic!("in a worker") });
    let e = r.run_until_complete(d).unwrap().unwrap_err();
    assert_eq!(e.downcast_ref::<Panicked>().unwrap().0, "in a worker");
}

#[test]
fn thread_pool_is_bounded() {
    let mut r = Reactor::new().unwrap();
    r.set_thread_pool_size(2);
    let active = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let mut ds = Vec::new();
    for i in 0..6 {
        let (active, max, gate) = (active.clone(), max.clone(), gate.clone());
        ds.push(r.defer_to_thread(move || {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            let (lock, cvar) = &*gate;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cvar.wait(open).unwrap();
            }
            active.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Failure>(i)
        }));
    }
    let a = active.clone();
    run_until(&mut r, || a.load(Ordering::SeqCst) == 2);
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let all = torsion::defer::gather_results(ds);
    assert_eq!(
        r.run_until_complete(all).unwrap().unwrap(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(max.load(Ordering::SeqCst), 2);
}

#[test]
fn resolve_gives_ipv4_and_ipv6_answers() {
    let mut r = Reactor::new().unwrap();
    let d = r.resolve("::1");
    assert_eq!(
        r.run_until_complete(d).unwrap().unwrap(),
        ["::1".parse::<IpAddr>().unwrap()]
    );
    let d = r.resolve("[::1]");
    assert!(r.run_until_complete(d).unwrap().unwrap()[0].is_ipv6());
    let d = r.resolve("localhost");
    let addrs = r.run_until_complete(d).unwrap().unwrap();
    assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
    assert!(!addrs.is_empty());
    let d = r.resolve("bad\0host");
    assert!(r.run_until_complete(d).unwrap().is_err());
}

struct Greeter;
impl Protocol for Greeter {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.write(b"hi");
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

#[test]
fn connect_protocol_fires_with_the_connection() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let d = r.connect_protocol(port.local_addr(), Greeter, Duration::from_secs(5));
    let conn = r.run_until_complete(d).unwrap().unwrap();
    let reached = r.connection(conn).with_protocol(|_: &mut Greeter, ctx| {
        ctx.lose_connection();
        "reached"
    });
    assert_eq!(r.run_until_complete(reached).unwrap().unwrap(), "reached");
    until(&mut r, |r| r.connection_count() == 0);
}

fn until(r: &mut Reactor, mut done: impl FnMut(&mut Reactor) -> bool) {
    assert!(
        r.run_until(DEADLINE, |r| done(r)).unwrap(),
        "condition not reached within {DEADLINE:?}"
    );
}

#[test]
fn connect_protocol_refused_and_cancelled() {
    let mut r = Reactor::new().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let d = r.connect_protocol(addr, Greeter, Duration::from_secs(5));
    assert_eq!(
        r.run_until_complete(d).unwrap().unwrap_err(),
        DisconnectReason::Refused
    );

    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let d = r.connect_protocol(port.local_addr(), Greeter, Duration::from_secs(5));
    d.cancel();
    assert_eq!(
        r.run_until_complete(d).unwrap().unwrap_err(),
        DisconnectReason::Cancelled
    );
    // Whether the attempt was stopped or had just completed, nothing is left
    // connected on the client side.
    until(&mut r, |r| r.connection_count() == 0);
}

/// A future woken from another thread must interrupt a reactor sleeping in its
/// poll with nothing else to do.
#[test]
fn a_task_woken_from_another_thread_wakes_the_reactor() {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::AtomicBool;
    use std::task::{Context as TaskContext, Poll, Waker};

    #[derive(Default)]
    struct Flag {
        set: AtomicBool,
        waker: Mutex<Option<Waker>>,
    }
    struct WaitFlag(Arc<Flag>);
    impl Future for WaitFlag {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
            *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.0.set.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    let mut r = Reactor::new().unwrap();
    let flag = Arc::new(Flag::default());
    let f = flag.clone();
    let d = r.spawn_local(async move {
        WaitFlag(f).await;
        Ok::<_, Failure>("woken")
    });
    let f = flag.clone();
    let polled = Arc::new(AtomicBool::new(false));
    // Let the task register its waker first (one turn), then wake it from a
    // thread while the reactor sleeps with no timer and no socket.
    r.run_once(Some(Duration::ZERO)).unwrap();
    assert!(flag.waker.lock().unwrap().is_some());
    let p = polled.clone();
    let waker_thread = std::thread::spawn(move || {
        f.set.store(true, Ordering::SeqCst);
        p.store(true, Ordering::SeqCst);
        if let Some(w) = f.waker.lock().unwrap().take() {
            w.wake();
        }
    });
    // `run` sleeps in its poll without a timeout: only the wake can end it.
    // A watchdog turns a missed wake into a failure instead of a hang.
    let handle = r.reactor_handle();
    let done = Arc::new(AtomicBool::new(false));
    let bit = Arc::new(AtomicBool::new(false));
    let (dn, b) = (done.clone(), bit.clone());
    let watchdog = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        while !dn.load(Ordering::SeqCst) && t.elapsed() < DEADLINE {
            std::thread::park_timeout(Duration::from_millis(50));
        }
        if !dn.load(Ordering::SeqCst) {
            b.store(true, Ordering::SeqCst);
            let _ = handle.stop();
        }
    });
    let out = r.run_until_complete(d);
    done.store(true, Ordering::SeqCst);
    watchdog.thread().unpark();
    watchdog.join().unwrap();
    waker_thread.join().unwrap();
    assert!(polled.load(Ordering::SeqCst));
    assert!(
        !bit.load(Ordering::SeqCst),
        "the wake did not reach the reactor"
    );
    assert_eq!(out.unwrap().unwrap(), "woken");
}
