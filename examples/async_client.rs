//! An echo client in async code: sends three lines one after another, awaits
//! each echo and prints its round-trip time; gives up after 2 s in all.
//!
//! ```text
//! cargo run --example async_echo_server &       # or echo_server, or any echo service
//! cargo run --example async_client              # 127.0.0.1:8000
//! cargo run --example async_client -- 127.0.0.1:9000
//! ```
//!
//! Exits 1 with one line on stderr when it cannot finish, for example
//! `Connection failed: connection refused (127.0.0.1:8000)`. `-v` (or
//! `RUST_LOG=debug`) shows the reactor's log.
#[path = "cli/mod.rs"]
mod cli;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use torsion::aio;
use tracing_subscriber::filter::LevelFilter;

/// Sends three lines to an echo server and prints each round-trip time.
#[derive(Debug, clap::Parser)]
#[command(name = "async_client", version)]
struct Args {
    /// The echo server's address.
    #[arg(default_value = "127.0.0.1:8000")]
    address: std::net::SocketAddr,
    #[command(flatten)]
    log: cli::Verbosity,
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::WARN);
    let addr = args.address;
    if let Err(e) = aio::run(|local| async move {
        let talk = async {
            let mut conn = aio::connect_tcp(&local, addr).await?;
            for line in ["one", "two", "three"] {
                let sent = Instant::now();
                conn.write_all(format!("{line}\n").as_bytes()).await?;
                let mut echo = vec![0; line.len() + 1]; // the whole echo, or an error
                conn.read_exact(&mut echo).await?;
                let echo = String::from_utf8_lossy(&echo);
                println!("{}: {:?}", echo.trim_end(), sent.elapsed());
            }
            conn.close().await
        };
        aio::timeout(&local, Duration::from_secs(2), talk).await?
    }) {
        return cli::fail(format!("Connection failed: {e} ({addr})"));
    }
    ExitCode::SUCCESS
}
