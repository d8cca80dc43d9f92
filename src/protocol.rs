//! The traits users implement: [`Protocol`], [`Factory`] and [`ClientFactory`].
//!
//! One `Protocol` value exists per connection. The reactor calls it, always on the
//! reactor thread, in this order and no other:
//!
//! 1. [`connection_made`](Protocol::connection_made), once;
//! 2. [`data_received`](Protocol::data_received), any number of times, plus
//!    [`pause_writing`](Protocol::pause_writing) / [`resume_writing`](Protocol::resume_writing)
//!    as the write buffer crosses its water marks, and, for a protocol that turned
//!    on half-close, [`read_connection_lost`](Protocol::read_connection_lost) and
//!    [`write_connection_lost`](Protocol::write_connection_lost);
//! 3. [`connection_lost`](Protocol::connection_lost), exactly once, never from
//!    inside another callback of the same connection.
//!
//! A protocol never owns its transport: each callback gets a [`Context`] through
//! which it writes, closes, pauses, and reaches the reactor (timers, other
//! connections, stop). The same protocol therefore runs over TCP and over the
//! in-memory transports of the `testing` module.
//!
//! A closure is a factory ([`factory`], [`client_factory`]); a factory that
//! keeps state or refuses peers implements [`Factory`] itself.
//!
//! ```
//! use torsion::{factory, Address, Context, Factory, Protocol, Reactor};
//!
//! /// Echoes every byte back.
//! struct Echo;
//!
//! impl Protocol for Echo {
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         ctx.write(data);
//!     }
//! }
//!
//! let mut reactor = Reactor::new().unwrap();
//! reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), factory(|_peer| Echo)).unwrap();
//!
//! /// Serves only loopback peers.
//! struct LocalOnly;
//!
//! impl Factory for LocalOnly {
//!     type Protocol = Echo;
//!     fn build_protocol(&mut self, peer: &Address) -> Option<Echo> {
//!         peer.inet().filter(|a| a.ip().is_loopback()).map(|_| Echo)
//!     }
//! }
//! reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), LocalOnly).unwrap();
//! ```

use std::any::Any;
use std::fmt;
use std::time::Duration;

use crate::address::Address;
use crate::context::{ConnectionHandle, Core};
use crate::core::handles::Connector;
use crate::error::DisconnectReason;
use crate::transport::Context;
pub use crate::wrap::Wrapper;

