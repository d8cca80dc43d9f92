//! UDP: echo over IPv4 and IPv6, start/stop hooks, wrong-family sends,
//! connected UDP and refused ports, the fairness budget, multicast on
//! loopback, broadcast, panics.
mod util;

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

use torsion::{
    Address, DatagramContext, DatagramError, DatagramPort, DatagramProtocol, MulticastInterface,
    PanicPolicy, Reactor, UdpOptions,
};
use util::run_until;

type Log = Rc<RefCell<Vec<String>>>;

/// Records every callback; echoes datagrams when `echo` is set.
struct Recorder {
    log: Log,
    echo: bool,
}

impl DatagramProtocol for Recorder {
    fn start_protocol(&mut self, ctx: &mut DatagramContext<'_>) {
        self.log
            .borrow_mut()
            .push(format!("start:{}", ctx.local_address()));
    }
    fn datagram_received(&mut self, ctx: &mut DatagramContext<'_>, data: &[u8], from: &Address) {
        self.log
            .borrow_mut()
            .push(format!("{}<-{from}", String::from_utf8_lossy(data)));
        if self.echo {
            ctx.send_to(data, from).expect("echo sent");
        }
    }
    fn connection_refused(&mut self, _ctx: &mut DatagramContext<'_>) {
        self.log.borrow_mut().push("refused".into());
    }
    fn stop_protocol(&mut self, ctx: &mut DatagramContext<'_>) {
        let late = ctx.send_to(b"late", ctx.local_address().clone());
        assert!(matches!(late, Err(DatagramError::Closed)), "{late:?}");
        self.log.borrow_mut().push("stop".into());
    }
}

fn recorder(echo: bool) -> (Recorder, Log) {
    let log = Log::default();
    (
        Recorder {
            log: log.clone(),
            echo,
        },
        log,
    )
}

fn has(log: &Log, entry: &str) -> bool {
    log.borrow().iter().any(|e| e == entry)
}

fn echo_over(bind: &str) {
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(PanicPolicy::Record);
    let (server, slog) = recorder(true);
    let port = match r.listen_udp(bind.parse().unwrap(), server) {
        Ok(p) => p,
        Err(e) => return eprintln!("skipped: cannot bind {bind}: {e}"),
    };
    let (client, clog) = recorder(false);
    let cport = r.listen_udp(bind.parse().unwrap(), client).unwrap();
    let to = port.local_addr();
    cport.with_protocol(&mut r, move |_: &mut Recorder, ctx| {
        for i in 0..10 {
            ctx.send_to(format!("m{i}").as_bytes(), to).unwrap();
        }
    });
    run_until(&mut r, || clog.borrow().len() == 11);
    let from = format!("<-{to}");
    let c = clog.borrow().clone();
    assert_eq!(c[0], format!("start:{}", cport.local_addr()));
    for i in 0..10 {
        assert!(c.contains(&format!("m{i}{from}")), "{c:?}");
        assert!(has(&slog, &format!("m{i}<-{}", cport.local_addr())));
    }
    port.stop_listening(&mut r);
    run_until(&mut r, || has(&slog, "stop"));
    assert_eq!(slog.borrow().iter().filter(|e| *e == "stop").count(), 1);
    // The port is free again.
    UdpSocket::bind(to).expect("the stopped port's address is free");
    r.assert_no_panics();
}

#[test]
fn echo_over_ipv4_with_start_and_stop_hooks() {
    echo_over("127.0.0.1:0");
}

#[test]
fn echo_over_ipv6() {
    echo_over("[::1]:0");
}

#[test]
fn a_wrong_family_is_an_error_value() {
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(PanicPolicy::Record);
    let (p, _log) = recorder(false);
    let port = r.listen_udp("127.0.0.1:0".parse().unwrap(), p).unwrap();
    let results = Rc::new(RefCell::new(Vec::new()));
    let res = results.clone();
    port.with_protocol(&mut r, move |_: &mut Recorder, ctx| {
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        res.borrow_mut().push(ctx.send_to(b"x", v6));
        res.borrow_mut()
            .push(ctx.send_to(b"x", Address::unix("/tmp/nowhere.sock")));
        res.borrow_mut().push(ctx.connect(v6));
        res.borrow_mut().push(ctx.write(b"not connected"));
        res.borrow_mut()
            .push(ctx.join_group("ff02::1".parse().unwrap(), MulticastInterface::Default));
        ctx.stop().unwrap();
    });
    r.run().unwrap();
    let res = results.borrow();
    for e in &res[..3] {
        assert!(matches!(e, Err(DatagramError::WrongFamily { .. })), "{e:?}");
    }
    assert!(res[0]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("IPv4 UDP"));
    assert!(matches!(res[3], Err(DatagramError::NotConnected)));
    assert!(matches!(res[4], Err(DatagramError::WrongFamily { .. })));
    r.assert_no_panics();
}

