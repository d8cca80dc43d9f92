//! TCP transports over 127.0.0.1 (and ::1): lifecycle, echo, large transfers,
//! failed connects, abort, panics.
mod util;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use torsion::Address;
use torsion::{
    ClientFactory, ConnectionHandle, Connector, Context, Core, DisconnectReason, Factory, Protocol,
    Reactor, Reconnect,
};
use util::*;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn lifecycle_order_and_exactly_once_connection_lost() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let seen = Shared::default();
    r.connect_tcp(
        port.local_addr(),
        ClientF {
            seen: seen.clone(),
            payload: b"ping".to_vec(),
            expect: 4,
        },
        CONNECT_TIMEOUT,
    );
    run_until(&mut r, || seen.borrow().events.len() == 4);
    let s = seen.borrow();
    assert_eq!(
        s.events,
        [
            "started",
            "made",
            "lost:connection closed cleanly",
            "client_lost:connection closed cleanly"
        ]
    );
    assert_eq!(s.received, b"ping");
    assert_eq!(s.built, 1);
}

/// Records the server side's lifecycle.
struct Recorder {
    log: Rc<RefCell<Vec<String>>>,
}

impl Protocol for Recorder {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.log
            .borrow_mut()
            .push(format!("made:{}", ctx.peer_addr().ip()));
        assert_eq!(ctx.host_addr().unwrap().ip(), ctx.peer_addr().ip());
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        self.log
            .borrow_mut()
            .push(format!("data:{}", String::from_utf8_lossy(data)));
        // After lose_connection, writes are refused the documented way.
        ctx.lose_connection();
        assert!(matches!(
            ctx.try_write(b"x"),
            Err(torsion::Error::ConnectionClosed)
        ));
    }
    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        assert!(ctx.try_write(b"late").is_err());
        self.log.borrow_mut().push(format!("lost:{reason}"));
    }
}

struct RecorderFactory {
    log: Rc<RefCell<Vec<String>>>,
}

impl Factory for RecorderFactory {
    type Protocol = Recorder;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Recorder> {
        self.log.borrow_mut().push("build".into());
        Some(Recorder {
            log: self.log.clone(),
        })
    }
    fn start_factory(&mut self, _core: &mut Core) {
        self.log.borrow_mut().push("start_factory".into());
    }
    fn stop_factory(&mut self, _core: &mut Core) {
        self.log.borrow_mut().push("stop_factory".into());
    }
}

#[test]
fn server_side_lifecycle_with_a_std_client_and_ipv6() {
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut r = Reactor::new().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let port = match r.listen_tcp(addr, RecorderFactory { log: log.clone() }) {
            Ok(p) => p,
            Err(e) if addr.is_ipv6() => {
                eprintln!("skipping IPv6: {e}");
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        assert_ne!(port.local_addr().port(), 0);
        let mut c = std::net::TcpStream::connect(port.local_addr()).unwrap();
        c.write_all(b"hi").unwrap();
        run_until(&mut r, || {
            log.borrow().iter().any(|e| e.starts_with("lost"))
        });
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap(); // the server closed cleanly: EOF
        assert!(rest.is_empty());
        port.stop_listening(&mut r);
        run_until(&mut r, || log.borrow().last().unwrap() == "stop_factory");
        let ip = addr.ip();
        assert_eq!(
            *log.borrow(),
            [
                "start_factory".to_string(),
                "build".into(),
                format!("made:{ip}"),
                "data:hi".into(),
                "lost:connection closed cleanly".into(),
                "stop_factory".into()
            ]
        );
        // The port is closed now.
        let refused = std::net::TcpStream::connect(port.local_addr());
        assert_eq!(
            refused.unwrap_err().kind(),
            std::io::ErrorKind::ConnectionRefused
        );
    }
}

#[test]
fn a_thousand_concurrent_clients_each_echo_exactly() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let seens: Vec<Shared> = (0..1000).map(|_| Shared::default()).collect();
    for (i, seen) in seens.iter().enumerate() {
        let payload = format!("client {i} says hello {}", "x".repeat(i % 97)).into_bytes();
        let expect = payload.len();
        r.connect_tcp(
            port.local_addr(),
            ClientF {
                seen: seen.clone(),
                payload,
                expect,
            },
            CONNECT_TIMEOUT,
        );
    }
    run_until(&mut r, || seens.iter().all(|s| s.borrow().lost.is_some()));
    for (i, seen) in seens.iter().enumerate() {
        let s = seen.borrow();
        let payload = format!("client {i} says hello {}", "x".repeat(i % 97)).into_bytes();
        assert_eq!(s.received, payload, "client {i}");
        assert_eq!(s.lost, Some(DisconnectReason::Done), "client {i}");
    }
    assert!(r
        .run_until(DEADLINE, |r| r.connection_count() == 0)
        .unwrap());
}

