//! An echo server: every byte a client sends comes straight back.
//!
//! ```text
//! cargo run --example echo_server                              # 127.0.0.1:8000
//! cargo run --release --example echo_server -- 127.0.0.1:9000
//! cargo run --release --example echo_server -- --threads 2     # a reactor per core
//! RUST_LOG=warn cargo run --example echo_server                # quieter
//! ```
//!
//! Connects and disconnects are logged through `tracing` (`RUST_LOG` picks the
//! level; `info` by default). Ctrl-C (SIGINT) or SIGTERM stops listening, closes
//! every connection after flushing what it still owes, and exits 0 (one
//! reactor runs under the application runner, `torsion::service::Application`);
//! a second signal aborts what is left (one reactor) or exits at once
//! (several). Try it with `nc 127.0.0.1 8000` or the `echo_client` example.
//!
//! `--threads N` runs N reactors on N threads ([`torsion::multi::ReactorPool`]),
//! each with its own `SO_REUSEPORT` listener on the same address and its own
//! `EchoFactory`; the kernel spreads connections over them. Given port 0, the
//! first reactor picks the port and the others join it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use torsion::multi::ReactorPool;
use torsion::service::{AppError, Application, ServerService};
use torsion::TcpOptions;
use tracing_subscriber::filter::LevelFilter;

#[path = "cli/mod.rs"]
mod cli;

#[path = "echo_common/server.rs"]
mod echo_server_common;

use echo_server_common::EchoFactory;

/// Where the server listens when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8000";

/// How long a graceful shutdown may take before what is left is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

const USAGE: &str = "usage: echo_server [--threads N] [ADDRESS:PORT]";

/// The command line: where to listen and how many reactors to run.
fn parse_args(args: impl Iterator<Item = String>) -> Result<(SocketAddr, usize), String> {
    let mut addr = None;
    let mut threads = 1;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        if arg == "--threads" || arg == "-t" {
            let n = args.next().ok_or("--threads needs a number")?;
            threads = match n.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("not a thread count: {n:?}")),
            };
        } else if let Some(n) = arg.strip_prefix("--threads=") {
            threads = match n.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("not a thread count: {n:?}")),
            };
        } else if addr.is_none() {
            addr = Some(
                arg.parse()
                    .map_err(|_| format!("not an address: {arg:?}"))?,
            );
        } else {
            return Err(format!("unexpected argument: {arg:?}"));
        }
    }
    let addr = addr.unwrap_or_else(|| DEFAULT_ADDR.parse().expect("default address"));
    Ok((addr, threads))
}

fn main() -> ExitCode {
    cli::init_logging(&cli::Verbosity::default(), LevelFilter::INFO);

    let (addr, threads) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{USAGE}   ({e})");
            return ExitCode::from(2);
        }
    };
    raise_descriptor_limit();
    if threads == 1 {
        return run_one(addr);
    }

    // Signals first, so one arriving while the reactors start is not lost.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Could not install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };

    // One reactor per thread. With a single thread the listener is an ordinary
    // one; with several, each sets SO_REUSEPORT on the address the first bound.
    let bound: Arc<OnceLock<SocketAddr>> = Arc::new(OnceLock::new());
    let shared = bound.clone();
    let options = TcpOptions::default().reuse_port(threads > 1);
    let pool = ReactorPool::spawn(threads, move |_index, reactor| {
        let at = shared.get().copied().unwrap_or(addr);
        let port = reactor.listen_tcp_with(at, EchoFactory, options)?;
        let _ = shared.set(port.local_addr());
        Ok(())
    });
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Could not listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = bound.get().copied().unwrap_or(addr);
    if threads > 1 {
        tracing::info!("{threads} reactors on {threads} threads, sharing the port");
    }
    tracing::info!("echo server listening on {local}");

    let handles = pool.handles().to_vec();
    std::thread::spawn(move || {
        let mut signals = signals.forever();
        if let Some(sig) = signals.next() {
            tracing::info!(
                signal = sig,
                "shutting down: closing connections gracefully"
            );
            for h in &handles {
                h.call_from_thread(|core| core.shutdown(SHUTDOWN_GRACE));
            }
        }
        if let Some(sig) = signals.next() {
            tracing::warn!(signal = sig, "second signal: exiting at once");
            std::process::exit(130);
        }
    });

    match pool.join() {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("The reactor failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One reactor under the application runner: SIGINT/SIGTERM stop listening,
/// close every connection after its flush (aborting what is left after the
/// grace period), and `run` returns; a second signal aborts at once.
fn run_one(addr: SocketAddr) -> ExitCode {
    let mut app = match Application::new() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("Could not start the reactor: {e}");
            return ExitCode::FAILURE;
        }
    };
    app.add(ServerService::from_fn(
        format!("echo on {addr}"),
        move |core| {
            let port = core.listen_tcp(addr, EchoFactory)?;
            tracing::info!("echo server listening on {}", port.local_addr());
            Ok::<_, torsion::Error>(port)
        },
    ));
    app.set_shutdown_timeout(SHUTDOWN_GRACE);
    match app.run() {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(AppError::Start(e)) => {
            eprintln!("Could not listen on {addr}: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Lifts the soft descriptor limit to the hard one, so the server can hold
/// thousands of connections where the soft limit is a low default (often 1024).
fn raise_descriptor_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("could not raise the descriptor limit");
            }
        }
    }
}
