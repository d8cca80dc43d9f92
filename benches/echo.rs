//! Echo over loopback: torsion against a hand-written `mio` echo server, in the
//! same process run.
//!
//! ```text
//! cargo bench --bench echo
//! TORSION_BENCH_RUNS=41 TORSION_BENCH_SECS=1 cargo bench --bench echo   # longer, steadier
//! TORSION_BENCH_CASES=ping cargo bench --bench echo                      # only some cases
//! TORSION_BENCH_SERVERS=torsion cargo bench --bench echo                 # one server (profiling)
//! TORSION_BENCH_COUNT=200000 TORSION_BENCH_RUNS=1 TORSION_BENCH_CASES=pipeline \
//!   valgrind --tool=callgrind --separate-threads=yes target/release/deps/echo-*  # instructions
//! ```
//!
//! Two roles serve `benches/callgrind.sh`'s external-client mode, where the
//! server runs in a process of its own under callgrind and the load comes
//! from another process:
//!
//! ```text
//! TORSION_BENCH_ROLE=mio-server target/release/deps/echo-*     # the mio baseline alone
//! TORSION_BENCH_ROLE=client TORSION_BENCH_ADDR=127.0.0.1:8000 TORSION_BENCH_CONNS=50 \
//!   TORSION_BENCH_DEPTH=1 TORSION_BENCH_COUNT=20000 target/release/deps/echo-*
//! ```
//!
//! The `mio-server` role prints `mio echo server listening on ADDR` and exits
//! once its last connection closed (`TORSION_BENCH_ADDR`, default
//! 127.0.0.1:0). The `client` role runs the ping-pong load (64 B messages,
//! `TORSION_BENCH_SIZE`) until `TORSION_BENCH_COUNT` messages came back,
//! closes its connections and exits.
//!
//! With `TORSION_BENCH_COUNT=N` each run stops after N messages (bytes, for
//! bulk) instead of after a time, without warm-up: the server threads'
//! instruction counts (one callgrind file per thread: 02 torsion, 03 mio) divided
//! by N (plus the setup, which is small) give instructions per message, a figure
//! that does not drift with a noisy machine.
//!
//! Both servers run on their own thread, pinned to the first core this process
//! may use; the load generator runs on the second. For each case the servers
//! take turns (torsion, mio, mio, torsion, ...) and the table shows medians.
//! Reported per case: throughput (messages/s, or MiB/s for bulk), the server
//! thread's CPU time per message (per MiB for bulk) from its thread CPU clock
//! (user + system, what `getrusage(RUSAGE_THREAD)` counts), and torsion/mio
//! ratios. On a small machine the load generator can be the limit of
//! throughput: server CPU per message is then the figure that tells the servers
//! apart, and the `busy` columns show who was saturated.

mod support;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use support::{env_or, median, own_cpu_time, Kind, ServerThread};

#[derive(Debug, Clone, Copy)]
enum Load {
    /// `conns` connections, each with `depth` messages of `size` bytes in flight.
    PingPong {
        conns: usize,
        depth: usize,
        size: usize,
    },
    /// One connection streaming `chunk`-byte writes, reading the echo back.
    Bulk { chunk: usize },
}

struct Case {
    name: &'static str,
    load: Load,
}

const CASES: &[Case] = &[
    Case {
        name: "ping-pong 64 B, 1 conn",
        load: Load::PingPong {
            conns: 1,
            depth: 1,
            size: 64,
        },
    },
    Case {
        name: "ping-pong 64 B, 100 conns",
        load: Load::PingPong {
            conns: 100,
            depth: 1,
            size: 64,
        },
    },
    Case {
        name: "ping-pong 64 B, 1000 conns",
        load: Load::PingPong {
            conns: 1000,
            depth: 1,
            size: 64,
        },
    },
    Case {
        name: "pipeline 16 x 64 B, 100 conns",
        load: Load::PingPong {
            conns: 100,
            depth: 16,
            size: 64,
        },
    },
    Case {
        name: "bulk 16 KiB writes, 1 conn",
        load: Load::Bulk { chunk: 16 * 1024 },
    },
    Case {
        name: "bulk 64 KiB writes, 1 conn",
        load: Load::Bulk { chunk: 64 * 1024 },
    },
];

