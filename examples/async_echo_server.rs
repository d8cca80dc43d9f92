//! An echo server in async code: `accept().await` in a loop, one task per
//! connection, each reading and writing back until the client closes.
//!
//! ```text
//! cargo run --example async_echo_server                  # 127.0.0.1:8000
//! cargo run --example async_echo_server -- 127.0.0.1:9000
//! nc 127.0.0.1 8000                                       # or async_client, echo_client
//! ```
//!
//! The same server as the `echo_server` example, written with
//! [`torsion::aio`] instead of a protocol; both run on the reactor with the
//! same back-pressure: a client that does not read its echo stops being read
//! (the task waits in `write_all`, its input buffer fills, the socket is no
//! longer read). Connects and disconnects are logged (`RUST_LOG` picks the
//! level; `info` by default). Ctrl-C (SIGINT) or SIGTERM closes every
//! connection after flushing it and exits 0; a second signal exits at once.

#[path = "cli/mod.rs"]
mod cli;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use torsion::aio::{self, Connection, StreamError};
use torsion::Reactor;
use tracing_subscriber::filter::LevelFilter;

/// How long a graceful shutdown may take before what is left is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// An echo server written with async code: every byte a client sends comes
/// straight back.
#[derive(Debug, Parser)]
#[command(name = "async_echo_server", version)]
struct Args {
    /// Where to listen, as IP:PORT (port 0 picks a free one).
    #[arg(default_value = "127.0.0.1:8000")]
    address: SocketAddr,
    #[command(flatten)]
    log: cli::Verbosity,
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::INFO);

    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => return cli::fail(format!("cannot start the reactor: {}", cli::plain(e))),
    };
    // Signals first, so one arriving while the server starts is not lost.
    let watch = cli::on_shutdown_signals(
        &mut reactor,
        "shutting down, closing connections gracefully",
        |core| core.shutdown(SHUTDOWN_GRACE),
    );
    let _watch = match watch {
        Ok(w) => w,
        Err(e) => return cli::fail(e),
    };
    // Bound now, so a taken address is reported before anything runs.
    let (factory, mut listener) = aio::accept_queue();
    let port = match reactor.listen_tcp(args.address, factory) {
        Ok(p) => p,
        Err(e) => return cli::fail(cli::cannot_listen(args.address, e)),
    };
    tracing::info!("async echo server listening on {}", port.local_addr());

    let local = reactor.local();
    drop(reactor.spawn_local(async move {
        loop {
            let conn = listener.accept().await?;
            drop(local.spawn_local(serve(conn)));
        }
        #[allow(unreachable_code)]
        Ok::<(), StreamError>(())
    }));

    match reactor.run() {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => cli::fail(format!("the reactor failed: {}", cli::plain(e))),
    }
}

/// Echoes one connection until the client closes (or the connection breaks).
async fn serve(mut conn: Connection) -> Result<(), StreamError> {
    let peer = conn.peer().clone();
    tracing::info!(%peer, "client connected");
    let mut buf = vec![0; 64 * 1024];
    let result = async {
        loop {
            match conn.read(&mut buf).await? {
                0 => return conn.close().await,
                n => conn.write_all(&buf[..n]).await?,
            }
        }
    }
    .await;
    match &result {
        Ok(()) => tracing::info!(%peer, "client disconnected"),
        Err(e) => tracing::info!(%peer, "client disconnected: {e}"),
    }
    Ok(())
}
