//! netmon: watches many targets (tcp, tls, udp) and says when they go up, down
//! or into warning.
//!
//! ```text
//! netmon 127.0.0.1:8000 db:5432 --interval 5 --timeout 2 \
//!     [--send 'PING\r\n' --expect PONG] [--count N] [--persistent]
//! netmon example.com:443 --probe tls --cert-warn 14
//! netmon --config targets.toml
//! ```
//!
//! Prints a line on every change of state (timestamp, target, `up`, `warning`
//! or `down`, the reason: refused, timed out, unreachable, wrong banner, closed
//! by peer, tls...; how long the previous state lasted; when a down state began),
//! a summary table on SIGUSR1 or when Enter is pressed, and a final summary
//! (uptime, downtime, outages, latency p50/p99, failures) on exit, SIGINT and
//! SIGTERM included. An http check's line gives its phases (resolve, connect,
//! tls, processing, transfer). With `--json` each change is one line of JSON
//! on stdout instead (and the summaries go to stderr).
//!
//! `--on-change CMD` runs `sh -c CMD` on every change of state, with
//! `NETMON_TARGET`, `NETMON_STATE` (`up`, `warning`, `down`),
//! `NETMON_PREVIOUS` (empty on the first result), `NETMON_REASON` and
//! `NETMON_SINCE` (RFC 3339 UTC) in an environment that otherwise holds only
//! `PATH` and `HOME`; its output goes to netmon's stderr, and a command that
//! cannot start or exits non-zero is logged as a warning without stopping the
//! monitor. On exit netmon waits up to 10 s for commands still running.
//!
//! Downtime rule: a down period runs from the send of the first failed check to
//! the answer of the first successful one, so a reported outage is within one
//! interval of the real one.
//!
//! Exit status: with `--count`, Nagios' codes: 0 every target up, 1 some target
//! in warning (none down), 2 some target down, 3 a runtime error. Without it, 0
//! if every target was up at the end, 1 if not or on a runtime error. Bad
//! arguments: 2.

#[path = "cli/mod.rs"]
mod cli;
// Some of the engine's API serves only its tests.
#[allow(dead_code)]
#[path = "netmon/mod.rs"]
mod netmon;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use netmon::monitor::{Config, Monitor};
use netmon::status::Health;
use netmon::target::{self, parse_targets, Kind, Settings};
use torsion::{Reactor, ReactorHandle};
use tracing_subscriber::filter::LevelFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProbeArg {
    /// Connect (then --send/--expect if given).
    Tcp,
    /// Connect and a TLS handshake; certificate days left.
    Tls,
    /// Send a datagram (--send), expect a reply (--expect).
    Udp,
    /// GET the target (a URL); 2xx, and the body contains --expect.
    Http,
}

/// Watches services: checks each target every interval (or keeps one
/// connection open with --persistent and probes on it) and prints a line
/// whenever one goes up, down or into warning, with the reason.
#[derive(Debug, Parser)]
#[command(name = "netmon", version)]
struct Args {
    /// Targets, as HOST:PORT.
    targets: Vec<String>,

    /// Read more targets from this file: one HOST:PORT per line, `#` comments.
    #[arg(short, long)]
    file: Option<PathBuf>,

    /// Read targets with their own settings from this TOML file (top-level keys
    /// are defaults; `[[target]]` tables with `address` and any of probe,
    /// interval, timeout, send, expect, cert_warn, server_name, ca, insecure).
    #[arg(long)]
    config: Option<PathBuf>,

    /// The kind of check.
    #[arg(long, value_enum)]
    probe: Option<ProbeArg>,

    /// Seconds between checks (fractions allowed). Default 5.
    #[arg(short, long)]
    interval: Option<f64>,

    /// Seconds to wait for each step: connect, handshake, reply. Default 2.
    #[arg(short, long)]
    timeout: Option<f64>,

    /// Send this once connected (persistent mode: every interval). Escapes:
    /// \r \n \t \0 \\ \xHH.
    #[arg(long)]
    send: Option<String>,

    /// The reply must start with this (banner check); same escapes as --send.
    #[arg(short, long)]
    expect: Option<String>,

    /// tls: warn when the certificate expires in fewer days than this.
    #[arg(long)]
    cert_warn: Option<f64>,

    /// tls: the name the certificate must be for (default: the target's host).
    #[arg(long)]
    server_name: Option<String>,

    /// tls: trust this CA certificate (PEM) instead of the system's roots.
    #[arg(long)]
    ca: Option<PathBuf>,

    /// tls: accept any certificate (the expiry is still reported).
    #[arg(long)]
    insecure: bool,

    /// Stop after this many checks per target (intervals, with --persistent);
    /// the exit status is then Nagios': 0 up, 1 warning, 2 down.
    #[arg(short = 'n', long)]
    count: Option<u64>,

    /// Serve blackbox_exporter-style metrics (probe_success,
    /// probe_duration_seconds, probe_ssl_earliest_cert_expiry, with a target
    /// label) at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,

    /// Keep one connection per target; probe on it every interval with
    /// --send/--expect under a read deadline of --timeout, with TCP keepalive,
    /// and report a silent or noisy disconnect within one interval plus the
    /// timeout.
    #[arg(short, long)]
    persistent: bool,

    /// Print each change of state as one line of JSON (the summaries go to
    /// stderr then).
    #[arg(long)]
    json: bool,

