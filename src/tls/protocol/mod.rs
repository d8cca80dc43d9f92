//! [`TlsProtocol`]: TLS as a protocol wrapper. The transport under it carries
//! ciphertext; the wrapped protocol is a connection of its own, run by the one
//! engine ([`crate::conn::Engine`]) with the TLS engine's plaintext side as
//! its sink ([`sink`]), so its flags (close, pause, half-close, water marks,
//! streaming) mean what they mean on every transport.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

mod flow;
mod sink;

use super::{TlsError, TlsInfo};
use crate::buf::WriteBuf;
use crate::conn::Engine;
use crate::context::{Core, DelayedCall};
use crate::error::DisconnectReason;
use crate::protocol::Protocol;
use crate::transport::{flags, ConnState, Context, HostAddr};
use crate::wrap::{reach, Unwrapped, Wrapper};
use sink::{abort_outer, flush_records, TlsSink};

/// Size of the buffer decrypted data is read into (one TLS record).
const PLAINTEXT_CHUNK: usize = 16 * 1024;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// When the wrapped protocol hears `connection_made`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At once; its writes go out after the handshake (Twisted's rule).
    Fresh,
    /// After the handshake (`connect_tls`: a failed handshake is a failed
    /// connection attempt, and no protocol is built).
    AfterHandshake,
    /// Never: it was live before `start_tls`.
    Live,
}

/// What `connect_tls` needs to hear from the wrapper.
pub(crate) trait ClientHooks {
    /// The handshake completed: build the protocol (or refuse with `None`).
    fn build(&mut self, peer: &crate::Address) -> Option<Box<dyn Protocol>>;
    /// The protocol's `connection_made` ran.
    fn made(&mut self, core: &mut Core, conn: crate::ConnectionHandle);
}

/// The wrapped protocol's view of addresses and TLS parameters.
#[derive(Debug, Default)]
struct InnerHost {
    local: Option<crate::Address>,
    nodelay: Option<bool>,
    info: Option<TlsInfo>,
}

impl HostAddr for InnerHost {
    fn host_addr(&self) -> io::Result<SocketAddr> {
        self.host()?.inet().ok_or_else(crate::address::no_ip)
    }
    fn host(&self) -> io::Result<crate::Address> {
        self.local
            .clone()
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
    fn nodelay(&self) -> Option<bool> {
        self.nodelay
    }
    fn tls(&self) -> Option<&dyn std::any::Any> {
        self.info.as_ref().map(|i| i as &dyn std::any::Any)
    }
}

/// A protocol running over TLS: wraps any [`Protocol`] and speaks TLS
/// ([`rustls`]) to the transport under it, which can be TCP, a Unix socket, or
/// the in-memory [`Pump`](crate::testing::Pump).
///
/// The wrapped protocol sees plaintext and a [`Context`] of its own: writes
/// are encrypted (those made before the handshake completes go out after it),
/// [`lose_connection`](Context::lose_connection) flushes, sends `close_notify`,
/// then closes; pausing, half-close, water marks, streaming and idle timeouts
/// work as on a plain connection. A failed handshake ends the connection with
/// [`DisconnectReason::Tls`]. [`ConnectionRef::with_protocol`](crate::ConnectionRef::with_protocol) and
/// [`Context::call_later_self`] reach the wrapped protocol through the wrapper.
///
/// [`Core::listen_tls`], [`Core::connect_tls`] and [`Context::start_tls`] build
/// it for you; build it yourself to run TLS over another transport, such as the
/// pump:
///
/// ```
/// use std::sync::Arc;
/// use torsion::testing::Pump;
/// use torsion::tls::{self, TlsProtocol};
/// use torsion::{Context, Protocol};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         ctx.write(data);
///     }
/// }
/// #[derive(Default)]
/// struct Hello(Vec<u8>);
/// impl Protocol for Hello {
///     fn connection_made(&mut self, ctx: &mut Context<'_>) {
///         ctx.write(b"hello"); // sent once the handshake is done
///     }
///     fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
///         self.0.extend_from_slice(data);
///     }
/// }
///
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// let server = tls::server_config_from_pem(
///     cert.cert.pem().as_bytes(),
///     cert.signing_key.serialize_pem().as_bytes(),
/// )?;
/// let client = tls::client_config_with_ca(cert.cert.pem().as_bytes())?;
///
/// let mut pump = Pump::new();
/// let link = pump.connect(
///     TlsProtocol::client(Arc::new(client), "localhost".try_into()?, Hello::default())?,
///     TlsProtocol::server(Arc::new(server), Echo)?,
/// );
/// pump.flush();
/// let hello = pump.client(link).inner::<Hello>().unwrap();
/// assert_eq!(hello.0, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TlsProtocol {
    id: u64,
    tls: Connection,
    inner: Box<dyn Protocol>,
    mode: Mode,
    hooks: Option<Box<dyn ClientHooks>>,
    /// The wrapped protocol's connection state (from `connection_made` on).
    state: Option<ConnState>,
    /// The wrapped protocol's gather buffer.
    out: WriteBuf,
    host: InnerHost,
    /// Ciphertext the TLS engine has not taken yet (it holds back while the
    /// wrapped protocol does not read).
    cipher_in: Vec<u8>,
    /// How much of `cipher_in` the engine took already.
    cipher_pos: usize,
    scratch: Vec<u8>,
    handshake_done: bool,
    handshake_timeout: Option<Duration>,
    handshake_timer: Option<DelayedCall>,
    /// Why the TLS layer gave up (reported instead of the transport's reason).
    failed: Option<DisconnectReason>,
    /// The transport said `pause_writing`.
    outer_paused: bool,
    /// We paused the transport's reading because the wrapped protocol paused.
    paused_outer: bool,
    /// The transport's peer sent its EOF; `eof_fed`: the engine knows.
    outer_eof: bool,
    eof_fed: bool,
    close_notify_sent: bool,
    /// Inside `pump_in` (its loop goes on; do not re-enter).
    pumping: bool,
    continue_queued: bool,
}

