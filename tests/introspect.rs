//! Introspection over real sockets: snapshots after traffic (exact byte
//! counts, paused, half-closed, closing and buffered connections, idle
//! deadlines), the counters (accepted, refused by the factory, closed by
//! reason, panics), snapshots asked for from a callback and from another
//! thread, and slow-callback detection with a deliberately blocking protocol.
mod util;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use torsion::introspect::{Snapshot, TransportKind};
use torsion::{factory, Address, Context, DisconnectReason, Factory, Protocol, Reactor};
use util::*;

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

/// Runs the reactor until `done` holds of a fresh snapshot.
fn until_snapshot(r: &mut Reactor, mut done: impl FnMut(&Snapshot) -> bool) -> Snapshot {
    let mut last = None;
    let ok = r
        .run_until(DEADLINE, |r| {
            let s = r.snapshot();
            let hit = done(&s);
            last = Some(s);
            hit
        })
        .unwrap();
    let last = last.unwrap();
    assert!(ok, "condition not reached; last snapshot: {last:#?}");
    last
}

/// Reads what is there without blocking, appending it; `true` at end of stream.
fn read_some(s: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut b = [0u8; 64 * 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn snapshot_counts_the_bytes_of_real_traffic_exactly() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let mut c = connect(port.local_addr());
    let start = Instant::now();
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let mut sent = 0;
    let mut got = Vec::new();
    run_until(&mut r, || {
        if sent < data.len() {
            if let Ok(n) = c.write(&data[sent..]) {
                sent += n;
            }
        }
        read_some(&mut c, &mut got);
        got.len() == data.len()
    });
    assert_eq!(got, data);
    let snap = r.snapshot();
    assert_eq!(snap.connections.len(), 1);
    let conn = &snap.connections[0];
    assert_eq!(conn.bytes_in, 100_000);
    assert_eq!(conn.bytes_out, 100_000);
    assert_eq!(conn.write_buffered, 0);
    assert_eq!(conn.kind, TransportKind::Tcp);
    assert_eq!(conn.peer, Address::Inet(c.local_addr().unwrap()));
    assert_eq!(conn.host, Some(Address::Inet(port.local_addr())));
    assert!(conn.protocol.ends_with("::Echo"), "{}", conn.protocol);
    assert!(conn.age <= start.elapsed() + Duration::from_millis(1));
    assert!(!conn.paused && !conn.half_closed && !conn.closing);
    assert_eq!(conn.idle_deadline, None);
    assert_eq!(snap.counters.bytes_read, 100_000);
    assert_eq!(snap.counters.bytes_written, 100_000);
    assert_eq!(snap.counters.accepted, 1);
    assert_eq!(snap.listeners.len(), 1);
    assert_eq!(snap.listeners[0].address, Address::Inet(port.local_addr()));
    assert_eq!((snap.listeners[0].accepted, snap.listeners[0].shed), (1, 0));
    assert!(snap.callbacks.count >= 2, "{:?}", snap.callbacks);
    // Deferreds are counted per thread: one made here and not fired shows.
    let (d, trigger) = torsion::Deferred::<u32>::new();
    let with = r.snapshot().deferreds;
    assert_eq!(with.pending, snap.deferreds.pending + 1);
    assert_eq!(with.created, snap.deferreds.created + 1);
    trigger.callback(1).unwrap();
    assert_eq!(r.snapshot().deferreds.pending, snap.deferreds.pending);
    drop(d);
    assert!(snap.callbacks.p50 <= snap.callbacks.p99);
    assert!(snap.callbacks.p99 <= snap.callbacks.max);
    assert_eq!(snap.counters.closed.total(), 0);
}

/// Pauses on "pause", floods 16 MiB then closes on "flood", stays open
/// after the peer's EOF (half-close), with an idle timeout of a minute.
struct States;

const FLOOD: usize = 16 << 20;

impl Protocol for States {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.set_half_close(true);
        ctx.set_idle_timeout(Some(Duration::from_secs(60)));
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        match data {
            b"pause" => ctx.pause_reading(),
            b"flood" => {
                ctx.write_bytes(bytes::Bytes::from(vec![b'x'; FLOOD]));
                ctx.lose_connection();
            }
            _ => {}
        }
    }
    fn read_connection_lost(&mut self, _ctx: &mut Context<'_>) {}
}

#[test]
fn snapshot_shows_paused_half_closed_closing_and_buffered_connections() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), factory(|_| States)).unwrap();
    let addr = port.local_addr();
    let by_peer = |s: &Snapshot, c: &TcpStream| {
        let peer = Address::Inet(c.local_addr().unwrap());
        s.connections.iter().find(|i| i.peer == peer).cloned()
    };

    let mut a = connect(addr);
    let snap = until_snapshot(&mut r, |s| s.connections.len() == 1);
    let idle = snap.connections[0].idle_deadline.expect("an idle deadline");
    assert!(
        idle <= Duration::from_secs(60) && idle > Duration::from_secs(30),
        "{idle:?}"
    );
    assert!(!snap.connections[0].paused);

    a.write_all(b"pause").unwrap();
    let snap = until_snapshot(&mut r, |s| by_peer(s, &a).is_some_and(|i| i.paused));
    let info = by_peer(&snap, &a).unwrap();
    assert_eq!(info.bytes_in, 5);
    assert!(!info.half_closed && !info.closing);

    let b = connect(addr);
    until_snapshot(&mut r, |s| s.connections.len() == 2);
    b.shutdown(std::net::Shutdown::Write).unwrap();
    let snap = until_snapshot(&mut r, |s| by_peer(s, &b).is_some_and(|i| i.half_closed));
    assert_eq!(
        snap.connections.len(),
        2,
        "a half-closed connection stays open"
    );
    assert!(!by_peer(&snap, &b).unwrap().paused);

    let mut c = connect(addr);
    until_snapshot(&mut r, |s| s.connections.len() == 3);
    c.write_all(b"flood").unwrap();
    let snap = until_snapshot(&mut r, |s| by_peer(s, &c).is_some_and(|i| i.closing));
    let info = by_peer(&snap, &c).unwrap();
    assert!(info.write_buffered > 0, "{info:?}");
    assert_eq!(info.bytes_out as usize + info.write_buffered, FLOOD);

    // Read it all: the connection flushes, closes cleanly, and is counted.
    let mut got = Vec::new();
    let mut eof = false;
    run_until(&mut r, || {
        eof = eof || read_some(&mut c, &mut got);
        eof
    });
    assert_eq!(got.len(), FLOOD);
    let snap = until_snapshot(&mut r, |s| s.connections.len() == 2);
    assert_eq!(snap.counters.closed.done, 1);
    assert_eq!(snap.counters.bytes_written, FLOOD as u64);
    assert_eq!(snap.counters.bytes_read, 10);
    drop((a, b));
}