/// Deterministic pseudo-random bytes and chunk sizes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(2654435761) >> 13) as u8
}

/// Streams `total` bytes of `pattern` in random chunk sizes, honouring
/// back-pressure, then closes (fully, or only its write side).
struct Streamer {
    total: u64,
    sent: u64,
    rng: Rng,
    paused: bool,
    half_close: bool,
    received: Rc<RefCell<(u64, bool, Option<DisconnectReason>)>>, // (bytes ok, corrupt, lost)
}

impl Streamer {
    fn pump(&mut self, ctx: &mut Context<'_>) {
        let mut buf = Vec::new();
        while !self.paused && self.sent < self.total {
            let n = (1 + self.rng.next() % 100_000).min(self.total - self.sent);
            buf.clear();
            buf.extend((self.sent..self.sent + n).map(pattern));
            ctx.write(&buf);
            self.sent += n;
            if ctx.buffered_len() > 256 * 1024 {
                // Let the callback return so the reactor can flush and maybe pause us.
                let h = ctx.handle();
                drop(
                    ctx.connection(h)
                        .with_protocol(|s: &mut Streamer, ctx| s.pump(ctx)),
                );
                return;
            }
        }
        if self.sent == self.total {
            if self.half_close {
                ctx.lose_write_connection();
            } else {
                ctx.lose_connection();
            }
        }
    }
}

impl Protocol for Streamer {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.set_half_close(self.half_close);
        self.pump(ctx);
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
        let mut r = self.received.borrow_mut();
        for &b in data {
            if b != pattern(r.0) {
                r.1 = true;
            }
            r.0 += 1;
        }
    }
    fn pause_writing(&mut self, _ctx: &mut Context<'_>) {
        self.paused = true;
    }
    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        self.paused = false;
        self.pump(ctx);
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.received.borrow_mut().2 = Some(reason.clone());
    }
}

struct StreamerF(Option<Streamer>);
impl ClientFactory for StreamerF {
    type Protocol = Streamer;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Streamer> {
        self.0.take()
    }
}

/// Counts and checks what arrives.
struct Sink {
    got: Rc<RefCell<(u64, bool, Option<DisconnectReason>)>>,
}
impl Protocol for Sink {
    fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
        let mut g = self.got.borrow_mut();
        for &b in data {
            if b != pattern(g.0) {
                g.1 = true;
            }
            g.0 += 1;
        }
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.got.borrow_mut().2 = Some(reason.clone());
    }
}
struct SinkF(Rc<RefCell<(u64, bool, Option<DisconnectReason>)>>);
impl Factory for SinkF {
    type Protocol = Sink;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Sink> {
        Some(Sink {
            got: self.0.clone(),
        })
    }
}

const HUNDRED_MIB: u64 = 100 * 1024 * 1024;

