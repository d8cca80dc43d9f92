//! netmon's engine against listeners in the same process that stop and start
//! again, send good or bad banners, stay silent or hang up: the status changes
//! come in order, with the right reasons.

mod util;

#[allow(dead_code)]
#[path = "../examples/netmon/mod.rs"]
mod netmon;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use netmon::monitor::{Config, Monitor, Target};
use netmon::probe::Spec;
use netmon::status::{Event, Reason};
use torsion::Address;
use torsion::{ConnectionHandle, Context, Factory, Protocol, Reactor};
use util::*;

type Events = Rc<RefCell<Vec<Event>>>;

fn target(addr: SocketAddr) -> Target {
    Target {
        name: addr.to_string(),
        addr,
    }
}

fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn monitor(targets: Vec<Target>, spec: Spec, persistent: bool) -> (Monitor, Events) {
    let events = Events::default();
    let e = events.clone();
    let config = Config {
        targets,
        interval: Duration::from_millis(200),
        spec,
        persistent,
        count: None,
    };
    (
        Monitor::new(config, move |ev| e.borrow_mut().push(ev.clone())),
        events,
    )
}

fn spec() -> Spec {
    Spec {
        send: None,
        expect: None,
        timeout: Duration::from_secs(5),
    }
}

/// The (up, reason) sequence seen for `name`.
fn history(events: &Events, name: &str) -> Vec<Result<(), Reason>> {
    events
        .borrow()
        .iter()
        .filter(|e| e.target == name)
        .map(|e| e.status.clone().map(drop))
        .collect()
}

fn round(r: &mut Reactor, m: &Monitor) {
    let before = m.rounds_done();
    m.start_round(r);
    run_until(r, || m.rounds_done() > before);
}

#[test]
fn a_listener_that_stops_and_starts_again_goes_down_and_up_in_order() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let a = port.local_addr();
    let b = closed_port();
    let (m, events) = monitor(vec![target(a), target(b)], spec(), false);

    round(&mut r, &m);
    port.stop_listening(&mut r);
    round(&mut r, &m);
    round(&mut r, &m); // still down: no new event
    let _port = r.listen_tcp(a, EchoFactory).unwrap();
    round(&mut r, &m);

    assert_eq!(
        history(&events, &a.to_string()),
        [Ok(()), Err(Reason::Refused), Ok(())]
    );
    assert_eq!(history(&events, &b.to_string()), [Err(Reason::Refused)]);

    let ev = events.borrow();
    let lines: Vec<String> = ev
        .iter()
        .filter(|e| e.target == a.to_string())
        .map(|e| e.to_string())
        .collect();
    assert!(
        lines[0].contains(&format!("{a} up (connect ")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(&format!("{a} down (refused) after ")),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(" up (connect ") && lines[2].ends_with(" down"),
        "{}",
        lines[2]
    );
    let down_again = ev
        .iter()
        .filter(|e| e.target == a.to_string())
        .nth(1)
        .unwrap();
    assert_eq!(down_again.failures, 1);

    m.with_record(0, |rec| {
        assert_eq!(
            (rec.checks, rec.ups, rec.failures, rec.total_failures),
            (4, 2, 0, 2)
        );
        assert_eq!(rec.check_uptime(), Some(50.0));
        assert!(rec.latency_ms(99.0).is_some());
    });
    m.with_record(1, |rec| assert_eq!((rec.failures, rec.ups), (4, 0)));
    let summary = m.summary();
    assert!(
        summary.contains("50.0%") && summary.contains("refused"),
        "{summary}"
    );
}

/// Sends a fixed banner on connect (or nothing), and maybe hangs up at once.
struct Banner {
    text: &'static [u8],
    hang_up: bool,
}