/// One connection's behaviour. See the [module docs](self) for the call order.
///
/// Every method but [`data_received`](Self::data_received) has an empty default.
///
/// ```
/// use torsion::testing::RecordingTransport;
/// use torsion::{Context, DisconnectReason, Protocol};
///
/// /// Greets, then echoes in upper case; remembers how the connection ended.
/// #[derive(Default)]
/// struct Shout {
///     ended: Option<DisconnectReason>,
/// }
///
/// impl Protocol for Shout {
///     fn connection_made(&mut self, ctx: &mut Context<'_>) {
///         ctx.write(b"hello\n");
///     }
///
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         ctx.write(&data.to_ascii_uppercase());
///     }
///
///     fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
///         self.ended = Some(reason.clone());
///     }
/// }
///
/// // Driven here without a socket; over TCP (a Factory builds it per
/// // connection) it runs the same way.
/// let mut t = RecordingTransport::new(Shout::default());
/// t.receive(b"abc");
/// assert_eq!(t.written(), b"hello\nABC");
/// t.receive_eof();
/// assert_eq!(t.protocol().ended, Some(DisconnectReason::Done));
/// ```
pub trait Protocol: Any {
    /// The connection is established. Writes made here go out when it returns.
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// Bytes arrived. `data` is only valid during the call (it points into the
    /// reactor's read buffer); copy what must outlive it.
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]);

    /// The connection is gone, for `reason`. Called exactly once. Writes through
    /// `ctx` are refused; the reactor-side of `ctx` (timers, other connections,
    /// stop) still works.
    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let _ = (ctx, reason);
    }

    /// The peer closed its sending side. Only called when half-close was turned on
    /// with [`Context::set_half_close`]; otherwise the connection is closed after
    /// the pending writes are flushed. The protocol may go on writing.
    fn read_connection_lost(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// The write side was shut down after [`Context::lose_write_connection`].
    fn write_connection_lost(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// The write buffer rose above its high water mark: stop producing until
    /// [`resume_writing`](Self::resume_writing).
    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// A stream started with [`Context::stream_from`] was sent completely
    /// (`Ok`) or its source failed (`Err`; nothing more is sent from it).
    fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
        let _ = (ctx, result);
    }

    /// No traffic for the time set with [`Context::set_idle_timeout`]. The
    /// default closes the connection gracefully with
    /// [`DisconnectReason::TimedOut`].
    fn idle_timeout(&mut self, ctx: &mut Context<'_>) {
        ctx.lose_connection_with(DisconnectReason::TimedOut);
    }

    /// The write buffer fell below its low water mark after a
    /// [`pause_writing`](Self::pause_writing).
    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// This protocol as a [`Wrapper`] of another one, if it is one: then
    /// [`ConnectionRef::with_protocol`](crate::ConnectionRef::with_protocol),
    /// [`Context::call_later_self`], operations by handle and the testing
    /// tools reach the protocol inside it. The default says it wraps nothing.
    /// See [`Wrapper`] for an example.
    fn as_wrapper(&mut self) -> Option<&mut dyn Wrapper> {
        None
    }

    /// [`as_wrapper`](Self::as_wrapper), shared. A wrapper implements both.
    fn as_wrapper_ref(&self) -> Option<&dyn Wrapper> {
        None
    }

    /// The name [`introspection`](crate::introspect) shows for this protocol
    /// (snapshots, slow-callback warnings): its type's name unless
    /// overridden. Under wrappers, the innermost protocol's name is shown.
    fn protocol_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

/// Builds one [`Protocol`] per accepted connection.
///
/// ```
/// use torsion::Address;
/// use torsion::testing::Pump;
/// use torsion::{Context, Factory, Protocol};
///
/// /// Says hello to the peer by address.
/// struct Greeter {
///     greeting: String,
/// }
///
/// impl Protocol for Greeter {
///     fn connection_made(&mut self, ctx: &mut Context<'_>) {
///         ctx.write(self.greeting.as_bytes());
///     }
///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
/// }
///
/// /// One `Greeter` per connection; counts them.
/// struct GreeterFactory {
///     built: usize,
/// }
///
/// impl Factory for GreeterFactory {
///     type Protocol = Greeter;
///
///     fn build_protocol(&mut self, peer: &Address) -> Option<Greeter> {
///         self.built += 1;
///         Some(Greeter {
///             greeting: format!("hello, {}\n", peer.inet().map(|a| a.ip().to_string()).unwrap_or_default()),
///         })
///     }
/// }
///
/// /// The other end: keeps what it receives.
/// #[derive(Default)]
/// struct Collect(Vec<u8>);
///
/// impl Protocol for Collect {
///     fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
///         self.0.extend_from_slice(data);
///     }
/// }
///
/// // With sockets: `reactor.listen_tcp(addr, GreeterFactory { built: 0 })?`.
/// // Here the in-memory pump builds the server side as a listener would
/// // (its clients are at 10.0.0.2 and up).
/// let mut factory = GreeterFactory { built: 0 };
/// let mut pump = Pump::new();
/// let link = pump.connect_factory(Collect::default(), &mut factory).unwrap();
/// pump.flush();
/// assert_eq!(pump.client(link).0, b"hello, 10.0.0.2\n");
/// assert_eq!(factory.built, 1);
/// ```
pub trait Factory: 'static {
    /// The protocol this factory builds.
    type Protocol: Protocol;

    /// Builds the protocol for a connection from `peer` (an IP address on TCP,
    /// usually [`UnixAddr::Unnamed`](crate::UnixAddr::Unnamed) on a Unix
    /// listener), or refuses it with `None` (the socket is then closed at once).
    fn build_protocol(&mut self, peer: &Address) -> Option<Self::Protocol>;

    /// Called when the listener starts, before the first connection.
    fn start_factory(&mut self, core: &mut Core) {
        let _ = core;
    }

    /// Called when the listener stops (`stop_listening`, or the reactor is dropped).
    fn stop_factory(&mut self, core: &mut Core) {
        let _ = core;
    }
}

/// What a [`ClientFactory`] wants after a failed or lost connection.
///
/// ```
/// use std::time::Duration;
/// use torsion::{DisconnectReason, Reconnect};
///
/// /// Try again soon after a refusal, later after a lost connection, never
/// /// after a TLS failure (it will not fix itself).
/// fn decide(reason: &DisconnectReason) -> Reconnect {
///     match reason {
///         DisconnectReason::Refused => Reconnect::After(Duration::from_secs(1)),
///         DisconnectReason::Tls(_) => Reconnect::Never,
///         _ => Reconnect::After(Duration::from_secs(10)),
///     }
/// }
///
/// assert_eq!(decide(&DisconnectReason::Refused), Reconnect::After(Duration::from_secs(1)));
/// assert_eq!(decide(&DisconnectReason::Reset), Reconnect::After(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Drop the connector and its factory.
    Never,
    /// Connect again, with the same factory, after the delay.
    After(Duration),
}

