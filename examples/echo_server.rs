//! An echo server: every byte a client sends comes straight back.
//!
//! ```text
//! cargo run --example echo_server                              # 127.0.0.1:8000
//! cargo run --release --example echo_server -- 127.0.0.1:9000
//! RUST_LOG=warn cargo run --example echo_server                # quieter
//! ```
//!
//! Connects and disconnects are logged through `tracing` (`RUST_LOG` picks the
//! level; `info` by default). Ctrl-C (SIGINT) or SIGTERM stops listening, closes
//! every connection after flushing what it still owes, and exits 0 (the
//! application runner, `torsion::service::Application`); a second signal
//! aborts what is left at once. Try it with `nc 127.0.0.1 8000` or the `echo_client`
//! example.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use torsion::service::{AppError, Application, ServerService};
use torsion::{Context, DisconnectReason, Factory, Protocol};
use tracing_subscriber::EnvFilter;

/// Where the server listens when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8000";

/// How long a graceful shutdown may take before what is left is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Echoes every byte back to its sender (Twisted's tutorial `Echo`).
#[derive(Debug)]
pub struct Echo;

impl Protocol for Echo {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        tracing::info!(peer = %ctx.peer_addr(), "client connected");
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        ctx.write(data);
    }

    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        tracing::info!(peer = %ctx.peer_addr(), %reason, "client disconnected");
    }
}

/// Builds one [`Echo`] per connection.
#[derive(Debug)]
pub struct EchoFactory;

impl Factory for EchoFactory {
    type Protocol = Echo;

    fn build_protocol(&mut self, _peer: SocketAddr) -> Option<Echo> {
        Some(Echo)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let arg = std::env::args().nth(1);
    let text = arg.as_deref().unwrap_or(DEFAULT_ADDR);
    let addr: SocketAddr = match text.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("usage: echo_server [ADDRESS:PORT]   (not an address: {text:?})");
            return ExitCode::from(2);
        }
    };
    raise_descriptor_limit();

    // The application runner: SIGINT/SIGTERM stop listening, close every
    // connection after its flush (aborting what is left after the grace
    // period), and `run` returns; a second signal aborts at once.
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
