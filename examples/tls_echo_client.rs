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
#[path = "echo_common/mod.rs"]
mod echo_common;

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::sync::Arc;

use echo_common::{report, run_exchange, CONNECT_TIMEOUT, DEFAULT_MESSAGE};
use torsion::tls;
use torsion::Reactor;

/// Where the client connects when no address is given.
const DEFAULT_ADDR: &str = "127.0.0.1:8443";

struct Args {
    target: String,
    message: String,
    ca: Option<String>,
    insecure: bool,
    server_name: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut target = None;
    let mut words = Vec::new();
    let (mut ca, mut insecure, mut server_name) = (None, false, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ca" => ca = Some(it.next().ok_or("--ca needs a file")?),
            "--insecure" => insecure = true,
            "--servername" => server_name = Some(it.next().ok_or("--servername needs a name")?),
            _ if a.starts_with("--") => return Err(format!("unknown option {a:?}")),
            _ if target.is_none() => target = Some(a),
            _ => words.push(a),
        }
    }
    if insecure && ca.is_some() {
        return Err("--ca and --insecure exclude each other".into());
    }
    Ok(Args {
        target: target.unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
        message: if words.is_empty() {
            DEFAULT_MESSAGE.to_owned()
        } else {
            words.join(" ")
        },
        ca,
        insecure,
        server_name,
    })
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
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("usage: tls_echo_client [HOST:PORT [MESSAGE...]] [--ca FILE | --insecure] [--servername NAME]   ({e})");
            return ExitCode::from(2);
        }
    };
    let addr = match args.target.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => {
            eprintln!(
                "usage: tls_echo_client [HOST:PORT [MESSAGE...]]   (cannot resolve {:?})",
                args.target
            );
            return ExitCode::from(2);
        }
    };
    let host = args
        .target
        .rsplit_once(':')
        .map_or(args.target.as_str(), |(h, _)| h);
    let name = match tls::server_name(args.server_name.as_deref().unwrap_or(host)) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let config = match client_config(&args) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("TLS setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Could not start the reactor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exchange = run_exchange(&mut reactor, args.message.as_bytes(), |r, factory| {
        r.connect_tls(addr, name, config, factory, CONNECT_TIMEOUT);
    });
    match exchange {
        Ok(outcome) => report(outcome, args.message.as_bytes(), &addr),
        Err(e) => {
            eprintln!("The reactor failed: {e}");
            ExitCode::FAILURE
        }
    }
}