#[test]
fn connected_udp_hears_a_refused_port() {
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(PanicPolicy::Record);
    // A port with nobody on it.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (p, log) = recorder(false);
    let port = r.listen_udp("127.0.0.1:0".parse().unwrap(), p).unwrap();
    port.with_protocol(&mut r, move |_: &mut Recorder, ctx| {
        ctx.connect(closed).unwrap();
        assert_eq!(ctx.remote(), Some(&Address::Inet(closed)));
        ctx.write(b"anyone?").unwrap();
    });
    run_until(&mut r, || has(&log, "refused"));
    // The port stays open and usable: a second write is refused again.
    let log2 = log.clone();
    port.with_protocol(&mut r, move |_: &mut Recorder, ctx| {
        log2.borrow_mut().push("second".into());
        let _ = ctx.write(b"still?");
    });
    run_until(&mut r, || {
        log.borrow().iter().filter(|e| *e == "refused").count() == 2
    });
    r.assert_no_panics();
}

/// A partner port's count, and what it was when this port's first datagram came.
type Partner = (Rc<RefCell<usize>>, Rc<RefCell<Option<usize>>>);

/// Counts datagrams; notes how many a partner port had when the first arrived.
struct Counter {
    count: Rc<RefCell<usize>>,
    partner: Option<Partner>,
}

impl DatagramProtocol for Counter {
    fn datagram_received(&mut self, _: &mut DatagramContext<'_>, _: &[u8], _: &Address) {
        *self.count.borrow_mut() += 1;
        if let Some((other, seen)) = &self.partner {
            seen.borrow_mut().get_or_insert(*other.borrow());
        }
    }
}

#[test]
fn the_read_loop_drains_with_a_budget_and_remembers_readiness() {
    const FLOOD: usize = 150; // more than two budgets of 64
    let mut r = Reactor::new().unwrap();
    let busy = Rc::new(RefCell::new(0));
    let quiet = Rc::new(RefCell::new(0));
    let busy_at_quiet = Rc::new(RefCell::new(None));
    let opts = UdpOptions::default().recv_buffer_size(1 << 20);
    let a = r
        .listen_udp_with(
            "127.0.0.1:0".parse().unwrap(),
            Counter {
                count: busy.clone(),
                partner: None,
            },
            opts,
        )
        .unwrap();
    let b = r
        .listen_udp(
            "127.0.0.1:0".parse().unwrap(),
            Counter {
                count: quiet.clone(),
                partner: Some((busy.clone(), busy_at_quiet.clone())),
            },
        )
        .unwrap();
    // Register both, then queue the flood and one datagram while the loop waits.
    r.run_once(Some(Duration::ZERO)).unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..FLOOD {
        sender.send_to(&[i as u8; 8], a.local_addr()).unwrap();
    }
    sender.send_to(b"q", b.local_addr()).unwrap();
    // Every datagram arrives although no new one makes the busy socket
    // readable again: the loop remembered it had more.
    run_until(&mut r, || *busy.borrow() == FLOOD && *quiet.borrow() == 1);
    let at = busy_at_quiet.borrow().unwrap();
    assert!(
        at < FLOOD,
        "the quiet port waited for the whole flood ({at} of {FLOOD})"
    );
}

