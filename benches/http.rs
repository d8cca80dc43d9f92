//! Keep-alive hello-world over loopback: torsion's HTTP server against a
//! minimal hand-written `mio` HTTP responder (the ceiling) in the same run,
//! and against Twisted web (`twisted.web.server.Site`) when `twisted` is
//! importable; `wrk` figures too when `wrk` is installed.
//!
//! ```text
//! cargo bench --bench http
//! TORSION_BENCH_RUNS=5 TORSION_BENCH_SECS=3 cargo bench --bench http
//! TORSION_BENCH_CONNS=100 TORSION_BENCH_SERVERS=torsion,mio cargo bench --bench http
//! TORSION_BENCH_COUNT=200000 TORSION_BENCH_RUNS=1 TORSION_BENCH_SERVERS=torsion \
//!   valgrind --tool=callgrind --separate-threads=yes target/release/deps/http-* --bench
//! ```
//!
//! Each server runs pinned to the first core this process may use, the load
//! generator (one thread, `mio`, 100 keep-alive connections each with one
//! request in flight) on the second. Servers take turns (torsion, mio, mio,
//! torsion, ...); the table shows medians of requests/s and of the server's
//! CPU time per request (its thread CPU clock; for Twisted, the process's
//! utime + stime). On a small, shared machine the load generator can be the
//! limit: server CPU per request is then the figure that tells servers apart.

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use support::{clock_time, env_or, median, own_cpu_time, pick_cores, thread_clock};
use torsion::http::{http_date, HttpServer, Request, Response};
use torsion::{Core, Reactor};

const BODY: &[u8] = b"Hello, World!";
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Torsion,
    Mio,
    Twisted,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Torsion => "torsion",
            Kind::Mio => "mio",
            Kind::Twisted => "twisted",
        }
    }
}

/// A server under test and how to read its CPU time.
struct Server {
    kind: Kind,
    addr: SocketAddr,
    cpu: Box<dyn Fn() -> Duration>,
    stop: Option<Box<dyn FnOnce()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

use support::Started;

fn spawn_thread(kind: Kind, core: Option<core_affinity::CoreId>) -> Server {
    let (tx, rx) = mpsc::channel();
    let join: JoinHandle<()> = std::thread::Builder::new()
        .name(format!("{}-http", kind.name()))
        .spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(c);
            }
            match kind {
                Kind::Torsion => run_torsion(tx),
                _ => run_mio(tx).expect("mio responder failed"),
            }
        })
        .expect("spawn server thread");
    let (addr, stop) = rx.recv().expect("server thread failed to start");
    let clock = thread_clock(&join);
    Server {
        kind,
        addr,
        cpu: Box::new(move || clock_time(clock)),
        stop: Some(Box::new(move || {
            stop();
            let _ = join.join();
        })),
    }
}

fn run_torsion(tx: Started) {
    let mut reactor = Reactor::new().expect("reactor");
    let server = HttpServer::new(|_: &mut Core, _: Request| Response::text(200, "Hello, World!"));
    let port = server
        .listen_tcp(&mut reactor, "127.0.0.1:0".parse().unwrap())
        .expect("listen");
    support::run_announced(reactor, port.local_addr(), &tx);
}

use support::{LISTENER, WAKER};

struct Conn {
    stream: TcpStream,
    /// Bytes of a request head not complete yet.
    partial: Vec<u8>,
    pending: Vec<u8>,
}

