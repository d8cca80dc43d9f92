//! Services built from endpoint strings: a listener ([`ServerService`]) and a
//! client that stays connected ([`ClientService`], Twisted's `ClientService`).

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

use super::{fired, Service, ServiceError};
use crate::address::Address;
use crate::context::{ConnectionHandle, Core, DelayedCall};
use crate::defer::{Deferred, Trigger};
use crate::endpoints::{ClientEndpoint, EndpointError, Port, ServerEndpoint};
use crate::error::DisconnectReason;
use crate::protocol::{Factory, Protocol};
use crate::reconnect::{Backoff, BackoffPolicy};
use crate::transport::Context;

type Listen = Box<dyn FnMut(&mut Core) -> Result<Port, String>>;

/// Listens on an endpoint while running (Twisted's
/// `StreamServerEndpointService`). Stopping closes the listener; connections
/// already accepted stay until the application shuts down.
///
/// ```
/// use torsion::Address;
/// use torsion::service::{Application, ServerService};
/// use torsion::{Context, Factory, Protocol};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         ctx.write(data);
///     }
/// }
/// struct EchoFactory;
/// impl Factory for EchoFactory {
///     type Protocol = Echo;
///     fn build_protocol(&mut self, _peer: &Address) -> Option<Echo> {
///         Some(Echo)
///     }
/// }
///
/// // An endpoint string, and a factory made at each start.
/// let service = ServerService::new("tcp:8000:interface=127.0.0.1", || EchoFactory)?;
/// let mut app = Application::new()?;
/// app.add(service);
/// // app.run() listens, and closes gracefully on SIGINT or SIGTERM.
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ServerService {
    name: String,
    listen: Listen,
    port: Option<Port>,
}

impl fmt::Debug for ServerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerService")
            .field("name", &self.name)
            .field("port", &self.port)
            .finish()
    }
}

impl ServerService {
    /// A service listening on `endpoint` (a server endpoint string) with a
    /// factory from `make` at each start.
    ///
    /// # Errors
    /// The endpoint string's [`EndpointError`].
    pub fn new<F: Factory>(
        endpoint: &str,
        make: impl FnMut() -> F + 'static,
    ) -> Result<ServerService, EndpointError> {
        Ok(Self::from_endpoint(endpoint.parse()?, make))
    }

    /// A service listening on a parsed endpoint.
    pub fn from_endpoint<F: Factory>(
        endpoint: ServerEndpoint,
        mut make: impl FnMut() -> F + 'static,
    ) -> ServerService {
        let name = endpoint.to_string();
        Self::from_fn(name, move |core| {
            endpoint.listen(core, make()).map_err(|e| e.to_string())
        })
    }

    /// A service that listens however `listen` does at each start (for a
    /// listener no endpoint string describes: a TLS configuration built in
    /// memory, special socket options...).
    ///
    /// ```
    /// # use std::net::SocketAddr;
    /// # use torsion::{factory, Context, Protocol};
    /// # struct Echo;
    /// # impl Protocol for Echo {
    /// #     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) { ctx.write(data); }
    /// # }
    /// use torsion::service::ServerService;
    /// use torsion::TcpOptions;
    ///
    /// let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    /// let service = ServerService::from_fn("echo", move |core| {
    ///     core.listen_tcp_with(addr, factory(|_peer| Echo), TcpOptions::default().reuse_port(true))
    /// });
    /// ```
    pub fn from_fn<P: Into<Port>, E: fmt::Display>(
        name: impl Into<String>,
        mut listen: impl FnMut(&mut Core) -> Result<P, E> + 'static,
    ) -> ServerService {
        ServerService {
            name: name.into(),
            listen: Box::new(move |core| listen(core).map(Into::into).map_err(|e| e.to_string())),
            port: None,
        }
    }

    /// The bound IP address while listening on TCP (with the real port when
    /// 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.port.as_ref().and_then(Port::local_addr)
    }

    /// The bound address while listening, on any transport.
    pub fn address(&self) -> Option<Address> {
        self.port.as_ref().map(Port::address)
    }
}

impl Service for ServerService {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, core: &mut Core) -> Result<(), ServiceError> {
        if self.port.is_some() {
            return Err(ServiceError::State {
                name: self.name.clone(),
                running: true,
            });
        }
        let port = (self.listen)(core).map_err(|message| ServiceError::Endpoint {
            name: self.name.clone(),
            message,
        })?;
        tracing::info!(endpoint = %self.name, addr = %port.address(), "listening");
        self.port = Some(port);
        Ok(())
    }

    fn stop(&mut self, core: &mut Core) -> Deferred<(), ServiceError> {
        let Some(port) = self.port.take() else {
            return fired(Err(ServiceError::State {
                name: self.name.clone(),
                running: false,
            }));
        };
        port.stop_listening(core);
        // The listener closes when the current callback returns.
        let (d, t) = Deferred::new();
        core.local().call(move |_| {
            let _ = t.callback(());
        });
        d
    }

    fn is_running(&self) -> bool {
        self.port.is_some()
    }
}