#[test]
fn multicast_on_loopback() {
    let group = Ipv4Addr::new(239, 255, 42, 99);
    let lo = Ipv4Addr::LOCALHOST;
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(PanicPolicy::Record);
    let (recv, rlog) = recorder(false);
    let opts = UdpOptions::default().reuse_address(true);
    let receiver = r
        .listen_udp_with("0.0.0.0:0".parse().unwrap(), recv, opts)
        .unwrap();
    let (send, _slog) = recorder(false);
    let sender = r.listen_udp("127.0.0.1:0".parse().unwrap(), send).unwrap();
    let setup: Rc<RefCell<Option<Result<(), String>>>> = Rc::default();
    let s = setup.clone();
    receiver.with_protocol(&mut r, move |_: &mut Recorder, ctx| {
        let res = ctx
            .join_group(IpAddr::V4(group), MulticastInterface::Address(lo))
            .map_err(|e| format!("join: {e}"));
        *s.borrow_mut() = Some(res);
    });
    let to = SocketAddr::new(IpAddr::V4(group), receiver.local_addr().port());
    let s = setup.clone();
    sender.with_protocol(&mut r, move |_: &mut Recorder, ctx| {
        if s.borrow().as_ref().is_some_and(|r| r.is_err()) {
            return;
        }
        let res = (|| {
            ctx.set_multicast_interface(MulticastInterface::Address(lo))?;
            ctx.set_multicast_loop(true)?;
            ctx.set_multicast_ttl(1)?;
            ctx.send_to(b"to the group", to)
        })();
        *s.borrow_mut() = Some(res.map_err(|e| format!("send: {e}")));
    });
    run_until(&mut r, || setup.borrow().is_some());
    r.run_once(Some(Duration::ZERO)).unwrap();
    if let Some(Err(why)) = setup.borrow().clone() {
        eprintln!("skipped: no multicast on loopback here ({why})");
        return;
    }
    let want = format!("to the group<-{}", sender.local_addr());
    run_until(&mut r, || has(&rlog, &want));
    // Leaving works once; a second leave is an error value.
    let left: Rc<RefCell<Vec<bool>>> = Rc::default();
    let l = left.clone();
    receiver.with_protocol(&mut r, move |_: &mut Recorder, ctx| {
        let iface = MulticastInterface::Address(lo);
        l.borrow_mut()
            .push(ctx.leave_group(IpAddr::V4(group), iface).is_ok());
        l.borrow_mut()
            .push(ctx.leave_group(IpAddr::V4(group), iface).is_ok());
    });
    run_until(&mut r, || left.borrow().len() == 2);
    assert_eq!(*left.borrow(), [true, false]);
    r.assert_no_panics();
}

#[test]
fn broadcast_needs_to_be_turned_on() {
    let mut r = Reactor::new().unwrap();
    let (p, _log) = recorder(false);
    let port = r.listen_udp("0.0.0.0:0".parse().unwrap(), p).unwrap();
    let out: Rc<RefCell<Vec<String>>> = Rc::default();
    let o = out.clone();
    port.with_protocol(&mut r, move |_: &mut Recorder, ctx| {
        let to: SocketAddr = "255.255.255.255:9".parse().unwrap();
        let off = ctx.send_to(b"x", to);
        ctx.set_broadcast(true).unwrap();
        let on = ctx.send_to(b"x", to);
        o.borrow_mut().push(format!("{off:?}"));
        o.borrow_mut().push(format!("{on:?}"));
    });
    run_until(&mut r, || out.borrow().len() == 2);
    let out = out.borrow();
    assert!(out[0].contains("PermissionDenied"), "{}", out[0]);
    assert!(!out[1].contains("PermissionDenied"), "{}", out[1]);
}

struct Panicky {
    log: Log,
}

impl DatagramProtocol for Panicky {
    fn datagram_received(&mut self, _: &mut DatagramContext<'_>, data: &[u8], _: &Address) {
        assert_ne!(data, b"boom", "bad datagram");
        self.log.borrow_mut().push("ok".into());
    }
    fn stop_protocol(&mut self, _: &mut DatagramContext<'_>) {
        self.log.borrow_mut().push("stop".into());
    }
}

#[test]
fn a_panic_closes_that_port_only() {
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(PanicPolicy::Record);
    let log = Log::default();
    let bad: DatagramPort = r
        .listen_udp("127.0.0.1:0".parse().unwrap(), Panicky { log: log.clone() })
        .unwrap();
    let (good, glog) = recorder(false);
    let good = r.listen_udp("127.0.0.1:0".parse().unwrap(), good).unwrap();
    r.run_once(Some(Duration::ZERO)).unwrap();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"fine", bad.local_addr()).unwrap();
    run_until(&mut r, || log.borrow().len() == 1);
    s.send_to(b"boom", bad.local_addr()).unwrap();
    run_until(&mut r, || has(&log, "stop"));
    assert_eq!(r.take_panics().len(), 1);
    s.send_to(b"still here", good.local_addr()).unwrap();
    run_until(&mut r, || glog.borrow().len() == 2);
    UdpSocket::bind(bad.local_addr()).expect("the panicked port was closed");
}
