//! netperf: measures a server's latency and throughput, and serves as that
//! server (`--server`).
//!
//! ```text
//! netperf --server 0.0.0.0:5201                       # on one host
//! netperf HOST:5201 --connections 100 --mode pingpong --size 64 --duration 10 --warmup 2
//! netperf HOST:5201 --mode bulk --reverse             # the server streams
//! netperf HOST:5201 --mode crr                        # connect, request, close
//! netperf HOST:5201 --mode udp-stream --rate 20000    # loss, reordering, jitter
//! ```
//!
//! Every echoed or streamed byte is checked; round trips go into an HDR
//! histogram. An interval line is printed every `--interval` (on stderr), the
//! final report as a table or, with `--json`, as one JSON object with the run's
//! parameters and every interval (on stdout). CPU use of this process is in
//! every report; against `netperf --server` the server's is too. A connection
//! that makes no progress for `--stall` ms counts a stall. Exits with status 1
//! on any error (a wrong byte, a lost connection, a failed connect, a stall) or
//! when no connection could be made, 2 on bad arguments.

#[path = "cli/mod.rs"]
mod cli;
// Some of the engine's API serves only its tests.
#[allow(dead_code)]
#[path = "netperf/mod.rs"]
mod netperf;

use std::cell::RefCell;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use netperf::config::{Config, Mode};
use netperf::wire::Role;
use tracing_subscriber::filter::LevelFilter;

/// Where the server listens, and the client connects, unless told.
const DEFAULT_ADDR: &str = "127.0.0.1:5201";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// One message in flight per connection: send, wait for the echo, repeat.
    Pingpong,
    /// --depth messages in flight per connection; each echo releases the next.
    Pipeline,
    /// Stream messages as fast as the connection takes them and read them back
    /// (with --reverse the server streams, with --bidir both do).
    Bulk,
    /// Connect, one request and its response, close, again (TCP_CRR).
    Crr,
    /// UDP ping-pong: one datagram in flight per flow (UDP_RR).
    Udp,
    /// A paced UDP stream, echoed: loss, reordering, jitter.
    UdpStream,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ServeArg {
    /// Send back what arrives.
    Echo,
    /// Read and discard.
    Sink,
    /// Stream a known pattern.
    Source,
}

/// Measures a server: round-trip latency (p50, p90, p99, p99.9, max), messages
/// per second, MiB per second, UDP loss and jitter, CPU use, checking every
/// byte; or, with --server, is that server.
#[derive(Debug, Parser)]
#[command(name = "netperf", version)]
struct Args {
    /// The server, as HOST:PORT (with --server: where to listen).
    #[arg(default_value = DEFAULT_ADDR)]
    address: String,

    /// Serve instead of measuring: TCP echo (or --serve sink/source) and UDP
    /// echo on the address, plus the control connection that reports this
    /// process's CPU use to clients.
    #[arg(long)]
    server: bool,

    /// With --server: what a connection that asks for nothing gets.
    #[arg(long, value_enum, default_value_t = ServeArg::Echo)]
    serve: ServeArg,

    /// Bulk: the server streams to the client (needs netperf --server).
    #[arg(short = 'R', long)]
    reverse: bool,

    /// Bulk: both ends stream at once (needs netperf --server).
    #[arg(long)]
    bidir: bool,

    /// Milliseconds without progress on a connection that has something
    /// outstanding that count as a stall (an error); 0 turns it off.
    #[arg(long, default_value_t = 2000)]
    stall: u64,

    /// UDP: seconds before a datagram not echoed counts as lost.
    #[arg(long, default_value_t = 1.0)]
    timeout: f64,

    /// Seconds between interval lines.
    #[arg(short, long, default_value_t = 1.0)]
    interval: f64,

    /// Connections to open, spread over the threads.
    #[arg(short, long, default_value_t = 1)]
    connections: usize,

    /// Load pattern.
    #[arg(short, long, value_enum, default_value_t = ModeArg::Pingpong)]
    mode: ModeArg,

    /// Messages in flight per connection in pipeline mode (default 16) and bulk
    /// mode (default: 1 MiB worth of messages).
    #[arg(short, long)]
    depth: Option<usize>,

    /// Bytes per message.
    #[arg(short, long, default_value_t = 64)]
    size: usize,

    /// Seconds to measure, after the warm-up (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,

    /// Seconds to load the server before measuring; not counted in the report.
    #[arg(short, long, default_value_t = 0.0)]
    warmup: f64,

    /// Target messages per second over all connections, for latency at a fixed
    /// load. Latency is measured from when each message should have been sent, so
    /// a server that stalls cannot hide it by slowing the client down.
    #[arg(short, long)]
    rate: Option<f64>,

