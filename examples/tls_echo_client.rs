//! A TLS echo client: sends one message, waits for the whole echo, prints it and
//! the round-trip time, closes (with `close_notify`).
//!
//! ```text
//! cargo run --example tls_echo_client -- --ca /tmp/torsion-tls-echo-cert.pem
//! cargo run --example tls_echo_client -- 127.0.0.1:9443 --insecure any words you like
//! cargo run --example tls_echo_client -- example.org:443 --servername example.org hi
//! ```
//!
//! The server's certificate is checked against the system's roots, or only the
//! CA of `--ca FILE`; `--insecure` skips the check (encrypted, but anyone can
//! impersonate the server). The name checked is the host given (or
//! `--servername`). Exits 0 once the echo has arrived intact; otherwise prints
//! why (refused, handshake failure, timed out, closed early, echo differs) and
//! exits 1.
#[path = "cli/mod.rs"]
mod cli;
#[path = "echo_common/mod.rs"]
mod echo_common;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use echo_common::{report, run_exchange, CONNECT_TIMEOUT, DEFAULT_MESSAGE};
use torsion::tls;
use torsion::Reactor;
use tracing_subscriber::filter::LevelFilter;

/// Sends one message over TLS to an echo server, waits for the whole echo,
/// prints it and the round-trip time. The server's certificate is checked
/// against the system's roots, or only the CA of --ca.
#[derive(Debug, Parser)]
#[command(name = "tls_echo_client", version)]
struct Args {
    /// The TLS echo server, as HOST:PORT.
    #[arg(default_value = "127.0.0.1:8443", value_parser = cli::host_port)]
    address: String,

    /// The message (the words joined by spaces) [default: "Hello, torsion!"].
    message: Vec<String>,

    /// Trust only this CA certificate (PEM), e.g. the one tls_echo_server wrote.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca: Option<String>,

    /// Do not check the server's certificate (encrypted, but anyone can
    /// impersonate the server).
    #[arg(long)]
    insecure: bool,

    /// The name to check the certificate against [default: the host given].
    #[arg(long, value_name = "NAME")]
    servername: Option<String>,

    #[command(flatten)]
    log: cli::Verbosity,
}

fn client_config(args: &Args) -> Result<tls::ClientConfig, String> {
    if args.insecure {
        return tls::insecure_client_config().map_err(|e| e.to_string());
    }
    match &args.ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            tls::client_config_with_ca(&pem).map_err(|e| e.to_string())
        }
        None => tls::client_config().map_err(|e| e.to_string()),
    }
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::WARN);
    let message = if args.message.is_empty() {
        DEFAULT_MESSAGE.to_owned()
    } else {
        args.message.join(" ")
    };
    let addr = match cli::resolve(&args.address) {
        Ok(a) => a,
        Err(e) => return cli::fail(e),
    };
    let host = args
        .address
        .rsplit_once(':')
        .map_or(args.address.as_str(), |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = match tls::server_name(args.servername.as_deref().unwrap_or(host)) {
        Ok(n) => n,
        Err(e) => return cli::fail(cli::plain(e)),
    };
    let config = match client_config(&args) {
        Ok(c) => Arc::new(c),
        Err(e) => return cli::fail(format!("TLS setup failed: {e}")),
    };
    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => return cli::fail(format!("cannot start the reactor: {}", cli::plain(e))),
    };
    let exchange = run_exchange(&mut reactor, message.as_bytes(), |r, factory| {
        r.connect_tls(addr, name, config, factory, CONNECT_TIMEOUT);
    });
    match exchange {
        Ok(outcome) => report(outcome, message.as_bytes(), &addr),
        Err(e) => cli::fail(format!("the reactor failed: {}", cli::plain(e))),
    }
}
