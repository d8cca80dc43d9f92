//! The client (Twisted's `Agent`): [`HttpClient`] sends requests to
//! `http://` and `https://` URLs and returns a Deferred of each response,
//! reusing kept-alive connections per host.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::client_conn::ClientConnection;
use super::error::{HttpError, Limits};
use super::message::{Headers, Method};
use super::pool::{Pool, PoolKey};
use super::response::Response;
use super::url::Url;
use crate::context::{ConnectionHandle, Core};
use crate::defer::{Cancelled, Deferred, Trigger};
use crate::error::DisconnectReason;
use crate::protocol::{ClientFactory, Reconnect};
use crate::reactor::Connector;

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not an `http` or `https` URL the client can use.
    #[error("invalid URL {0}")]
    BadUrl(String),
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {message}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        message: String,
    },
    /// The connection (or its TLS handshake) failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why it failed.
        reason: DisconnectReason,
    },
    /// No TLS configuration could be made (no system roots, for example).
    #[error("TLS: {0}")]
    Tls(String),
    /// No complete response came within the response timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The server's response broke the protocol or a limit.
    #[error("invalid response: {0}")]
    Http(HttpError),
    /// The connection closed before the response was complete.
    #[error("connection closed before the response was complete ({0})")]
    Closed(DisconnectReason),
    /// More redirects than [`ClientConfig::follow_redirects`] allows.
    #[error("too many redirects")]
    TooManyRedirects,
    /// The request was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The request could not be written (an invalid header field).
    #[error("invalid request: {0}")]
    BadRequest(String),
}

impl From<Cancelled> for ClientError {
    fn from(_: Cancelled) -> Self {
        ClientError::Cancelled
    }
}

/// How a client behaves.
///
/// ```
/// use std::time::Duration;
/// use torsion::http::{ClientConfig, HttpClient};
///
/// let client = HttpClient::with_config(ClientConfig {
///     connect_timeout: Duration::from_secs(3),
///     follow_redirects: 5,
///     ..ClientConfig::default()
/// });
/// # let _ = client;
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    /// What a response may contain (the same defaults as the server's).
    pub limits: Limits,
    /// How long connecting (and the TLS handshake) may take. Default 10 s.
    pub connect_timeout: Duration,
    /// How long a complete response may take once the request is sent.
    /// Default 30 s.
    pub response_timeout: Duration,
    /// How many redirects (301, 302, 303, 307, 308) to follow; 0 (the
    /// default) returns them as responses.
    pub follow_redirects: usize,
    /// How long an idle pooled connection is kept. Default 30 s.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host. Default 8.
    pub max_idle_per_host: usize,
    /// The TLS configuration for `https` (default: the system's roots,
    /// certificates checked).
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("limits", &self.limits)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("follow_redirects", &self.follow_redirects)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("max_idle_per_host", &self.max_idle_per_host)
            .finish_non_exhaustive()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            limits: Limits::default(),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            follow_redirects: 0,
            pool_idle_timeout: Duration::from_secs(30),
            max_idle_per_host: 8,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Counters of a client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Connections opened.
    pub connections: u64,
    /// Requests sent on a pooled connection.
    pub reused: u64,
}

/// One request on its way, with where its answer goes.
pub(crate) struct Job {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: Headers,
    pub(crate) body: Bytes,
    pub(crate) trigger: Trigger<Response, ClientError>,
    pub(crate) redirects: usize,
    /// Sent once already on a reused connection that closed unanswered.
    pub(crate) retried: bool,
}

impl Job {
    pub(crate) fn key(&self) -> PoolKey {
        PoolKey {
            https: self.url.https,
            host: self.url.host.clone(),
            port: self.url.port,
        }
    }

    pub(crate) fn fail(self, e: ClientError) {
        let _ = self.trigger.errback(e);
    }
}

pub(crate) struct ClientShared {
    pub(crate) config: ClientConfig,
    pub(crate) pool: RefCell<Pool>,
    pub(crate) stats: Cell<ClientStats>,
    #[cfg(feature = "tls")]
    tls: RefCell<Option<std::sync::Arc<rustls::ClientConfig>>>,
}

/// An HTTP/1.1 client. Cloning gives another handle to the same pool.
///
/// ```no_run
/// use torsion::http::HttpClient;
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// let client = HttpClient::new();
/// let d = client.get(&mut reactor, "https://example.org/");
/// match reactor.run_until_complete(d)? {
///     Ok(r) => println!("{} {}", r.status, r.body_text()),
///     Err(e) => eprintln!("{e}"),
/// }
/// # Ok::<(), torsion::Error>(())
/// ```
#[derive(Clone)]
pub struct HttpClient {
    pub(crate) shared: Rc<ClientShared>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("config", &self.shared.config)
            .field("stats", &self.shared.stats.get())
            .field("idle", &self.shared.pool.borrow().idle_count())
            .finish()
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with the default configuration.
    pub fn new() -> HttpClient {
        HttpClient::with_config(ClientConfig::default())
    }