    /// Reactor threads (one event loop each); connections are spread over them.
    #[arg(long, default_value_t = 1)]
    threads: usize,

    /// Each connection stops after this many round trips (warm-up included); the
    /// run ends when all have, or when the duration is over.
    #[arg(long)]
    messages: Option<u64>,

    /// Seconds to wait for each connection to be established.
    #[arg(long, default_value_t = 5.0)]
    connect_timeout: f64,

    /// Print the final report as one JSON object instead of a table.
    #[arg(long)]
    json: bool,

    /// No interval lines.
    /// -q: no interval lines (and warnings only in the log); -v: more log.
    #[command(flatten)]
    log: cli::Verbosity,
}

fn seconds(name: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| format!("--{name} must be a number of seconds >= 0, got {s}"))
}

fn resolve(address: &str) -> Result<SocketAddr, String> {
    let mut addrs = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{address} resolves to no address"))
}

fn config(args: &Args) -> Result<Config, String> {
    let mut c = Config::new(resolve(&args.address)?);
    c.connections = args.connections;
    c.mode = match args.mode {
        ModeArg::Pingpong => Mode::PingPong,
        ModeArg::Pipeline => Mode::Pipeline,
        ModeArg::Bulk => Mode::Bulk,
        ModeArg::Crr => Mode::Crr,
        ModeArg::Udp => Mode::Udp,
        ModeArg::UdpStream => Mode::UdpStream,
    };
    c.reverse = args.reverse;
    c.bidir = args.bidir;
    c.stall = (args.stall > 0).then(|| Duration::from_millis(args.stall));
    c.timeout = seconds("timeout", args.timeout)?;
    c.interval = seconds("interval", args.interval)?;
    c.depth = args.depth;
    c.size = args.size;
    c.duration = seconds("duration", args.duration)?;
    c.warmup = seconds("warmup", args.warmup)?;
    c.rate = args.rate;
    c.threads = args.threads;
    c.messages = args.messages;
    c.connect_timeout = seconds("connect-timeout", args.connect_timeout)?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::WARN);
    if args.server {
        return serve(&args);
    }
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("netperf: {e}");
            return ExitCode::from(2);
        }
    };
    let quiet = args.log.is_quiet();
    let result = netperf::run::run(&config, |p| {
        if !quiet {
            eprintln!("{}", netperf::report::progress_line(p));
        }
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netperf: {}: {e}", config.addr);
            return ExitCode::from(1);
        }
    };
    let text = if args.json {
        netperf::report::json(&report) + "\n"
    } else {
        netperf::report::table(&report)
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if report.errors() > 0 {
        eprintln!(
            "netperf: FAILED: {} errors ({} verification, {} lost connections, {} failed connects, {} stalls)",
            report.errors(),
            report.verify_errors,
            report.lost,
            report.connect_failed,
            report.stalls
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// `--server`: listens until SIGINT or SIGTERM, then closes gracefully.
fn serve(args: &Args) -> ExitCode {
    let addr = match resolve(&args.address) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("netperf: {e}");
            return ExitCode::from(2);
        }
    };
    let role = match args.serve {
        ServeArg::Echo => Role::Echo,
        ServeArg::Sink => Role::Sink,
        ServeArg::Source => Role::Source,
    };
    let mut reactor = match torsion::Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netperf: cannot start the reactor: {e}");
            return ExitCode::from(1);
        }
    };
    // Signals first, so one arriving while the server starts is not lost.
    // The UDP port is known once it is listening.
    let udp_port: Rc<RefCell<Option<torsion::DatagramPort>>> = Rc::default();
    let to_stop = udp_port.clone();
    let watch = cli::on_signals(&mut reactor, &[], move |core, _sig| {
        if let Some(udp) = to_stop.borrow_mut().take() {
            udp.stop_listening(core);
        }
        core.shutdown(Duration::from_secs(2));
    });
    let _watch = match watch {
        Ok(w) => w,
        Err(e) => {
            eprintln!("netperf: {e}");
            return ExitCode::from(1);
        }
    };
    let ports = match netperf::server::listen(&mut reactor, addr, role) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("netperf: {}", cli::cannot_listen(addr, e));
            return ExitCode::from(1);
        }
    };
    println!(
        "netperf server listening on {} (tcp: {} unless a connection asks otherwise; udp: echo)",
        ports.tcp.local_addr(),
        role.name()
    );
    let _ = std::io::stdout().flush();
    *udp_port.borrow_mut() = Some(ports.udp.clone());
    match reactor.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netperf: the reactor failed: {e}");
            ExitCode::from(1)
        }
    }
}
