//! netperf's engine against echo servers in the same process: exact message
//! counts, every mode, fixed rates, threads; loud failure against a server that
//! corrupts a byte, closes early, or is not there.

#[allow(dead_code)]
#[path = "../examples/netperf/mod.rs"]
mod netperf;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use netperf::config::{Config, Mode};
use netperf::run::{run, Report, RunError};
use torsion::Address;
use torsion::{Context, Factory, Protocol, Reactor, ReactorHandle};

/// What the test server does to the stream.
#[derive(Clone, Copy)]
enum Behaviour {
    Echo,
    /// Flip the byte at this offset of each connection's stream.
    Corrupt(u64),
    /// Close the connection after echoing this many bytes.
    CloseAfter(u64),
}

struct Server {
    behaviour: Behaviour,
    seen: u64,
    total: Arc<AtomicU64>,
}

impl Protocol for Server {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        let start = self.seen;
        self.seen += data.len() as u64;
        self.total.fetch_add(data.len() as u64, Ordering::Relaxed);
        match self.behaviour {
            Behaviour::Echo => ctx.write(data),
            Behaviour::Corrupt(at) if (start..self.seen).contains(&at) => {
                let mut copy = data.to_vec();
                copy[(at - start) as usize] ^= 0x40;
                ctx.write(&copy);
            }
            Behaviour::Corrupt(_) => ctx.write(data),
            Behaviour::CloseAfter(n) => {
                if start < n {
                    let keep = (n - start).min(data.len() as u64) as usize;
                    ctx.write(&data[..keep]);
                }
                if self.seen >= n {
                    ctx.lose_connection();
                }
            }
        }
    }
}

struct ServerFactory(Behaviour, Arc<AtomicU64>);

impl Factory for ServerFactory {
    type Protocol = Server;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Server> {
        Some(Server {
            behaviour: self.0,
            seen: 0,
            total: self.1.clone(),
        })
    }
}

/// A torsion server on its own thread; stopped and joined on drop.
struct TestServer {
    addr: SocketAddr,
    handle: ReactorHandle,
    thread: Option<JoinHandle<()>>,
    received: Arc<AtomicU64>,
}

