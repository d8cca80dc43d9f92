//! Flow control: water marks, the hard cap, pausing reads, streaming to a slow
//! reader, half-close, lingering close, idle timeouts, policies, rate limits.
mod util;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use torsion::policies::Policed;
use torsion::Address;
use torsion::{Context, DisconnectReason, Factory, Protocol, Reactor};
use util::*;

type Log = Rc<RefCell<Vec<String>>>;
type OnMade = Rc<dyn Fn(&mut Context<'_>, &Log)>;
type OnData = Rc<dyn Fn(&mut Context<'_>, &[u8], &Log)>;

/// A protocol built from closures, to keep each test's server short.
struct Server {
    log: Log,
    on_made: OnMade,
    on_data: OnData,
}
impl Protocol for Server {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.log.borrow_mut().push("made".into());
        (self.on_made)(ctx, &self.log);
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        (self.on_data)(ctx, data, &self.log);
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.log.borrow_mut().push(format!("lost:{reason:?}"));
    }
    fn read_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.log.borrow_mut().push("read_lost".into());
        ctx.write(b"reply after your EOF");
        ctx.lose_connection();
    }
    fn write_connection_lost(&mut self, _ctx: &mut Context<'_>) {
        self.log.borrow_mut().push("write_lost".into());
    }
    fn pause_writing(&mut self, _ctx: &mut Context<'_>) {
        self.log.borrow_mut().push("pause_writing".into());
    }
    fn resume_writing(&mut self, _ctx: &mut Context<'_>) {
        self.log.borrow_mut().push("resume_writing".into());
    }
    fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
        self.log
            .borrow_mut()
            .push(format!("stream_done:{}", result.is_ok()));
        ctx.lose_connection();
    }
}

struct ServerF {
    log: Log,
    on_made: OnMade,
    on_data: OnData,
}
impl Factory for ServerF {
    type Protocol = Server;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Server> {
        Some(Server {
            log: self.log.clone(),
            on_made: self.on_made.clone(),
            on_data: self.on_data.clone(),
        })
    }
}