struct BannerProto(&'static [u8], bool);

impl Protocol for BannerProto {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.write(self.0);
        if self.1 {
            ctx.lose_connection();
        }
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

impl Factory for Banner {
    type Protocol = BannerProto;
    fn build_protocol(&mut self, _peer: &Address) -> Option<BannerProto> {
        Some(BannerProto(self.text, self.hang_up))
    }
}

fn banner_server(r: &mut Reactor, text: &'static [u8], hang_up: bool) -> SocketAddr {
    r.listen_tcp(localhost(), Banner { text, hang_up })
        .unwrap()
        .local_addr()
}

#[test]
fn banner_checks_tell_wrong_silent_and_closing_servers_apart() {
    let mut r = Reactor::new().unwrap();
    let good = banner_server(&mut r, b"SSH-2.0-OpenSSH_9.6\r\n", false);
    let wrong = banner_server(&mut r, b"HTTP/1.1 400 Bad Request\r\n", false);
    let silent = banner_server(&mut r, b"", false);
    let closing = banner_server(&mut r, b"SS", true);
    let split = banner_server(&mut r, b"SS", false); // a prefix, then nothing
    let targets = [good, wrong, silent, closing, split].map(target).to_vec();
    let spec = Spec {
        send: None,
        expect: Some(b"SSH-".to_vec()),
        timeout: Duration::from_millis(300),
    };
    let (m, events) = monitor(targets, spec, false);
    round(&mut r, &m);
    assert_eq!(history(&events, &good.to_string()), [Ok(())]);
    assert_eq!(
        history(&events, &wrong.to_string()),
        [Err(Reason::WrongBanner(
            "HTTP/1.1 400 Bad Request\r\n".into()
        ))]
    );
    assert_eq!(
        history(&events, &silent.to_string()),
        [Err(Reason::TimedOut)]
    );
    assert_eq!(
        history(&events, &closing.to_string()),
        [Err(Reason::Closed)]
    );
    assert_eq!(
        history(&events, &split.to_string()),
        [Err(Reason::TimedOut)]
    );
    let line = events
        .borrow()
        .iter()
        .find(|e| e.target == wrong.to_string())
        .unwrap()
        .to_string();
    assert!(
        line.contains("down (wrong banner: got \"HTTP/1.1"),
        "{line}"
    );
}

#[test]
fn a_probe_is_sent_and_the_reply_checked() {
    let mut r = Reactor::new().unwrap();
    let echo = r.listen_tcp(localhost(), EchoFactory).unwrap().local_addr();
    let spec = Spec {
        send: Some(b"PING\r\n".to_vec()),
        expect: Some(b"PING".to_vec()),
        timeout: Duration::from_secs(5),
    };
    let (m, events) = monitor(vec![target(echo)], spec, false);
    round(&mut r, &m);
    assert_eq!(history(&events, &echo.to_string()), [Ok(())]);
    let spec = Spec {
        send: Some(b"PING\r\n".to_vec()),
        expect: Some(b"PONG".to_vec()),
        timeout: Duration::from_secs(5),
    };
    let (m, events) = monitor(vec![target(echo)], spec, false);
    round(&mut r, &m);
    assert_eq!(
        history(&events, &echo.to_string()),
        [Err(Reason::WrongBanner("PING\r\n".into()))]
    );
}

/// A server that remembers its connections so the test can hang up on them.
#[derive(Clone, Default)]
struct Tracked(Rc<RefCell<Vec<ConnectionHandle>>>);
struct TrackedProto(Tracked);

impl Protocol for TrackedProto {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        (self.0).0.borrow_mut().push(ctx.handle());
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

impl Factory for Tracked {
    type Protocol = TrackedProto;
    fn build_protocol(&mut self, _peer: &Address) -> Option<TrackedProto> {
        Some(TrackedProto(self.clone()))
    }
}

#[test]
fn persistent_mode_reports_a_disconnect_at_once_and_the_reconnect() {
    let mut r = Reactor::new().unwrap();
    let conns = Tracked::default();
    let port = r.listen_tcp(localhost(), conns.clone()).unwrap();
    let addr = port.local_addr();
    let (m, events) = monitor(vec![target(addr)], spec(), true);
    m.start(&mut r);
    run_until(&mut r, || events.borrow().len() == 1);
    assert!(events.borrow()[0].is_up());

    // The service goes away: its connection is closed and it refuses new ones.
    port.stop_listening(&mut r);
    let h = conns.0.borrow()[0];
    r.connection(h).lose_connection();
    run_until(&mut r, || events.borrow().len() == 2);
    // Reported as the connection closed, before any reconnect attempt.
    assert_eq!(events.borrow()[1].status, Err(Reason::Closed));
    assert_eq!(m.with_record(0, |rec| rec.checks), 2);

    // Reconnects are refused (counted, no new line while still down)...
    run_until(&mut r, || m.with_record(0, |rec| rec.failures >= 3));
    assert_eq!(
        m.with_record(0, |rec| rec.last_reason.clone()),
        Some(Reason::Refused)
    );
    assert_eq!(events.borrow().len(), 2);

    // ...until the service is back.
    let _port = r.listen_tcp(addr, conns.clone()).unwrap();
    run_until(&mut r, || events.borrow().len() == 3);
    assert!(events.borrow()[2].is_up());
    assert_eq!(m.with_record(0, |rec| rec.failures), 0);
    let uptime = m.with_record(0, |rec| rec.time_uptime(std::time::Instant::now()));
    assert!(uptime.is_some_and(|u| u > 0.0 && u < 100.0), "{uptime:?}");
    m.stop(&mut r);
}

#[test]
fn count_stops_the_reactor_after_that_many_rounds() {
    let mut r = Reactor::new().unwrap();
    let echo = r.listen_tcp(localhost(), EchoFactory).unwrap().local_addr();
    let events = Events::default();
    let e = events.clone();
    let config = Config {
        targets: vec![target(echo), target(closed_port())],
        interval: Duration::from_millis(50),
        spec: spec(),
        persistent: false,
        count: Some(3),
    };
    let m = Monitor::new(config, move |ev| e.borrow_mut().push(ev.clone()));
    m.start(&mut r);
    // Only a guard against a hang: run() must return through the count.
    let guard = r.call_later(DEADLINE, |core| core.stop().unwrap());
    r.run().unwrap();
    assert!(
        guard.active(&r),
        "run() ended by the guard, not by the count"
    );
    assert!(m.finished());
    assert_eq!(m.rounds_done(), 3);
    assert_eq!(m.with_record(0, |rec| rec.checks), 3);
    assert_eq!(m.with_record(1, |rec| rec.checks), 3);
    assert!(!m.all_up());
    assert_eq!(events.borrow().len(), 2);
}

#[test]
fn target_files_skip_comments_and_blank_lines() {
    let text = "# hosts\n127.0.0.1:80\n\n  [::1]:443  # v6\n#done\n";
    assert_eq!(
        netmon::monitor::parse_targets(text),
        ["127.0.0.1:80", "[::1]:443"]
    );
    let t = Target::resolve(" [::1]:443 ").unwrap();
    assert_eq!(t.addr, "[::1]:443".parse().unwrap());
    assert!(Target::resolve("no-port").is_err());
}
