//! An echo server: every byte a client sends comes straight back.
//!
//! ```text
//! cargo run --example echo_server                              # 127.0.0.1:8000
//! cargo run --release --example echo_server -- 127.0.0.1:9000
//! cargo run --release --example echo_server -- --threads 2     # a reactor per core
//! cargo run --example echo_server -- -v                        # every connection logged
//! cargo run --example echo_server -- --metrics 127.0.0.1:9100  # GET /metrics
//! cargo run --example echo_server -- --help
//! ```
//!
//! The log goes to stderr: INFO by default, `-v` for DEBUG (a line per
//! connection opened and closed, with the library's `conn` span: peer and
//! connection id), `-q` for warnings only; `RUST_LOG` chooses instead when set.
//! Ctrl-C (SIGINT) or SIGTERM stops listening, closes every connection after
//! flushing what it still owes, and exits 0 (one reactor runs under the
//! application runner, `torsion::service::Application`); a second signal aborts
//! what is left (one reactor) or exits at once (several). Connections silent for
//! `--idle-timeout` (5 minutes) are closed. Try it with `nc 127.0.0.1 8000` or
//! the `echo_client` example.
//!
//! `--threads N` runs N reactors on N threads ([`torsion::multi::ReactorPool`]),
//! each with its own `SO_REUSEPORT` listener on the same address and its own
//! `Echo` factory; the kernel spreads connections over them. Given port 0, the
//! first reactor picks the port and the others join it.
//!
//! `--metrics ADDR` serves `GET /metrics` in the Prometheus text format
//! (`torsion::prometheus`) on a reactor and thread of its own, with every
//! series labelled by reactor (`reactor="0"`..), so it works alike with
//! `--threads N` and still answers while an echo reactor is blocked (that
//! reactor shows as `torsion_reactor_up 0`). SIGUSR1 prints each reactor's
//! snapshot as a table on stderr (`torsion::service::SnapshotTable`) and the
//! server goes on.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Parser;
use torsion::multi::ReactorPool;
use torsion::{factory, Reactor, TcpOptions};
use tracing_subscriber::filter::LevelFilter;

#[path = "cli/mod.rs"]
mod cli;
#[path = "echo_common/server.rs"]
mod echo_server_common;
#[path = "metrics/mod.rs"]
mod metrics;

use echo_server_common::Echo;

/// Where the server listens when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8000";

/// How long a graceful shutdown may take before what is left is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// An echo server: every byte a client sends comes straight back. Ctrl-C or
/// SIGTERM closes every connection gracefully and exits.
#[derive(Debug, Parser)]
#[command(name = "echo_server", version)]
struct Args {
    /// Where to listen, as IP:PORT (port 0 picks a free one).
    #[arg(default_value = DEFAULT_ADDR)]
    address: SocketAddr,

    /// Reactors to run, one per thread, each with an SO_REUSEPORT listener on
    /// the same port.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,

    #[command(flatten)]
    idle: cli::IdleTimeout,

    #[command(flatten)]
    metrics: metrics::MetricsArg,

    #[command(flatten)]
    log: cli::Verbosity,
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::INFO);
    cli::raise_descriptor_limit();
    let idle = args.idle.get();
    match args.threads {
        1 => run_one(args.address, idle, args.metrics.metrics),
        n => run_pool(args.address, usize::from(n), idle, args.metrics.metrics),
    }
}

/// One reactor under the application runner: SIGINT/SIGTERM stop listening,
/// close every connection after its flush (aborting what is left after the
/// grace period), and `run` returns; a second signal aborts at once.
fn run_one(addr: SocketAddr, idle: Option<Duration>, metrics_at: Option<SocketAddr>) -> ExitCode {
    let mut app = match cli::application(SHUTDOWN_GRACE) {
        Ok(app) => app,
        Err(status) => return status,
    };
    let metrics = match metrics_at
        .map(|at| metrics::Metrics::serve(at, vec![app.reactor().reactor_handle()]))
    {
        Some(Err(e)) => return cli::fail(e),
        Some(Ok(m)) => Some(m),
        None => None,
    };
    let status = cli::serve(app, "echo server", addr, move |core| {
        core.listen_tcp(addr, factory(move |_peer| Echo::new(idle)))
    });
    if let Some(m) = metrics {
        m.stop();
    }
    status
}