impl fmt::Debug for TlsProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsProtocol")
            .field("side", &self.side())
            .field("handshake_done", &self.handshake_done)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl TlsProtocol {
    /// The client side of a TLS connection to `server_name` (checked against the
    /// server's certificate by `config`'s verifier), running `protocol`.
    ///
    /// # Errors
    /// [`TlsError::Rustls`] if `config` cannot start a connection.
    pub fn client(
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
        protocol: impl Protocol,
    ) -> Result<TlsProtocol, TlsError> {
        let conn = ClientConnection::new(config, server_name)?;
        Ok(Self::new(
            Connection::Client(conn),
            Box::new(protocol),
            Mode::Fresh,
        ))
    }

    /// The server side of a TLS connection, running `protocol`.
    ///
    /// # Errors
    /// [`TlsError::Rustls`] if `config` cannot start a connection.
    pub fn server(
        config: Arc<ServerConfig>,
        protocol: impl Protocol,
    ) -> Result<TlsProtocol, TlsError> {
        let conn = ServerConnection::new(config)?;
        Ok(Self::new(
            Connection::Server(conn),
            Box::new(protocol),
            Mode::Fresh,
        ))
    }

    fn new(tls: Connection, inner: Box<dyn Protocol>, mode: Mode) -> TlsProtocol {
        let mut tls = tls;
        // Plaintext goes in only while the transport has room (see `sink`),
        // so the engine's own limit would only split writes.
        tls.set_buffer_limit(None);
        TlsProtocol {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            tls,
            inner,
            mode,
            hooks: None,
            state: None,
            out: WriteBuf::new(),
            host: InnerHost::default(),
            cipher_in: Vec::new(),
            cipher_pos: 0,
            scratch: Vec::new(),
            handshake_done: false,
            handshake_timeout: None,
            handshake_timer: None,
            failed: None,
            outer_paused: false,
            paused_outer: false,
            outer_eof: false,
            eof_fed: false,
            close_notify_sent: false,
            pumping: false,
            continue_queued: false,
        }
    }

    /// A client whose protocol is built by `hooks` once the handshake is done.
    pub(crate) fn client_after_handshake(
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
        hooks: Box<dyn ClientHooks>,
    ) -> Result<TlsProtocol, TlsError> {
        let conn = ClientConnection::new(config, server_name)?;
        let mut p = Self::new(
            Connection::Client(conn),
            Box::new(Unwrapped),
            Mode::AfterHandshake,
        );
        p.hooks = Some(hooks);
        Ok(p)
    }

    /// Wraps the protocol of a live connection (`start_tls`).
    pub(crate) fn live(tls: Connection, inner: Box<dyn Protocol>) -> TlsProtocol {
        Self::new(tls, inner, Mode::Live)
    }

    /// Fails the handshake with [`DisconnectReason::TimedOut`] if it has not
    /// completed `timeout` after the connection was made.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsProtocol {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// `"client"` or `"server"`.
    pub fn side(&self) -> &'static str {
        match self.tls {
            Connection::Client(_) => "client",
            Connection::Server(_) => "server",
        }
    }

    /// Whether the handshake has completed.
    pub fn is_handshake_done(&self) -> bool {
        self.handshake_done
    }

    /// What the handshake negotiated, once it has completed.
    pub fn info(&self) -> Option<&TlsInfo> {
        self.host.info.as_ref()
    }

    /// The wrapped protocol, if it is a `P` (`None` too before a
    /// `connect_tls` handshake completed).
    pub fn inner<P: Protocol>(&self) -> Option<&P> {
        let any: &dyn std::any::Any = &*self.inner;
        any.downcast_ref::<P>()
    }

    /// The wrapped protocol, to change, if it is a `P`.
    pub fn inner_mut<P: Protocol>(&mut self) -> Option<&mut P> {
        let any: &mut dyn std::any::Any = &mut *self.inner;
        any.downcast_mut::<P>()
    }

    /// Runs `f` with the wrapped connection's engine, then keeps its output
    /// moving (a continuation when the transport may take more once this
    /// callback returns, or the stream source wants another turn) and
    /// mirrors its read pause onto the transport.
    fn run(&mut self, ctx: &mut Context<'_>, f: impl FnOnce(&mut Engine<'_, &mut TlsSink<'_>>)) {
        let Some(st) = self.state.as_mut() else {
            return;
        };
        let mut produce = false;
        let mut sink = TlsSink {
            tls: &mut self.tls,
            outer: &mut *ctx.conn,
            outer_out: &mut *ctx.out,
            host: &self.host,
            handshake_done: self.handshake_done,
            outer_paused: self.outer_paused,
            close_notify_sent: &mut self.close_notify_sent,
            produce: &mut produce,
        };
        f(&mut Engine {
            core: &mut *ctx.core,
            state: &mut *st,
            protocol: &mut self.inner,
            out: &mut self.out,
            sink: &mut sink,
        });
        if ctx.conn.has(flags::DEAD | flags::ABORT) {
            return;
        }
        let waiting = st.pending_len() > 0
            && !st.has(flags::DEAD)
            && self.handshake_done
            && !self.close_notify_sent
            && !self.outer_paused;
        if produce || waiting {
            self.queue_continue(ctx);
        }
        self.sync_reading(ctx);
    }

    /// Runs `f` with the wrapped protocol and its context, then settles what it
    /// did, as after any callback.
    fn call_inner(
        &mut self,
        ctx: &mut Context<'_>,
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) {
        self.run(ctx, |e| e.invoke(f));
    }

    /// Queues a continuation after the current callback: the stream source's
    /// next turn, what the transport may take now, what waits to be read.
    fn queue_continue(&mut self, ctx: &mut Context<'_>) {
        if self.continue_queued {
            return;
        }
        self.continue_queued = true;
        self.on_self(ctx.core, ctx.conn.handle, move |tls, ctx| {
            tls.continue_queued = false;
            tls.run(ctx, |e| {
                if e.state.has(flags::PRODUCE) {
                    e.produce();
                }
                e.resume_output();
            });
            tls.pump_in(ctx);
        });
    }

    /// Runs `f` with this wrapper (found by its id through any outer wrappers)
    /// once the current callback has returned.
    fn on_self(
        &self,
        core: &mut Core,
        h: crate::ConnectionHandle,
        f: impl FnOnce(&mut TlsProtocol, &mut Context<'_>) + 'static,
    ) {
        Probe(self.id).on_self(core, h, f);
    }

    fn start_handshake_timer(&mut self, ctx: &mut Context<'_>) {
        let Some(timeout) = self.handshake_timeout else {
            return;
        };
        let h = ctx.conn.handle;
        let id = self.id;
        self.handshake_timer = Some(ctx.core.call_later(timeout, move |core| {
            Probe(id).on_self(core, h, |tls, ctx| {
                if !tls.handshake_done {
                    tls.failed = Some(DisconnectReason::TimedOut);
                    abort(ctx, DisconnectReason::TimedOut);
                }
            });
        }));
    }
}

