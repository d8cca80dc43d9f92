//! The reconnecting client factory over real sockets on 127.0.0.1: listeners that
//! go away and come back, retry limits, `stop_trying` in every state.

mod util;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use torsion::reconnect::{Backoff, BackoffPolicy, ReconnectHandle, ReconnectState};
use torsion::Address;
use torsion::{
    ClientFactory, ConnectionHandle, Connector, Context, Core, DisconnectReason, Factory, Protocol,
    Reactor, Reconnect, ReconnectingClientFactory,
};
use util::*;

const TIMEOUT: Duration = Duration::from_secs(5);

type Log = Rc<RefCell<Vec<String>>>;

/// A client that records its life in the shared log.
struct Recorder {
    log: Log,
}

impl Protocol for Recorder {
    fn connection_made(&mut self, _ctx: &mut Context<'_>) {
        self.log.borrow_mut().push("made".into());
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.log
            .borrow_mut()
            .push(format!("protocol_lost:{reason}"));
    }
}

/// The inner factory: records every callback, and always answers `Never` (which
/// the wrapper must ignore).
struct Inner {
    log: Log,
}

impl ClientFactory for Inner {
    type Protocol = Recorder;
    fn started_connecting(&mut self, _core: &mut Core, _c: Connector) {
        self.log.borrow_mut().push("started".into());
    }
    fn build_protocol(&mut self, _peer: &Address) -> Option<Recorder> {
        Some(Recorder {
            log: self.log.clone(),
        })
    }
    fn client_connection_failed(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        self.log.borrow_mut().push(format!("failed:{reason}"));
        Reconnect::Never
    }
    fn client_connection_lost(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        self.log.borrow_mut().push(format!("lost:{reason}"));
        Reconnect::Never
    }
}

/// A server that keeps the handles of its connections, so the test can close them.
#[derive(Default, Clone)]
struct Conns(Rc<RefCell<Vec<ConnectionHandle>>>);