/// One measured run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Messages (ping-pong) or bytes (bulk) echoed back in the window.
    units: f64,
    /// Units echoed since the load started, warm-up included (for instruction
    /// counts per message under callgrind, which see the whole run).
    total_units: f64,
    wall: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.units / self.wall.as_secs_f64()
    }
    /// Server CPU nanoseconds per unit.
    fn cpu_per_unit(&self) -> f64 {
        self.server_cpu.as_nanos() as f64 / self.units
    }
    fn server_busy(&self) -> f64 {
        self.server_cpu.as_secs_f64() / self.wall.as_secs_f64()
    }
    fn client_busy(&self) -> f64 {
        self.client_cpu.as_secs_f64() / self.wall.as_secs_f64()
    }
}

struct Timing {
    warmup: Duration,
    measure: Duration,
    /// Stop after this many messages (or bytes, for bulk) instead of after
    /// `measure`, with no warm-up: for instruction counts under callgrind.
    count: Option<f64>,
}

fn main() {
    match std::env::var("TORSION_BENCH_ROLE").as_deref() {
        Ok("mio-server") => {
            let addr = env_or("TORSION_BENCH_ADDR", SocketAddr::from(([127, 0, 0, 1], 0)));
            if let Err(e) = support::serve_mio_standalone(addr) {
                eprintln!("mio echo server failed: {e}");
                std::process::exit(1);
            }
            return;
        }
        Ok("client") => return external_client(),
        Ok(other) => {
            eprintln!("echo: unknown TORSION_BENCH_ROLE {other:?} (mio-server or client)");
            std::process::exit(2);
        }
        Err(_) => {}
    }
    let runs: usize = env_or("TORSION_BENCH_RUNS", 15);
    let secs: f64 = env_or("TORSION_BENCH_SECS", 0.3);
    let filter = std::env::var("TORSION_BENCH_CASES").unwrap_or_default();
    let servers: Vec<Kind> = match std::env::var("TORSION_BENCH_SERVERS") {
        Ok(list) => list.split(',').filter_map(Kind::from_name).collect(),
        Err(_) => vec![Kind::Torsion, Kind::Mio],
    };
    let count: Option<f64> = std::env::var("TORSION_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok());
    let timing = Timing {
        warmup: Duration::from_secs_f64(if count.is_some() {
            0.0
        } else {
            (secs / 4.0).min(0.5)
        }),
        measure: Duration::from_secs_f64(secs),
        count,
    };
    support::raise_fd_limit(8192);
    let (server_core, load_core) = support::pick_cores();
    match (server_core, load_core) {
        (Some(s), Some(l)) => {
            core_affinity::set_for_current(l);
            println!(
                "echo: servers pinned to core {}, load generator to core {}; {runs} runs x {secs} s per case and server, medians shown",
                s.id, l.id
            );
        }
        _ => println!(
            "echo: fewer than 2 cores available, threads not pinned (results will mix server and load); {runs} runs x {secs} s"
        ),
    }
    let threads: Vec<ServerThread> = servers
        .iter()
        .map(|&k| ServerThread::spawn(k, server_core))
        .collect();

    let mut table = Vec::new();
    for case in CASES.iter().filter(|c| c.name.contains(filter.as_str())) {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); threads.len()];
        for run in 0..runs {
            // Alternate who goes first, so drift on the machine favours nobody.
            let mut order: Vec<usize> = (0..threads.len()).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let s = measure(&threads[i], case.load, &timing);
                eprintln!(
                    "  {:<32} {:<8} run {run}: {}  server {:.0} ns/{}  busy server {:.0}% client {:.0}%  ({} in all)",
                    case.name,
                    threads[i].kind.name(),
                    fmt_rate(case.load, s.rate()),
                    s.cpu_per_unit() * unit_scale(case.load),
                    unit_name(case.load),
                    s.server_busy() * 100.0,
                    s.client_busy() * 100.0,
                    s.total_units
                );
                samples[i].push(s);
            }
        }
        table.push((case, samples));
    }

    println!();
    print_table(&threads, &table);
}

fn unit_scale(load: Load) -> f64 {
    match load {
        Load::PingPong { .. } => 1.0,
        Load::Bulk { .. } => (1 << 20) as f64,
    }
}

fn unit_name(load: Load) -> &'static str {
    match load {
        Load::PingPong { .. } => "msg",
        Load::Bulk { .. } => "MiB",
    }
}