#[test]
fn hundred_mib_in_random_chunks_then_lose_connection_all_arrives() {
    let mut r = Reactor::new().unwrap();
    let got = Rc::new(RefCell::new((0, false, None)));
    let port = r.listen_tcp(localhost(), SinkF(got.clone())).unwrap();
    let mine = Rc::new(RefCell::new((0, false, None)));
    let streamer = Streamer {
        total: HUNDRED_MIB,
        sent: 0,
        rng: Rng(7),
        paused: false,
        half_close: false,
        received: mine.clone(),
    };
    r.connect_tcp(
        port.local_addr(),
        StreamerF(Some(streamer)),
        CONNECT_TIMEOUT,
    );
    run_until(&mut r, || {
        got.borrow().2.is_some() && mine.borrow().2.is_some()
    });
    let g = got.borrow();
    assert_eq!(g.0, HUNDRED_MIB, "bytes received");
    assert!(!g.1, "corrupted or reordered bytes");
    assert_eq!(g.2, Some(DisconnectReason::Done));
    assert_eq!(mine.borrow().2, Some(DisconnectReason::Done));
}

#[test]
fn hundred_mib_echoed_back_intact_with_half_close() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let mine = Rc::new(RefCell::new((0, false, None)));
    let streamer = Streamer {
        total: HUNDRED_MIB,
        sent: 0,
        rng: Rng(99),
        paused: false,
        half_close: true,
        received: mine.clone(),
    };
    r.connect_tcp(
        port.local_addr(),
        StreamerF(Some(streamer)),
        CONNECT_TIMEOUT,
    );
    run_until(&mut r, || mine.borrow().2.is_some());
    let m = mine.borrow();
    assert_eq!(m.0, HUNDRED_MIB);
    assert!(!m.1, "echo corrupted or reordered");
    assert_eq!(m.2, Some(DisconnectReason::Done));
}

#[test]
fn refused_connect_reaches_client_connection_failed_and_builds_nothing() {
    let mut r = Reactor::new().unwrap();
    // Bind then drop to get a port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let seen = Shared::default();
    r.connect_tcp(
        addr,
        ClientF {
            seen: seen.clone(),
            payload: vec![],
            expect: 0,
        },
        CONNECT_TIMEOUT,
    );
    run_until(&mut r, || seen.borrow().failed.is_some());
    let s = seen.borrow();
    assert_eq!(s.failed, Some(DisconnectReason::Refused));
    assert_eq!(s.built, 0);
    assert_eq!(s.events, ["started", "failed:connection refused"]);
}

#[test]
fn connect_timeout_reaches_client_connection_failed() {
    // A listener whose accept queue is full drops further SYNs: connects hang.
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    let mut r = Reactor::new().unwrap();
    let seen = Shared::default();
    // Fill the queue (its exact size depends on the kernel), then one more.
    for _ in 0..8 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    r.connect_tcp(
        addr,
        ClientF {
            seen: seen.clone(),
            payload: vec![],
            expect: 0,
        },
        Duration::from_millis(300),
    );
    run_until(&mut r, || {
        seen.borrow().failed.is_some() || seen.borrow().built > 0
    });
    let s = seen.borrow();
    assert_eq!(s.failed, Some(DisconnectReason::TimedOut), "{:?}", s.events);
    assert_eq!(s.built, 0);
    assert_eq!(r.source_count(), 0, "the timed-out socket was not released");
}

/// Writes a lot, then aborts: nothing buffered may reach the peer after abort.
struct Aborter {
    done: Rc<RefCell<Option<DisconnectReason>>>,
}
impl Protocol for Aborter {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.write(b"before");
        // Wait for the peer to have read "before", via a timer on our own protocol.
        ctx.call_later_self::<Aborter>(Duration::from_millis(1), |_, ctx| {
            ctx.write(&vec![b'z'; 8 << 20]); // far more than the kernel takes at once
            assert!(ctx.buffered_len() > 0);
            ctx.abort_connection();
            assert!(ctx.try_write(b"after").is_err());
        });
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        *self.done.borrow_mut() = Some(reason.clone());
    }
}
struct AborterF(Rc<RefCell<Option<DisconnectReason>>>);
impl Factory for AborterF {
    type Protocol = Aborter;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Aborter> {
        Some(Aborter {
            done: self.0.clone(),
        })
    }
}

