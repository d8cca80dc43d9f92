//! A recording transport: drive one protocol by hand and see what it did.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::Duration;

use super::conn::MemConn;
use super::{downcast, downcast_mut, Clock};
use crate::buf::WriteBuf;
use crate::conn::ops::Connections;
use crate::conn::READ_BUF;
use crate::conn::{Ending, Sink};
use crate::context::{ConnectionHandle, Core};
use crate::error::DisconnectReason;
use crate::protocol::Protocol;
use crate::transport::{flags, Context, HostAddr, WrapFn};

/// The peer address a [`RecordingTransport`] reports by default (Twisted's).
pub const DEFAULT_PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(192, 168, 1, 1),
    54321,
));
/// The host address a [`RecordingTransport`] reports by default (Twisted's).
pub const DEFAULT_HOST: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(10, 0, 0, 1),
    12345,
));

/// One protocol on an in-memory transport that records everything it does
/// (Twisted's `StringTransport`, with the reactor's semantics).
///
/// The test plays the peer and the network: [`receive`](Self::receive) feeds
/// bytes (cut into reads of at most 64 KiB, as the reactor's read buffer
/// does), [`receive_eof`](Self::receive_eof) and
/// [`receive_reset`](Self::receive_reset) end the input. What the protocol
/// writes lands in [`written`](Self::written) when its callback returns,
/// unless the peer is [stalled](Self::set_stalled), in which case it piles up
/// in the transport's buffer and the water marks, the hard cap and
/// flush-then-close apply exactly as on a socket whose peer stopped reading.
///
/// Every flag is interpreted after each callback as the reactor does:
/// `lose_connection` closes once the buffer is flushed, `abort_connection` drops
/// the buffer and "resets", writes are refused after either, `connection_lost`
/// runs exactly once and never from inside another callback, a panicking
/// callback aborts the connection with [`DisconnectReason::Panicked`]. Input
/// that arrives while reading is paused waits, in order, until reading resumes.
/// Operations queued on [`Core`] (timers, `with_protocol`, writes by handle)
/// are carried out for this connection; listen and connect requests are
/// recorded in [`clock().requests()`](Clock::requests).
///
/// ```
/// use torsion::testing::RecordingTransport;
/// use torsion::{Context, Protocol};
///
/// struct Shout;
/// impl Protocol for Shout {
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         ctx.write(&data.to_ascii_uppercase());
///         if data.ends_with(b"!") {
///             ctx.lose_connection();
///         }
///     }
/// }
///
/// let mut t = RecordingTransport::new(Shout);
/// t.receive(b"hello ");
/// t.receive(b"world!");
/// assert_eq!(t.written(), b"HELLO WORLD!");
/// assert!(t.lost().unwrap().is_clean());
/// ```
pub struct RecordingTransport<P> {
    clock: Clock,
    one: One,
    _protocol: PhantomData<fn() -> P>,
}

impl<P> fmt::Debug for RecordingTransport<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingTransport")
            .field("written", &self.one.rec.written.len())
            .field("buffered", &self.one.conn.state.pending_len())
            .field("flags", &self.one.conn.state.flags)
            .field("lost", &self.one.rec.lost)
            .finish_non_exhaustive()
    }
}

/// What the peer would have seen: the engine's sink.
struct Recorder {
    written: Vec<u8>,
    stalled: bool,
    eof_sent: bool,
    reset_sent: bool,
    peer_reset: bool,
    host: SocketAddr,
    lost: Option<DisconnectReason>,
}

impl Sink for Recorder {
    crate::conn::lent_sink_again!();
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.peer_reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if self.stalled {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.eof_sent = true;
        Ok(())
    }
    fn close(&mut self, end: &Ending<'_>) -> bool {
        self.lost = Some(end.reason.clone());
        if !end.graceful {
            self.reset_sent = true;
        } else if !end.write_shut {
            self.eof_sent = true;
        }
        false
    }
    fn host(&self) -> &dyn HostAddr {
        &self.host
    }
}

enum Input {
    Data(Vec<u8>),
    Eof,
    Reset,
}

/// The connection and what surrounds it, apart from the clock.
struct One {
    conn: MemConn,
    out: WriteBuf,
    rec: Recorder,
    input: VecDeque<Input>,
}

