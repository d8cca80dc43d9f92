//! netperf: measures an echo server's latency and throughput.
//!
//! ```text
//! cargo run --release --example netperf -- 127.0.0.1:8000 --connections 100 \
//!     --mode pingpong --size 64 --duration 10 --warmup 2
//! cargo run --release --example netperf -- --help
//! ```
//!
//! Every echoed byte is checked against what was sent; round trips go into an
//! HDR histogram. A progress line is printed every second (on stderr), the
//! final report as a table or, with `--json`, as one JSON object (on stdout).
//! Exits with status 1 on any error (a wrong byte, a lost connection, a failed
//! connect) or when no connection could be made, 2 on bad arguments.

#[path = "cli/mod.rs"]
mod cli;
#[path = "netperf/mod.rs"]
mod netperf;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use netperf::config::{Config, Mode};
use tracing_subscriber::filter::LevelFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// One message in flight per connection: send, wait for the echo, repeat.
    Pingpong,
    /// --depth messages in flight per connection; each echo releases the next.
    Pipeline,
    /// Stream messages as fast as the connection takes them and read them back.
    Bulk,
}

/// Measures an echo server: round-trip latency (p50, p90, p99, p99.9, max),
/// messages per second and MiB per second, checking every echoed byte.
#[derive(Debug, Parser)]
#[command(name = "netperf", version)]
struct Args {
    /// The echo server, as HOST:PORT.
    #[arg(default_value = "127.0.0.1:8000", value_parser = cli::host_port)]
    address: String,

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
    #[arg(long, alias = "connect-timeout", default_value_t = 5.0)]
    timeout: f64,

    /// Print the final report as one JSON object instead of a table.
    #[arg(long)]
    json: bool,

    /// -q: no progress lines (and warnings only in the log); -v: more log.
    #[command(flatten)]
    log: cli::Verbosity,
}

fn seconds(name: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| format!("--{name} must be a number of seconds >= 0, got {s}"))
}

fn config(args: &Args, addr: std::net::SocketAddr) -> Result<Config, String> {
    let mut c = Config::new(addr);
    c.connections = args.connections;
    c.mode = match args.mode {
        ModeArg::Pingpong => Mode::PingPong,
        ModeArg::Pipeline => Mode::Pipeline,
        ModeArg::Bulk => Mode::Bulk,
    };
    c.depth = args.depth;
    c.size = args.size;
    c.duration = seconds("duration", args.duration)?;
    c.warmup = seconds("warmup", args.warmup)?;
    c.rate = args.rate;
    c.threads = args.threads;
    c.messages = args.messages;
    c.connect_timeout = seconds("timeout", args.timeout)?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging(&args.log, LevelFilter::WARN);
    // A name that does not resolve is a runtime error (1), bad settings a
    // usage error (2).
    let addr = match cli::resolve(&args.address) {
        Ok(a) => a,
        Err(e) => return cli::fail(e),
    };
    let config = match config(&args, addr) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(cli::USAGE_ERROR);
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
        Err(e) => return cli::fail(format!("{}: {}", config.addr, cli::plain(e))),
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
        return cli::fail(format!(
            "FAILED: {} errors ({} verification, {} lost connections, {} failed connects)",
            report.errors(),
            report.verify_errors,
            report.lost,
            report.connect_failed
        ));
    }
    ExitCode::SUCCESS
}