struct Silent;
impl Protocol for Silent {
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

struct Tracked(Conns);
struct TrackedProto(Conns);

impl Protocol for TrackedProto {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.0 .0.borrow_mut().push(ctx.handle());
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    fn connection_lost(&mut self, ctx: &mut Context<'_>, _reason: &DisconnectReason) {
        let h = ctx.handle();
        self.0 .0.borrow_mut().retain(|c| *c != h);
    }
}

impl Factory for Tracked {
    type Protocol = TrackedProto;
    fn build_protocol(&mut self, _peer: &Address) -> Option<TrackedProto> {
        Some(TrackedProto(self.0.clone()))
    }
}

fn policy() -> BackoffPolicy {
    BackoffPolicy::default()
        .initial_delay(Duration::from_millis(10))
        .factor(2.0)
        .jitter(0.0)
        .max_delay(Duration::from_millis(80))
}

fn factory(log: &Log, policy: BackoffPolicy) -> ReconnectingClientFactory<Inner> {
    let inner = Inner { log: log.clone() };
    ReconnectingClientFactory::with_backoff(inner, Backoff::with_seed(policy, 1).unwrap())
}

/// An address nobody listens on (bound, read, released).
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn count(log: &Log, prefix: &str) -> usize {
    log.borrow()
        .iter()
        .filter(|e| e.starts_with(prefix))
        .count()
}

/// Runs the reactor until `wait` has passed on its own clock.
fn run_for(r: &mut Reactor, wait: Duration) {
    let done = Rc::new(RefCell::new(false));
    let d = done.clone();
    r.call_later(wait, move |_| *d.borrow_mut() = true);
    run_until(r, || *done.borrow());
}

#[test]
fn reconnects_when_the_server_goes_away_and_comes_back() {
    let mut r = Reactor::new().unwrap();
    let conns = Conns::default();
    let port = r.listen_tcp(localhost(), Tracked(conns.clone())).unwrap();
    let addr = port.local_addr();
    let log = Log::default();
    let f = factory(&log, policy());
    let handle = f.handle();
    assert_eq!(handle.state(), ReconnectState::Idle);
    r.connect_tcp(addr, f, TIMEOUT);

    run_until(&mut r, || handle.state() == ReconnectState::Connected);
    run_until(&mut r, || conns.0.borrow().len() == 1);
    assert_eq!(handle.connections(), 1);

    // The server goes away: stop listening and close the connection.
    port.stop_listening(&mut r);
    let h = conns.0.borrow()[0];
    r.connection(h).lose_connection();
    // Retries are refused until the listener is back; the delays grow.
    run_until(&mut r, || count(&log, "failed:") >= 3);
    assert!(handle.retries() >= 3);
    assert_eq!(handle.last_reason(), Some(DisconnectReason::Refused));

    let port2 = r.listen_tcp(addr, Tracked(conns.clone())).unwrap();
    assert_eq!(port2.local_addr(), addr);
    run_until(&mut r, || handle.connections() == 2);
    run_until(&mut r, || conns.0.borrow().len() == 1);
    assert_eq!(handle.state(), ReconnectState::Connected);
    assert_eq!(handle.retries(), 0, "a connection resets the back-off");

    let log = log.borrow();
    let failed = log.iter().filter(|e| e.starts_with("failed:")).count();
    let mut expected = vec![
        "started".to_string(),
        "made".into(),
        "protocol_lost:connection closed cleanly".into(),
        "lost:connection closed cleanly".into(),
    ];
    for _ in 0..failed {
        expected.push("started".into());
        expected.push("failed:connection refused".into());
    }
    expected.push("started".into());
    expected.push("made".into());
    assert_eq!(*log, expected);
}

#[test]
fn the_back_off_restarts_from_the_initial_delay_after_a_connection() {
    let mut r = Reactor::new().unwrap();
    let conns = Conns::default();
    let addr = closed_port();
    let log = Log::default();
    let f = factory(&log, policy());
    let handle = f.handle();
    r.connect_tcp(addr, f, TIMEOUT);

    // Three refusals: the waits were 10, 20, 40 ms.
    run_until(&mut r, || count(&log, "failed:") == 3);
    assert_eq!(
        handle.state(),
        ReconnectState::Waiting {
            delay: Duration::from_millis(40)
        }
    );
    let _port = r.listen_tcp(addr, Tracked(conns.clone())).unwrap();
    run_until(&mut r, || conns.0.borrow().len() == 1);
    assert_eq!(handle.state(), ReconnectState::Connected);

    let h = conns.0.borrow()[0];
    r.connection(h).lose_connection();
    run_until(&mut r, || count(&log, "lost:") == 1);
    assert_eq!(
        handle.state(),
        ReconnectState::Waiting {
            delay: Duration::from_millis(10)
        },
        "the first wait after a connection is the initial delay again"
    );
    run_until(&mut r, || handle.connections() == 2);
}

#[test]
fn gives_up_after_max_retries() {
    let mut r = Reactor::new().unwrap();
    let log = Log::default();
    let f = factory(&log, policy().max_retries(Some(2)));
    let handle = f.handle();
    r.connect_tcp(closed_port(), f, TIMEOUT);
    run_until(&mut r, || handle.state().is_finished());
    assert_eq!(handle.state(), ReconnectState::GaveUp);
    assert_eq!(handle.attempts(), 3, "the first attempt and two retries");
    assert_eq!(count(&log, "failed:connection refused"), 3);
    // Nothing is left in the reactor: no pending connect, no timer attempt.
    run_for(&mut r, Duration::from_millis(200));
    assert_eq!(handle.attempts(), 3);
    assert_eq!(r.source_count(), 0);
}

#[test]
fn stop_trying_while_waiting_cancels_the_retry() {
    let mut r = Reactor::new().unwrap();
    let log = Log::default();
    let slow = policy()
        .initial_delay(Duration::from_millis(100))
        .max_delay(Duration::from_millis(100));
    let f = factory(&log, slow);
    let handle = f.handle();
    r.connect_tcp(closed_port(), f, TIMEOUT);
    run_until(&mut r, || {
        matches!(handle.state(), ReconnectState::Waiting { .. })
    });
    handle.stop_trying(&mut r);
    assert_eq!(handle.state(), ReconnectState::Stopped);
    assert!(!handle.is_trying());
    // Well past the retry's due time: no attempt was made.
    run_for(&mut r, Duration::from_millis(300));
    assert_eq!(handle.attempts(), 1);
    assert_eq!(count(&log, "started"), 1);
    handle.stop_trying(&mut r); // twice is harmless
}

#[test]
fn stop_trying_while_connected_keeps_the_connection_but_does_not_replace_it() {
    let mut r = Reactor::new().unwrap();
    let conns = Conns::default();
    let port = r.listen_tcp(localhost(), Tracked(conns.clone())).unwrap();
    let log = Log::default();
    let f = factory(&log, policy());
    let handle = f.handle();
    r.connect_tcp(port.local_addr(), f, TIMEOUT);
    run_until(&mut r, || conns.0.borrow().len() == 1);
    handle.stop_trying(&mut r);
    run_for(&mut r, Duration::from_millis(50));
    assert_eq!(handle.state(), ReconnectState::Connected, "still connected");
    assert_eq!(count(&log, "protocol_lost"), 0);

    let h = conns.0.borrow()[0];
    r.connection(h).lose_connection();
    run_until(&mut r, || handle.state().is_finished());
    assert_eq!(handle.state(), ReconnectState::Stopped);
    run_for(&mut r, Duration::from_millis(100));
    assert_eq!(handle.attempts(), 1);
    assert_eq!(handle.connections(), 1);
}

#[test]
fn stop_trying_before_the_first_attempt_cancels_it() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let log = Log::default();
    let f = factory(&log, policy());
    let handle = f.handle();
    handle.stop_trying(&mut r);
    assert_eq!(handle.state(), ReconnectState::Stopped);
    r.connect_tcp(port.local_addr(), f, TIMEOUT);
    run_until(&mut r, || log.borrow().len() == 2);
    assert_eq!(handle.state(), ReconnectState::Stopped);
    assert_eq!(
        *log.borrow(),
        ["started", "failed:connection attempt cancelled"]
    );
}