impl One {
    fn deliver(&mut self, core: &mut Core) {
        while !self.input.is_empty() && self.conn.state.wants_input() {
            let input = self.input.pop_front();
            let mut e = self.conn.engine(core, &mut self.out, &mut self.rec);
            match input {
                Some(Input::Data(d)) => e.data(&d),
                Some(Input::Eof) => e.eof(),
                Some(Input::Reset) => e.close(DisconnectReason::Reset),
                None => {}
            }
        }
        if self.conn.is_dead() {
            self.input.clear();
        }
    }
}

impl Connections for One {
    fn invoke(
        &mut self,
        core: &mut Core,
        h: ConnectionHandle,
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) {
        if h == self.conn.state.handle {
            self.conn
                .engine(core, &mut self.out, &mut self.rec)
                .invoke(f);
        }
    }
    fn produce(&mut self, core: &mut Core, h: ConnectionHandle) {
        if h == self.conn.state.handle {
            self.conn
                .engine(core, &mut self.out, &mut self.rec)
                .produce();
        }
    }
    fn resume_reading(&mut self, core: &mut Core, h: ConnectionHandle) {
        // `Context::resume_reading` cleared the pause; one made since stands.
        if h == self.conn.state.handle && !self.conn.state.has(flags::READ_PAUSED) {
            self.conn.state.clear(flags::READ_PENDING);
            self.deliver(core);
        }
    }
    fn throttle_expired(&mut self, core: &mut Core, h: ConnectionHandle) {
        if h == self.conn.state.handle {
            self.conn
                .engine(core, &mut self.out, &mut self.rec)
                .throttle_expired();
        }
    }
    fn live(&self) -> Vec<ConnectionHandle> {
        if self.conn.is_dead() {
            vec![]
        } else {
            vec![self.conn.state.handle]
        }
    }
    fn wrap(&mut self, core: &mut Core, h: ConnectionHandle, wrap: WrapFn) {
        if h == self.conn.state.handle {
            self.conn.wrap(core, &mut self.out, &mut self.rec, wrap);
        }
    }
}

impl<P: Protocol> RecordingTransport<P> {
    /// Connects `protocol` (it hears `connection_made`) with the default
    /// addresses ([`DEFAULT_HOST`], [`DEFAULT_PEER`]).
    pub fn new(protocol: P) -> Self {
        Self::with_addresses(protocol, DEFAULT_HOST, DEFAULT_PEER)
    }

    /// Connects `protocol` with the given local and peer addresses.
    pub fn with_addresses(protocol: P, host: SocketAddr, peer: SocketAddr) -> Self {
        let handle = ConnectionHandle { key: 0, gen: 1 };
        let mut t = RecordingTransport {
            clock: Clock::new(),
            one: One {
                conn: MemConn::new(handle, Box::new(protocol), peer),
                out: WriteBuf::new(),
                rec: Recorder {
                    written: Vec::new(),
                    stalled: false,
                    eof_sent: false,
                    reset_sent: false,
                    peer_reset: false,
                    host,
                    lost: None,
                },
                input: VecDeque::new(),
            },
            _protocol: PhantomData,
        };
        let One { conn, out, rec, .. } = &mut t.one;
        conn.engine(&mut t.clock.core, out, rec).make();
        t.after();
        t
    }

    /// Carries out what callbacks queued, then delivers input that can be.
    fn after(&mut self) {
        self.clock.ops(&mut self.one);
        self.one.deliver(&mut self.clock.core);
        self.clock.ops(&mut self.one);
    }

    /// The protocol.
    pub fn protocol(&self) -> &P {
        downcast(&*self.one.conn.protocol)
    }

    /// The protocol, mutably (outside any callback: it cannot write from here;
    /// use [`with_protocol`](Self::with_protocol) for that).
    pub fn protocol_mut(&mut self) -> &mut P {
        downcast_mut(&mut *self.one.conn.protocol)
    }