/// Queues calls on the wrapper with a given id (see [`TlsProtocol::on_self`]).
struct Probe(u64);

impl Probe {
    fn on_self(
        &self,
        core: &mut Core,
        h: crate::ConnectionHandle,
        f: impl FnOnce(&mut TlsProtocol, &mut Context<'_>) + 'static,
    ) {
        let id = self.0;
        core.call_on(
            h,
            Box::new(move |p, ctx| {
                let pick = move |p: &mut dyn Protocol| {
                    let any: &mut dyn std::any::Any = p;
                    any.downcast_mut::<TlsProtocol>()
                        .is_some_and(|t| t.id == id)
                };
                reach(p, ctx, &pick, |p, ctx| {
                    let any: &mut dyn std::any::Any = p;
                    if let Some(t) = any.downcast_mut::<TlsProtocol>() {
                        f(t, ctx);
                    }
                });
            }),
        );
    }
}

/// Aborts the transport with `reason` (for `connection_lost`).
fn abort(ctx: &mut Context<'_>, reason: DisconnectReason) {
    let x = ctx.conn.extra();
    if x.close_reason.is_none() {
        x.close_reason = Some(reason);
    }
    abort_outer(ctx.conn, ctx.out);
}

/// Moves what the engine has to send into the transport's gather buffer.
fn flush_tls(tls: &mut Connection, ctx: &mut Context<'_>) {
    flush_records(tls, ctx.conn, ctx.out);
}

impl Protocol for TlsProtocol {
    fn as_wrapper(&mut self) -> Option<&mut dyn Wrapper> {
        Some(self)
    }
    fn as_wrapper_ref(&self) -> Option<&dyn Wrapper> {
        Some(self)
    }
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        let mut st = ConnState::new(ctx.conn.handle, ctx.conn.peer());
        self.host.local = ctx.host.host().ok();
        self.host.nodelay = ctx.nodelay();
        if self.mode == Mode::Live {
            // `start_tls`: the wrapped protocol keeps its settings; what it
            // wrote since start_tls waits for the handshake.
            let outer = &mut *ctx.conn;
            st.flags = outer.flags & (flags::READ_PAUSED | flags::HALF_CLOSE | flags::MADE);
            if let Some(l) = outer.extra.as_ref().and_then(|x| x.limits) {
                st.extra().limits = Some(l);
            }
            if let Some(d) = outer.extra.as_mut().and_then(|x| x.diverted.take()) {
                st.put_pending(d);
            }
            // The handshake must be read even if the protocol paused.
            ctx.resume_reading();
        }
        ctx.set_half_close(true);
        self.state = Some(st);
        self.start_handshake_timer(ctx);
        if self.mode == Mode::Fresh {
            self.run(ctx, |e| e.make());
        }
        flush_tls(&mut self.tls, ctx);
        // start_tls on the server side: the client's hello may be waiting.
        self.pump_in(ctx);
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.cipher_in.extend_from_slice(data);
        self.pump_in(ctx);
    }

