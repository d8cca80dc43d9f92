//! `--metrics ADDR`, shared by the servers that offer it (`echo_server`,
//! `stuck_server`): `GET /metrics` in the Prometheus text format 0.0.4,
//! served by the crate's HTTP server on a reactor and a thread of its own.
//!
//! Its own thread, not one of the served reactors, for two reasons: a
//! reactor blocked in a callback (what the page helps to find) could not
//! answer its own scrape, while here the page still comes, with
//! `torsion_reactor_up{reactor="N"} 0` for the reactor that did not answer
//! within [`SCRAPE_TIMEOUT`]; and the scrapes' own connections do not show in
//! the served reactors' figures (`connections_accepted_total` counts the
//! service's clients only). Each scrape asks every reactor for a snapshot
//! through its `ReactorHandle` (`request_snapshot`), waiting on a worker of
//! the metrics reactor's thread pool, never on its event loop.
//!
//! Other paths are `404`; other methods on `/metrics` are `405`.

#![allow(dead_code)] // Each example uses a part.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use torsion::defer::Failure;
use torsion::http::{HttpServer, Request, Response, Router};
use torsion::introspect::Snapshot;
use torsion::prometheus::{render_snapshots, CONTENT_TYPE};
use torsion::{Core, Reactor, ReactorHandle};

/// How long a scrape waits for the reactors' snapshots. A reactor that has
/// not answered by then is reported as down on that page.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// The `--metrics` option, flattened into a server's arguments.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct MetricsArg {
    /// Serve GET /metrics (Prometheus text format) on this IP:PORT, on a
    /// thread of its own.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

/// The running metrics page; [`stop`](Self::stop) ends it.
#[derive(Debug)]
pub struct Metrics {
    addr: SocketAddr,
    handle: ReactorHandle,
    thread: Option<JoinHandle<()>>,
}

impl Metrics {
    /// Listens on `addr` and serves the snapshots of `reactors` (index `i` is
    /// `reactor="i"`), from a thread of its own.
    ///
    /// # Errors
    /// The sentence to print (`cannot listen on ...: ...`).
    pub fn serve(addr: SocketAddr, reactors: Vec<ReactorHandle>) -> Result<Metrics, String> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || run(addr, reactors, ready_tx))
            .map_err(|e| format!("cannot start the metrics thread: {}", super::cli::plain(e)))?;
        match ready_rx.recv() {
            Ok(Ok((local, handle))) => {
                tracing::info!("metrics on http://{local}/metrics");
                Ok(Metrics {
                    addr: local,
                    handle,
                    thread: Some(thread),
                })
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(super::cli::cannot_listen(addr, e))
            }
            Err(_) => {
                let _ = thread.join();
                Err("the metrics thread ended before listening".to_owned())
            }
        }
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops its reactor and waits for its thread.
    pub fn stop(mut self) {
        let _ = self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Ready = Result<(SocketAddr, ReactorHandle), torsion::Error>;

fn run(addr: SocketAddr, reactors: Vec<ReactorHandle>, ready: mpsc::Sender<Ready>) {
    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let server = HttpServer::new(Router::new().get(
        "/metrics",
        move |core: &mut Core, _: Request| {
            let reactors = reactors.clone();
            core.defer_to_thread(move || Ok::<_, Failure>(collect(&reactors, SCRAPE_TIMEOUT)))
                .add_callback(|snapshots: Vec<Option<Snapshot>>| {
                    Ok::<_, Failure>(
                        Response::ok(render_snapshots(&snapshots))
                            .with_header("Content-Type", CONTENT_TYPE),
                    )
                })
        },
    ));
    let port = match server.listen_tcp(&mut reactor, addr) {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok((port.local_addr(), reactor.reactor_handle())));
    if let Err(e) = reactor.run() {
        tracing::error!("the metrics reactor failed: {e}");
    }
}

/// Every reactor's snapshot, `None` for those that did not answer within
/// `timeout` (all asked at once, so the wait is `timeout` at most in all).
fn collect(reactors: &[ReactorHandle], timeout: Duration) -> Vec<Option<Snapshot>> {
    let deadline = Instant::now() + timeout;
    let waiting: Vec<mpsc::Receiver<Snapshot>> = reactors
        .iter()
        .map(|h| {
            let (tx, rx) = mpsc::channel();
            h.request_snapshot(move |snap| {
                let _ = tx.send(snap);
            });
            rx
        })
        .collect();
    waiting
        .into_iter()
        .map(|rx| {
            let left = deadline.saturating_duration_since(Instant::now());
            rx.recv_timeout(left).ok()
        })
        .collect()
}
