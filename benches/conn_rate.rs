//! Connection rate over loopback: connect, echo 4 bytes, close, as fast as
//! possible; torsion against the hand-written `mio` echo server (the one in
//! `benches/support`, which `benches/echo.rs` uses too).
//!
//! ```text
//! cargo bench --bench conn_rate
//! TORSION_BENCH_RUNS=21 TORSION_BENCH_SECS=1 cargo bench --bench conn_rate   # steadier
//! TORSION_CONN_INFLIGHT=1 cargo bench --bench conn_rate                      # one at a time
//! TORSION_CONN_RESET=1 cargo bench --bench conn_rate                         # client closes with RST
//! ```
//!
//! The load generator keeps `TORSION_CONN_INFLIGHT` (default 32) connections
//! in flight on one `mio` thread: each connects (non-blocking), writes 4 bytes
//! once connected, reads the 4 bytes back, and closes; a new one replaces it at
//! once. A connection counts when its echo has come back. The server thread is
//! pinned to the first core, the load to the second; the servers take turns
//! (torsion, mio, mio, torsion, ...) and medians are shown, with the server
//! thread's CPU time per connection (what accepting, the protocol's callbacks
//! and closing cost it) and paired torsion/mio ratios. The client closes first,
//! so its side holds the `TIME_WAIT`s; Linux's default `tcp_tw_reuse = 2` lets
//! loopback connects reuse them, so the ephemeral ports do not run out (but
//! tens of thousands of them make each `connect` search longer for a port).
//! `TORSION_CONN_RESET=1` makes the client close with a reset (`SO_LINGER` 0)
//! instead, which leaves no `TIME_WAIT` at all: the server then sees a reset
//! rather than an end of stream.
//!
//! Twisted's figure, 4.6k connections/s, was measured on this machine kind with
//! one sequential client closing with a reset (`shared/reference/twisted.md`
//! §4.2); `TORSION_CONN_INFLIGHT=1 TORSION_CONN_RESET=1` is the same test. The
//! target is ten times that.

mod support;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use support::{env_or, median, own_cpu_time, Kind, ServerThread};

/// Twisted's connection rate on the same test (the issue's figure).
const TWISTED: f64 = 4_600.0;

#[derive(Debug, Clone, Copy)]
struct Sample {
    conns: f64,
    wall: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.conns / self.wall.as_secs_f64()
    }
    fn cpu_per_conn_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.conns
    }
}

fn main() {
    let runs: usize = env_or("TORSION_BENCH_RUNS", 9);
    let secs: f64 = env_or("TORSION_BENCH_SECS", 0.5);
    let inflight: usize = env_or("TORSION_CONN_INFLIGHT", 32usize).max(1);
    let reset = env_or("TORSION_CONN_RESET", 0u8) != 0;
    support::raise_fd_limit(4096);
    let (server_core, load_core) = support::pick_cores();
    if let Some(l) = load_core {
        core_affinity::set_for_current(l);
    }
    println!(
        "conn_rate: connect, echo 4 B, close; {inflight} in flight; {runs} runs x {secs} s per server, medians shown{}",
        if load_core.is_some() {
            "; server and load pinned to different cores"
        } else {
            "; fewer than 2 cores, not pinned"
        }
    );
    let servers = [
        ServerThread::spawn(Kind::Torsion, server_core),
        ServerThread::spawn(Kind::Mio, server_core),
    ];
    let warmup = Duration::from_secs_f64((secs / 4.0).min(0.25));
    let window = Duration::from_secs_f64(secs);
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for run in 0..runs {
        let order: [usize; 2] = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let s = measure(&servers[i], inflight, reset, warmup, window).expect("load failed");
            eprintln!(
                "  {:<8} run {run}: {:>9.0} conn/s  server {:.1} us/conn  busy server {:.0}% client {:.0}%",
                servers[i].kind.name(),
                s.rate(),
                s.cpu_per_conn_us(),
                s.server_cpu.as_secs_f64() / s.wall.as_secs_f64() * 100.0,
                s.client_cpu.as_secs_f64() / s.wall.as_secs_f64() * 100.0,
            );
            samples[i].push(s);
        }
    }
    let rate = |v: &[Sample]| median(&v.iter().map(Sample::rate).collect::<Vec<_>>());
    let cpu = |v: &[Sample]| median(&v.iter().map(Sample::cpu_per_conn_us).collect::<Vec<_>>());
    let paired = |f: fn(&Sample) -> f64| {
        let r: Vec<f64> = samples[0]
            .iter()
            .zip(&samples[1])
            .map(|(t, m)| f(t) / f(m))
            .collect();
        median(&r)
    };
    println!("{:<10} {:>12} {:>16}", "server", "conn/s", "server us/conn");
    for (i, s) in servers.iter().enumerate() {
        println!(
            "{:<10} {:>12.0} {:>16.2}",
            s.kind.name(),
            rate(&samples[i]),
            cpu(&samples[i])
        );
    }
    println!(
        "torsion/mio: rate {:.3}, server CPU per connection {:.3} (paired medians)",
        paired(Sample::rate),
        paired(Sample::cpu_per_conn_us)
    );
    println!(
        "torsion vs Twisted's {:.1}k conn/s: {:.1}x (target 10x)",
        TWISTED / 1e3,
        rate(&samples[0]) / TWISTED
    );
}