    /// Run `sh -c CMD` on every change of state, with NETMON_TARGET,
    /// NETMON_STATE (up, warning, down), NETMON_PREVIOUS, NETMON_REASON and
    /// NETMON_SINCE (RFC 3339) set, plus PATH and HOME; its output goes to
    /// stderr; a failure is a warning and monitoring goes on.
    #[arg(long, value_name = "CMD")]
    on_change: Option<String>,

    #[command(flatten)]
    log: cli::Verbosity,
}

fn settings(args: &Args) -> Settings {
    Settings {
        probe: args.probe.map(|p| match p {
            ProbeArg::Tcp => Kind::Tcp,
            ProbeArg::Tls => Kind::Tls,
            ProbeArg::Udp => Kind::Udp,
            ProbeArg::Http => Kind::Http,
        }),
        interval: args.interval,
        timeout: args.timeout,
        send: args.send.clone(),
        expect: args.expect.clone(),
        cert_warn: args.cert_warn,
        server_name: args.server_name.clone(),
        ca: args.ca.clone(),
        insecure: args.insecure.then_some(true),
    }
}

fn config(args: &Args) -> Result<Config, String> {
    let base = settings(args);
    let mut names: Vec<String> = args.targets.clone();
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        names.extend(parse_targets(&text).into_iter().map(String::from));
    }
    let mut targets = names
        .iter()
        .map(|n| base.target(None, n))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(path) = &args.config {
        targets.extend(target::load(path, &base)?);
    }
    if targets.is_empty() {
        return Err("no targets: give HOST:PORT arguments, --file or --config".into());
    }
    if args.count == Some(0) {
        return Err("--count must be at least 1".into());
    }
    Ok(Config {
        targets,
        persistent: args.persistent,
        count: args.count,
    })
}

/// Requests from the signal callback and the keyboard thread, read after
/// `run` returns.
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

/// SIGUSR1 asks for a summary, SIGINT and SIGTERM to stop (on the reactor's
/// thread, until the watch is dropped); Enter on a terminal asks for a
/// summary too (on a thread of its own).
fn listen_for_requests(
    reactor: &mut Reactor,
    requests: Arc<Requests>,
) -> Result<torsion::SignalWatch, String> {
    let r = requests.clone();
    let watch = cli::on_signals(reactor, &[libc::SIGUSR1], move |core, sig| {
        if sig == libc::SIGUSR1 {
            r.summary.store(true, Ordering::SeqCst);
        } else {
            r.quit.store(true, Ordering::SeqCst);
        }
        let _ = core.stop();
    })?;
    let handle = reactor.reactor_handle();
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
    Ok(watch)
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::WARN);
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("netmon: {e}");
            return ExitCode::from(2);
        }
    };
    let nagios = config.count.is_some();
    match run(config, args.metrics, args.on_change, args.json) {
        Ok(worst) if nagios => ExitCode::from(match worst {
            Health::Up => 0,
            Health::Warning => 1,
            Health::Down => 2,
        }),
        Ok(Health::Up | Health::Warning) => ExitCode::SUCCESS,
        Ok(Health::Down) => ExitCode::from(1),
        Err(e) => {
            eprintln!("netmon: {e}");
            ExitCode::from(if nagios { 3 } else { 1 })
        }
    }
}

/// Monitors until the count is reached or a signal says stop; returns the
/// worst state at the end.
fn run(
    config: Config,
    metrics: Option<std::net::SocketAddr>,
    on_change: Option<String>,
    json: bool,
) -> Result<Health, String> {
    let mut reactor = Reactor::new().map_err(|e| e.to_string())?;
    let requests = Arc::new(Requests::default());
    let _watch = listen_for_requests(&mut reactor, requests.clone())?;
    let monitor = Monitor::new(config, move |event| {
        if json {
            println!("{}", event.to_json());
        } else {
            println!("{event}");
        }
    });
    let summary = |text: String| {
        if json {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    };
    if let Some(cmd) = on_change {
        monitor.on_change(cmd);
    }
    if let Some(addr) = metrics {
        let m = monitor.clone();
        let server = torsion::http::HttpServer::new(torsion::http::Router::new().get(
            "/metrics",
            move |_: &mut torsion::Core, _: torsion::http::Request| {
                torsion::http::Response::ok(m.metrics())
                    .with_header("Content-Type", "text/plain; version=0.0.4")
            },
        ));
        let port = server
            .listen_tcp(&mut reactor, addr)
            .map_err(|e| cli::cannot_listen(addr, e))?;
        eprintln!("netmon: metrics at http://{}/metrics", port.local_addr());
    }
    monitor.start(&mut reactor);
    loop {
        reactor.run().map_err(|e| e.to_string())?;
        if requests.summary.swap(false, Ordering::SeqCst) {
            summary(monitor.summary());
        }
        if requests.quit.load(Ordering::SeqCst) || monitor.finished() {
            break;
        }
    }
    monitor.stop(&mut reactor);
    summary(monitor.summary());
    // The last changes' --on-change commands finish (their output included),
    // for up to 10 s (a signal ends the wait).
    if monitor.hooks_running() > 0 {
        monitor.wait_for_hooks();
        let m = monitor.clone();
        reactor.call_later(std::time::Duration::from_secs(10), move |core| {
            if m.hooks_running() > 0 {
                tracing::warn!("--on-change commands still running after 10 s; not waiting");
            }
            let _ = core.stop();
        });
        reactor.run().map_err(|e| e.to_string())?;
    }
    Ok(monitor.worst())
}
