//! A TLS echo server: every byte a client sends comes straight back, encrypted.
//!
//! ```text
//! cargo run --example tls_echo_server                          # 127.0.0.1:8443, self-signed
//! cargo run --example tls_echo_server -- 127.0.0.1:9443 --cert chain.pem --key key.pem
//! ```
//!
//! Without `--cert`/`--key` it generates a self-signed certificate for
//! `localhost` and `127.0.0.1` at start and writes it to
//! `$TMPDIR/torsion-tls-echo-cert.pem` (the path is logged), so the client can
//! trust exactly it: `cargo run --example tls_echo_client -- --ca <that path>`.
//! `openssl s_client -connect 127.0.0.1:8443 -CAfile <that path>` works too.
//!
//! Runs under the application runner: Ctrl-C (SIGINT) or SIGTERM stops
//! listening, closes every connection after flushing it (with `close_notify`),
//! and exits 0; a second signal aborts what is left at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use torsion::service::{Application, ServerService};
use torsion::tls;
use tracing_subscriber::filter::LevelFilter;

#[path = "cli/mod.rs"]
mod cli;

#[path = "echo_common/server.rs"]
mod echo_server_common;

use echo_server_common::EchoFactory;

/// Where the server listens when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8443";

struct Args {
    addr: SocketAddr,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let (mut cert, mut key) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cert" => cert = Some(PathBuf::from(it.next().ok_or("--cert needs a file")?)),
            "--key" => key = Some(PathBuf::from(it.next().ok_or("--key needs a file")?)),
            _ if addr.is_none() && !a.starts_with('-') => {
                addr = Some(a.parse().map_err(|_| format!("not an address: {a:?}"))?)
            }
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    if cert.is_some() != key.is_some() {
        return Err("--cert and --key go together".into());
    }
    Ok(Args {
        addr: addr.unwrap_or_else(|| DEFAULT_ADDR.parse().expect("valid default")),
        cert,
        key,
    })
}

/// The configured certificate, or a fresh self-signed one (written out for
/// clients to trust).
fn server_config(args: &Args) -> Result<tls::ServerConfig, String> {
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        return tls::server_config_from_files(cert, key).map_err(|e| e.to_string());
    }
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(|e| format!("cannot generate a certificate: {e}"))?;
    let pem = generated.cert.pem();
    let path = std::env::temp_dir().join("torsion-tls-echo-cert.pem");
    std::fs::write(&path, &pem).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(
        "self-signed certificate for localhost and 127.0.0.1 written to {}",
        path.display()
    );
    tls::server_config_from_pem(
        pem.as_bytes(),
        generated.signing_key.serialize_pem().as_bytes(),
    )
    .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    cli::init_logging(&cli::Verbosity::default(), LevelFilter::INFO);

    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "usage: tls_echo_server [ADDRESS:PORT] [--cert CHAIN.pem --key KEY.pem]   ({e})"
            );
            return ExitCode::from(2);
        }
    };
    let config = match server_config(&args) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("TLS setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut app = match Application::new() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("Could not start the reactor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = args.addr;
    app.add(ServerService::from_fn(
        format!("tls echo on {addr}"),
        move |core| {
            let port = core.listen_tls(addr, config.clone(), EchoFactory)?;
            tracing::info!("tls echo server listening on {}", port.local_addr());
            Ok::<_, torsion::Error>(port)
        },
    ));
    app.set_shutdown_timeout(Duration::from_secs(5));
    match app.run() {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
