//! The server (Twisted's `Site`): [`HttpServer`] holds the handler, the
//! configuration and the counters; its [`HttpFactory`] builds one
//! [`ServerConnection`] per accepted connection, on any transport.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use super::error::Limits;
use super::handler::Handler;
use super::write::DateCache;
use crate::address::Address;
use crate::context::{ConnectionHandle, Core};
use crate::defer::{Deferred, Failure, Trigger};
use crate::protocol::Factory;
use crate::reactor::ListeningPort;

pub use super::conn::ServerConnection;

/// The default [`ServerConfig::header_timeout`]: 10 s.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`ServerConfig::idle_timeout`]: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How a server treats its clients.
///
/// ```
/// use std::time::Duration;
/// use torsion::http::{HttpServer, Limits, Request, Response, ServerConfig};
/// use torsion::Core;
///
/// let config = ServerConfig {
///     idle_timeout: Duration::from_secs(15),
///     limits: Limits {
///         max_body_size: 1024 * 1024,
///         ..Limits::default()
///     },
///     ..ServerConfig::default()
/// };
/// let server = HttpServer::with_config(|_: &mut Core, _: Request| Response::text(200, "hi"), config);
/// # let _ = server;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// What a request may contain.
    pub limits: Limits,
    /// How long a client has to send a complete request head, counted from
    /// the connection (or from the first byte of a later request): the
    /// slowloris defence. A late client gets `408` and is closed. Default 10 s.
    pub header_timeout: Duration,
    /// How long a connection may stay without traffic (between requests on
    /// a kept-alive connection, or a client that stops reading or sending a
    /// body). Default 60 s. A handler still working on its answer does not
    /// count as idle.
    pub idle_timeout: Duration,
    /// Bytes of pipelined requests read ahead while a response is being
    /// made, before reading from the client pauses. Default 64 KiB.
    pub max_pipeline_buffer: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_pipeline_buffer: 64 * 1024,
        }
    }
}

/// Counters of a server, for tests and metrics pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections open now.
    pub open: u64,
    /// Requests answered (including error answers).
    pub requests: u64,
    /// Requests that arrived on a connection that had answered one before
    /// (keep-alive reuse).
    pub reused: u64,
    /// Handlers that panicked (answered `500`).
    pub panics: u64,
    /// Malformed or over-limit requests answered with an error status.
    pub rejected: u64,
    /// Connections closed by the header timeout.
    pub header_timeouts: u64,
}

pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) handler: RefCell<Box<dyn Handler>>,
    pub(crate) stats: Cell<ServerStats>,
    pub(crate) conns: RefCell<HashSet<ConnectionHandle>>,
    pub(crate) shutting_down: Cell<bool>,
    /// The `Date` line of its responses.
    pub(crate) dates: RefCell<DateCache>,
    drained: RefCell<Vec<Trigger<(), Failure>>>,
    ports: RefCell<Vec<ListeningPort>>,
}

