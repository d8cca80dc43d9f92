//! Twisted's classic line chat, over TCP.
//!
//! ```text
//! cargo run --example chat_server                # 127.0.0.1:8123
//! nc 127.0.0.1 8123                              # or: telnet 127.0.0.1 8123
//! ```
//!
//! The protocol is in `chat/mod.rs`: a client is asked its name, then every line
//! it sends reaches the others. Lines may end in `\n` (nc) or `\r\n` (telnet).
//! Ctrl-C or SIGTERM closes every connection and exits 0; connections silent for
//! `--idle-timeout` (5 minutes) are closed, and so is one that sends a line
//! over 4 KiB (it is told `line too long` first).

#[path = "chat/mod.rs"]
mod chat;
#[path = "cli/mod.rs"]
mod cli;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::filter::LevelFilter;

use chat::ChatFactory;

/// Twisted's line chat: clients pick a name, then every line one sends reaches
/// the others. Ctrl-C or SIGTERM closes every connection and exits.
#[derive(Debug, Parser)]
#[command(name = "chat_server", version)]
struct Args {
    /// Where to listen, as IP:PORT (port 0 picks a free one).
    #[arg(default_value = "127.0.0.1:8123")]
    address: SocketAddr,

    #[command(flatten)]
    idle: cli::IdleTimeout,

    #[command(flatten)]
    log: cli::Verbosity,
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::INFO);
    cli::raise_descriptor_limit();
    let addr = args.address;
    let idle_timeout = args.idle.get();
    let app = match cli::application(Duration::from_secs(5)) {
        Ok(app) => app,
        Err(status) => return status,
    };
    cli::serve(app, "chat server", addr, move |core| {
        let factory = ChatFactory {
            idle_timeout,
            ..ChatFactory::default()
        };
        core.listen_tcp(addr, factory)
    })
}
