//! Async streams on the reactor: connections that `async` code reads and
//! writes, listeners it accepts from, and [`sleep`] / [`timeout`] on the
//! reactor's timers.
//!
//! An async [`Connection`] is a built-in protocol ([`StreamProtocol`]) under
//! the hood, so it has a protocol's guarantees and runs wherever a protocol
//! runs: TCP, Unix sockets, TLS, endpoint strings, and the in-memory
//! [`Pump`](crate::testing::Pump) with its fake clock and seeded faults. Its
//! futures run as local tasks of the reactor ([`Core::spawn_local`],
//! [`LocalHandle::spawn_local`]); they reach the reactor through a
//! [`LocalHandle`] (`reactor.local()`, `ctx.local()`).
//!
//! * **Flow control** both ways: a connection's input buffer is bounded
//!   ([`StreamOptions::input_buffer`]); when it is full the transport stops
//!   reading until the task reads, so a slow reader slows the peer down.
//!   [`Connection::write_all`] waits while the transport's buffer is above
//!   its high water mark.
//! * **Errors** are [`StreamError`]s: refused, reset, timed out, line too
//!   long..., never a panic.
//! * **Interop**: [`Connection`] implements [`futures_io::AsyncRead`] and
//!   [`futures_io::AsyncWrite`]; protocol-style and async connections live in
//!   one reactor and talk to each other; a protocol callback can start a task
//!   (`ctx.spawn_local(..)`), and a task can start protocol-style work
//!   (`local.call(|core| ..)`).
//!
//! # Protocols or async?
//!
//! Both styles run on one reactor with the same transports, back-pressure and
//! close semantics; pick per connection.
//!
//! * **A protocol** is a state machine called for each event. It suits
//!   servers with many connections and little state between events (echo,
//!   proxies, chat, framing with [`protocols`](crate::protocols)), code that
//!   reacts to whatever arrives whenever it arrives, and the lowest overhead:
//!   no task, no buffer between the transport and your code (`data_received`
//!   sees the reactor's read buffer).
//! * **Async code** suits sequences: connect, send, wait for the answer, then
//!   the next step, with timeouts around any of them, as a client or a
//!   request/response exchange usually is. What would be states of a state
//!   machine are lines of a function; the price is a task per connection and
//!   a copy through the connection's input buffer.
//!
//! The same program both ways: an echo server, and a client that sends two
//! lines one after another, waits for each echo and closes.
//!
//! With protocols:
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use std::time::Duration;
//! use torsion::{Address, Context, Protocol, Reactor};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         ctx.write(data);
//!     }
//! }
//!
//! /// Sends the lines one at a time: the next when the echo of the last is in.
//! struct Client {
//!     lines: Vec<&'static str>,
//!     got: Rc<RefCell<Vec<String>>>,
//!     partial: Vec<u8>,
//! }
//! impl Client {
//!     fn send_next(&mut self, ctx: &mut Context<'_>) {
//!         match self.lines.pop() {
//!             Some(line) => ctx.write(format!("{line}\n").as_bytes()),
//!             None => ctx.lose_connection(),
//!         }
//!     }
//! }
//! impl Protocol for Client {
//!     fn connection_made(&mut self, ctx: &mut Context<'_>) {
//!         self.send_next(ctx);
//!     }
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         self.partial.extend_from_slice(data);
//!         while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
//!             let line: Vec<u8> = self.partial.drain(..=end).collect();
//!             self.got.borrow_mut().push(String::from_utf8_lossy(&line).into_owned());
//!             self.send_next(ctx);
//!         }
//!     }
//!     fn connection_lost(&mut self, ctx: &mut Context<'_>, _: &torsion::DisconnectReason) {
//!         let _ = ctx.stop();
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), torsion::factory(|_: &Address| Echo))?;
//! let got = Rc::new(RefCell::new(Vec::new()));
//! let client = Client { lines: vec!["two", "one"], got: got.clone(), partial: Vec::new() };
//! drop(reactor.connect_protocol(port.local_addr(), client, Duration::from_secs(5)));
//! reactor.run()?;
//! assert_eq!(*got.borrow(), ["one\n", "two\n"]);
//! # Ok::<(), torsion::Error>(())
//! ```
//!
//! With async code:
//!
//! ```
//! use std::time::Duration;
//! use torsion::aio::{self, StreamError};
//! use torsion::Reactor;
//!
//! let mut reactor = Reactor::new()?;
//! let local = reactor.local();
//! let task = reactor.spawn_local(async move {
//!     let mut listener = aio::listen_tcp(&local, "127.0.0.1:0".parse().unwrap()).await?;
//!     let addr = listener.local_addr().unwrap();
//!     let server = local.clone();
//!     local.spawn_local(async move {
//!         loop {
//!             let mut conn = listener.accept().await?;
//!             server.spawn_local(async move {
//!                 let mut buf = [0; 4096];
//!                 loop {
//!                     let n = conn.read(&mut buf).await?;
//!                     if n == 0 {
//!                         return conn.close().await;
//!                     }
//!                     conn.write_all(&buf[..n]).await?;
//!                 }
//!             });
//!         }
//!         #[allow(unreachable_code)]
//!         Ok::<(), StreamError>(())
//!     });
//!
//!     let mut conn = aio::timeout(&local, Duration::from_secs(5), aio::connect_tcp(&local, addr)).await??;
//!     let mut got = Vec::new();
//!     for line in ["one", "two"] {
//!         conn.write_all(format!("{line}\n").as_bytes()).await?;
//!         got.push(conn.read_line(1024).await?);
//!     }
//!     conn.close().await?;
//!     Ok::<_, StreamError>(got)
//! });
//! assert_eq!(reactor.run_until_complete(task)?.unwrap(), ["one\n", "two\n"]);
//! # Ok::<(), torsion::Error>(())
//! ```
//!
//! # Testing
//!
//! [`protocol`] makes the protocol of a connection and the future of the
//! connection, for anything that takes a protocol; with the
//! [`Pump`](crate::testing::Pump), the same async code runs in memory, on the
//! fake clock, with seeded faults:
//!
//! ```
//! use std::time::Duration;
//! use torsion::aio::{self, StreamError};
//! use torsion::testing::{Faults, Pump};
//! use torsion::{Context, Protocol};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         ctx.write(data);
//!     }
//! }
//!
//! let mut pump = Pump::with_faults(Faults::chaos(7));
//! let (protocol, connecting) = aio::protocol();
//! pump.connect(protocol, Echo);
//! let local = pump.core_mut().local();
//! let mut task = pump.core_mut().spawn_local(async move {
//!     let mut conn = connecting.await?;
//!     // Nothing was sent yet: no answer within a minute.
//!     let early = aio::timeout(&local, Duration::from_secs(60), conn.read_line(100)).await;
//!     assert!(early.is_err());
//!     conn.write_all(b"ping\n").await?;
//!     Ok::<_, StreamError>(conn.read_line(100).await?)
//! });
//! pump.flush();
//! assert!(!task.has_result()); // waiting for the fake minute to pass
//! pump.advance(Duration::from_secs(60));
//! assert_eq!(task.take_result().unwrap().unwrap(), "ping\n");
//! ```