/// Ends its connection as the first message says.
struct Ender;

impl Protocol for Ender {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        match data {
            b"abort" => ctx.abort_connection(),
            b"bad" => ctx.lose_connection_with(DisconnectReason::protocol("bad input")),
            b"panic" => panic!("deliberate"),
            _ => {}
        }
    }
}

#[test]
fn counters_count_connections_closed_by_each_reason() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), factory(|_| Ender)).unwrap();
    let addr = port.local_addr();
    let closed_after = |r: &mut Reactor, n: u64| {
        until_snapshot(r, |s| {
            s.counters.closed.total() == n && s.connections.is_empty()
        })
    };

    // The peer closes cleanly.
    let c = connect(addr);
    until_snapshot(&mut r, |s| s.connections.len() == 1);
    drop(c);
    closed_after(&mut r, 1);

    // The peer resets (SO_LINGER 0).
    let c = connect(addr);
    until_snapshot(&mut r, |s| s.connections.len() == 1);
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    closed_after(&mut r, 2);

    let mut held = Vec::new();
    for (i, msg) in [&b"abort"[..], b"bad", b"panic"].into_iter().enumerate() {
        let mut c = connect(addr);
        c.write_all(msg).unwrap();
        closed_after(&mut r, 3 + i as u64);
        held.push(c);
    }
    let s = r.snapshot();
    let closed = s.counters.closed;
    assert_eq!(
        (
            closed.done,
            closed.reset,
            closed.aborted,
            closed.protocol,
            closed.panicked
        ),
        (1, 1, 1, 1, 1),
        "{closed:?}"
    );
    assert_eq!(closed.get(&DisconnectReason::Reset), 1);
    assert_eq!(s.counters.callbacks_panicked, 1);
    assert_eq!(s.counters.accepted, 5);
    assert_eq!(s.counters.refused_by_factory, 0);
    r.assert_no_panics();
}

struct Refuser;

impl Factory for Refuser {
    type Protocol = Echo;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Echo> {
        None
    }
}