fn server(
    on_made: impl Fn(&mut Context<'_>, &Log) + 'static,
    on_data: impl Fn(&mut Context<'_>, &[u8], &Log) + 'static,
) -> (ServerF, Log) {
    let log = Log::default();
    (
        ServerF {
            log: log.clone(),
            on_made: Rc::new(on_made),
            on_data: Rc::new(on_data),
        },
        log,
    )
}

fn has(log: &Log, what: &str) -> bool {
    log.borrow().iter().any(|e| e == what)
}

fn lost(log: &Log) -> Option<String> {
    log.borrow()
        .iter()
        .find(|e| e.starts_with("lost:"))
        .cloned()
}

fn read_all(mut c: TcpStream) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    c.read_to_end(&mut v)?;
    Ok(v)
}

#[test]
fn water_marks_pause_and_resume_writing() {
    let (f, log) = server(
        |ctx, _| {
            ctx.set_write_water_marks(1000, 4000);
            ctx.write(&vec![b'w'; 16 << 20]);
        },
        |_, _, _| {},
    );
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let c = TcpStream::connect(port.local_addr()).unwrap();
    run_until(&mut r, || has(&log, "pause_writing"));
    assert!(!has(&log, "resume_writing"));
    // Now read: the buffer drains below the low mark.
    let reader = std::thread::spawn(move || {
        let mut c = c;
        let mut n = 0;
        let mut buf = vec![0u8; 1 << 16];
        while n < 16 << 20 {
            n += c.read(&mut buf).unwrap();
        }
        n
    });
    run_until(&mut r, || has(&log, "resume_writing"));
    assert_eq!(reader.join().unwrap(), 16 << 20);
    assert_eq!(
        log.borrow()[..3],
        ["made", "pause_writing", "resume_writing"]
    );
}

#[test]
fn write_buffer_cap_aborts_a_peer_that_never_reads() {
    let (f, log) = server(
        |ctx, _| {
            ctx.set_write_buffer_cap(1 << 20);
            for _ in 0..64 {
                ctx.write_bytes(Bytes::from(vec![b'x'; 1 << 20]));
            }
        },
        |_, _, _| {},
    );
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let _c = TcpStream::connect(port.local_addr()).unwrap(); // never reads
    run_until(&mut r, || lost(&log).is_some());
    assert_eq!(lost(&log).unwrap(), "lost:WriteBufferFull");
    assert_eq!(r.connection_count(), 0);
}

#[test]
fn pause_reading_holds_data_until_resumed() {
    let (f, log) = server(
        |ctx, log| {
            ctx.pause_reading();
            assert!(ctx.is_reading_paused());
            let log = log.clone();
            ctx.call_later_self::<Server>(Duration::from_millis(50), move |_, ctx| {
                log.borrow_mut().push("resumed".into());
                ctx.resume_reading();
            });
        },
        |_, data, log| {
            log.borrow_mut()
                .push(format!("data:{}", String::from_utf8_lossy(data)))
        },
    );
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let mut c = TcpStream::connect(port.local_addr()).unwrap();
    c.write_all(b"early").unwrap();
    run_until(&mut r, || {
        log.borrow().iter().any(|e| e.starts_with("data:"))
    });
    assert_eq!(*log.borrow(), ["made", "resumed", "data:early"]);
}

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

#[test]
fn slow_reader_gets_a_gib_with_bounded_server_buffer() {
    let handle = Rc::new(RefCell::new(None));
    let h2 = handle.clone();
    let (f, log) = server(
        move |ctx, _| {
            *h2.borrow_mut() = Some(ctx.handle());
            let chunks =
                (0..GIB / CHUNK as u64).map(|i| Ok(Bytes::from(vec![(i % 251) as u8; CHUNK])));
            ctx.stream_from(chunks);
        },
        |_, _, _| {},
    );
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let c = TcpStream::connect(port.local_addr()).unwrap();
    socket2::SockRef::from(&c)
        .set_recv_buffer_size(64 * 1024)
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut c = c;
        let mut buf = vec![0u8; 8192];
        let mut off: u64 = 0;
        loop {
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                return off;
            }
            for &b in &buf[..n] {
                assert_eq!(b, ((off / CHUNK as u64) % 251) as u8, "byte {off} wrong");
                off += 1;
            }
            if off % (4 << 20) < n as u64 {
                std::thread::sleep(Duration::from_millis(1)); // a slow reader
            }
        }
    });
    let mut max_buffered = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while lost(&log).is_none() {
        assert!(Instant::now() < deadline, "hung");
        r.run_once(Some(Duration::from_millis(100))).unwrap();
        if let Some(h) = *handle.borrow() {
            max_buffered = max_buffered.max(r.buffered_len(h).unwrap_or(0));
        }
    }
    assert_eq!(reader.join().unwrap(), GIB, "bytes received");
    assert!(has(&log, "stream_done:true"));
    assert_eq!(lost(&log).unwrap(), "lost:Done");
    assert!(
        max_buffered <= torsion::DEFAULT_HIGH_WATER + CHUNK,
        "server buffered {max_buffered} bytes, over the high water mark plus one chunk"
    );
    assert!(
        max_buffered > 0,
        "the reader was never slow enough to test anything"
    );
}

#[test]
fn half_close_protocol_hears_read_side_close_and_still_writes() {
    let (f, log) = server(|ctx, _| ctx.set_half_close(true), |_, _, _| {});
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let mut c = TcpStream::connect(port.local_addr()).unwrap();
    c.write_all(b"request").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let t = std::thread::spawn(move || read_all(c).unwrap());
    run_until(&mut r, || lost(&log).is_some());
    assert_eq!(t.join().unwrap(), b"reply after your EOF");
    assert_eq!(*log.borrow(), ["made", "read_lost", "lost:Done"]);
}

#[test]
fn without_half_close_eof_closes_after_the_flush() {
    let (f, log) = server(|_, _| {}, |ctx, _, _| ctx.write(&vec![b'r'; 4 << 20]));
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let mut c = TcpStream::connect(port.local_addr()).unwrap();
    c.write_all(b"q").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let t = std::thread::spawn(move || read_all(c).unwrap());
    run_until(&mut r, || lost(&log).is_some());
    assert_eq!(
        t.join().unwrap().len(),
        4 << 20,
        "the response was cut short"
    );
    log.borrow_mut().retain(|e| !e.ends_with("_writing"));
    assert_eq!(*log.borrow(), ["made", "lost:Done"]);
}

#[test]
fn lose_write_connection_shuts_the_write_side_after_the_flush() {
    let (f, log) = server(
        |ctx, _| {
            ctx.write(b"all of it");
            ctx.lose_write_connection();
            assert!(ctx.try_write(b"more").is_err());
        },
        |_, data, log| {
            log.borrow_mut()
                .push(format!("data:{}", String::from_utf8_lossy(data)))
        },
    );
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let c = TcpStream::connect(port.local_addr()).unwrap();
    let mut w = c.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        let mut c = c;
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    run_until(&mut r, || has(&log, "write_lost"));
    assert_eq!(t.join().unwrap(), b"all of it"); // EOF seen by the peer
                                                 // The read side still works.
    w.write_all(b"still listening?").unwrap();
    run_until(&mut r, || has(&log, "data:still listening?"));
    drop(w);
    run_until(&mut r, || lost(&log).is_some());
    assert_eq!(lost(&log).unwrap(), "lost:Done");
}

