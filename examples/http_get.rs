//! Fetches a URL with torsion's HTTP client and prints the status line, the
//! header fields and the body.
//!
//! ```text
//! cargo run --example http_get -- http://127.0.0.1:8080/
//! cargo run --example http_get -- https://example.org/ -o page.html
//! cargo run --example http_get -- --location http://example.org/old
//! ```
//!
//! `https://` certificates are checked against the system's roots. The exit
//! status is 0 for a response below 400, 1 (with a one-line reason on
//! stderr) for a network error or a status of 400 or more, 2 for a usage
//! error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use torsion::http::{ClientConfig, HttpClient};
use torsion::Reactor;
use tracing_subscriber::filter::LevelFilter;

#[path = "cli/mod.rs"]
mod cli;

/// Fetch a URL over HTTP/1.1 and print the response.
#[derive(Debug, Parser)]
#[command(name = "http_get", version)]
struct Args {
    /// The http:// or https:// URL.
    url: String,
    /// Write the body to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Seconds to wait for the connection and then for the response.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Follow up to 10 redirects.
    #[arg(short = 'L', long)]
    location: bool,

    #[command(flatten)]
    log: cli::Verbosity,
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::WARN);
    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the reactor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = HttpClient::with_config(ClientConfig {
        connect_timeout: Duration::from_secs(args.timeout),
        response_timeout: Duration::from_secs(args.timeout),
        follow_redirects: if args.location { 10 } else { 0 },
        ..ClientConfig::default()
    });
    let response = client.get(&mut reactor, &args.url);
    let response = match reactor.run_until_complete(response) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("{}: {e}", args.url);
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("the reactor failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut head = format!(
        "{} {} {}\n",
        response.version,
        response.status,
        response.reason()
    );
    for (name, value) in response.headers.iter() {
        head.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value)));
    }
    head.push('\n');
    let written = match &args.output {
        Some(path) => out
            .write_all(head.as_bytes())
            .and_then(|()| std::fs::write(path, response.body_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => out
            .write_all(head.as_bytes())
            .and_then(|()| out.write_all(response.body_bytes()))
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write the output: {e}")),
    };
    if let Err(e) = written {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    if response.status >= 400 {
        eprintln!("{}: {} {}", args.url, response.status, response.reason());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