mod conn;
mod connect;
mod error;
mod listen;
mod time;

pub use conn::{Connecting, Connection, StreamOptions, StreamProtocol, DEFAULT_INPUT_BUFFER};
#[cfg(feature = "tls")]
pub use connect::connect_tls;
#[cfg(feature = "tls")]
pub use connect::listen_tls;
pub use connect::{
    connect, connect_address, connect_address_with, connect_endpoint, connect_tcp, connect_unix,
    listen, listen_tcp, listen_unix, Connect,
};
pub use error::StreamError;
pub use listen::{AcceptFactory, Listener, DEFAULT_BACKLOG};
pub use time::{sleep, timeout, Sleep, Timeout};

#[allow(unused_imports)] // for the docs
use crate::context::Core;
use crate::local::LocalHandle;

/// Runs the future that `f` makes on a new reactor until it finishes, and
/// returns its output (asyncio's `run`): for programs whose `main` is async
/// code. `f` gets the reactor's [`LocalHandle`].
///
/// ```
/// use std::time::Duration;
/// use torsion::aio;
///
/// let n = aio::run(|local| async move {
///     aio::sleep(&local, Duration::from_millis(1)).await;
///     Ok(42)
/// })?;
/// assert_eq!(n, 42);
/// # Ok::<(), aio::StreamError>(())
/// ```
///
/// # Errors
/// What the future returns; [`StreamError::Reactor`] if the reactor could
/// not start or failed (a callback panicked under
/// [`PanicPolicy::StopReactor`](crate::PanicPolicy::StopReactor)...).
pub fn run<T, F, Fut>(f: F) -> Result<T, StreamError>
where
    T: 'static,
    F: FnOnce(LocalHandle) -> Fut,
    Fut: std::future::Future<Output = Result<T, StreamError>> + 'static,
{
    let mut reactor = crate::Reactor::new().map_err(StreamError::Reactor)?;
    let future = f(reactor.local());
    let task = reactor.spawn_local(future);
    reactor
        .run_until_complete(task)
        .map_err(StreamError::Reactor)?
}

/// The protocol of an async connection and the future of the connection,
/// which is ready once the protocol's `connection_made` has run. Connect the
/// protocol anywhere a protocol goes: `Core::connect_protocol`, a
/// [`Pump`](crate::testing::Pump), a client factory.
pub fn protocol() -> (StreamProtocol, Connecting) {
    protocol_with(StreamOptions::default())
}

/// [`protocol`] with buffering options.
pub fn protocol_with(options: StreamOptions) -> (StreamProtocol, Connecting) {
    let p = StreamProtocol::new(options, None);
    let c = p.connecting();
    (p, c)
}

/// A [`Listener`] fed by the [`AcceptFactory`] returned with it: give the
/// factory to any listen call (or to
/// [`Pump::connect_factory`](crate::testing::Pump::connect_factory)) and
/// accept from the listener. Stopping the listening port is then up to the
/// caller.
pub fn accept_queue() -> (AcceptFactory, Listener) {
    Listener::new(StreamOptions::default())
}

/// [`accept_queue`] with buffering options for the accepted connections.
pub fn accept_queue_with(options: StreamOptions) -> (AcceptFactory, Listener) {
    Listener::new(options)
}

#[cfg(test)]
mod tests;