#[test]
fn abort_connection_drops_buffered_data_and_resets() {
    let mut r = Reactor::new().unwrap();
    let done = Rc::new(RefCell::new(None));
    let port = r.listen_tcp(localhost(), AborterF(done.clone())).unwrap();
    let mut c = std::net::TcpStream::connect(port.local_addr()).unwrap();
    // A small receive window keeps most of the 8 MiB in the server's buffer.
    socket2::SockRef::from(&c)
        .set_recv_buffer_size(4096)
        .unwrap();
    run_until(&mut r, || done.borrow().is_some());
    assert_eq!(*done.borrow(), Some(DisconnectReason::Aborted));
    let mut got = Vec::new();
    let err = loop {
        let mut buf = [0u8; 65536];
        match c.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e),
        }
    };
    assert!(got.starts_with(b"before"));
    assert!(
        got.len() < 6 + (8 << 20),
        "all buffered data arrived despite the abort"
    );
    assert_eq!(
        err.map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionReset)
    );
    assert_eq!(r.connection_count(), 0);
}

struct Panicky;
impl Protocol for Panicky {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        if data.starts_with(b"panic") {
            panic!("asked to");
        }
        ctx.write(data);
    }
}
struct PanickyF(Rc<RefCell<Vec<DisconnectReason>>>);
struct PanickyWrap(Panicky, Rc<RefCell<Vec<DisconnectReason>>>);
impl Protocol for PanickyWrap {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        self.0.data_received(ctx, data)
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.1.borrow_mut().push(reason.clone());
    }
}
impl Factory for PanickyF {
    type Protocol = PanickyWrap;
    fn build_protocol(&mut self, _peer: &Address) -> Option<PanickyWrap> {
        Some(PanickyWrap(Panicky, self.0.clone()))
    }
}

#[test]
fn a_panic_in_data_received_aborts_that_connection_only() {
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(torsion::PanicPolicy::Record);
    let lost = Rc::new(RefCell::new(Vec::new()));
    let port = r.listen_tcp(localhost(), PanickyF(lost.clone())).unwrap();
    let good = Shared::default();
    let bad = Shared::default();
    r.connect_tcp(
        port.local_addr(),
        ClientF {
            seen: bad.clone(),
            payload: b"panic!".to_vec(),
            expect: 1,
        },
        CONNECT_TIMEOUT,
    );
    run_until(&mut r, || bad.borrow().lost.is_some());
    r.connect_tcp(
        port.local_addr(),
        ClientF {
            seen: good.clone(),
            payload: b"fine".to_vec(),
            expect: 4,
        },
        CONNECT_TIMEOUT,
    );
    run_until(&mut r, || {
        good.borrow().lost.is_some() && lost.borrow().len() == 2
    });
    assert_eq!(bad.borrow().lost, Some(DisconnectReason::Reset));
    assert_eq!(good.borrow().received, b"fine");
    assert_eq!(
        lost.borrow()[0],
        DisconnectReason::Panicked("asked to".into())
    );
    assert_eq!(lost.borrow()[1], DisconnectReason::Done);
    assert_eq!(r.take_panics(), ["asked to"]);
}

#[test]
fn a_factory_may_refuse_a_connection() {
    struct Refuser;
    impl Factory for Refuser {
        type Protocol = Echo;
        fn build_protocol(&mut self, _peer: &Address) -> Option<Echo> {
            None
        }
    }
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), Refuser).unwrap();
    let mut c = std::net::TcpStream::connect(port.local_addr()).unwrap();
    c.set_nonblocking(true).unwrap();
    let mut closed = false;
    run_until(&mut r, || {
        let mut b = [0u8; 1];
        closed = matches!(c.read(&mut b), Ok(0) | Err(_))
            && !matches!(c.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock);
        closed
    });
    assert_eq!(r.connection_count(), 0);
}