#[test]
fn a_factory_that_refuses_is_counted() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), Refuser).unwrap();
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(port.local_addr())).collect();
    let snap = until_snapshot(&mut r, |s| s.counters.refused_by_factory == 3);
    assert_eq!(snap.counters.accepted, 3);
    assert_eq!(snap.listeners[0].accepted, 3);
    assert!(snap.connections.is_empty());
    assert_eq!(snap.counters.closed.total(), 0, "never made, so never lost");
    // Each client sees its connection closed.
    for c in &mut clients {
        let mut sink = Vec::new();
        run_until(&mut r, || read_some(c, &mut sink));
        assert!(sink.is_empty());
    }
}

/// Asks for a snapshot from its callback when told to.
struct Asker(Rc<RefCell<Option<Snapshot>>>);

impl Protocol for Asker {
    fn data_received(&mut self, ctx: &mut Context<'_>, _data: &[u8]) {
        let slot = self.0.clone();
        ctx.request_snapshot(move |_core, snap| *slot.borrow_mut() = Some(snap));
    }
}

#[test]
fn snapshots_from_a_callback_and_from_another_thread_see_the_connections() {
    let mut r = Reactor::new().unwrap();
    let slot = Rc::new(RefCell::new(None));
    let s2 = slot.clone();
    let port = r
        .listen_tcp(localhost(), factory(move |_| Asker(s2.clone())))
        .unwrap();
    let mut c = connect(port.local_addr());
    c.write_all(b"?").unwrap();
    run_until(&mut r, || slot.borrow().is_some());
    let snap = slot.borrow_mut().take().unwrap();
    assert_eq!(snap.connections.len(), 1);
    assert_eq!(snap.connections[0].bytes_in, 1);

    let handle = r.reactor_handle();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        handle.request_snapshot(move |snap| {
            let _ = tx.send(snap);
        })
    });
    let mut got = None;
    run_until(&mut r, || {
        got = got.take().or_else(|| rx.try_recv().ok());
        got.is_some()
    });
    t.join().unwrap();
    let snap = got.unwrap();
    assert_eq!(snap.connections.len(), 1);
    assert!(snap.connections[0].protocol.ends_with("::Asker"));
    assert_eq!(snap.listeners.len(), 1);
}

/// Spins (a real busy wait, not a sleep) for 60 ms on "slow".
struct Blocking;

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

impl Protocol for Blocking {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        if data == b"slow" {
            spin(Duration::from_millis(60));
        }
        ctx.write(data);
    }
}

/// Log lines, captured.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn slow_lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains("slow callback"))
            .map(String::from)
            .collect()
    }
}

#[test]
fn a_blocking_protocol_is_logged_once_and_counted() {
    let logs = Logs::default();
    let w = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut r = Reactor::new().unwrap();
        r.set_slow_callback_threshold(Some(Duration::from_millis(20)));
        let port = r.listen_tcp(localhost(), factory(|_| Blocking)).unwrap();
        let mut c = connect(port.local_addr());
        let mut got = Vec::new();
        for msg in [&b"fast"[..], b"slow", b"fast"] {
            c.write_all(msg).unwrap();
            let want = got.len() + msg.len();
            run_until(&mut r, || {
                read_some(&mut c, &mut got);
                got.len() == want
            });
        }
        assert_eq!(got, b"fastslowfast");
        let s = r.snapshot();
        assert_eq!(s.counters.slow_callbacks, 1, "{:?}", s.callbacks);
        assert!(
            s.callbacks.max >= Duration::from_millis(60),
            "{:?}",
            s.callbacks
        );
        let lines = logs.slow_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
        assert!(lines[0].contains("protocol callback of"), "{}", lines[0]);
        assert!(lines[0].contains("::Blocking"), "{}", lines[0]);

        // A slow timer is told apart from a protocol callback.
        let fired = Rc::new(RefCell::new(false));
        let f2 = fired.clone();
        r.call_later(Duration::ZERO, move |_| {
            spin(Duration::from_millis(40));
            *f2.borrow_mut() = true;
        });
        run_until(&mut r, || *fired.borrow());
        assert_eq!(r.counters().slow_callbacks, 2);
        let lines = logs.slow_lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].contains("timer callback of call_later"),
            "{}",
            lines[1]
        );

        // Off: nothing is timed, however slow.
        r.set_slow_callback_threshold(None);
        let before = r.callback_stats().count;
        c.write_all(b"slow").unwrap();
        let want = got.len() + 4;
        run_until(&mut r, || {
            read_some(&mut c, &mut got);
            got.len() == want
        });
        assert_eq!(r.counters().slow_callbacks, 2);
        assert_eq!(r.callback_stats().count, before);
    });
}