/// A protocol with a hook run after its `connection_lost` (how a
/// [`ClientService`] hears that its connection ended). Transparent: it is
/// looked through by [`ConnectionRef::with_protocol`](crate::ConnectionRef::with_protocol) and the testing tools, and its
/// protocol gets the connection's own context.
pub(crate) struct Watched {
    inner: Box<dyn Protocol>,
    on_lost: Option<OnLost>,
}

type OnLost = Box<dyn FnOnce(&mut Core, &DisconnectReason)>;

impl Watched {
    fn new(
        inner: Box<dyn Protocol>,
        on_lost: impl FnOnce(&mut Core, &DisconnectReason) + 'static,
    ) -> Self {
        Watched {
            inner,
            on_lost: Some(Box::new(on_lost)),
        }
    }
}

impl Protocol for Watched {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.inner.connection_made(ctx);
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        self.inner.data_received(ctx, data);
    }
    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.inner.connection_lost(ctx, reason);
        if let Some(f) = self.on_lost.take() {
            f(ctx.core, reason);
        }
    }
    fn read_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.inner.read_connection_lost(ctx);
    }
    fn write_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.inner.write_connection_lost(ctx);
    }
    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        self.inner.pause_writing(ctx);
    }
    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        self.inner.resume_writing(ctx);
    }
    fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
        self.inner.streaming_finished(ctx, result);
    }
    fn idle_timeout(&mut self, ctx: &mut Context<'_>) {
        self.inner.idle_timeout(ctx);
    }
    fn as_wrapper(&mut self) -> Option<&mut dyn crate::protocol::Wrapper> {
        Some(self)
    }
    fn as_wrapper_ref(&self) -> Option<&dyn crate::protocol::Wrapper> {
        Some(self)
    }
}

impl crate::protocol::Wrapper for Watched {
    fn inner(&self) -> &dyn Protocol {
        &*self.inner
    }
    fn inner_mut(&mut self) -> &mut dyn Protocol {
        &mut *self.inner
    }
}

struct ClientState {
    running: bool,
    conn: Option<ConnectionHandle>,
    pending: Option<Deferred<(), DisconnectReason>>,
    retry: Option<DelayedCall>,
    backoff: Backoff,
    stopped: Option<Trigger<(), ServiceError>>,
}

/// Keeps one connection to an endpoint open while running (Twisted's
/// `ClientService`): connects at start, and after a failed attempt or a lost
/// connection connects again after a back-off (1 s doubling to 60 s, with
/// jitter; [`with_backoff`](Self::with_backoff) changes it). Stopping cancels
/// a pending attempt or closes the connection (gracefully), and its Deferred
/// fires once the connection is gone.
///
/// ```
/// use torsion::service::{ClientService, MultiService};
/// use torsion::{Context, Protocol};
///
/// /// Logs what the server sends.
/// struct Feed;
/// impl Protocol for Feed {
///     fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
///         println!("{}", String::from_utf8_lossy(data));
///     }
/// }
///
/// // Kept connected (reconnecting with back-off) while the service runs.
/// let feed = ClientService::new("tcp:host=127.0.0.1:port=7000", || Feed)?;
/// let mut services = MultiService::new();
/// services.add(feed);
/// # Ok::<(), torsion::endpoints::EndpointError>(())
/// ```
pub struct ClientService {
    name: String,
    endpoint: ClientEndpoint,
    make: Rc<RefCell<dyn FnMut() -> Box<dyn Protocol>>>,
    state: Rc<RefCell<ClientState>>,
}

impl fmt::Debug for ClientService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.borrow();
        f.debug_struct("ClientService")
            .field("endpoint", &self.name)
            .field("running", &s.running)
            .field("connection", &s.conn)
            .finish()
    }
}

impl ClientService {
    /// A service connecting to `endpoint` (a client endpoint string) with a
    /// protocol from `make` for each connection.
    ///
    /// # Errors
    /// The endpoint string's [`EndpointError`].
    pub fn new<P: Protocol>(
        endpoint: &str,
        make: impl FnMut() -> P + 'static,
    ) -> Result<ClientService, EndpointError> {
        Ok(Self::from_endpoint(endpoint.parse()?, make))
    }

    /// A service connecting to a parsed endpoint.
    pub fn from_endpoint<P: Protocol>(
        endpoint: ClientEndpoint,
        mut make: impl FnMut() -> P + 'static,
    ) -> ClientService {
        let backoff = Backoff::new(BackoffPolicy::default()).expect("the default policy is valid");
        ClientService {
            name: endpoint.to_string(),
            endpoint,
            make: Rc::new(RefCell::new(move || Box::new(make()) as Box<dyn Protocol>)),
            state: Rc::new(RefCell::new(ClientState {
                running: false,
                conn: None,
                pending: None,
                retry: None,
                backoff,
                stopped: None,
            })),
        }
    }