fn fmt_rate(load: Load, rate: f64) -> String {
    match load {
        Load::PingPong { .. } => format!("{:>9.0} msg/s", rate),
        Load::Bulk { .. } => format!("{:>9.1} MiB/s", rate / (1 << 20) as f64),
    }
}

fn print_table(threads: &[ServerThread], table: &[(&Case, Vec<Vec<Sample>>)]) {
    let names: Vec<&str> = threads.iter().map(|t| t.kind.name()).collect();
    print!("{:<32}", "case");
    for n in &names {
        print!(" {:>17}", format!("{n} rate"));
    }
    if names.len() == 2 {
        print!(" {:>7}", "ratio");
    }
    for n in &names {
        print!(" {:>15}", format!("{n} cpu"));
    }
    if names.len() == 2 {
        print!(" {:>9}", "cpu ratio");
    }
    println!("  busy (server per run / client)");
    for (case, samples) in table {
        let rates: Vec<f64> = samples
            .iter()
            .map(|s| median(&s.iter().map(Sample::rate).collect::<Vec<_>>()))
            .collect();
        let cpus: Vec<f64> = samples
            .iter()
            .map(|s| {
                median(&s.iter().map(Sample::cpu_per_unit).collect::<Vec<_>>())
                    * unit_scale(case.load)
            })
            .collect();
        print!("{:<32}", case.name);
        for r in &rates {
            print!(" {:>17}", fmt_rate(case.load, *r));
        }
        if rates.len() == 2 {
            print!(" {:>7.3}", paired_ratio(samples, Sample::rate));
        }
        for c in &cpus {
            let unit = unit_name(case.load);
            if c >= &10_000.0 {
                print!(" {:>15}", format!("{:.1} us/{unit}", c / 1000.0));
            } else {
                print!(" {:>15}", format!("{c:.0} ns/{unit}"));
            }
        }
        if cpus.len() == 2 {
            print!(" {:>9.3}", paired_ratio(samples, Sample::cpu_per_unit));
        }
        let busy: Vec<String> = samples
            .iter()
            .map(|s| {
                let srv = median(&s.iter().map(Sample::server_busy).collect::<Vec<_>>());
                let cli = median(&s.iter().map(Sample::client_busy).collect::<Vec<_>>());
                format!("{:.0}%/{:.0}%", srv * 100.0, cli * 100.0)
            })
            .collect();
        println!("  {}", busy.join("  "));
    }
    if threads.len() == 2 {
        println!(
            "\nratio = torsion rate / mio rate (higher is better for torsion), cpu ratio = torsion / mio server CPU per message (lower is better): medians of the ratios within each run pair"
        );
    }
}

/// The median over runs of torsion's figure divided by mio's from the same
/// run pair: paired ratios cancel the drift of a shared machine better than a
/// ratio of medians.
fn paired_ratio(samples: &[Vec<Sample>], f: fn(&Sample) -> f64) -> f64 {
    let ratios: Vec<f64> = samples[0]
        .iter()
        .zip(&samples[1])
        .map(|(t, m)| f(t) / f(m))
        .collect();
    median(&ratios)
}

/// Runs one load against one server: connect, warm up, measure, disconnect.
fn measure(server: &ServerThread, load: Load, timing: &Timing) -> Sample {
    let sample = match load {
        Load::PingPong { conns, depth, size } => ping_pong(
            server.addr,
            &|| server.cpu_time(),
            conns,
            depth,
            size,
            timing,
        )
        .expect("ping-pong load failed"),
        Load::Bulk { chunk } => bulk(server.addr, chunk, timing, server).expect("bulk load failed"),
    };
    // Let the server finish closing before the other one is measured.
    std::thread::sleep(Duration::from_millis(50));
    sample
}

/// Opens `n` nonblocking, `TCP_NODELAY` connections to `addr`.
fn connect(addr: SocketAddr, n: usize, poll: &Poll) -> io::Result<Vec<TcpStream>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let s = std::net::TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(s);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        out.push(s);
    }
    Ok(out)
}

/// Measures between `warmup` and `warmup + measure`, counting with `units`.
struct Window {
    warmup_end: Instant,
    end: Instant,
    count: Option<f64>,
    at_start: Option<(f64, Duration, Duration, Instant)>,
}

impl Window {
    fn new(timing: &Timing) -> Window {
        let start = Instant::now();
        Window {
            warmup_end: start + timing.warmup,
            end: start + timing.warmup + timing.measure,
            count: timing.count,
            at_start: None,
        }
    }

