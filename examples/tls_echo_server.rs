//! A TLS echo server: every byte a client sends comes straight back, encrypted.
//!
//! ```text
//! cargo run --example tls_echo_server                          # 127.0.0.1:8443, self-signed
//! cargo run --example tls_echo_server -- 127.0.0.1:9443 --cert chain.pem --key key.pem
//! cargo run --example tls_echo_server -- --help
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

use clap::Parser;
use torsion::tls;
use tracing_subscriber::filter::LevelFilter;

#[path = "cli/mod.rs"]
mod cli;

#[path = "echo_common/server.rs"]
mod echo_server_common;

use echo_server_common::Echo;

/// Where the server listens when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8443";

/// A TLS echo server: every byte a client sends comes straight back,
/// encrypted. Without --cert/--key it makes a self-signed certificate for
/// localhost and 127.0.0.1 and writes it out for clients to trust. Ctrl-C or
/// SIGTERM closes every connection gracefully (close_notify) and exits.
#[derive(Debug, Parser)]
#[command(name = "tls_echo_server", version)]
struct Args {
    /// Where to listen, as IP:PORT (port 0 picks a free one).
    #[arg(default_value = DEFAULT_ADDR)]
    address: SocketAddr,

    /// The certificate chain, PEM (with --key).
    #[arg(long, value_name = "CHAIN.pem", requires = "key")]
    cert: Option<PathBuf>,

    /// The certificate's private key, PEM (with --cert).
    #[arg(long, value_name = "KEY.pem", requires = "cert")]
    key: Option<PathBuf>,

    #[command(flatten)]
    idle: cli::IdleTimeout,

    #[command(flatten)]
    log: cli::Verbosity,
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
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::INFO);
    cli::raise_descriptor_limit();
    let config = match server_config(&args) {
        Ok(c) => Arc::new(c),
        Err(e) => return cli::fail(format!("TLS setup failed: {e}")),
    };
    let app = match cli::application(Duration::from_secs(5)) {
        Ok(app) => app,
        Err(status) => return status,
    };
    let addr = args.address;
    let idle = args.idle.get();
    cli::serve(app, "tls echo server", addr, move |core| {
        let echo = torsion::factory(move |_peer| Echo::new(idle));
        core.listen_tls(addr, config.clone(), echo)
    })
}