/// One connection of the load: connected yet, bytes of the echo back so far.
struct Conn {
    stream: TcpStream,
    sent: bool,
    got: usize,
}

const MSG: &[u8; 4] = b"ping";

/// Runs the load against `server` for `warmup` then `window`.
fn measure(
    server: &ServerThread,
    inflight: usize,
    reset: bool,
    warmup: Duration,
    window: Duration,
) -> io::Result<Sample> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::with_capacity(inflight);
    for _ in 0..inflight {
        open(server.addr, &poll, &mut conns)?;
    }
    let start = Instant::now();
    let mut done = 0u64;
    let mut mark: Option<(u64, Duration, Duration, Instant)> = None;
    loop {
        let now = Instant::now();
        if mark.is_none() && now >= start + warmup {
            mark = Some((done, server.cpu_time(), own_cpu_time(), now));
        }
        if let Some((d0, s0, c0, t0)) = mark {
            if now >= t0 + window {
                let sample = Sample {
                    conns: (done - d0) as f64,
                    wall: now - t0,
                    server_cpu: server.cpu_time() - s0,
                    client_cpu: own_cpu_time() - c0,
                };
                // Close what is in flight; the server sees the EOFs and drops them.
                drop(conns);
                return Ok(sample);
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let key = ev.token().0;
            let Some(c) = conns.get_mut(key) else {
                continue;
            };
            if ev.is_error() {
                return Err(c.stream.take_error()?.unwrap_or_else(|| {
                    io::Error::other("connection error without an error code")
                }));
            }
            if !c.sent && ev.is_writable() {
                if let Some(e) = c.stream.take_error()? {
                    return Err(e);
                }
                match c.stream.write(MSG) {
                    Ok(4) => c.sent = true,
                    Ok(n) => return Err(io::Error::other(format!("short write of {n}"))),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                    Err(e) => return Err(e),
                }
            }
            if c.sent && (ev.is_readable() || ev.is_read_closed()) {
                let mut buf = [0u8; 8];
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => return Err(io::Error::other("server closed before the echo")),
                        Ok(n) => c.got += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                if c.got >= MSG.len() {
                    let mut c = conns.remove(key);
                    poll.registry().deregister(&mut c.stream)?;
                    if reset {
                        // SO_LINGER 0: close with a RST, leaving no TIME_WAIT.
                        socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO))?;
                    }
                    drop(c); // close
                    done += 1;
                    open(server.addr, &poll, &mut conns)?;
                }
            }
        }
    }
}

fn open(addr: SocketAddr, poll: &Poll, conns: &mut Slab<Conn>) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let entry = conns.vacant_entry();
    poll.registry().register(
        &mut stream,
        Token(entry.key()),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    entry.insert(Conn {
        stream,
        sent: false,
        got: 0,
    });
    Ok(())
}
