//! Services: start order, reverse stop order waiting for each, endpoint
//! services, a client service that reconnects, timers.

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::Deferred;
use torsion::reconnect::{Backoff, BackoffPolicy};
use torsion::service::{
    ClientService, MultiService, ServerService, Service, ServiceError, TimerService,
};
use torsion::{Context, Core, DisconnectReason, Protocol, Reactor};
use util::*;

type Log = Rc<RefCell<Vec<String>>>;

/// Logs start/stop; its stop finishes `delay` later.
struct Step {
    name: String,
    log: Log,
    delay: Duration,
    running: bool,
    fail_start: bool,
}

impl Service for Step {
    fn name(&self) -> &str {
        &self.name
    }
    fn start(&mut self, _core: &mut Core) -> Result<(), ServiceError> {
        if self.fail_start {
            return Err(ServiceError::Failed {
                name: self.name.clone(),
                message: "refused".into(),
            });
        }
        self.log.borrow_mut().push(format!("start {}", self.name));
        self.running = true;
        Ok(())
    }
    fn stop(&mut self, core: &mut Core) -> Deferred<(), ServiceError> {
        self.running = false;
        self.log
            .borrow_mut()
            .push(format!("stopping {}", self.name));
        let (d, t) = Deferred::new();
        let (log, name) = (self.log.clone(), self.name.clone());
        core.call_later(self.delay, move |_| {
            log.borrow_mut().push(format!("stopped {name}"));
            let _ = t.callback(());
        });
        d
    }
    fn is_running(&self) -> bool {
        self.running
    }
}

fn step(name: &str, log: &Log, delay_ms: u64) -> Step {
    Step {
        name: name.into(),
        log: log.clone(),
        delay: Duration::from_millis(delay_ms),
        running: false,
        fail_start: false,
    }
}

#[test]
fn multi_service_starts_in_order_and_stops_in_reverse_waiting_for_each() {
    let log = Log::default();
    let mut reactor = Reactor::new().unwrap();
    let mut m = MultiService::new();
    m.add(step("a", &log, 30))
        .add(step("b", &log, 1))
        .add(step("c", &log, 20));
    m.start(&mut reactor).unwrap();
    assert!(matches!(
        m.start(&mut reactor),
        Err(ServiceError::State { running: true, .. })
    ));
    let d = m.stop(&mut reactor);
    reactor.run_until_complete(d).unwrap().unwrap();
    assert_eq!(
        *log.borrow(),
        [
            "start a",
            "start b",
            "start c",
            "stopping c",
            "stopped c",
            "stopping b",
            "stopped b",
            "stopping a",
            "stopped a"
        ]
    );
    assert!(!m.is_running());
}

#[test]
fn a_failed_start_stops_what_started_and_reports_the_error() {
    let log = Log::default();
    let mut reactor = Reactor::new().unwrap();
    let mut m = MultiService::new();
    let mut bad = step("bad", &log, 0);
    bad.fail_start = true;
    m.add(step("a", &log, 0))
        .add(step("b", &log, 0))
        .add(bad)
        .add(step("never", &log, 0));
    let err = m.start(&mut reactor).unwrap_err();
    assert_eq!(err.to_string(), "service \"bad\": refused");
    reactor
        .run_until(Duration::from_millis(50), |_| false)
        .unwrap();
    assert_eq!(
        *log.borrow(),
        [
            "start a",
            "start b",
            "stopping b",
            "stopped b",
            "stopping a",
            "stopped a"
        ]
    );
}

#[test]
fn timer_service_calls_while_running() {
    let mut reactor = Reactor::new().unwrap();
    let hits = Rc::new(RefCell::new(0));
    let h = hits.clone();
    let mut t = TimerService::new(Duration::from_millis(5), move |_| *h.borrow_mut() += 1);
    t.start(&mut reactor).unwrap();
    assert_eq!(*hits.borrow(), 1, "first call at start");
    run_until(&mut reactor, || *hits.borrow() >= 3);
    let d = t.stop(&mut reactor);
    reactor.run_until_complete(d).unwrap().unwrap();
    let n = *hits.borrow();
    reactor
        .run_until(Duration::from_millis(30), |_| false)
        .unwrap();
    assert_eq!(*hits.borrow(), n, "no call after stop");
}