impl Shared {
    pub(crate) fn count(&self, f: impl FnOnce(&mut ServerStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    pub(crate) fn opened(&self, conn: ConnectionHandle) {
        self.conns.borrow_mut().insert(conn);
        self.count(|s| {
            s.connections += 1;
            s.open += 1;
        });
    }

    pub(crate) fn closed(&self, conn: ConnectionHandle) {
        let empty = {
            let mut c = self.conns.borrow_mut();
            if !c.remove(&conn) {
                return;
            }
            c.is_empty()
        };
        self.count(|s| s.open -= 1);
        if empty && self.shutting_down.get() {
            for t in self.drained.borrow_mut().drain(..) {
                let _ = t.callback(());
            }
        }
    }
}

/// An HTTP/1.1 server: a handler, a configuration, counters, and the
/// connections it serves. Cloning gives another handle to the same server.
///
/// ```
/// use std::time::Duration;
/// use torsion::http::{HttpServer, Request, Response, Router};
/// use torsion::{Core, Reactor};
///
/// let mut reactor = Reactor::new()?;
/// let server = HttpServer::new(
///     Router::new().get("/", |_: &mut Core, _: Request| Response::ok("Hello, World!")),
/// );
/// let port = server.listen_tcp(&mut reactor, "127.0.0.1:0".parse().unwrap())?;
/// # let _ = port;
/// // reactor.run()?;
/// # Ok::<(), torsion::Error>(())
/// ```
#[derive(Clone)]
pub struct HttpServer {
    pub(crate) shared: Rc<Shared>,
}

impl fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServer")
            .field("config", &self.shared.config)
            .field("stats", &self.shared.stats.get())
            .field("shutting_down", &self.shared.shutting_down.get())
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// A server with the default configuration.
    pub fn new(handler: impl Handler) -> HttpServer {
        HttpServer::with_config(handler, ServerConfig::default())
    }

    /// A server with `config`.
    pub fn with_config(handler: impl Handler, config: ServerConfig) -> HttpServer {
        HttpServer {
            shared: Rc::new(Shared {
                config,
                handler: RefCell::new(Box::new(handler)),
                stats: Cell::new(ServerStats::default()),
                conns: RefCell::new(HashSet::new()),
                shutting_down: Cell::new(false),
                dates: RefCell::new(DateCache::new()),
                drained: RefCell::new(Vec::new()),
                ports: RefCell::new(Vec::new()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// The counters so far.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats.get()
    }

    /// A factory for listeners: give it to `listen_tcp`, `listen_unix`,
    /// `listen_tls`, or the test pump.
    pub fn factory(&self) -> HttpFactory {
        HttpFactory {
            shared: self.shared.clone(),
        }
    }

    /// Listens on `addr` over TCP; [`shutdown`](Self::shutdown) stops the
    /// listener.
    ///
    /// # Errors
    /// The operating system's error if the address cannot be bound.
    pub fn listen_tcp(&self, core: &mut Core, addr: SocketAddr) -> crate::Result<ListeningPort> {
        let port = core.listen_tcp(addr, self.factory())?;
        self.shared.ports.borrow_mut().push(port);
        Ok(port)
    }

    /// Listens on `addr` over TLS with `config`; [`shutdown`](Self::shutdown)
    /// stops the listener.
    ///
    /// # Errors
    /// The operating system's error if the address cannot be bound.
    #[cfg(feature = "tls")]
    pub fn listen_tls(
        &self,
        core: &mut Core,
        addr: SocketAddr,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> crate::Result<ListeningPort> {
        let port = core.listen_tls(addr, config, self.factory())?;
        self.shared.ports.borrow_mut().push(port);
        Ok(port)
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.get()
    }

    /// Shuts down gracefully: stops the listeners it opened, refuses new
    /// connections, closes idle ones, and lets each busy one finish the
    /// request it is answering (sent with `Connection: close`) before
    /// closing it. The Deferred fires once every connection has closed.
    pub fn shutdown(&self, core: &mut Core) -> Deferred<(), Failure> {
        let (d, t) = Deferred::new();
        self.shared.shutting_down.set(true);
        for port in self.shared.ports.borrow_mut().drain(..) {
            port.stop_listening(core);
        }
        let conns: Vec<ConnectionHandle> = self.shared.conns.borrow().iter().copied().collect();
        if conns.is_empty() {
            let _ = t.callback(());
            return d;
        }
        self.shared.drained.borrow_mut().push(t);
        tracing::info!(connections = conns.len(), "HTTP server shutting down");
        for h in conns {
            super::call_on(core, h, |p: &mut ServerConnection, ctx| p.shut_down(ctx));
        }
        d
    }
}

/// Builds a [`ServerConnection`] for each accepted connection (none once
/// the server is shutting down).
pub struct HttpFactory {
    shared: Rc<Shared>,
}

impl fmt::Debug for HttpFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFactory").finish_non_exhaustive()
    }
}

impl Factory for HttpFactory {
    type Protocol = ServerConnection;

    fn build_protocol(&mut self, peer: &Address) -> Option<ServerConnection> {
        if self.shared.shutting_down.get() {
            return None;
        }
        Some(ServerConnection::new(self.shared.clone(), peer.clone()))
    }
}
