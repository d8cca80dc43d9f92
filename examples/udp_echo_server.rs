//! A UDP echo server: every datagram goes straight back to its sender.
//!
//! ```text
//! cargo run --example udp_echo_server                  # 127.0.0.1:8000
//! cargo run --example udp_echo_server -- [::1]:9000
//! RUST_LOG=debug cargo run --example udp_echo_server   # log every datagram
//! ```
//!
//! Ctrl-C (SIGINT) or SIGTERM closes the port and exits 0. Try it with the
//! `udp_echo_client` example or `nc -u 127.0.0.1 8000`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use torsion::{Address, DatagramContext, DatagramError, DatagramProtocol, Reactor};
use tracing_subscriber::filter::LevelFilter;

#[path = "cli/mod.rs"]
mod cli;

/// Where the server listens when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8000";

/// Echoes every datagram to its sender (Twisted's UDP `Echo`).
#[derive(Debug, Default)]
pub struct Echo {
    echoed: u64,
    dropped: u64,
}

impl DatagramProtocol for Echo {
    fn start_protocol(&mut self, ctx: &mut DatagramContext<'_>) {
        tracing::info!("UDP echo server listening on {}", ctx.local_address());
    }

    fn datagram_received(&mut self, ctx: &mut DatagramContext<'_>, data: &[u8], from: &Address) {
        tracing::debug!(%from, len = data.len(), "datagram");
        match ctx.send_to(data, from) {
            Ok(()) => self.echoed += 1,
            // A full send buffer drops the echo, as the network might have.
            Err(DatagramError::WouldBlock) => self.dropped += 1,
            Err(e) => tracing::warn!(%from, error = %e, "could not echo"),
        }
    }

    fn stop_protocol(&mut self, _ctx: &mut DatagramContext<'_>) {
        tracing::info!(echoed = self.echoed, dropped = self.dropped, "port closed");
    }
}

/// A UDP echo server: every datagram goes back to its sender. Ctrl-C or
/// SIGTERM closes the port and exits.
#[derive(Debug, Parser)]
#[command(name = "udp_echo_server", version)]
struct Args {
    /// Where to listen, as IP:PORT (port 0 picks a free one).
    #[arg(default_value = DEFAULT_ADDR)]
    address: SocketAddr,

    #[command(flatten)]
    log: cli::Verbosity,
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::INFO);
    let addr = args.address;
    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => return cli::fail(format!("cannot start the reactor: {}", cli::plain(e))),
    };
    // Signals first, so one arriving while the server starts is not lost.
    // Shutting down stops the port (stop_protocol runs), then the reactor.
    let watch = cli::on_shutdown_signals(&mut reactor, "shutting down", |core| {
        core.shutdown(Duration::from_secs(1))
    });
    let _watch = match watch {
        Ok(w) => w,
        Err(e) => return cli::fail(e),
    };
    if let Err(e) = reactor.listen_udp(addr, Echo::default()) {
        return cli::fail(cli::cannot_listen(addr, e));
    }
    match reactor.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::fail(format!("the reactor failed: {}", cli::plain(e))),
    }
}