/// Counts connections it sees made and lost.
struct Counter {
    made: Rc<RefCell<u32>>,
    lost: Rc<RefCell<Vec<DisconnectReason>>>,
}
impl Protocol for Counter {
    fn connection_made(&mut self, _ctx: &mut Context<'_>) {
        *self.made.borrow_mut() += 1;
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.lost.borrow_mut().push(reason.clone());
    }
}

#[test]
fn client_service_reconnects_after_a_loss_and_stops_cleanly() {
    let mut reactor = Reactor::new().unwrap();
    let mut server = ServerService::new("tcp:0:interface=127.0.0.1", || EchoFactory).unwrap();
    server.start(&mut reactor).unwrap();
    let addr = server.local_addr().unwrap();
    let made = Rc::new(RefCell::new(0));
    let lost = Rc::new(RefCell::new(Vec::new()));
    let (m, l) = (made.clone(), lost.clone());
    let fast = Backoff::with_seed(
        BackoffPolicy::default()
            .initial_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(50)),
        1,
    )
    .unwrap();
    let mut client = ClientService::new(
        &format!("tcp:host=127.0.0.1:port={}", addr.port()),
        move || Counter {
            made: m.clone(),
            lost: l.clone(),
        },
    )
    .unwrap()
    .with_backoff(fast);
    client.start(&mut reactor).unwrap();
    run_until(&mut reactor, || client.connection().is_some());
    assert_eq!(*made.borrow(), 1);
    // The peer goes away: the service connects again.
    let h = client.connection().unwrap();
    reactor.connection(h).abort_connection();
    run_until(&mut reactor, || {
        *made.borrow() == 2 && client.connection().is_some()
    });
    assert_eq!(lost.borrow()[0], DisconnectReason::Aborted);
    // with_protocol reaches the user's protocol through the service's watcher.
    let seen = reactor
        .connection(client.connection().unwrap())
        .with_protocol(|_: &mut Counter, _| true);
    assert!(reactor.run_until_complete(seen).unwrap().unwrap());
    // Stopping closes the connection gracefully and waits for it.
    let d = client.stop(&mut reactor);
    reactor.run_until_complete(d).unwrap().unwrap();
    assert_eq!(lost.borrow().len(), 2);
    assert_eq!(lost.borrow()[1], DisconnectReason::Done);
    reactor
        .run_until(Duration::from_millis(100), |_| false)
        .unwrap();
    assert_eq!(*made.borrow(), 2, "no reconnect after stop");
    let d = server.stop(&mut reactor);
    reactor.run_until_complete(d).unwrap().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
}

#[test]
fn client_service_retries_until_the_server_appears() {
    let mut reactor = Reactor::new().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let made = Rc::new(RefCell::new(0));
    let lost = Rc::new(RefCell::new(Vec::new()));
    let (m, l) = (made.clone(), lost.clone());
    let fast = Backoff::with_seed(
        BackoffPolicy::default()
            .initial_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(20)),
        1,
    )
    .unwrap();
    let mut client =
        ClientService::new(&format!("tcp:127.0.0.1:{}", addr.port()), move || Counter {
            made: m.clone(),
            lost: l.clone(),
        })
        .unwrap()
        .with_backoff(fast);
    client.start(&mut reactor).unwrap();
    reactor
        .run_until(Duration::from_millis(60), |_| false)
        .unwrap();
    assert_eq!(*made.borrow(), 0);
    // The server comes up on that port: the next retry connects.
    let _port = reactor.listen_tcp(addr, EchoFactory).unwrap();
    run_until(&mut reactor, || client.connection().is_some());
    let d = client.stop(&mut reactor);
    reactor.run_until_complete(d).unwrap().unwrap();
}

#[test]
fn a_bad_endpoint_fails_the_server_service_start() {
    let mut reactor = Reactor::new().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut s = ServerService::new(
        &format!(
            "tcp:{}:interface=127.0.0.1",
            taken.local_addr().unwrap().port()
        ),
        || EchoFactory,
    )
    .unwrap();
    let err = s.start(&mut reactor).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(!s.is_running());
}
