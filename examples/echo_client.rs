//! An echo client: sends one message, waits for the whole echo, prints it and the
//! round-trip time, closes.
//!
//! ```text
//! cargo run --example echo_client                               # 127.0.0.1:8000, "Hello, torsion!"
//! cargo run --example echo_client -- 127.0.0.1:9000 any words you like
//! ```
//!
//! Exits 0 once the echo has arrived intact; otherwise prints why (connection
//! refused, timed out, closed early, echo differs) and exits 1.
#[path = "echo_common/mod.rs"]
mod echo_common;

use std::net::ToSocketAddrs;
use std::process::ExitCode;

use echo_common::{report, run_exchange, CONNECT_TIMEOUT, DEFAULT_MESSAGE};
use torsion::Reactor;

/// Where the client connects when no address is given.
const DEFAULT_ADDR: &str = "127.0.0.1:8000";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let words: Vec<String> = args.collect();
    let message = if words.is_empty() {
        DEFAULT_MESSAGE.to_owned()
    } else {
        words.join(" ")
    };
    let addr = match target.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => {
            eprintln!("usage: echo_client [HOST:PORT [MESSAGE...]]   (cannot resolve {target:?})");
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
    let exchange = run_exchange(&mut reactor, message.as_bytes(), |r, factory| {
        r.connect_tcp(addr, factory, CONNECT_TIMEOUT);
    });
    match exchange {
        Ok(outcome) => report(outcome, message.as_bytes(), &addr),
        Err(e) => {
            eprintln!("The reactor failed: {e}");
            ExitCode::FAILURE
        }
    }
}