    fn read_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.outer_eof = true;
        self.pump_in(ctx);
        // Nothing more will come: a failed or finished protocol closes now.
        if self.failed.is_some() {
            ctx.lose_connection();
        }
    }

    // `write_connection_lost` of the transport: the wrapped protocol heard
    // its own when close_notify went (its engine shut its write side).

    fn pause_writing(&mut self, _ctx: &mut Context<'_>) {
        self.outer_paused = true;
    }

    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        self.outer_paused = false;
        self.run(ctx, |e| e.resume_output());
    }

    fn idle_timeout(&mut self, ctx: &mut Context<'_>) {
        if self.state.as_ref().is_some_and(|st| st.has(flags::MADE)) {
            self.call_inner(ctx, |p, ctx| p.idle_timeout(ctx));
        } else {
            ctx.lose_connection_with(DisconnectReason::TimedOut);
        }
    }

    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        if let Some(t) = self.handshake_timer.take() {
            let _ = t.cancel(ctx.core);
        }
        // The transport ended first (or after the wrapped connection's own
        // close): the wrapped protocol hears why, once.
        let reason = self.failed.clone().unwrap_or_else(|| reason.clone());
        self.run(ctx, |e| e.close(reason));
    }
}

impl Wrapper for TlsProtocol {
    fn call_inner(
        &mut self,
        ctx: &mut Context<'_>,
        f: &mut dyn FnMut(&mut dyn Protocol, &mut Context<'_>),
    ) {
        TlsProtocol::call_inner(self, ctx, f);
    }
    fn inner(&self) -> &dyn Protocol {
        &*self.inner
    }
    fn inner_mut(&mut self) -> &mut dyn Protocol {
        &mut *self.inner
    }
}