impl TestServer {
    fn start(behaviour: Behaviour) -> TestServer {
        let (tx, rx) = mpsc::channel();
        let received = Arc::new(AtomicU64::new(0));
        let r2 = received.clone();
        let thread = std::thread::spawn(move || {
            let mut reactor = Reactor::new().unwrap();
            let port = reactor
                .listen_tcp("127.0.0.1:0".parse().unwrap(), ServerFactory(behaviour, r2))
                .unwrap();
            tx.send((port.local_addr(), reactor.reactor_handle()))
                .unwrap();
            reactor.run().unwrap();
        });
        let (addr, handle) = rx.recv().unwrap();
        TestServer {
            addr,
            handle,
            thread: Some(thread),
            received,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.call_from_thread(|core| {
            let _ = core.stop();
        });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config(addr: SocketAddr, mode: Mode, connections: usize, messages: u64) -> Config {
    let mut c = Config::new(addr);
    c.mode = mode;
    c.connections = connections;
    c.messages = Some(messages);
    // Only a cap: the runs end when every connection has its messages.
    c.duration = Duration::from_secs(60);
    c
}

fn run_ok(c: &Config) -> Report {
    let r = run(c, |_| {}).expect("run failed");
    assert_eq!(r.errors(), 0, "errors: {:?}", r.details);
    r
}

fn assert_exact(r: &Report, c: &Config) {
    let expected = c.connections as u64 * c.messages.unwrap();
    assert_eq!(r.messages, expected);
    assert_eq!(r.bytes, expected * c.size as u64);
    assert_eq!(r.latency.len(), expected, "one latency sample per message");
    assert_eq!(r.connected, c.connections as u64);
    assert!(r.latency.min() > 0);
}

#[test]
fn pingpong_counts_every_message_exactly() {
    let server = TestServer::start(Behaviour::Echo);
    let c = config(server.addr, Mode::PingPong, 4, 300);
    let r = run_ok(&c);
    assert_exact(&r, &c);
    assert_eq!(server.received.load(Ordering::Relaxed), 4 * 300 * 64);
}

#[test]
fn pipeline_on_two_threads_counts_every_message_exactly() {
    let server = TestServer::start(Behaviour::Echo);
    let mut c = config(server.addr, Mode::Pipeline, 5, 1000);
    c.depth = Some(8);
    c.threads = 2;
    c.size = 100;
    let r = run_ok(&c);
    assert_eq!(r.threads, 2);
    assert_exact(&r, &c);
}

#[test]
fn bulk_streams_and_verifies_large_and_odd_sizes() {
    let server = TestServer::start(Behaviour::Echo);
    for size in [1, 7, 4099, 200_000] {
        let mut c = config(
            server.addr,
            Mode::Bulk,
            2,
            (2_000_000 / size as u64).max(20),
        );
        c.size = size;
        let r = run_ok(&c);
        assert_exact(&r, &c);
    }
}

#[test]
fn a_fixed_rate_still_completes_every_message() {
    let server = TestServer::start(Behaviour::Echo);
    let mut c = config(server.addr, Mode::PingPong, 2, 20);
    c.rate = Some(400.0);
    let r = run_ok(&c);
    assert_exact(&r, &c);
    // 20 messages per connection at 200/s each take at least 95 ms of sends.
    assert!(r.measured >= Duration::from_millis(90), "{:?}", r.measured);
}

#[test]
fn a_corrupted_byte_fails_loudly() {
    let server = TestServer::start(Behaviour::Corrupt(1000));
    let mut c = config(server.addr, Mode::Pipeline, 3, 100);
    c.size = 64;
    let r = run(&c, |_| {}).expect("the run itself works");
    assert_eq!(r.verify_errors, 3, "one per connection: {:?}", r.details);
    assert!(r.errors() > 0);
    // Byte 1000 of the stream is byte 1000 % 64 = 40 of message 15.
    assert!(
        r.details
            .iter()
            .all(|d| d.contains("message 15 byte 40") && d.contains("expected")),
        "{:?}",
        r.details
    );
    assert!(r.messages < 300);
    let table = netperf::report::table(&r);
    assert!(table.contains("FAILED"), "{table}");
    let json = netperf::report::json(&r);
    assert!(json.contains("\"verify_errors\":3"), "{json}");
}

#[test]
fn a_corrupted_message_number_is_caught_too() {
    // Byte 64 is the first byte of message 1's number.
    let server = TestServer::start(Behaviour::Corrupt(64));
    let c = config(server.addr, Mode::PingPong, 1, 10);
    let r = run(&c, |_| {}).unwrap();
    assert_eq!(r.verify_errors, 1, "{:?}", r.details);
    assert_eq!(r.messages, 1);
}

#[test]
fn a_server_that_closes_early_is_an_error() {
    let server = TestServer::start(Behaviour::CloseAfter(64 * 10));
    let c = config(server.addr, Mode::PingPong, 2, 100);
    let r = run(&c, |_| {}).unwrap();
    assert_eq!(r.lost, 2, "{:?}", r.details);
    assert_eq!(r.messages, 20);
    assert!(r
        .details
        .iter()
        .all(|d| d.contains("lost after 10 messages")));
}

#[test]
fn no_server_is_an_error_with_the_reason() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = config(addr, Mode::PingPong, 3, 10);
    match run(&c, |_| {}) {
        Err(RunError::NoConnection { reasons, attempts }) => {
            assert_eq!(attempts, 3);
            assert_eq!(reasons, vec![("connection refused".to_string(), 3)]);
            let text = RunError::NoConnection { reasons, attempts }.to_string();
            assert!(text.contains("connection refused x3"), "{text}");
        }
        other => panic!("expected NoConnection, got {other:?}"),
    }
}

#[test]
fn bad_settings_are_refused_before_connecting() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut c = Config::new(addr);
    c.size = 0;
    assert!(matches!(run(&c, |_| {}), Err(RunError::Config(_))));
    let mut c = Config::new(addr);
    c.mode = Mode::PingPong;
    c.depth = Some(4);
    assert!(matches!(run(&c, |_| {}), Err(RunError::Config(_))));
    let mut c = Config::new(addr);
    c.rate = Some(f64::NAN);
    assert!(matches!(run(&c, |_| {}), Err(RunError::Config(_))));
}

#[test]
fn a_timed_run_reports_progress_and_excludes_the_warm_up() {
    let server = TestServer::start(Behaviour::Echo);
    let mut c = Config::new(server.addr);
    c.connections = 2;
    c.mode = Mode::Pipeline;
    c.warmup = Duration::from_millis(300);
    c.duration = Duration::from_millis(1000);
    let mut seconds = Vec::new();
    let r = run(&c, |p| seconds.push((p.second, p.warmup, p.messages))).unwrap();
    assert_eq!(r.errors(), 0, "{:?}", r.details);
    assert!(r.messages > 0);
    assert!(r.measured <= c.duration);
    assert_eq!(r.latency.len(), r.messages);
    // Progress for second 1 (the run lasts 1.3 s), counting warm-up traffic too.
    assert_eq!(seconds.first().map(|s| (s.0, s.1)), Some((1, false)));
    assert!(seconds[0].2 > 0);
    // The server saw the warm-up too: more than was measured.
    assert!(server.received.load(Ordering::Relaxed) > r.bytes);
    let json = netperf::report::json(&r);
    for field in [
        "connections",
        "mode",
        "size",
        "messages",
        "msgs_per_sec",
        "mib_per_sec",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "errors",
    ] {
        assert!(
            json.contains(&format!("\"{field}\":")),
            "{field} missing: {json}"
        );
    }
}