/// Writes to another connection by handle, as a chat server would.
#[test]
fn writing_to_another_connection_by_handle() {
    struct Relay {
        peers: Rc<RefCell<Vec<ConnectionHandle>>>,
    }
    impl Protocol for Relay {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            self.peers.borrow_mut().push(ctx.handle());
        }
        fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
            let me = ctx.handle();
            for &h in self.peers.borrow().iter().filter(|&&h| h != me) {
                ctx.connection(h).write(data);
            }
        }
        fn connection_lost(&mut self, ctx: &mut Context<'_>, _r: &DisconnectReason) {
            let me = ctx.handle();
            self.peers.borrow_mut().retain(|&h| h != me);
        }
    }
    struct RelayF(Rc<RefCell<Vec<ConnectionHandle>>>);
    impl Factory for RelayF {
        type Protocol = Relay;
        fn build_protocol(&mut self, _peer: &Address) -> Option<Relay> {
            Some(Relay {
                peers: self.0.clone(),
            })
        }
    }
    let mut r = Reactor::new().unwrap();
    let peers = Rc::new(RefCell::new(Vec::new()));
    let port = r.listen_tcp(localhost(), RelayF(peers.clone())).unwrap();
    let mut a = std::net::TcpStream::connect(port.local_addr()).unwrap();
    let mut b = std::net::TcpStream::connect(port.local_addr()).unwrap();
    run_until(&mut r, || peers.borrow().len() == 2);
    a.write_all(b"to b").unwrap();
    b.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    run_until(&mut r, || {
        let mut buf = [0u8; 16];
        if let Ok(n) = b.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        got == b"to b"
    });
    drop(a);
    run_until(&mut r, || peers.borrow().len() == 1);
}

#[test]
fn client_factory_can_reconnect_and_stop_connecting_cancels() {
    struct Retry {
        attempts: Rc<RefCell<Vec<DisconnectReason>>>,
    }
    impl ClientFactory for Retry {
        type Protocol = Echo;
        fn build_protocol(&mut self, _peer: &Address) -> Option<Echo> {
            Some(Echo)
        }
        fn client_connection_failed(
            &mut self,
            core: &mut Core,
            c: Connector,
            reason: &DisconnectReason,
        ) -> Reconnect {
            self.attempts.borrow_mut().push(reason.clone());
            if self.attempts.borrow().len() == 3 {
                c.stop_connecting(core);
            }
            Reconnect::After(Duration::from_millis(5))
        }
    }
    let mut r = Reactor::new().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let attempts = Rc::new(RefCell::new(Vec::new()));
    r.connect_tcp(
        addr,
        Retry {
            attempts: attempts.clone(),
        },
        CONNECT_TIMEOUT,
    );
    run_until(&mut r, || attempts.borrow().len() >= 3);
    // Stopped: no fourth attempt even after waiting a few retry periods.
    let deadline = std::time::Instant::now() + Duration::from_millis(50);
    while std::time::Instant::now() < deadline {
        r.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    assert_eq!(*attempts.borrow(), vec![DisconnectReason::Refused; 3]);
    assert_eq!(r.source_count(), 0);
}

#[test]
fn nodelay_is_on_by_default_and_configurable() {
    struct Check(Rc<RefCell<Vec<Option<bool>>>>);
    impl Protocol for Check {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            self.0.borrow_mut().push(ctx.nodelay());
            ctx.lose_connection();
        }
        fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    }
    struct CheckF(Rc<RefCell<Vec<Option<bool>>>>);
    impl Factory for CheckF {
        type Protocol = Check;
        fn build_protocol(&mut self, _peer: &Address) -> Option<Check> {
            Some(Check(self.0.clone()))
        }
    }
    let mut r = Reactor::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let on = r.listen_tcp(localhost(), CheckF(seen.clone())).unwrap();
    let off = r
        .listen_tcp_with(
            localhost(),
            CheckF(seen.clone()),
            torsion::TcpOptions::default().nodelay(false),
        )
        .unwrap();
    for port in [on, off] {
        let c = Shared::default();
        r.connect_tcp(
            port.local_addr(),
            ClientF {
                seen: c.clone(),
                payload: vec![],
                expect: 1,
            },
            CONNECT_TIMEOUT,
        );
        run_until(&mut r, || c.borrow().lost.is_some());
    }
    assert_eq!(*seen.borrow(), [Some(true), Some(false)]);
}