#[test]
fn stop_trying_from_inside_a_callback_is_honoured_at_once() {
    /// Stops its own factory the first time a connection fails.
    struct StopOnFailure {
        handle: Rc<RefCell<Option<ReconnectHandle>>>,
        failures: Rc<RefCell<u32>>,
    }
    impl ClientFactory for StopOnFailure {
        type Protocol = Silent;
        fn build_protocol(&mut self, _peer: &Address) -> Option<Silent> {
            Some(Silent)
        }
        fn client_connection_failed(
            &mut self,
            core: &mut Core,
            _c: Connector,
            _reason: &DisconnectReason,
        ) -> Reconnect {
            *self.failures.borrow_mut() += 1;
            if let Some(h) = self.handle.borrow().as_ref() {
                h.stop_trying(core);
            }
            Reconnect::Never
        }
    }
    let mut r = Reactor::new().unwrap();
    let slot = Rc::new(RefCell::new(None));
    let failures = Rc::new(RefCell::new(0));
    let f = ReconnectingClientFactory::new(
        StopOnFailure {
            handle: slot.clone(),
            failures: failures.clone(),
        },
        policy(),
    )
    .unwrap();
    let handle = f.handle();
    *slot.borrow_mut() = Some(handle.clone());
    r.connect_tcp(closed_port(), f, TIMEOUT);
    run_until(&mut r, || handle.state().is_finished());
    assert_eq!(handle.state(), ReconnectState::Stopped);
    run_for(&mut r, Duration::from_millis(100));
    assert_eq!(*failures.borrow(), 1);
    assert_eq!(r.source_count(), 0);
}

#[test]
fn from_fn_builds_protocols_from_a_closure() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let built = Rc::new(RefCell::new(0));
    let b = built.clone();
    let f = ReconnectingClientFactory::from_fn(policy(), move |_| {
        *b.borrow_mut() += 1;
        Some(Silent)
    })
    .unwrap();
    let handle = f.handle();
    r.connect_tcp(port.local_addr(), f, TIMEOUT);
    run_until(&mut r, || handle.state() == ReconnectState::Connected);
    assert_eq!(*built.borrow(), 1);
    assert!(ReconnectingClientFactory::from_fn(policy().jitter(2.0), |_| Some(Silent)).is_err());
}
