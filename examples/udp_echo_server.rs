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

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
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

fn main() -> ExitCode {
    cli::init_logging(&cli::Verbosity::default(), LevelFilter::INFO);

    let arg = std::env::args().nth(1);
    let text = arg.as_deref().unwrap_or(DEFAULT_ADDR);
    let addr: SocketAddr = match text.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("usage: udp_echo_server [ADDRESS:PORT]   (not an address: {text:?})");
            return ExitCode::from(2);
        }
    };
    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Could not start the reactor: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = reactor.listen_udp(addr, Echo::default()) {
        eprintln!("Could not listen on {addr}: {e}");
        return ExitCode::FAILURE;
    }

    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Could not install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = reactor.handle();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            tracing::info!(signal = sig, "shutting down");
            // Stops the port (stop_protocol runs), then the reactor.
            handle.call_from_thread(|core| core.shutdown(Duration::from_secs(1)));
        }
    });

    match reactor.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("The reactor failed: {e}");
            ExitCode::FAILURE
        }
    }
}
