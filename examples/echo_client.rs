//! An echo client: sends one message, waits for the whole echo, prints it and the
//! round-trip time, closes.
//!
//! ```text
//! cargo run --example echo_client                               # 127.0.0.1:8000, "Hello, torsion!"
//! cargo run --example echo_client -- 127.0.0.1:9000 any words you like
//! ```
//!
//! Exits 0 once the echo has arrived intact; otherwise prints why (connection
//! refused, timed out, closed early, echo differs) and exits 1; 2 on bad
//! arguments.
#[path = "cli/mod.rs"]
mod cli;
#[path = "echo_common/mod.rs"]
mod echo_common;

use std::process::ExitCode;

use clap::Parser;
use echo_common::{report, run_exchange, CONNECT_TIMEOUT, DEFAULT_MESSAGE};
use torsion::Reactor;
use tracing_subscriber::filter::LevelFilter;

/// Sends one message to an echo server, waits for the whole echo, prints it and
/// the round-trip time.
#[derive(Debug, Parser)]
#[command(name = "echo_client", version)]
struct Args {
    /// The echo server, as HOST:PORT.
    #[arg(default_value = "127.0.0.1:8000", value_parser = cli::host_port)]
    address: String,

    /// The message (the words joined by spaces) [default: "Hello, torsion!"].
    message: Vec<String>,

    #[command(flatten)]
    log: cli::Verbosity,
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
    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => return cli::fail(format!("cannot start the reactor: {}", cli::plain(e))),
    };
    let exchange = run_exchange(&mut reactor, message.as_bytes(), |r, factory| {
        r.connect_tcp(addr, factory, CONNECT_TIMEOUT);
    });
    match exchange {
        Ok(outcome) => report(outcome, message.as_bytes(), &addr),
        Err(e) => cli::fail(format!("the reactor failed: {}", cli::plain(e))),
    }
}
