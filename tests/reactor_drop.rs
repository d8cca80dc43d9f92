//! Dropping a reactor ends what it runs: every live connection hears
//! `connection_lost` once, with a reason, and every pending connect
//! `client_connection_failed`.
mod util;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use torsion::{
    client_factory, factory, Address, ClientFactory, Connector, Context, Core, DisconnectReason,
    Protocol, Reactor, Reconnect,
};
use util::{localhost, run_until, DEADLINE};

/// What every protocol of one test heard, by a name given at build time.
#[derive(Default)]
struct Log {
    made: usize,
    lost: HashMap<String, Vec<DisconnectReason>>,
}

struct Rec {
    name: String,
    log: Rc<RefCell<Log>>,
}

impl Protocol for Rec {
    fn connection_made(&mut self, _ctx: &mut Context<'_>) {
        self.log.borrow_mut().made += 1;
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.log
            .borrow_mut()
            .lost
            .entry(self.name.clone())
            .or_default()
            .push(reason.clone());
    }
}

fn rec(name: &str, log: &Rc<RefCell<Log>>) -> Rec {
    Rec {
        name: name.into(),
        log: log.clone(),
    }
}

#[test]
fn dropping_the_reactor_ends_every_connection_once_with_a_reason() {
    let log = Rc::new(RefCell::new(Log::default()));
    let mut r = Reactor::new().unwrap();
    let n = Rc::new(RefCell::new(0));
    let (l, count) = (log.clone(), n.clone());
    let port = r
        .listen_tcp(
            localhost(),
            factory(move |_peer| {
                *count.borrow_mut() += 1;
                rec(&format!("server{}", count.borrow()), &l)
            }),
        )
        .unwrap();
    for i in 0..3 {
        let l = log.clone();
        let name = format!("client{i}");
        r.connect_tcp(
            port.local_addr(),
            client_factory(move |_peer| rec(&name, &l)),
            DEADLINE,
        );
    }
    run_until(&mut r, || log.borrow().made == 6);
    drop(r);
    let log = log.borrow();
    assert_eq!(log.lost.len(), 6, "every connection heard: {:?}", log.lost);
    for (name, reasons) in &log.lost {
        assert_eq!(reasons.len(), 1, "{name} heard connection_lost once");
        assert!(!reasons[0].is_clean(), "{name}: {:?}", reasons[0]);
    }
}

/// A client factory that records how its attempts ended, by name.
struct Outcome {
    log: Rc<RefCell<Log>>,
    name: &'static str,
    failed: Rc<RefCell<HashMap<&'static str, Vec<DisconnectReason>>>>,
}

impl ClientFactory for Outcome {
    type Protocol = Rec;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Rec> {
        Some(rec(self.name, &self.log))
    }
    fn client_connection_failed(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        self.failed
            .borrow_mut()
            .entry(self.name)
            .or_default()
            .push(reason.clone());
        // Asking to reconnect must not keep a dropped reactor's connector alive.
        Reconnect::After(Duration::from_secs(60))
    }
}

#[test]
fn dropping_the_reactor_fails_pending_connects() {
    let log = Rc::new(RefCell::new(Log::default()));
    let failed = Rc::new(RefCell::new(HashMap::new()));
    let outcome = |name| Outcome {
        log: log.clone(),
        name,
        failed: failed.clone(),
    };
    let mut r = Reactor::new().unwrap();
    // Refused, and waiting to try again.
    let closed = std::net::TcpListener::bind(localhost()).unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    r.connect_tcp(closed_addr, outcome("waiting"), DEADLINE);
    run_until(&mut r, || failed.borrow().contains_key("waiting"));
    assert_eq!(failed.borrow()["waiting"], [DisconnectReason::Refused]);
    // Started: to a listener that never accepts, the connect is in progress or
    // (when the kernel completes it) connected; either way one ending.
    let silent = std::net::TcpListener::bind(localhost()).unwrap();
    r.connect_tcp(silent.local_addr().unwrap(), outcome("started"), DEADLINE);
    r.run_once(Some(Duration::ZERO)).unwrap();
    // Queued and never started: the reactor does not run again.
    r.connect_tcp(localhost(), outcome("queued"), DEADLINE);
    drop(r);
    let failed = failed.borrow();
    let log = log.borrow();
    assert_eq!(
        failed["waiting"],
        [DisconnectReason::Refused, DisconnectReason::Cancelled]
    );
    assert_eq!(failed["queued"], [DisconnectReason::Cancelled]);
    match (failed.get("started"), log.lost.get("started")) {
        (Some(f), None) => assert_eq!(*f, [DisconnectReason::Cancelled]),
        (None, Some(l)) => assert_eq!(*l, [DisconnectReason::Aborted]),
        other => panic!("the started connect ended once: {other:?}"),
    }
}
