//! netmon: watches many `host:port` targets and says when they go up or down.
//!
//! ```text
//! cargo run --release --example netmon -- 127.0.0.1:8000 db:5432 --file more.txt \
//!     --interval 5 --timeout 2 [--send 'PING\r\n' --expect PONG] [--count N] [--persistent]
//! cargo run --release --example netmon -- --help
//! ```
//!
//! Prints a line on every status change (timestamp, target, `up` or `down`, the
//! reason: refused, timed out, unreachable, wrong banner, closed by peer...), a
//! summary table on SIGUSR1 or when Enter is pressed, and a final summary
//! (uptime, connect latency p50/p99, failures) on exit, SIGINT and SIGTERM
//! included. Exit status: 0 if every target was up at the end, 1 if not, 2 on
//! bad arguments.

#[path = "cli/mod.rs"]
mod cli;
// Some of the engine's API serves only its tests.
#[allow(dead_code)]
#[path = "netmon/mod.rs"]
mod netmon;

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use netmon::monitor::{parse_targets, Config, Monitor, Target};
use netmon::probe::Spec;
use signal_hook::consts::SIGUSR1;
use torsion::{Reactor, ReactorHandle};
use tracing_subscriber::filter::LevelFilter;

/// Watches TCP services: connects to each target every interval (or keeps one
/// connection open with --persistent) and prints a line whenever one goes up or
/// down, with the reason.
#[derive(Debug, Parser)]
#[command(name = "netmon", version)]
struct Args {
    /// Targets, as HOST:PORT.
    targets: Vec<String>,

    /// Read more targets from this file: one HOST:PORT per line, `#` comments.
    #[arg(short, long)]
    file: Option<std::path::PathBuf>,

    /// Seconds between checks (fractions allowed).
    #[arg(short, long, default_value_t = 5.0)]
    interval: f64,

    /// Seconds to wait for a connection, and then for the expected reply.
    #[arg(short, long, default_value_t = 2.0)]
    timeout: f64,

    /// Send this once connected. Escapes: \r \n \t \0 \\ \xHH.
    #[arg(long)]
    send: Option<String>,

    /// The reply must start with this (banner check); same escapes as --send.
    #[arg(short, long)]
    expect: Option<String>,

    /// Stop after this many rounds (intervals, with --persistent).
    #[arg(short = 'n', long)]
    count: Option<u64>,

    /// Keep one connection per target, reconnecting with back-off, and report a
    /// disconnect the moment it happens.
    #[arg(short, long)]
    persistent: bool,

    #[command(flatten)]
    log: cli::Verbosity,
}

fn seconds(name: &str, s: f64) -> Result<Duration, String> {
    match Duration::try_from_secs_f64(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "--{name} must be a number of seconds above 0, got {s}"
        )),
    }
}

fn config(args: &Args) -> Result<Config, String> {
    let mut names: Vec<String> = args.targets.clone();
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        names.extend(parse_targets(&text).into_iter().map(String::from));
    }
    if names.is_empty() {
        return Err("no targets: give HOST:PORT arguments or --file".into());
    }
    let targets = names
        .iter()
        .map(|n| Target::resolve(n))
        .collect::<Result<Vec<_>, _>>()?;
    let escaped = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(netmon::unescape)
            .transpose()
            .map_err(|e| format!("--{name}: {e}"))
    };
    let expect = escaped("expect", &args.expect)?;
    if expect.as_ref().is_some_and(|e| e.is_empty()) {
        return Err("--expect must not be empty".into());
    }
    if args.count == Some(0) {
        return Err("--count must be at least 1".into());
    }
    Ok(Config {
        targets,
        interval: seconds("interval", args.interval)?,
        spec: Spec {
            send: escaped("send", &args.send)?,
            expect,
            timeout: seconds("timeout", args.timeout)?,
        },
        persistent: args.persistent,
        count: args.count,
    })
}

/// Requests from the signal and keyboard threads, read after `run` returns.
#[derive(Default)]
struct Requests {
    summary: AtomicBool,
    quit: AtomicBool,
}

fn wake(handle: &ReactorHandle) {
    handle.call_from_thread(|core| {
        let _ = core.stop();
    });
}

fn listen_for_requests(handle: ReactorHandle, requests: Arc<Requests>) -> Result<(), String> {
    let (h, r) = (handle.clone(), requests.clone());
    cli::on_signals(&[SIGUSR1], move |sig| {
        if sig == SIGUSR1 {
            r.summary.store(true, Ordering::SeqCst);
        } else {
            r.quit.store(true, Ordering::SeqCst);
        }
        wake(&h);
    })?;
    if std::io::stdin().is_terminal() {
        eprintln!("netmon: press Enter for a summary, Ctrl-C to stop");
        std::thread::Builder::new()
            .name("netmon-keys".into())
            .spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    if line.is_err() {
                        break;
                    }
                    requests.summary.store(true, Ordering::SeqCst);
                    wake(&handle);
                }
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging(&args.log, LevelFilter::WARN);
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(cli::USAGE_ERROR);
        }
    };
    match run(config) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(cli::RUNTIME_ERROR),
        Err(e) => cli::fail(e),
    }
}

/// Monitors until the count is reached or a signal says stop; returns whether
/// every target was up at the end.
fn run(config: Config) -> Result<bool, String> {
    let mut reactor = Reactor::new().map_err(|e| e.to_string())?;
    let requests = Arc::new(Requests::default());
    listen_for_requests(reactor.reactor_handle(), requests.clone())?;
    let monitor = Monitor::new(config, |event| println!("{event}"));
    monitor.start(&mut reactor);
    loop {
        reactor.run().map_err(|e| e.to_string())?;
        if requests.summary.swap(false, Ordering::SeqCst) {
            print!("{}", monitor.summary());
        }
        if requests.quit.load(Ordering::SeqCst) || monitor.finished() {
            break;
        }
    }
    monitor.stop(&mut reactor);
    print!("{}", monitor.summary());
    Ok(monitor.all_up())
}
