//! A server with a deliberately blocking command: the worked example of the
//! guide "Debugging a stuck reactor" (`torsion::stuck_reactor`).
//!
//! ```text
//! cargo run --example stuck_server                              # 127.0.0.1:8001
//! cargo run --example stuck_server -- --metrics 127.0.0.1:9100  # GET /metrics too
//! nc 127.0.0.1 8001
//! ping             -> pong
//! block 300        -> the whole reactor stops for 300 ms (the bug), then: blocked 300 ms
//! defer 300        -> the same wait on a worker thread (the fix), then: deferred 300 ms
//! kill -USR1 PID   # the reactor's snapshot as a table on stderr
//! ```
//!
//! One line per command (`\n` or `\r\n`). `block MS` calls
//! `std::thread::sleep` inside `data_received`, the way a synchronous
//! database call or a heavy computation would: while it sleeps, no other
//! connection is read, written or timed out, and the reactor logs a
//! slow-callback warning (over `--slow-callback`, 100 ms by default).
//! `defer MS` does the same wait through `defer_to_thread` and answers when
//! it is done, while the reactor goes on serving everyone. At most 60000 ms.
//!
//! It runs under `torsion::service::Application`: Ctrl-C or SIGTERM stop it
//! gracefully, SIGUSR1 prints the snapshot table, and `--metrics ADDR`
//! serves `/metrics` from a thread of its own (so the page answers even
//! while the reactor is blocked, showing `torsion_reactor_up 0`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use torsion::defer::Failure;
use torsion::protocols::{LineHandler, LineReceiver, Lines};
use torsion::{factory, Context, DisconnectReason};
use tracing_subscriber::filter::LevelFilter;

#[path = "cli/mod.rs"]
mod cli;
#[path = "metrics/mod.rs"]
mod metrics;

/// Where the server listens when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8001";

/// How long a graceful shutdown may take before what is left is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The longest `block` or `defer` a client may ask for.
const MAX_WAIT_MS: u64 = 60_000;

/// A line server whose `block MS` command stalls the whole reactor (for
/// learning to debug one). Ctrl-C or SIGTERM stops it; SIGUSR1 prints the
/// reactor's snapshot on stderr.
#[derive(Debug, Parser)]
#[command(name = "stuck_server", version)]
struct Args {
    /// Where to listen, as IP:PORT (port 0 picks a free one).
    #[arg(default_value = DEFAULT_ADDR)]
    address: SocketAddr,

    /// Log a callback that runs longer than this (e.g. 100ms, 1s; off: time
    /// no callback).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = cli::maybe_duration)]
    slow_callback: cli::MaybeDuration,

    #[command(flatten)]
    metrics: metrics::MetricsArg,

    #[command(flatten)]
    idle: cli::IdleTimeout,

    #[command(flatten)]
    log: cli::Verbosity,
}

/// The commands: `ping`, `block MS`, `defer MS`.
#[derive(Debug)]
struct Stuck {
    idle_timeout: Option<Duration>,
}

/// What a line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Ping,
    Block(u64),
    Defer(u64),
}

fn parse(line: &[u8]) -> Result<Command, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_owned())?;
    let mut words = text.split_whitespace();
    let verb = words.next().unwrap_or("");
    let ms = |w: Option<&str>| -> Result<u64, String> {
        match w.map(str::parse::<u64>) {
            Some(Ok(ms)) if ms <= MAX_WAIT_MS => Ok(ms),
            _ => Err(format!("{verb} takes milliseconds, 0 to {MAX_WAIT_MS}")),
        }
    };
    match verb {
        "ping" => Ok(Command::Ping),
        "block" => ms(words.next()).map(Command::Block),
        "defer" => ms(words.next()).map(Command::Defer),
        _ => Err("unknown command (ping, block MS, defer MS)".to_owned()),
    }
}

impl LineHandler for Stuck {
    fn connection_made(&mut self, lines: &mut Lines<'_, '_>) {
        tracing::debug!(peer = %lines.peer_addr(), "client connected");
        lines.set_idle_timeout(self.idle_timeout);
    }

    fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]) {
        match parse(line) {
            Ok(Command::Ping) => drop(lines.send_line(b"pong")),
            Ok(Command::Block(ms)) => {
                // THE BUG this example exists for: a blocking call on the
                // reactor thread. Nothing else runs until it returns.
                std::thread::sleep(Duration::from_millis(ms));
                let _ = lines.send_line(format!("blocked {ms} ms").as_bytes());
            }
            Ok(Command::Defer(ms)) => {
                // The fix: the blocking call runs on a worker thread; the
                // answer is written when it is done.
                let conn = lines.handle();
                let done = lines.defer_to_thread(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    Ok::<u64, Failure>(ms)
                });
                let local = lines.local();
                drop(done.add_callback(move |ms| {
                    local.call(move |core| {
                        core.connection(conn)
                            .write(format!("deferred {ms} ms\r\n").as_bytes());
                    });
                    Ok::<(), Failure>(())
                }));
            }
            Err(e) => drop(lines.send_line(format!("error: {e}").as_bytes())),
        }
    }

    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        tracing::debug!(peer = %ctx.peer_addr(), %reason, "client disconnected");
    }
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::INFO);
    let idle = args.idle.get();
    let addr = args.address;
    let mut app = match cli::application(SHUTDOWN_GRACE) {
        Ok(app) => app,
        Err(status) => return status,
    };
    app.reactor()
        .set_slow_callback_threshold(args.slow_callback.0);
    let metrics = match args
        .metrics
        .metrics
        .map(|at| metrics::Metrics::serve(at, vec![app.reactor().reactor_handle()]))
    {
        Some(Err(e)) => return cli::fail(e),
        Some(Ok(m)) => Some(m),
        None => None,
    };
    // The pid in the log line, for `kill -USR1`.
    let what = format!("stuck server (pid {})", std::process::id());
    let status = cli::serve(app, &what, addr, move |core| {
        core.listen_tcp(
            addr,
            factory(move |_peer| {
                LineReceiver::new(Stuck { idle_timeout: idle }).with_max_line_length(256)
            }),
        )
    });
    if let Some(m) = metrics {
        m.stop();
    }
    status
}