/// Builds the protocol of an outgoing connection and hears how it went.
///
/// Twisted's order: [`started_connecting`](Self::started_connecting); then either
/// [`client_connection_failed`](Self::client_connection_failed) (no protocol was
/// built) or [`build_protocol`](Self::build_protocol), the protocol's whole life,
/// and [`client_connection_lost`](Self::client_connection_lost) after the
/// protocol's `connection_lost`. Both end callbacks say whether to connect again.
///
/// ```no_run
/// use torsion::Address;
/// use std::time::Duration;
/// use torsion::{ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reactor, Reconnect};
///
/// /// Sends a request and prints the answer.
/// struct Ask;
///
/// impl Protocol for Ask {
///     fn connection_made(&mut self, ctx: &mut Context<'_>) {
///         ctx.write(b"status\r\n");
///     }
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         println!("{}", String::from_utf8_lossy(data));
///         ctx.lose_connection();
///     }
/// }
///
/// /// Retries a refused connection three times, one second apart; stops the
/// /// reactor when it is over either way.
/// struct AskFactory {
///     retries: u32,
/// }
///
/// impl ClientFactory for AskFactory {
///     type Protocol = Ask;
///
///     fn build_protocol(&mut self, _peer: &Address) -> Option<Ask> {
///         Some(Ask)
///     }
///
///     fn client_connection_failed(
///         &mut self,
///         core: &mut Core,
///         _connector: Connector,
///         reason: &DisconnectReason,
///     ) -> Reconnect {
///         if *reason == DisconnectReason::Refused && self.retries < 3 {
///             self.retries += 1;
///             return Reconnect::After(Duration::from_secs(1));
///         }
///         eprintln!("cannot connect: {reason}");
///         let _ = core.stop();
///         Reconnect::Never
///     }
///
///     fn client_connection_lost(
///         &mut self,
///         core: &mut Core,
///         _connector: Connector,
///         _reason: &DisconnectReason,
///     ) -> Reconnect {
///         let _ = core.stop();
///         Reconnect::Never
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// let addr = "127.0.0.1:8000".parse().unwrap();
/// reactor.connect_tcp(addr, AskFactory { retries: 0 }, Duration::from_secs(5));
/// reactor.run()?;
/// # Ok::<(), torsion::Error>(())
/// ```
pub trait ClientFactory: 'static {
    /// The protocol this factory builds.
    type Protocol: Protocol;

    /// A connection attempt is starting.
    fn started_connecting(&mut self, core: &mut Core, connector: Connector) {
        let _ = (core, connector);
    }

    /// The connection to `peer` is established: build its protocol, or refuse
    /// with `None` (the socket is closed and
    /// [`client_connection_failed`](Self::client_connection_failed) is called with
    /// [`DisconnectReason::Cancelled`]).
    fn build_protocol(&mut self, peer: &Address) -> Option<Self::Protocol>;

    /// The connection is established and its protocol's `connection_made` has
    /// run; `conn` names it (for [`Core::connection`]).
    fn client_connection_made(
        &mut self,
        core: &mut Core,
        connector: Connector,
        conn: ConnectionHandle,
    ) {
        let _ = (core, connector, conn);
    }

    /// The attempt failed (refused, timed out, unreachable, cancelled...).
    fn client_connection_failed(
        &mut self,
        core: &mut Core,
        connector: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let _ = (core, connector, reason);
        Reconnect::Never
    }

    /// The established connection ended, after the protocol's `connection_lost`.
    fn client_connection_lost(
        &mut self,
        core: &mut Core,
        connector: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let _ = (core, connector, reason);
        Reconnect::Never
    }
}

/// A [`Factory`] that builds every protocol with a closure: see [`factory`].
pub struct FnFactory<F> {
    build: F,
}

impl<F> fmt::Debug for FnFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnFactory").finish_non_exhaustive()
    }
}

/// A closure as a server [`Factory`] (Twisted's `Factory.forProtocol`): it is
/// called with the peer's address for each accepted connection and returns
/// that connection's protocol.
///
/// ```
/// use torsion::{factory, Context, Protocol, Reactor};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         ctx.write(data);
///     }
/// }
///
/// let mut reactor = Reactor::new().unwrap();
/// let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), factory(|_peer| Echo)).unwrap();
/// # let _ = port;
/// ```
pub fn factory<P, F>(build: F) -> FnFactory<F>
where
    P: Protocol,
    F: FnMut(&Address) -> P + 'static,
{
    FnFactory { build }
}