#[test]
fn lingering_close_delivers_the_last_response_despite_unread_input() {
    // The server answers the first bytes and closes while more input is still
    // unread in its socket. A plain close() would send RST and the client could
    // lose the answer; the lingering close sends FIN and drains.
    for _ in 0..20 {
        let (f, log) = server(
            |_, _| {},
            |ctx, _, _| {
                ctx.write(b"bye");
                ctx.lose_connection();
            },
        );
        let mut r = Reactor::new().unwrap();
        let port = r.listen_tcp(localhost(), f).unwrap();
        let mut c = TcpStream::connect(port.local_addr()).unwrap();
        c.write_all(&vec![b'i'; 1 << 20]).unwrap_or(());
        run_until(&mut r, || lost(&log).is_some());
        let mut got = Vec::new();
        let res = c.read_to_end(&mut got);
        assert!(
            res.is_ok(),
            "client saw {res:?} instead of the answer and EOF"
        );
        assert_eq!(got, b"bye");
        drop(c);
        assert!(
            r.run_until(DEADLINE, |r| r.source_count() == 1).unwrap(),
            "lingering socket not closed"
        );
    }
}

#[test]
fn idle_timeout_closes_a_quiet_connection_gracefully() {
    let (f, log) = server(
        |ctx, _| {
            ctx.write(b"hello");
            ctx.set_idle_timeout(Some(Duration::from_millis(100)));
        },
        |_, _, _| {},
    );
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let start = Instant::now();
    let c = TcpStream::connect(port.local_addr()).unwrap();
    run_until(&mut r, || lost(&log).is_some());
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(lost(&log).unwrap(), "lost:TimedOut");
    assert_eq!(read_all(c).unwrap(), b"hello"); // graceful: data then EOF
}

/// Sends one byte every 50 ms, ten times, then goes quiet.
struct Ticker {
    left: u32,
    lost: Rc<RefCell<Option<(DisconnectReason, Instant)>>>,
}
impl Ticker {
    fn tick(&mut self, ctx: &mut Context<'_>) {
        if self.left > 0 {
            self.left -= 1;
            ctx.write(b".");
            ctx.call_later_self::<Ticker>(Duration::from_millis(50), |t, ctx| t.tick(ctx));
        }
    }
}
impl Protocol for Ticker {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.tick(ctx);
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        *self.lost.borrow_mut() = Some((reason.clone(), Instant::now()));
    }
}
struct TickerF(Option<Ticker>);
impl torsion::ClientFactory for TickerF {
    type Protocol = Ticker;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Ticker> {
        self.0.take()
    }
}

#[test]
fn idle_timeout_is_reset_by_traffic() {
    let factory = Policed::new(EchoFactory).idle_timeout(Duration::from_millis(300));
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), factory).unwrap();
    let lost = Rc::new(RefCell::new(None));
    let start = Instant::now();
    r.connect_tcp(
        port.local_addr(),
        TickerF(Some(Ticker {
            left: 10,
            lost: lost.clone(),
        })),
        DEADLINE,
    );
    run_until(&mut r, || lost.borrow().is_some());
    let (reason, at) = lost.borrow().clone().unwrap();
    assert_eq!(reason, DisconnectReason::Done); // the server closed gracefully
                                                // Traffic for ~450 ms kept it open past the 300 ms timeout.
    assert!(
        at - start >= Duration::from_millis(450 + 300),
        "closed after {:?}",
        at - start
    );
}

#[test]
fn idle_timeout_can_be_cancelled() {
    let (f, log) = server(
        |ctx, _| {
            ctx.set_idle_timeout(Some(Duration::from_millis(50)));
            ctx.set_idle_timeout(None);
            ctx.call_later_self::<Server>(Duration::from_millis(200), |s, _| {
                s.log.borrow_mut().push("still open".into())
            });
        },
        |_, _, _| {},
    );
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let _c = TcpStream::connect(port.local_addr()).unwrap();
    run_until(&mut r, || has(&log, "still open"));
    assert!(lost(&log).is_none());
}

