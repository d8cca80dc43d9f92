//! The client (Twisted's `Agent`): [`HttpClient`] sends requests to
//! `http://` and `https://` URLs and returns a Deferred of each response,
//! reusing kept-alive connections per host.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::client_body::StreamingResponse;
use super::client_conn::ClientConnection;
use super::client_factory::ConnFactory;
#[cfg(feature = "tls")]
use super::client_factory::MarkTcp;
use super::error::{HttpError, Limits};
use super::message::{Headers, Method};
use super::pool::{Pool, PoolKey};
use super::response::{BodyStream, Response};
use super::timings::Marks;
use super::url::Url;
use crate::context::{ConnectionHandle, Core};
use crate::defer::{Cancelled, Deferred, Trigger};
use crate::error::DisconnectReason;
use crate::reactor::TcpOptions;

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
    /// The source of a streamed request body failed, or gave more or fewer
    /// bytes than the length announced.
    #[error("the request body failed: {0}")]
    RequestBody(String),
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
    /// The largest body a streamed response
    /// ([`HttpClient::request_streaming`]) may have; `None` (the default):
    /// no limit, since the consumer decides what it keeps
    /// ([`Limits::max_body_size`] is for whole bodies).
    pub max_streamed_body: Option<u64>,
    /// Socket options of new connections, `https` ones included (keepalive,
    /// `TCP_USER_TIMEOUT`, `TCP_NODELAY`).
    pub tcp: TcpOptions,
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
            .field("max_streamed_body", &self.max_streamed_body)
            .field("tcp", &self.tcp)
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
            max_streamed_body: None,
            tcp: TcpOptions::default(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Counters of a client ([`HttpClient::stats`]).
///
/// ```
/// use torsion::http::{ClientStats, HttpClient};
///
/// let client = HttpClient::new();
/// assert_eq!(client.stats(), ClientStats::default());
/// assert_eq!((client.stats().connections, client.stats().reused), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Connections opened.
    pub connections: u64,
    /// Requests sent on a pooled connection.
    pub reused: u64,
}

/// Where a job's answer goes.
pub(crate) enum Answer {
    /// The whole response, body included.
    Whole(Trigger<Response, ClientError>),
    /// The head, with the body to follow.
    Stream(Trigger<StreamingResponse, ClientError>),
}

impl Answer {
    fn fail(self, e: ClientError) {
        match self {
            Answer::Whole(t) => drop(t.errback(e)),
            Answer::Stream(t) => drop(t.errback(e)),
        }
    }
}

/// One request on its way, with where its answer goes.
pub(crate) struct Job {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: Headers,
    pub(crate) body: Bytes,
    /// `None` once a streamed head was handed over.
    pub(crate) answer: Option<Answer>,
    pub(crate) redirects: usize,
    /// Sent once already on a reused connection that closed unanswered.
    pub(crate) retried: bool,
    /// When its phases ended (restarted by each attempt).
    pub(crate) marks: Marks,
    /// A request body pulled from a source as the connection takes it
    /// (then `body` is empty). Taken when sent.
    pub(crate) upload: Option<Upload>,
    /// The body is (or was) streamed: it cannot be sent twice, so no retry
    /// and no redirect that keeps the method.
    pub(crate) streamed_body: bool,
}