    /// Advances the window; returns the sample once it is over.
    fn tick(&mut self, units: f64, server_cpu: &dyn Fn() -> Duration) -> Option<Sample> {
        let now = Instant::now();
        if self.at_start.is_none() && now >= self.warmup_end {
            self.at_start = Some((units, server_cpu(), own_cpu_time(), now));
        }
        let over = match self.count {
            Some(n) => units >= n,
            None => now >= self.end,
        };
        if !over {
            return None;
        }
        let (u0, s0, c0, t0) = self.at_start?;
        Some(Sample {
            units: units - u0,
            total_units: units,
            wall: now - t0,
            server_cpu: server_cpu() - s0,
            client_cpu: own_cpu_time() - c0,
        })
    }
}

fn ping_pong(
    addr: SocketAddr,
    server_cpu: &dyn Fn() -> Duration,
    conns: usize,
    depth: usize,
    size: usize,
    timing: &Timing,
) -> io::Result<Sample> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut streams = connect(addr, conns, &poll)?;
    // Per connection: bytes of the current message received, bytes owed.
    let mut partial = vec![0usize; conns];
    let mut owed = vec![depth * size; conns];
    let zeros = vec![0u8; 64 * 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let mut done: u64 = 0;
    for (i, s) in streams.iter_mut().enumerate() {
        send_owed(s, &mut owed[i], &zeros)?;
    }
    let mut window = Window::new(timing);
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let s = &mut streams[i];
            if ev.is_readable() {
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(n) => {
                            partial[i] += n;
                            let msgs = partial[i] / size;
                            partial[i] %= size;
                            done += msgs as u64;
                            owed[i] += msgs * size;
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
            send_owed(s, &mut owed[i], &zeros)?;
        }
        if let Some(sample) = window.tick(done as f64, server_cpu) {
            return Ok(sample);
        }
    }
}

fn send_owed(s: &mut TcpStream, owed: &mut usize, zeros: &[u8]) -> io::Result<()> {
    while *owed > 0 {
        match s.write(&zeros[..(*owed).min(zeros.len())]) {
            Ok(n) => *owed -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Bytes allowed in flight (written, echo not yet read back) in the bulk case.
const BULK_WINDOW: usize = 4 << 20;

fn bulk(
    addr: SocketAddr,
    chunk: usize,
    timing: &Timing,
    server: &ServerThread,
) -> io::Result<Sample> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(16);
    let mut s = connect(addr, 1, &poll)?.pop().unwrap();
    let data = vec![0x5au8; chunk];
    let mut buf = vec![0u8; 256 * 1024];
    let (mut sent, mut received) = (0usize, 0usize);
    let mut window = Window::new(timing);
    loop {
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => received += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        while sent - received + chunk <= BULK_WINDOW {
            match s.write(&data) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(sample) = window.tick(received as f64, &|| server.cpu_time()) {
            return Ok(sample);
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
    }
}

/// The `client` role: ping-pong against a server in another process until
/// `TORSION_BENCH_COUNT` messages came back, then close every connection.
fn external_client() {
    let Ok(addr) = std::env::var("TORSION_BENCH_ADDR")
        .unwrap_or_default()
        .parse::<SocketAddr>()
    else {
        eprintln!("echo client: TORSION_BENCH_ADDR must be IP:PORT");
        std::process::exit(2);
    };
    let conns: usize = env_or("TORSION_BENCH_CONNS", 1);
    let depth: usize = env_or("TORSION_BENCH_DEPTH", 1);
    let size: usize = env_or("TORSION_BENCH_SIZE", 64);
    let count: f64 = env_or("TORSION_BENCH_COUNT", 10_000.0);
    support::raise_fd_limit(conns as u64 + 64);
    let timing = Timing {
        warmup: Duration::ZERO,
        measure: Duration::from_secs(86_400), // unused: the count ends it
        count: Some(count),
    };
    match ping_pong(addr, &|| Duration::ZERO, conns, depth, size, &timing) {
        Ok(s) => println!(
            "echo client: {} messages on {conns} connections ({depth} deep) in {:.2} s",
            s.total_units,
            s.wall.as_secs_f64()
        ),
        Err(e) => {
            eprintln!("echo client: the load failed: {e}");
            std::process::exit(1);
        }
    }
}