    /// A client with `config`.
    pub fn with_config(config: ClientConfig) -> HttpClient {
        HttpClient {
            shared: Rc::new(ClientShared {
                #[cfg(feature = "tls")]
                tls: RefCell::new(config.tls.clone()),
                config,
                pool: RefCell::new(Pool::default()),
                stats: Cell::new(ClientStats::default()),
            }),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ClientStats {
        self.shared.stats.get()
    }

    /// Idle connections in the pool now.
    pub fn idle_connections(&self) -> usize {
        self.shared.pool.borrow().idle_count()
    }

    /// `GET url`.
    pub fn get(&self, core: &mut Core, url: &str) -> Deferred<Response, ClientError> {
        self.request(core, Method::Get, url, Headers::new(), Bytes::new())
    }

    /// `POST url` with `body`.
    pub fn post(
        &self,
        core: &mut Core,
        url: &str,
        body: impl Into<Bytes>,
    ) -> Deferred<Response, ClientError> {
        self.request(core, Method::Post, url, Headers::new(), body.into())
    }

    /// Any request. `Host`, `Content-Length` and `Connection` are set by the
    /// client. The Deferred fires with the whole response (its body read up
    /// to [`Limits::max_body_size`]) or a [`ClientError`].
    pub fn request(
        &self,
        core: &mut Core,
        method: Method,
        url: &str,
        headers: Headers,
        body: Bytes,
    ) -> Deferred<Response, ClientError> {
        let (d, trigger) = Deferred::new();
        match Url::parse(url) {
            Ok(url) => {
                let job = Job {
                    method,
                    url,
                    headers,
                    body,
                    trigger,
                    redirects: 0,
                    retried: false,
                };
                self.shared.clone().start(core, job, false);
            }
            Err(e) => {
                let _ = trigger.errback(e);
            }
        }
        d
    }
}

impl ClientShared {
    /// Sends `job` on a pooled connection, or a new one (`fresh`: always new).
    pub(crate) fn start(self: Rc<Self>, core: &mut Core, job: Job, fresh: bool) {
        if !fresh {
            let pooled = self.pool.borrow_mut().take(&job.key());
            if let Some(conn) = pooled {
                self.count(|s| s.reused += 1);
                self.pool.borrow_mut().assign(conn, job);
                super::call_on(core, conn, |p: &mut ClientConnection, ctx| p.take_job(ctx));
                return;
            }
        }
        let host = job.url.host.clone();
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.connect(core, SocketAddr::new(ip, job.url.port), job);
            return;
        }
        let local = core.local();
        let me = self.clone();
        drop(core.resolve(&host).add_both(move |res| {
            local.call(move |core| match res {
                Ok(ips) => match ips.first() {
                    Some(&ip) => {
                        let addr = SocketAddr::new(ip, job.url.port);
                        me.connect(core, addr, job);
                    }
                    None => job.fail(ClientError::Resolve {
                        host,
                        message: "no address".into(),
                    }),
                },
                Err(e) => job.fail(ClientError::Resolve {
                    host,
                    message: e.to_string(),
                }),
            });
            Ok::<(), std::io::Error>(())
        }));
    }

    fn connect(self: Rc<Self>, core: &mut Core, addr: SocketAddr, job: Job) {
        self.count(|s| s.connections += 1);
        let timeout = self.config.connect_timeout;
        let https = job.url.https;
        let host = job.url.host.clone();
        let factory = ConnFactory {
            shared: self.clone(),
            job: Some(job),
            addr,
        };
        if !https {
            core.connect_tcp(addr, factory, timeout);
            return;
        }
        #[cfg(feature = "tls")]
        {
            let config = match self.tls_config() {
                Ok(c) => c,
                Err(e) => return factory.fail(e),
            };
            let name = match crate::tls::server_name(&host) {
                Ok(n) => n,
                Err(e) => return factory.fail(ClientError::Tls(e.to_string())),
            };
            core.connect_tls(addr, name, config, factory, timeout);
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = host;
            factory.fail(ClientError::Tls("built without the `tls` feature".into()));
        }
    }

    #[cfg(feature = "tls")]
    fn tls_config(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, ClientError> {
        if let Some(c) = &*self.tls.borrow() {
            return Ok(c.clone());
        }
        let c = std::sync::Arc::new(
            crate::tls::client_config().map_err(|e| ClientError::Tls(e.to_string()))?,
        );
        *self.tls.borrow_mut() = Some(c.clone());
        Ok(c)
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut ClientStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// A response came on `conn`, which can be reused: keep it, or say no.
    pub(crate) fn keep(&self, key: PoolKey, conn: ConnectionHandle) -> bool {
        self.pool
            .borrow_mut()
            .put(key, conn, self.config.max_idle_per_host)
    }
}

/// Builds the connection for one job.
struct ConnFactory {
    shared: Rc<ClientShared>,
    job: Option<Job>,
    addr: SocketAddr,
}

impl ConnFactory {
    fn fail(mut self, e: ClientError) {
        if let Some(job) = self.job.take() {
            job.fail(e);
        }
    }
}

impl ClientFactory for ConnFactory {
    type Protocol = ClientConnection;

    fn build_protocol(&mut self, _peer: &crate::Address) -> Option<ClientConnection> {
        let job = self.job.take()?;
        Some(ClientConnection::new(self.shared.clone(), job))
    }

    fn client_connection_failed(
        &mut self,
        _core: &mut Core,
        _connector: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        if let Some(job) = self.job.take() {
            job.fail(ClientError::Connect {
                addr: self.addr.to_string(),
                reason: reason.clone(),
            });
        }
        Reconnect::Never
    }
}