/// A streamed request body.
pub(crate) struct Upload {
    pub(crate) source: BodyStream,
    pub(crate) length: Option<u64>,
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
        if let Some(a) = self.answer {
            a.fail(e);
        }
    }

    pub(crate) fn streams(&self) -> bool {
        matches!(self.answer, Some(Answer::Stream(_)))
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
    /// to [`Limits::max_body_size`], its [`Response::timings`] set) or a
    /// [`ClientError`].
    pub fn request(
        &self,
        core: &mut Core,
        method: Method,
        url: &str,
        headers: Headers,
        body: Bytes,
    ) -> Deferred<Response, ClientError> {
        let (d, trigger) = Deferred::new();
        let payload = (body, None);
        self.submit(
            core,
            (method, url, headers),
            payload,
            Answer::Whole(trigger),
        );
        d
    }

    /// A request whose body is pulled from `source` as the connection can
    /// take it (Twisted's `IBodyProducer`): the next piece is asked for only
    /// while the transport's write buffer is below its high water mark, so a
    /// body of any size goes out in bounded memory. Sent with
    /// `Content-Length: length` when the length is known (the source must
    /// then give exactly that many bytes), else chunked. A source that fails
    /// fails the request ([`ClientError::RequestBody`]) and aborts the
    /// connection. Such a request is never sent twice: it is not retried on
    /// a kept-alive connection the server closed, and a `307`/`308`
    /// redirect is returned, not followed. The response is read whole.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use torsion::http::{Headers, HttpClient, HttpServer, Method, Request, Response, Router};
    /// use torsion::{Core, Reactor};
    ///
    /// let mut reactor = Reactor::new()?;
    /// let server = HttpServer::new(Router::new().post("/len", |_: &mut Core, req: Request| {
    ///     Response::ok(req.body.len().to_string())
    /// }));
    /// let port = server.listen_tcp(&mut reactor, "127.0.0.1:0".parse().unwrap())?;
    /// let url = format!("http://{}/len", port.local_addr());
    /// let pieces = (0..100).map(|_| Ok(Bytes::from(vec![b'x'; 1000])));
    /// let client = HttpClient::new();
    /// let d = client.upload(&mut reactor, Method::Post, &url, Headers::new(), pieces, None);
    /// let response = reactor.run_until_complete(d)?.expect("a response");
    /// assert_eq!(response.body_text(), "100000");
    /// # Ok::<(), torsion::Error>(())
    /// ```
    pub fn upload(
        &self,
        core: &mut Core,
        method: Method,
        url: &str,
        headers: Headers,
        source: impl Iterator<Item = std::io::Result<Bytes>> + 'static,
        length: Option<u64>,
    ) -> Deferred<Response, ClientError> {
        let (d, trigger) = Deferred::new();
        let upload = Upload {
            source: Box::new(source),
            length,
        };
        let payload = (Bytes::new(), Some(upload));
        self.submit(
            core,
            (method, url, headers),
            payload,
            Answer::Whole(trigger),
        );
        d
    }

    /// Any request, with the response's body streamed: the Deferred fires
    /// as soon as the head has arrived, with a [`ResponseBody`] that hands
    /// the body on as it comes, with back-pressure (see there), so a body
    /// of any size is read in bounded memory. [`Limits::max_body_size`] does
    /// not apply to it; [`ClientConfig::max_streamed_body`] does. Redirects
    /// are followed as for [`request`](Self::request) (their bodies are
    /// skipped). The response timeout runs until the head arrives, then as
    /// the longest silence allowed while the consumer reads.
    ///
    /// [`ResponseBody`]: super::ResponseBody
    pub fn request_streaming(
        &self,
        core: &mut Core,
        method: Method,
        url: &str,
        headers: Headers,
        body: Bytes,
    ) -> Deferred<StreamingResponse, ClientError> {
        let (d, trigger) = Deferred::new();
        let payload = (body, None);
        self.submit(
            core,
            (method, url, headers),
            payload,
            Answer::Stream(trigger),
        );
        d
    }

    /// `GET url`, its body streamed (see
    /// [`request_streaming`](Self::request_streaming)).
    pub fn get_streaming(
        &self,
        core: &mut Core,
        url: &str,
    ) -> Deferred<StreamingResponse, ClientError> {
        self.request_streaming(core, Method::Get, url, Headers::new(), Bytes::new())
    }

    /// Starts a request: what and where, its body (whole or streamed), and
    /// where the answer goes.
    fn submit(
        &self,
        core: &mut Core,
        (method, url, headers): (Method, &str, Headers),
        (body, upload): (Bytes, Option<Upload>),
        answer: Answer,
    ) {
        match Url::parse(url) {
            Ok(url) => {
                let job = Job {
                    method,
                    url,
                    headers,
                    body,
                    answer: Some(answer),
                    redirects: 0,
                    retried: false,
                    marks: Marks::new(),
                    streamed_body: upload.is_some(),
                    upload,
                };
                self.shared.clone().start(core, job, false);
            }
            Err(e) => answer.fail(e),
        }
    }
}

impl ClientShared {
    /// Sends `job` on a pooled connection, or a new one (`fresh`: always new).
    pub(crate) fn start(self: Rc<Self>, core: &mut Core, mut job: Job, fresh: bool) {
        job.marks = Marks::new();
        if !fresh {
            let pooled = self.pool.borrow_mut().take(&job.key());
            if let Some(conn) = pooled {
                self.count(|s| s.reused += 1);
                job.marks.reused = true;
                job.marks.resolved = Some(job.marks.start);
                job.marks.connected = Some(job.marks.start);
                self.pool.borrow_mut().assign(conn, job);
                super::call_on(core, conn, |p: &mut ClientConnection, ctx| p.take_job(ctx));
                return;
            }
        }
        let host = job.url.host.clone();
        if let Ok(ip) = host.parse::<IpAddr>() {
            job.marks.resolved = Some(job.marks.start);
            self.connect(core, SocketAddr::new(ip, job.url.port), job);
            return;
        }
        let local = core.local();
        let me = self.clone();
        drop(core.resolve(&host).add_both(move |res| {
            job.marks.resolved = Some(Instant::now());
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
        let options = self.config.tcp;
        let mut factory = ConnFactory {
            shared: self.clone(),
            job: Some(job),
            addr,
            tcp_at: None,
        };
        if !https {
            core.connect_tcp_with(addr, factory, timeout, options);
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
            let at = Rc::new(Cell::new(None));
            factory.tcp_at = Some(at.clone());
            let tls = crate::tls::TlsClientFactory::new(factory, config, name, timeout);
            core.connect_tcp_with(addr, MarkTcp { inner: tls, at }, timeout, options);
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (host, &mut factory.tcp_at);
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
