//! torsion: Twisted's networking model in Rust, on `mio`.
//!
//! Coming from Twisted? [`from_twisted`] maps its names to torsion's and puts
//! the seed programs (echo server and client, a retrying client, an
//! availability monitor) side by side; [`promises`] lists what the library
//! guarantees and the tests that check it; [`stuck_reactor`] ("Debugging a
//! stuck reactor") shows how to see inside a running reactor: slow-callback
//! warnings, the SIGUSR1 table, `/metrics`.
//!
//! # Concepts
//!
//! * A [`Reactor`] is one value that owns one event loop on one thread. It waits
//!   for readiness with `mio` (edge-triggered, every socket registered once),
//!   runs timers, and runs closures queued from other threads through a
//!   [`ReactorHandle`]. Several reactors can live in one process (one per thread,
//!   one per test). [`Reactor::run`] returns after [`Core::stop`].
//! * A [`Protocol`] is what you write: one value per connection, called with
//!   `connection_made`, `data_received` and, exactly once, `connection_lost`. It
//!   does not own its transport: every callback gets a [`Context`] through which
//!   it writes, closes, pauses, and reaches the reactor (`Context` dereferences to
//!   [`Core`]: timers, stop, other connections through
//!   [`Core::connection`]`(handle)`).
//! * A [`Factory`] builds a protocol per accepted connection
//!   ([`Core::listen_tcp`]; a closure is one: [`factory`]`(|peer| Echo)`); a [`ClientFactory`] builds the protocol of an
//!   outgoing connection ([`Core::connect_tcp`]) and hears how the attempt went,
//!   deciding whether to [`Reconnect`].
//! * Transports gather the writes a callback makes and hand them to the kernel in
//!   one call when it returns; only what the kernel refuses is buffered. Above a
//!   high water mark the protocol hears `pause_writing`, below a low one
//!   `resume_writing`; a hard cap aborts a peer that never reads.
//!   `lose_connection` flushes and closes; `abort_connection` drops and resets.
//! * Stream connections run over TCP (IPv4, IPv6) and Unix sockets
//!   ([`Core::listen_unix`], [`Core::connect_unix`]) through one code path, so
//!   they behave alike; a peer is an [`Address`]. Datagrams (UDP, Unix
//!   datagrams) go to a [`DatagramProtocol`] ([`Core::listen_udp`]).
//! * Async code runs on the same reactor: [`aio`] connections are read and
//!   written with `.await` (`read_line`, `write_all`, `accept`...), with
//!   `sleep` and `timeout` on the reactor's timers. Each is a built-in
//!   protocol underneath, so it has the same flow control and runs on the
//!   in-memory pump; the [`aio`] guide says when to use which style.
//! * Child processes ([`Core::spawn_process`], a
//!   [`ProcessProtocol`](process::ProcessProtocol)) and the process's own
//!   stdin/stdout ([`Core::standard_io`]) are transports too: their pipes run
//!   on the same connection code as sockets (module [`process`]).
//! * A panic in a callback costs that connection, not the reactor
//!   ([`PanicPolicy`]).
//! * TLS (module `tls`, cargo feature `tls`, on by default) is a protocol
//!   wrapper: `Core::listen_tls`, `Core::connect_tls` and `Context::start_tls`
//!   run any protocol over `rustls`, on TCP or the in-memory pump alike.
//! * [`endpoints`] parses Twisted-style endpoint strings (`tcp:8000`,
//!   `tls:host=example.org:port=443`) and connects host names with Happy
//!   Eyeballs; [`service`] composes listeners, clients and timers and runs them
//!   with graceful shutdown on SIGINT/SIGTERM.
//!
//! # Example: an echo server and a client in one reactor
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use std::time::Duration;
//! use torsion::{client_factory, factory, Context, DisconnectReason, Protocol, Reactor};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         ctx.write(data);
//!     }
//! }
//!
//! /// Sends a greeting, waits for the whole echo, then closes.
//! struct Greeter {
//!     got: Rc<RefCell<Vec<u8>>>,
//! }
//! impl Protocol for Greeter {
//!     fn connection_made(&mut self, ctx: &mut Context<'_>) {
//!         ctx.write(b"hello");
//!     }
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         self.got.borrow_mut().extend_from_slice(data);
//!         if self.got.borrow().len() == 5 {
//!             ctx.lose_connection();
//!         }
//!     }
//!     fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
//!         assert!(reason.is_clean());
//!         ctx.stop().unwrap(); // Context derefs to Core
//!     }
//! }
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), factory(|_peer| Echo))?;
//! let got = Rc::new(RefCell::new(Vec::new()));
//! let seen = got.clone();
//! let greeter = client_factory(move |_peer| Greeter { got: got.clone() });
//! reactor.connect_tcp(port.local_addr(), greeter, Duration::from_secs(5));
//! reactor.run()?;
//! assert_eq!(&*seen.borrow(), b"hello");
//! # Ok::<(), torsion::Error>(())
//! ```
// docs.rs builds with nightly and `--cfg docsrs`: feature-gated items say so.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, missing_debug_implementations)]
#![deny(unsafe_code)]

pub mod address;
pub mod aio;
mod buf;
mod conn;
mod connect;
mod context;
mod core;
pub mod datagram;
pub mod defer;
pub mod endpoints;
pub mod error;
pub mod from_twisted;
pub mod http;
pub mod introspect;
mod local;
pub mod multi;
pub mod policies;
pub mod process;
pub mod prometheus;
pub mod promises;
pub mod protocol;
pub mod protocols;
pub mod reactor;
pub mod reconnect;
pub mod service;
pub mod stuck_reactor;
pub mod task;
#[cfg(test)]
mod test_logs;
pub mod testing;
pub mod threads;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod transport;
mod wrap;

pub use address::{Address, UnixAddr};
pub use context::{ConnectionHandle, Core, DelayedCall, PanicPolicy, ReactorHandle};
pub use datagram::{
    DatagramContext, DatagramError, DatagramPort, DatagramProtocol, MulticastInterface,
};
pub use defer::{Deferred, Trigger};
pub use error::{DisconnectReason, Error, Result};
pub use local::LocalHandle;
pub use protocol::{
    client_factory, factory, ClientFactory, Factory, FnClientFactory, FnFactory, Protocol,
    Reconnect, Wrapper,
};
pub use reactor::{
    Connector, Keepalive, ListeningPort, Reactor, SignalWatch, TcpOptions, UdpOptions,
    UnixListeningPort, UnixOptions,
};
pub use reconnect::ReconnectingClientFactory;
pub use transport::{
    read_chunks, ConnectionRef, Context, DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, DEFAULT_WRITE_CAP,
};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
