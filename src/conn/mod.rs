//! The one connection engine: a sans-IO state machine that runs every stream
//! connection (TCP and Unix sockets in the reactor, the recording transport
//! and the pump in [`testing`](crate::testing), the inner protocol of a TLS
//! connection).
//!
//! The engine ([`Engine`]) is fed events by the owner of a connection (bytes
//! read, the peer's end of stream, "the sink has room", timers, operations
//! queued by callbacks) together with the clock (`Core`), and decides
//! everything else: it calls the protocol under `catch_unwind`, hands the
//! writes a callback gathered to the [`Sink`] in one call when it returns,
//! keeps what the sink refuses in the write buffer, applies the water marks,
//! the hard cap, the write rate, half-close, `lose_connection` (flush, then
//! close) and `abort_connection` (drop, then reset), pulls from stream sources
//! with a fairness budget, and ends the connection exactly once with
//! `connection_lost`.
//!
//! # The `Sink` contract
//!
//! A sink is where a connection's bytes go: a socket's send side, an
//! in-memory pipe, a TLS engine's plaintext side; next a child process's
//! stdin pipe or the process's stdout. The read side is not the sink's
//! business: the owner reads (a socket until `WouldBlock`, a child's stdout
//! pipe, stdin) and hands the bytes to [`Engine::data`], the end of stream to
//! [`Engine::eof`]. So a child process's pair of pipes is one more sink (the
//! write fd) plus one more readable source in the reactor (the read fd).
//!
//! * `write`/`write_vectored` take what fits *now* and return how much;
//!   `Err(WouldBlock)` (or `Ok(0)` for a non-empty write) means "full": the
//!   engine keeps the rest and the owner calls [`Engine::writable`] when there
//!   is room again (a writable edge, a drained wire, a TLS transport that
//!   resumed). Any other error ends the connection with that error as the
//!   reason. A sink must not buffer without bound itself.
//! * `shutdown_write` sends the end of stream after everything written
//!   (`shutdown(SHUT_WR)`, closing a child's stdin, `close_notify`).
//! * `close(end)` is called once, when the connection ends, before
//!   `connection_lost`: [`Ending::graceful`] means everything was flushed and
//!   the peer gets an end of stream (unless [`Ending::write_shut`] says it has
//!   it already); otherwise the sink resets (`SO_LINGER` 0, an abort of the
//!   transport below). It returns whether the peer may still send and the
//!   owner should drain its input until its EOF (a lingering close); the
//!   engine then sets `LINGER` for the owner. Test sinks record the reason.
//! * `host` is the local address the protocol's context reports.
//! * `produce_later` lets the owner run a stream source's next turn after the
//!   other connections' events (the reactor's ready list); a sink that says
//!   no gets an `Op::Produce` on the operation queue instead.
//! * `enter`/`leave` bracket every protocol callback (TLS lends the inner
//!   connection the transport's traffic shaping for the call).
//!
//! After every call into the engine the owner looks at the state's `DEAD`
//! flag: once set, `connection_lost` has run, and the owner reaps the
//! connection (slab removal, deregistration, lingering when `LINGER` is set).

use std::io::{self, IoSlice};

use crate::context::ConnectionHandle;
use crate::error::DisconnectReason;
use crate::transport::{ConnState, HostAddr};

mod engine;
pub(crate) mod ops;
mod steps;

pub(crate) use steps::{BufferStep, EofStep};

/// Size of a read: the reactor's read buffer, and the largest chunk the test
/// tools hand to `data_received`.
pub(crate) const READ_BUF: usize = 64 * 1024;

/// How a connection ends, as its sink hears it ([`Sink::close`]).
#[derive(Debug)]
pub(crate) struct Ending<'r> {
    /// Why (what `connection_lost` will hear).
    pub(crate) reason: &'r DisconnectReason,
    /// Everything was flushed: an end of stream, not a reset.
    pub(crate) graceful: bool,
    /// The end of stream was sent already (`lose_write_connection`).
    pub(crate) write_shut: bool,
    /// The peer's end of stream arrived already.
    pub(crate) peer_done: bool,
}

pub(crate) use engine::Engine;

/// Where a connection's bytes go. See the [module docs](self) for the contract.
pub(crate) trait Sink {
    /// Whether this sink is the connection's transport itself (a socket, a
    /// pipe, an in-memory peer), not a layer inside another connection's
    /// callback (TLS plaintext): only then are its bytes, its end and its
    /// callbacks' time counted for the reactor (once per connection).
    const OUTER: bool = true;

    /// The same sink borrowed again: what the engine of a cold path holds
    /// (see `Engine::again`), built from the fields so that the hot path's
    /// sink is never passed by address (a socket's is then only registers).
    type Again<'b>: Sink
    where
        Self: 'b;

    /// See [`Again`](Self::Again).
    fn again(&mut self) -> Self::Again<'_>;

    /// Takes what fits of `buf` now.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;

    /// Takes what fits of `bufs` now, in order (one system call on a socket).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(b) => self.write(b),
            None => Ok(0),
        }
    }

    /// Sends the end of stream after what was written.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// The connection ends (called once): an end of stream after everything
    /// (`end.graceful`, unless `end.write_shut` says it went already) or a
    /// reset. Returns whether the owner should drain the peer's input.
    fn close(&mut self, end: &Ending<'_>) -> bool;

    /// The local address the context reports.
    fn host(&self) -> &dyn HostAddr;

    /// Runs connection `h`'s stream source again after the current event;
    /// `false`: the engine queues it on the operation queue.
    fn produce_later(&mut self, _h: ConnectionHandle) -> bool {
        false
    }

    /// Before each protocol callback.
    fn enter(&mut self, _state: &mut ConnState) {}

    /// After each protocol callback.
    fn leave(&mut self, _state: &mut ConnState) {}
}

/// `Sink::Again` and `Sink::again` for a sink that is only ever lent to the
/// engine by `&mut` (the in-memory transports, TLS): borrowed again, it is
/// itself.
macro_rules! lent_sink_again {
    () => {
        type Again<'b>
            = &'b mut Self
        where
            Self: 'b;
        fn again(&mut self) -> &mut Self {
            self
        }
    };
}
pub(crate) use lent_sink_again;

/// A borrowed sink is the sink (the in-memory transports and TLS lend theirs
/// to the engine).
impl<T: Sink + ?Sized> Sink for &mut T {
    const OUTER: bool = T::OUTER;
    type Again<'b>
        = &'b mut T
    where
        Self: 'b;
    #[inline]
    fn again(&mut self) -> &mut T {
        self
    }
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (**self).write(buf)
    }
    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (**self).write_vectored(bufs)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        (**self).shutdown_write()
    }
    fn close(&mut self, end: &Ending<'_>) -> bool {
        (**self).close(end)
    }
    #[inline]
    fn host(&self) -> &dyn HostAddr {
        (**self).host()
    }
    #[inline]
    fn produce_later(&mut self, h: ConnectionHandle) -> bool {
        (**self).produce_later(h)
    }
    #[inline]
    fn enter(&mut self, state: &mut ConnState) {
        (**self).enter(state)
    }
    #[inline]
    fn leave(&mut self, state: &mut ConnState) {
        (**self).leave(state)
    }
}

/// Replaces a live connection's protocol with a wrapper around it
/// (`start_tls`); the caller then delivers the wrapper's `connection_made`.
pub(crate) fn rewrap(
    slot: &mut Box<dyn crate::protocol::Protocol>,
    wrap: crate::transport::WrapFn,
) {
    let p = std::mem::replace(slot, Box::new(crate::wrap::Unwrapped));
    *slot = wrap(p);
}