#[test]
fn policies_limit_connections_in_total_and_per_peer() {
    let factory = Policed::new(EchoFactory).max_connections(3).max_per_peer(2);
    let stats = factory.stats();
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), factory).unwrap();
    let from = |ip: &str| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&format!("{ip}:0").parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s.connect(&port.local_addr().into()).unwrap();
        TcpStream::from(s)
    };
    let a1 = from("127.0.0.1");
    let _a2 = from("127.0.0.1");
    run_until(&mut r, || stats.open() == 2);
    let a3 = from("127.0.0.1"); // over the per-peer limit
    run_until(&mut r, || stats.refused() == 1);
    assert_eq!(read_all(a3).map(|v| v.len()).unwrap_or(0), 0);
    let _b1 = from("127.0.0.2");
    run_until(&mut r, || stats.open() == 3);
    let b2 = from("127.0.0.2"); // over the total limit
    run_until(&mut r, || stats.refused() == 2);
    assert_eq!(read_all(b2).map(|v| v.len()).unwrap_or(0), 0);
    drop(a1);
    run_until(&mut r, || stats.open() == 2);
    let _b3 = from("127.0.0.2"); // room again
    run_until(&mut r, || stats.open() == 3);
    assert_eq!(stats.open_from("127.0.0.2".parse().unwrap()), 2);
    assert_eq!(stats.refused(), 2);
}

#[test]
fn write_rate_limit_slows_sending() {
    // 200 KiB/s: 100 KiB cannot arrive in less than ~0.4 s (the first 100 ms
    // window's share goes at once).
    let (f, log) = server(
        |ctx, _| {
            ctx.set_write_rate(Some(200 * 1024));
            ctx.write(&vec![b'r'; 100 * 1024]);
            ctx.lose_connection();
        },
        |_, _, _| {},
    );
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let start = Instant::now();
    let c = TcpStream::connect(port.local_addr()).unwrap();
    let t = std::thread::spawn(move || (read_all(c).unwrap().len(), Instant::now()));
    run_until(&mut r, || lost(&log).is_some());
    assert!(r.run_until(DEADLINE, |r| r.source_count() == 1).unwrap());
    let (n, done) = t.join().unwrap();
    assert_eq!(n, 100 * 1024);
    assert!(
        done - start >= Duration::from_millis(350),
        "took only {:?}",
        done - start
    );
}

#[test]
fn read_rate_limit_slows_receiving() {
    let total = Rc::new(RefCell::new((0usize, None::<Instant>)));
    let t2 = total.clone();
    let (f, _log) = server(
        |ctx, _| ctx.set_read_rate(Some(200 * 1024)),
        move |_, data, _| {
            let mut t = t2.borrow_mut();
            t.0 += data.len();
            if t.0 == 100 * 1024 {
                t.1 = Some(Instant::now());
            }
        },
    );
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let start = Instant::now();
    let mut c = TcpStream::connect(port.local_addr()).unwrap();
    c.write_all(&vec![b's'; 100 * 1024]).unwrap();
    run_until(&mut r, || total.borrow().1.is_some());
    let took = total.borrow().1.unwrap() - start;
    assert!(
        took >= Duration::from_millis(350),
        "read 100 KiB in {took:?} at 200 KiB/s"
    );
}

#[test]
fn stream_then_lose_connection_sends_everything_first() {
    let (f, log) = server(
        |ctx, _| {
            ctx.stream_from((0..100u8).map(|i| Ok(Bytes::from(vec![i; 10_000]))));
            assert!(ctx.is_streaming());
        },
        |_, _, _| {},
    );
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let c = TcpStream::connect(port.local_addr()).unwrap();
    let t = std::thread::spawn(move || read_all(c).unwrap());
    run_until(&mut r, || lost(&log).is_some());
    let got = t.join().unwrap();
    assert_eq!(got.len(), 1_000_000);
    assert!(got
        .chunks(10_000)
        .enumerate()
        .all(|(i, c)| c.iter().all(|&b| b == i as u8)));
    assert!(has(&log, "stream_done:true"));
}

#[test]
fn a_failing_stream_source_is_reported() {
    let (f, log) = server(
        |ctx, _| {
            let src = (0..3).map(|i| {
                if i < 2 {
                    Ok(Bytes::from_static(b"ok"))
                } else {
                    Err(std::io::Error::other("disk on fire"))
                }
            });
            ctx.stream_from(src);
        },
        |_, _, _| {},
    );
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), f).unwrap();
    let c = TcpStream::connect(port.local_addr()).unwrap();
    let t = std::thread::spawn(move || read_all(c).unwrap());
    run_until(&mut r, || lost(&log).is_some());
    assert_eq!(t.join().unwrap(), b"okok");
    assert!(has(&log, "stream_done:false"));
}