impl<P, F> Factory for FnFactory<F>
where
    P: Protocol,
    F: FnMut(&Address) -> P + 'static,
{
    type Protocol = P;
    fn build_protocol(&mut self, peer: &Address) -> Option<P> {
        Some((self.build)(peer))
    }
}

/// What a [`FnClientFactory`] calls when an attempt fails or a connection ends.
type EndFn = Box<dyn FnMut(&mut Core, &DisconnectReason)>;
/// What a [`FnClientFactory`] calls when the connection is made.
type MadeFn = Box<dyn FnMut(&mut Core, ConnectionHandle)>;

/// A [`ClientFactory`] that builds its protocol with a closure: see
/// [`client_factory`].
pub struct FnClientFactory<F> {
    build: F,
    on_connected: Option<MadeFn>,
    on_failure: Option<EndFn>,
    on_lost: Option<EndFn>,
}

impl<F> fmt::Debug for FnClientFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnClientFactory")
            .field("on_connected", &self.on_connected.is_some())
            .field("on_failure", &self.on_failure.is_some())
            .field("on_lost", &self.on_lost.is_some())
            .finish_non_exhaustive()
    }
}

/// A closure as a [`ClientFactory`]: it is called with the server's address
/// once the connection is established and returns the protocol.
///
/// By default a failed attempt is logged (at `WARN`) and nothing else happens;
/// nothing reconnects (for that see
/// [`ReconnectingClientFactory`](crate::ReconnectingClientFactory)).
/// [`on_failure`](FnClientFactory::on_failure),
/// [`on_lost`](FnClientFactory::on_lost) and
/// [`on_connected`](FnClientFactory::on_connected) add callbacks.
///
/// ```
/// use std::time::Duration;
/// use torsion::{client_factory, Context, Protocol, Reactor};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, ctx: &mut Context<'_>) {
///         ctx.write(b"hello");
///         ctx.lose_connection();
///     }
///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
/// }
///
/// let mut reactor = Reactor::new().unwrap();
/// let addr = "127.0.0.1:9".parse().unwrap();
/// let client = client_factory(|_peer| Hello)
///     .on_failure(|core, reason| {
///         eprintln!("no connection: {reason}");
///         core.stop().unwrap();
///     })
///     .on_lost(|core, _reason| core.stop().unwrap());
/// reactor.connect_tcp(addr, client, Duration::from_secs(5));
/// reactor.run().unwrap();
/// ```
pub fn client_factory<P, F>(build: F) -> FnClientFactory<F>
where
    P: Protocol,
    F: FnMut(&Address) -> P + 'static,
{
    FnClientFactory {
        build,
        on_connected: None,
        on_failure: None,
        on_lost: None,
    }
}

impl<F> FnClientFactory<F> {
    /// Calls `f` when the connection is established (after the protocol's
    /// `connection_made`), with its handle.
    #[must_use]
    pub fn on_connected(mut self, f: impl FnMut(&mut Core, ConnectionHandle) + 'static) -> Self {
        self.on_connected = Some(Box::new(f));
        self
    }

    /// Calls `f` when the attempt fails (refused, timed out, cancelled...),
    /// instead of logging it.
    #[must_use]
    pub fn on_failure(mut self, f: impl FnMut(&mut Core, &DisconnectReason) + 'static) -> Self {
        self.on_failure = Some(Box::new(f));
        self
    }

    /// Calls `f` when the established connection ends (after the protocol's
    /// `connection_lost`).
    #[must_use]
    pub fn on_lost(mut self, f: impl FnMut(&mut Core, &DisconnectReason) + 'static) -> Self {
        self.on_lost = Some(Box::new(f));
        self
    }
}

impl<P, F> ClientFactory for FnClientFactory<F>
where
    P: Protocol,
    F: FnMut(&Address) -> P + 'static,
{
    type Protocol = P;

    fn build_protocol(&mut self, peer: &Address) -> Option<P> {
        Some((self.build)(peer))
    }

    fn client_connection_made(
        &mut self,
        core: &mut Core,
        _connector: Connector,
        conn: ConnectionHandle,
    ) {
        if let Some(f) = &mut self.on_connected {
            f(core, conn);
        }
    }

    fn client_connection_failed(
        &mut self,
        core: &mut Core,
        _connector: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        match &mut self.on_failure {
            Some(f) => f(core, reason),
            None => tracing::warn!(%reason, "connection attempt failed"),
        }
        Reconnect::Never
    }

    fn client_connection_lost(
        &mut self,
        core: &mut Core,
        _connector: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        if let Some(f) = &mut self.on_lost {
            f(core, reason);
        }
        Reconnect::Never
    }
}