/// Several reactors, one per thread: a signal shuts each down gracefully; a
/// second one exits at once.
fn run_pool(
    addr: SocketAddr,
    threads: usize,
    idle: Option<Duration>,
    metrics_at: Option<SocketAddr>,
) -> ExitCode {
    // The signals are watched first (so one that comes while the server
    // starts is not lost) by a reactor of this thread's own, which runs until
    // the pool has ended: a second signal is seen while the last reactors
    // drain. Its callback reaches the pool's reactors by their handles.
    let mut signals = match Reactor::new() {
        Ok(r) => r,
        Err(e) => return cli::fail(format!("cannot start the reactor: {}", cli::plain(e))),
    };
    let to_stop: Rc<RefCell<Vec<torsion::ReactorHandle>>> = Rc::default();
    let reach = to_stop.clone();
    let tables = to_stop.clone();
    let watches = cli::watch_signals(&mut signals, &[libc::SIGUSR1], move |_core, _sig| {
        print_tables(&tables.borrow())
    })
    .and_then(|usr1| {
        let stop = cli::on_shutdown_signals(
            &mut signals,
            "shutting down, closing connections gracefully",
            move |_core| {
                for h in reach.borrow().iter() {
                    h.call_from_thread(|core| core.shutdown(SHUTDOWN_GRACE));
                }
            },
        )?;
        Ok((usr1, stop))
    });
    let _watches = match watches {
        Ok(w) => w,
        Err(e) => return cli::fail(e),
    };

    // One reactor per thread; each sets SO_REUSEPORT on the address the first
    // bound (port 0 picks one for all).
    let bound: Arc<OnceLock<SocketAddr>> = Arc::new(OnceLock::new());
    let shared = bound.clone();
    let options = TcpOptions::default().reuse_port(true);
    let pool = ReactorPool::spawn(threads, move |_index, reactor| {
        let at = shared.get().copied().unwrap_or(addr);
        let port = reactor.listen_tcp_with(at, factory(move |_peer| Echo::new(idle)), options)?;
        let _ = shared.set(port.local_addr());
        Ok(())
    });
    let pool = match pool {
        Ok(p) => p,
        Err(e) => return cli::fail(cli::cannot_listen(addr, e)),
    };
    let local = bound.get().copied().unwrap_or(addr);
    tracing::info!("{threads} reactors on {threads} threads, sharing the port");
    tracing::info!("echo server listening on {local}");

    let metrics = match metrics_at.map(|at| metrics::Metrics::serve(at, pool.handles().to_vec())) {
        Some(Err(e)) => {
            for h in pool.handles() {
                h.call_from_thread(|core| core.shutdown(Duration::ZERO));
            }
            let _ = pool.join();
            return cli::fail(e);
        }
        Some(Ok(m)) => Some(m),
        None => None,
    };

    let handles = pool.handles().to_vec();
    to_stop.borrow_mut().clone_from(&handles);
    let stop_all = |handles: &[torsion::ReactorHandle]| {
        for h in handles {
            h.call_from_thread(|core| core.shutdown(Duration::ZERO));
        }
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let stopper = signals.reactor_handle();
    let joiner = std::thread::Builder::new()
        .name("join".into())
        .spawn(move || {
            let _ = done_tx.send(pool.join());
            stopper.call_from_thread(|core| {
                let _ = core.stop();
            });
        });
    if let Err(e) = joiner {
        stop_all(&handles);
        return cli::fail(format!("cannot start a thread: {}", cli::plain(e)));
    }
    if let Err(e) = signals.run() {
        stop_all(&handles);
        let _ = done_rx.recv();
        return cli::fail(format!("the reactor failed: {}", cli::plain(e)));
    }
    let joined = done_rx.recv();
    if let Some(m) = metrics {
        m.stop();
    }
    match joined {
        Ok(Ok(())) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => cli::fail(format!("the reactor failed: {}", cli::plain(e))),
        Err(_) => cli::fail("the reactors' threads ended without a word"),
    }
}

/// SIGUSR1 with several reactors: each prints its snapshot table on stderr,
/// named by its index (one reactor: `Application` does it).
fn print_tables(handles: &[torsion::ReactorHandle]) {
    for (i, h) in handles.iter().enumerate() {
        h.request_snapshot(move |snapshot| {
            use std::io::Write;
            let name = format!("reactor {i}");
            let table = torsion::service::SnapshotTable::new(&snapshot).named(&name);
            let _ = std::io::stderr().write_all(table.to_string().as_bytes());
        });
    }
}