    /// The same service with another reconnection back-off.
    pub fn with_backoff(self, backoff: Backoff) -> ClientService {
        self.state.borrow_mut().backoff = backoff;
        self
    }

    /// The current connection, if connected.
    pub fn connection(&self) -> Option<ConnectionHandle> {
        self.state.borrow().conn
    }
}

/// One connection attempt of a client service.
fn attempt(
    name: String,
    endpoint: ClientEndpoint,
    make: Rc<RefCell<dyn FnMut() -> Box<dyn Protocol>>>,
    state: Rc<RefCell<ClientState>>,
    core: &mut Core,
) -> Result<(), EndpointError> {
    let lost = {
        let (name, endpoint, make, state) =
            (name.clone(), endpoint.clone(), make.clone(), state.clone());
        move |core: &mut Core, reason: &DisconnectReason| {
            tracing::info!(endpoint = %name, %reason, "connection lost");
            let stopped = {
                let mut s = state.borrow_mut();
                s.conn = None;
                s.stopped.take()
            };
            if let Some(t) = stopped {
                let _ = t.callback(());
            } else {
                retry_later(name, endpoint, make, state, core);
            }
        }
    };
    let protocol = Watched::new((make.borrow_mut())(), lost);
    let d = endpoint.connect(core, protocol)?;
    let local = core.local();
    let st = state.clone();
    let d = d.add_both(move |res| {
        st.borrow_mut().pending = None;
        match res {
            Ok(h) => {
                tracing::info!(endpoint = %name, "connected");
                let mut s = st.borrow_mut();
                s.backoff.reset();
                // The connection may have ended inside connection_made.
                if s.running && s.conn.is_none() {
                    s.conn = Some(h);
                }
            }
            Err(reason) => {
                tracing::info!(endpoint = %name, %reason, "connection attempt failed");
                if st.borrow().running {
                    local.call(move |core| retry_later(name, endpoint, make, st, core));
                }
            }
        }
        Ok::<(), DisconnectReason>(())
    });
    if !d.is_called() {
        state.borrow_mut().pending = Some(d);
    }
    Ok(())
}

fn retry_later(
    name: String,
    endpoint: ClientEndpoint,
    make: Rc<RefCell<dyn FnMut() -> Box<dyn Protocol>>>,
    state: Rc<RefCell<ClientState>>,
    core: &mut Core,
) {
    let delay = {
        let mut s = state.borrow_mut();
        if !s.running {
            return;
        }
        match s.backoff.next_delay() {
            Some(d) => d,
            None => {
                tracing::warn!(endpoint = %name, "giving up reconnecting");
                return;
            }
        }
    };
    tracing::debug!(endpoint = %name, ?delay, "reconnecting later");
    let st = state.clone();
    let call = core.call_later(delay, move |core| {
        st.borrow_mut().retry = None;
        if !st.borrow().running {
            return;
        }
        if let Err(e) = attempt(name.clone(), endpoint, make, st, core) {
            tracing::error!(endpoint = %name, error = %e, "cannot connect");
        }
    });
    state.borrow_mut().retry = Some(call);
}

impl Service for ClientService {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, core: &mut Core) -> Result<(), ServiceError> {
        {
            let mut s = self.state.borrow_mut();
            if s.running {
                return Err(ServiceError::State {
                    name: self.name.clone(),
                    running: true,
                });
            }
            s.running = true;
            s.backoff.reset();
        }
        let res = attempt(
            self.name.clone(),
            self.endpoint.clone(),
            self.make.clone(),
            self.state.clone(),
            core,
        );
        res.map_err(|e| {
            self.state.borrow_mut().running = false;
            ServiceError::Endpoint {
                name: self.name.clone(),
                message: e.to_string(),
            }
        })
    }

    fn stop(&mut self, core: &mut Core) -> Deferred<(), ServiceError> {
        let (pending, retry, conn) = {
            let mut s = self.state.borrow_mut();
            if !s.running {
                return fired(Err(ServiceError::State {
                    name: self.name.clone(),
                    running: false,
                }));
            }
            s.running = false;
            (s.pending.take(), s.retry.take(), s.conn)
        };
        if let Some(r) = retry {
            let _ = r.cancel(core);
        }
        if let Some(p) = pending {
            p.cancel();
        }
        match conn {
            Some(h) => {
                let (d, t) = Deferred::new();
                self.state.borrow_mut().stopped = Some(t);
                core.connection(h).lose_connection();
                d
            }
            None => fired(Ok(())),
        }
    }

    fn is_running(&self) -> bool {
        self.state.borrow().running
    }
}