    /// Runs `f` as a callback of this connection (with a real [`Context`]), then
    /// settles what it did. Returns `None` when the connection is already lost.
    pub fn with_protocol<R>(&mut self, f: impl FnOnce(&mut P, &mut Context<'_>) -> R) -> Option<R> {
        if self.one.conn.is_dead() {
            return None;
        }
        let mut result = None;
        let One { conn, out, rec, .. } = &mut self.one;
        conn.engine(&mut self.clock.core, out, rec)
            .invoke(|p, ctx| {
                result = Some(f(downcast_mut(p), ctx));
            });
        self.after();
        result
    }

    /// The peer sends `data`: `data_received` in reads of at most 64 KiB, or
    /// queued while reading is paused. Dropped once the connection is lost.
    pub fn receive(&mut self, data: &[u8]) {
        if self.one.conn.is_dead() {
            return;
        }
        for chunk in data.chunks(READ_BUF) {
            self.one.input.push_back(Input::Data(chunk.to_vec()));
        }
        self.after();
    }

    /// The peer closes its sending side: `read_connection_lost` under
    /// half-close, else the connection closes after its flush.
    pub fn receive_eof(&mut self) {
        self.one.input.push_back(Input::Eof);
        self.after();
    }

    /// The peer resets the connection: writes fail from now on and, once the
    /// input queued before it is read, the protocol hears `connection_lost`
    /// with [`DisconnectReason::Reset`].
    pub fn receive_reset(&mut self) {
        self.one.rec.peer_reset = true;
        self.one.input.push_back(Input::Reset);
        self.after();
    }

    /// Bytes the peer has received so far.
    pub fn written(&self) -> &[u8] {
        &self.one.rec.written
    }

    /// Takes the received bytes out (Twisted's `value()` then `clear()`).
    pub fn take_written(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.one.rec.written)
    }

    /// Stalls or unstalls the peer. While stalled, writes stay in the
    /// transport's buffer (the water marks call `pause_writing` and the hard
    /// cap aborts, as with a peer that stopped reading); unstalling flushes
    /// them and runs what waited for the flush (`resume_writing`, closes).
    pub fn set_stalled(&mut self, stalled: bool) {
        self.one.rec.stalled = stalled;
        if !stalled {
            let One { conn, out, rec, .. } = &mut self.one;
            conn.engine(&mut self.clock.core, out, rec).writable();
            self.after();
        }
    }

    /// Bytes written but not yet taken by the (stalled) peer.
    pub fn buffered_len(&self) -> usize {
        self.one.conn.state.pending_len()
    }

    /// Whether the protocol asked for a graceful close (`lose_connection`, or
    /// the peer's EOF without half-close).
    pub fn is_closing(&self) -> bool {
        self.one.conn.state.has(flags::CLOSING)
    }

    /// Whether the connection was reset from this side (abort, error, panic,
    /// or a close with an unclean reason).
    pub fn is_aborted(&self) -> bool {
        self.one.rec.reset_sent
    }

    /// Whether the peer saw the end of stream (write side shut, or a clean close).
    pub fn eof_sent(&self) -> bool {
        self.one.rec.eof_sent
    }

    /// Whether reading is paused.
    pub fn is_reading_paused(&self) -> bool {
        self.one.conn.state.has(flags::READ_PAUSED)
    }

    /// Whether `pause_writing` was delivered and `resume_writing` not yet.
    pub fn is_writing_paused(&self) -> bool {
        self.one.conn.state.has(flags::PRODUCER_PAUSED)
    }

    /// Why the connection ended, once `connection_lost` ran.
    pub fn lost(&self) -> Option<&DisconnectReason> {
        self.one.rec.lost.as_ref()
    }

    /// This connection's handle (for [`Core::connection`]).
    pub fn handle(&self) -> ConnectionHandle {
        self.one.conn.state.handle
    }

    /// The clock (read-only: use [`advance`](Self::advance) to move it, so
    /// operations reach this connection).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The core, to schedule calls or queue operations from the test; they
    /// are carried out at the next call into the transport.
    pub fn core_mut(&mut self) -> &mut Core {
        &mut self.clock.core
    }

    /// Moves the clock forward and runs what is due, against this connection.
    /// Returns how many calls ran.
    pub fn advance(&mut self, by: Duration) -> usize {
        let n = self.clock.advance_with(by, &mut self.one);
        self.after();
        n
    }
}