/// The ceiling: what one writes by hand on `mio` to answer hello-world as
/// fast as possible. It counts request heads (`\r\n\r\n`) and answers each
/// with the same bytes torsion sends (status line, `Date` formatted once a
/// second, `Content-Type`, `Content-Length`, body), gathered into one write
/// per read. No parsing beyond that, no limits, no timeouts.
fn run_mio(tx: Started) -> io::Result<()> {
    let (mut poll, listener, stop, _waker) = support::mio_listening(&tx)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let mut date_secs = u64::MAX;
    let mut response = Vec::new();
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if secs != date_secs {
            date_secs = secs;
            response = format!(
                "HTTP/1.1 200 OK\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
                http_date(secs),
                BODY.len()
            )
            .into_bytes();
            response.extend_from_slice(BODY);
        }
        for ev in events.iter() {
            match ev.token() {
                WAKER if stop.load(Ordering::Acquire) => return Ok(()),
                WAKER => {}
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nodelay(true)?;
                            let entry = conns.vacant_entry();
                            poll.registry().register(
                                &mut stream,
                                Token(entry.key()),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            entry.insert(Conn {
                                stream,
                                partial: Vec::new(),
                                pending: Vec::new(),
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                },
                Token(key) => {
                    let Some(c) = conns.get_mut(key) else {
                        continue;
                    };
                    let open = serve(c, &mut buf, &mut out, &response);
                    if !open {
                        let mut c = conns.remove(key);
                        let _ = poll.registry().deregister(&mut c.stream);
                    }
                }
            }
        }
    }
}

fn serve(c: &mut Conn, buf: &mut [u8], out: &mut Vec<u8>, response: &[u8]) -> bool {
    while !c.pending.is_empty() {
        match c.stream.write(&c.pending) {
            Ok(n) => {
                c.pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    loop {
        match c.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                c.partial.extend_from_slice(&buf[..n]);
                let mut start = 0;
                while let Some(p) = c.partial[start..].windows(4).position(|w| w == b"\r\n\r\n") {
                    start += p + 4;
                    out.extend_from_slice(response);
                }
                c.partial.drain(..start);
                if !out.is_empty() {
                    if c.pending.is_empty() {
                        match c.stream.write(out) {
                            Ok(w) => c.pending.extend_from_slice(&out[w..]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                c.pending.extend_from_slice(out)
                            }
                            Err(_) => return false,
                        }
                    } else {
                        c.pending.extend_from_slice(out);
                    }
                    out.clear();
                }
                if n < buf.len() {
                    return true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

const TWISTED_SITE: &str = r#"
import sys
from twisted.internet import reactor
from twisted.web import server, resource

class Hello(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Hello, World!"

port = reactor.listenTCP(0, server.Site(Hello()), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"#;

fn twisted_available() -> bool {
    Command::new("python3")
        .args(["-c", "import twisted.web"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn spawn_twisted(core: Option<core_affinity::CoreId>) -> Option<Server> {
    let mut cmd = match core {
        Some(c) if Command::new("taskset").arg("-V").output().is_ok() => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.id.to_string(), "python3"]);
            cmd
        }
        _ => Command::new("python3"),
    };
    let mut child: Child = cmd
        .args(["-c", TWISTED_SITE])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    let port: u16 = line.trim().parse().ok()?;
    let pid = child.id();
    let child = std::cell::RefCell::new(child);
    Some(Server {
        kind: Kind::Twisted,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        cpu: Box::new(move || process_cpu(pid)),
        stop: Some(Box::new(move || {
            let mut c = child.borrow_mut();
            let _ = c.kill();
            let _ = c.wait();
        })),
    })
}

/// utime + stime of a process, from /proc.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

struct Sample {
    requests: f64,
    wall: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

/// `conns` keep-alive connections, one request in flight on each, for
/// `warmup + secs`; responses are counted by their body.
fn load(server: &Server, conns: usize, warmup: Duration, secs: Duration) -> io::Result<Sample> {
    // With TORSION_BENCH_COUNT=N: stop after N responses, no warm-up (for
    // instruction counts under callgrind).
    let count: Option<u64> = std::env::var("TORSION_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok());
    let warmup = if count.is_some() {
        Duration::ZERO
    } else {
        warmup
    };
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut streams = Vec::with_capacity(conns);
    for i in 0..conns {
        let s = std::net::TcpStream::connect(server.addr)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(s);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        streams.push(s);
    }
    // Per connection: the tail of the last read (a body split across reads).
    let mut tails = vec![Vec::<u8>::new(); conns];
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    for s in &mut streams {
        s.write_all(REQUEST)?;
    }
    let start = Instant::now();
    let mut mark: Option<(u64, Duration, Duration, Instant)> = None;
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            if !ev.is_readable() {
                continue;
            }
            loop {
                match streams[i].read(&mut buf) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        let t = &mut tails[i];
                        t.extend_from_slice(&buf[..n]);
                        let mut answered = 0;
                        let mut at = 0;
                        while let Some(p) = t[at..].windows(BODY.len()).position(|w| w == BODY) {
                            at += p + BODY.len();
                            answered += 1;
                        }
                        let keep = t.len().saturating_sub(at).min(BODY.len());
                        t.drain(..t.len() - keep);
                        done += answered;
                        for _ in 0..answered {
                            streams[i].write_all(REQUEST)?;
                        }
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let now = Instant::now();
        if mark.is_none() && now - start >= warmup {
            mark = Some((done, (server.cpu)(), own_cpu_time(), now));
        }
        if let Some((d0, s0, c0, t0)) = mark {
            let over = match count {
                Some(n) => done >= n,
                None => now - t0 >= secs,
            };
            if over {
                return Ok(Sample {
                    requests: (done - d0) as f64,
                    wall: now - t0,
                    server_cpu: (server.cpu)() - s0,
                    client_cpu: own_cpu_time() - c0,
                });
            }
        }
    }
}

/// One wrk run: requests/s, latency percentiles and the server's CPU per
/// request.
struct WrkSample {
    rate: f64,
    p50: Duration,
    p99: Duration,
    server_cpu_per_req: Duration,
}

/// A wrk latency such as `812.00us`, `1.23ms` or `2.00s`.
fn wrk_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (num, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// What wrk printed: (requests/s, total requests, p50, p99).
fn parse_wrk(out: &str) -> Option<(f64, u64, Duration, Duration)> {
    let mut rate = None;
    let mut total = None;
    let (mut p50, mut p99) = (None, None);
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", r, ..] => rate = r.parse().ok(),
            ["50%", d, ..] => p50 = wrk_duration(d),
            ["99%", d, ..] => p99 = wrk_duration(d),
            [n, "requests", "in", ..] => total = n.parse().ok(),
            _ => {}
        }
    }
    Some((rate?, total?, p50?, p99?))
}

/// Loads `server` with wrk (one thread, pinned to `core` with taskset when
/// given) for `secs` seconds over `conns` connections.
fn wrk(
    server: &Server,
    conns: usize,
    secs: u64,
    core: Option<core_affinity::CoreId>,
) -> Option<WrkSample> {
    let mut cmd = match core {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.id.to_string(), "wrk"]);
            cmd
        }
        None => Command::new("wrk"),
    };
    cmd.args([
        "-t1",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--latency",
    ])
    .arg(format!("http://{}/", server.addr))
    .stdin(Stdio::null())
    .stderr(Stdio::null());
    let cpu0 = (server.cpu)();
    let out = cmd.output().ok()?;
    let cpu = (server.cpu)() - cpu0;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some((rate, total, p50, p99)) = parse_wrk(&text) else {
        eprintln!(
            "{}: could not read wrk's output:\n{text}",
            server.kind.name()
        );
        return None;
    };
    Some(WrkSample {
        rate,
        p50,
        p99,
        server_cpu_per_req: cpu / total.max(1) as u32,
    })
}

fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        && Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok()
}

fn start(kind: Kind, core: Option<core_affinity::CoreId>) -> Option<Server> {
    match kind {
        Kind::Twisted => spawn_twisted(core),
        k => Some(spawn_thread(k, core)),
    }
}

/// The wrk table: `runs` interleaved runs per server, medians, ratios.
fn wrk_table(
    kinds: &[Kind],
    runs: usize,
    conns: usize,
    secs: u64,
    cores: (Option<core_affinity::CoreId>, Option<core_affinity::CoreId>),
) {
    let mut results: Vec<Vec<WrkSample>> = kinds.iter().map(|_| Vec::new()).collect();
    for run in 0..runs {
        let order: Vec<usize> = if run % 2 == 0 {
            (0..kinds.len()).collect()
        } else {
            (0..kinds.len()).rev().collect()
        };
        for i in order {
            let Some(server) = start(kinds[i], cores.0) else {
                continue;
            };
            if let Some(s) = wrk(&server, conns, secs, cores.1) {
                results[i].push(s);
            }
        }
    }
    println!("wrk -t1 -c{conns} -d{secs}s --latency, {runs} run(s) per server (medians):");
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>16}",
        "server", "requests/s", "p50", "p99", "server CPU/req"
    );
    let mut rate_of = std::collections::BTreeMap::new();
    let mut cpu_of = std::collections::BTreeMap::new();
    for (kind, samples) in kinds.iter().zip(&results) {
        if samples.is_empty() {
            continue;
        }
        let pick =
            |f: &dyn Fn(&WrkSample) -> f64| median(&samples.iter().map(f).collect::<Vec<_>>());
        let rate = pick(&|s| s.rate);
        let cpu = pick(&|s| s.server_cpu_per_req.as_nanos() as f64);
        println!(
            "{:<10} {:>12.0} {:>9.0} us {:>9.0} us {:>13.2} us",
            kind.name(),
            rate,
            pick(&|s| s.p50.as_secs_f64() * 1e6),
            pick(&|s| s.p99.as_secs_f64() * 1e6),
            cpu / 1000.0
        );
        rate_of.insert(kind.name(), rate);
        cpu_of.insert(kind.name(), cpu);
    }
    for other in ["mio", "twisted"] {
        if let (Some(t), Some(o)) = (rate_of.get("torsion"), rate_of.get(other)) {
            println!(
                "wrk torsion / {other}: {:.2}x requests/s, {:.3}x server CPU per request",
                t / o,
                cpu_of["torsion"] / cpu_of[other]
            );
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing:
    // then run a very short smoke pass.
    let benching = std::env::args().any(|a| a == "--bench");
    let runs: usize = env_or("TORSION_BENCH_RUNS", if benching { 3 } else { 1 });
    let secs = Duration::from_secs_f64(env_or(
        "TORSION_BENCH_SECS",
        if benching { 2.0 } else { 0.2 },
    ));
    let warmup = Duration::from_secs_f64(if benching { 0.5 } else { 0.05 });
    let conns: usize = env_or("TORSION_BENCH_CONNS", 100);
    let wanted: String = env_or("TORSION_BENCH_SERVERS", "torsion,mio,twisted".to_owned());
    support::raise_fd_limit(4096);
    let (server_core, load_core) = pick_cores();
    if let Some(c) = load_core {
        core_affinity::set_for_current(c);
    }
    let mut kinds = vec![];
    for k in [Kind::Torsion, Kind::Mio, Kind::Twisted] {
        if wanted.split(',').any(|w| w == k.name()) {
            kinds.push(k);
        }
    }
    if kinds.contains(&Kind::Twisted) && !(benching && twisted_available()) {
        if benching {
            println!("(twisted not importable: `pip install twisted` to compare with Twisted web)");
        }
        kinds.retain(|&k| k != Kind::Twisted);
    }
    println!(
        "keep-alive hello-world, {conns} connections, {runs} run(s) of {:.1} s per server; machine shared: figures are indicative",
        secs.as_secs_f64()
    );
    let mut results: Vec<(Kind, Vec<Sample>)> = kinds.iter().map(|&k| (k, Vec::new())).collect();
    for run in 0..runs {
        // Alternate the order so drift hits every server alike.
        let order: Vec<usize> = if run % 2 == 0 {
            (0..kinds.len()).collect()
        } else {
            (0..kinds.len()).rev().collect()
        };
        for i in order {
            let server = match kinds[i] {
                Kind::Twisted => match spawn_twisted(server_core) {
                    Some(s) => s,
                    None => continue,
                },
                k => spawn_thread(k, server_core),
            };
            match load(&server, conns, warmup, secs) {
                Ok(s) => results[i].1.push(s),
                Err(e) => eprintln!("{}: load failed: {e}", server.kind.name()),
            }
        }
    }
    println!(
        "{:<10} {:>12} {:>16} {:>12} {:>12}",
        "server", "requests/s", "server CPU/req", "server busy", "client busy"
    );
    let mut rate_of = std::collections::HashMap::new();
    let mut cpu_of = std::collections::HashMap::new();
    for (kind, samples) in &results {
        if samples.is_empty() {
            continue;
        }
        let rate = median(
            &samples
                .iter()
                .map(|s| s.requests / s.wall.as_secs_f64())
                .collect::<Vec<_>>(),
        );
        let cpu = median(
            &samples
                .iter()
                .map(|s| s.server_cpu.as_nanos() as f64 / s.requests)
                .collect::<Vec<_>>(),
        );
        let sbusy = median(
            &samples
                .iter()
                .map(|s| s.server_cpu.as_secs_f64() / s.wall.as_secs_f64())
                .collect::<Vec<_>>(),
        );
        let cbusy = median(
            &samples
                .iter()
                .map(|s| s.client_cpu.as_secs_f64() / s.wall.as_secs_f64())
                .collect::<Vec<_>>(),
        );
        println!(
            "{:<10} {:>12.0} {:>13.2} us {:>11.0}% {:>11.0}%",
            kind.name(),
            rate,
            cpu / 1000.0,
            sbusy * 100.0,
            cbusy * 100.0
        );
        rate_of.insert(kind.name(), rate);
        cpu_of.insert(kind.name(), cpu);
    }
    if let (Some(t), Some(m)) = (rate_of.get("torsion"), rate_of.get("mio")) {
        println!(
            "torsion / mio: {:.2}x requests/s, {:.2}x server CPU per request",
            t / m,
            cpu_of["torsion"] / cpu_of["mio"]
        );
    }
    if let (Some(t), Some(w)) = (rate_of.get("torsion"), rate_of.get("twisted")) {
        println!(
            "torsion / twisted: {:.1}x requests/s, {:.3}x server CPU per request",
            t / w,
            cpu_of["torsion"] / cpu_of["twisted"]
        );
    }
    if benching && wrk_available() {
        wrk_table(
            &kinds,
            runs,
            conns,
            secs.as_secs().max(2),
            (server_core, load_core),
        );
    } else if benching {
        println!("(wrk not installed: `apt-get install -y wrk` for wrk's figures too)");
    }
}
