//! What a protocol sees of its connection: [`Context`] (the transport, plus
//! [`Core`] through `Deref`), and the transport-independent state behind it.

use std::fmt;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::address::Address;
use crate::buf::WriteBuf;
use crate::context::{ConnectionHandle, Core, DelayedCall, Op};
use crate::error::{DisconnectReason, Error, Result};
use crate::protocol::Protocol;

mod by_handle;
mod source;
mod state;

pub use by_handle::ConnectionRef;

pub use source::read_chunks;
pub(crate) use state::*;
pub use state::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, DEFAULT_WRITE_CAP};

/// A closure run against one connection's protocol.
pub(crate) type ProtoFn = Box<dyn FnOnce(&mut dyn Protocol, &mut Context<'_>)>;
/// Puts a wrapper (TLS) around a live connection's protocol.
pub(crate) type WrapFn = Box<dyn FnOnce(Box<dyn Protocol>) -> Box<dyn Protocol>>;

impl Core {
    /// Queues `f` to run with connection `h`'s protocol once the current
    /// callback has returned.
    pub(crate) fn call_on(&mut self, h: ConnectionHandle, f: ProtoFn) {
        self.ops.push(Op::Call(h, Box::new(f)));
    }

    /// Queues wrapping connection `h`'s protocol (`start_tls`).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn wrap_on(&mut self, h: ConnectionHandle, f: WrapFn) {
        self.ops.push(Op::Wrap(h, Box::new(f)));
    }
}

/// Source of a connection's local address (a socket, or a fixed test address).
pub(crate) trait HostAddr {
    fn host_addr(&self) -> std::io::Result<SocketAddr>;
    /// The local address on any transport.
    fn host(&self) -> std::io::Result<Address> {
        self.host_addr().map(Address::Inet)
    }
    /// `TCP_NODELAY`, where the transport has such a thing.
    fn nodelay(&self) -> Option<bool> {
        None
    }
    /// What the TLS layer under this context negotiated, if there is one
    /// (a `TlsInfo`, opened by the `tls` module, which sits above this one).
    fn tls(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

impl HostAddr for SocketAddr {
    fn host_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(*self)
    }
}

impl HostAddr for Address {
    fn host_addr(&self) -> std::io::Result<SocketAddr> {
        self.inet().ok_or_else(crate::address::no_ip)
    }
    fn host(&self) -> std::io::Result<Address> {
        Ok(self.clone())
    }
}

/// A connection's transport and the reactor, as seen from a [`Protocol`] callback.
///
/// Writes made during a callback are gathered and handed to the kernel in one
/// (vectored) call when the callback returns; only what the kernel refuses is
/// buffered. `Context` dereferences to [`Core`] for timers, stop, and other
/// connections.
pub struct Context<'a> {
    pub(crate) core: &'a mut Core,
    pub(crate) conn: &'a mut ConnState,
    pub(crate) out: &'a mut WriteBuf,
    pub(crate) host: &'a dyn HostAddr,
    /// The bytes `data_received` was handed (empty in other callbacks): a write
    /// of (part of) them can be sent from the read buffer without a copy.
    pub(crate) input: &'a [u8],
}

/// A write of at least this many bytes of the input being delivered is sent
/// straight from the read buffer instead of being copied (echo, proxies).
/// Any size pays: a write after it copies the gathered bytes then
/// (`materialize`), which costs what copying them at once would have.
pub(crate) const ZERO_COPY_MIN: usize = 1;

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("conn", &self.conn.handle)
            .field("peer", &self.conn.peer())
            .finish_non_exhaustive()
    }
}

impl Deref for Context<'_> {
    type Target = Core;
    fn deref(&self) -> &Core {
        self.core
    }
}

impl DerefMut for Context<'_> {
    fn deref_mut(&mut self) -> &mut Core {
        self.core
    }
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        core: &'a mut Core,
        conn: &'a mut ConnState,
        out: &'a mut WriteBuf,
        host: &'a dyn HostAddr,
    ) -> Self {
        Context {
            core,
            conn,
            out,
            host,
            input: &[],
        }
    }

    /// The context of a `data_received` call for `input`.
    pub(crate) fn with_input(mut self, input: &'a [u8]) -> Self {
        self.input = input;
        self
    }

    /// Where `data` starts within the input being delivered, if it lies inside it.
    #[inline]
    fn input_offset(&self, data: &[u8]) -> Option<usize> {
        let base = self.input.as_ptr() as usize;
        let start = data.as_ptr() as usize;
        (start >= base && start + data.len() <= base + self.input.len()).then(|| start - base)
    }

    /// Turns a pending reference to the input into a copy, before anything else
    /// is gathered behind it.
    #[inline]
    fn materialize(&mut self) {
        if let Some((off, len)) = self.out.take_input_ref() {
            self.out.push_slice(&self.input[off..off + len]);
        }
    }

    /// The reactor part of the context, explicitly.
    pub fn core(&mut self) -> &mut Core {
        self.core
    }

    /// This connection's handle, to reach it later from elsewhere.
    pub fn handle(&self) -> ConnectionHandle {
        self.conn.handle
    }

    /// The peer's IP address (Twisted's `getPeer()` for TCP). A Unix-domain
    /// peer has none: this is then [`NO_IP`](crate::address::NO_IP)
    /// (`0.0.0.0:0`); [`peer`](Self::peer) tells every transport's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer_addr()
    }

    /// The peer's address on any transport: IP or Unix-domain (usually
    /// [`UnixAddr::Unnamed`](crate::UnixAddr::Unnamed) for a client of a Unix
    /// listener).
    pub fn peer(&self) -> Address {
        self.conn.peer()
    }

    /// This side's IP address.
    ///
    /// # Errors
    /// The operating system's error, if the socket can no longer tell;
    /// [`Unsupported`](std::io::ErrorKind::Unsupported) on a Unix socket (use
    /// [`host`](Self::host)).
    pub fn host_addr(&self) -> std::io::Result<SocketAddr> {
        self.host.host_addr()
    }

    /// This side's address on any transport (Twisted's `getHost()`).
    ///
    /// # Errors
    /// The operating system's error, if the socket can no longer tell.
    pub fn host(&self) -> std::io::Result<Address> {
        self.host.host()
    }

    /// Whether `TCP_NODELAY` is set (`None` on transports without it).
    pub fn nodelay(&self) -> Option<bool> {
        self.host.nodelay()
    }

    /// Queues `data` for the peer. Silently dropped after `lose_connection`,
    /// `abort_connection` or once the connection is lost (Twisted's rule); use
    /// [`try_write`](Self::try_write) to be told.
    #[inline]
    pub fn write(&mut self, data: &[u8]) {
        if !self.gather_input(data) {
            self.write_dropping_errors(data);
        }
    }

    /// Queues `data` for the peer.
    ///
    /// # Errors
    /// [`Error::ConnectionClosed`] after `lose_connection`, `lose_write_connection`,
    /// `abort_connection`, or once the connection is lost.
    #[inline]
    pub fn try_write(&mut self, data: &[u8]) -> Result<()> {
        if self.gather_input(data) {
            return Ok(());
        }
        self.write_gathered(data)
    }

    /// The echo's case, inline in the protocol's code: the first write of a
    /// callback, of bytes of its input, nothing buffered, no `start_tls`
    /// (`is_hot`: writes are not refused, nothing is queued, no `start_tls`
    /// diverts them). Gathered by reference: sent from the read buffer when
    /// the callback returns (or copied if anything is written after it).
    #[inline(always)]
    fn gather_input(&mut self, data: &[u8]) -> bool {
        if data.len() >= ZERO_COPY_MIN && self.out.is_empty() && self.conn.is_hot() {
            if let Some(off) = self.input_offset(data) {
                self.out.set_input_ref(off, data.len());
                return true;
            }
        }
        false
    }

    /// [`write`](Self::write) in general: out of line, so that the inline
    /// part keeps no error on the protocol's stack.
    #[inline(never)]
    fn write_dropping_errors(&mut self, data: &[u8]) {
        let _ = self.write_gathered(data);
    }

    /// [`try_write`](Self::try_write) in general.
    #[inline(never)]
    fn write_gathered(&mut self, data: &[u8]) -> Result<()> {
        if self.conn.write_refused() {
            return Err(Error::ConnectionClosed);
        }
        if let Some(d) = self.diverted() {
            d.push_slice(data);
            return Ok(());
        }
        if data.len() >= ZERO_COPY_MIN && self.out.is_empty() && self.conn.pending_len() == 0 {
            if let Some(off) = self.input_offset(data) {
                self.out.set_input_ref(off, data.len());
                return Ok(());
            }
        }
        self.materialize();
        self.out.push_slice(data);
        Ok(())
    }

    /// Where writes go: the gather buffer, or, after `start_tls` in this
    /// callback, the buffer the TLS wrapper takes over.
    #[inline]
    fn sink(&mut self) -> &mut WriteBuf {
        match self.conn.extra.as_mut().and_then(|x| x.diverted.as_mut()) {
            Some(d) => d,
            None => self.out,
        }
    }

    /// The buffer of writes made after `start_tls`, if it was called.
    #[inline]
    fn diverted(&mut self) -> Option<&mut WriteBuf> {
        self.conn.extra.as_mut().and_then(|x| x.diverted.as_mut())
    }

    /// Queues what `fill` appends, written straight into the connection's
    /// write buffer: a message built piece by piece (an HTTP head) needs no
    /// buffer of its own, nor a copy from it. Dropped like
    /// [`write`](Self::write) once closing (`fill` still runs, on a buffer
    /// thrown away).
    #[inline]
    pub(crate) fn write_with<R>(&mut self, fill: impl FnOnce(&mut BytesMut) -> R) -> R {
        if self.conn.write_refused() {
            return fill(&mut BytesMut::new());
        }
        self.materialize();
        self.sink().fill_tail(fill)
    }

    /// Queues a `Bytes` without copying it (when it is large enough to be worth
    /// it). Dropped like [`write`](Self::write) once closing.
    pub fn write_bytes(&mut self, data: Bytes) {
        let _ = self.try_write_bytes(data);
    }

    /// Queues a `Bytes` without copying it.
    ///
    /// # Errors
    /// As [`try_write`](Self::try_write).
    pub fn try_write_bytes(&mut self, data: Bytes) -> Result<()> {
        if self.conn.write_refused() {
            return Err(Error::ConnectionClosed);
        }
        if let Some(d) = self.diverted() {
            d.push_bytes(data);
            return Ok(());
        }
        self.materialize();
        self.out.push_bytes(data);
        Ok(())
    }

    /// Queues several buffers in order (Twisted's `writeSequence`).
    pub fn write_sequence(&mut self, parts: &[&[u8]]) {
        if self.conn.write_refused() {
            return;
        }
        self.materialize();
        let sink = self.sink();
        for p in parts {
            sink.push_slice(p);
        }
    }

    /// Bytes written but not yet taken by the kernel (or the in-memory peer).
    pub fn buffered_len(&self) -> usize {
        let diverted = self.conn.extra.as_ref().and_then(|x| x.diverted.as_ref());
        self.conn.pending_len() + self.out.len() + diverted.map_or(0, |d| d.len())
    }

    /// Closes the connection once everything written has been flushed.
    /// `connection_lost` follows with [`DisconnectReason::Done`].
    pub fn lose_connection(&mut self) {
        self.conn.set(flags::CLOSING);
    }

    /// Like [`lose_connection`](Self::lose_connection), but `connection_lost` hears
    /// `reason` (for example a protocol error after bad input).
    pub fn lose_connection_with(&mut self, reason: DisconnectReason) {
        let x = self.conn.extra();
        if x.close_reason.is_none() {
            x.close_reason = Some(reason);
        }
        self.conn.set(flags::CLOSING);
    }

    /// Drops everything buffered and resets the connection.
    /// `connection_lost` follows with [`DisconnectReason::Aborted`].
    pub fn abort_connection(&mut self) {
        self.out.clear();
        if let Some(x) = &mut self.conn.extra {
            x.diverted = None;
        }
        self.conn.set(flags::ABORT);
    }

    /// Shuts down the write side once everything written has been flushed; the
    /// protocol hears [`Protocol::write_connection_lost`] and can go on reading.
    pub fn lose_write_connection(&mut self) {
        self.conn.set(flags::WRITE_CLOSING);
    }

    /// Opts into half-close: the peer's EOF calls
    /// [`Protocol::read_connection_lost`] instead of closing the connection.
    pub fn set_half_close(&mut self, on: bool) {
        if on {
            self.conn.set(flags::HALF_CLOSE);
        } else {
            self.conn.clear(flags::HALF_CLOSE);
        }
    }

    /// Stops delivering `data_received` until [`resume_reading`](Self::resume_reading).
    pub fn pause_reading(&mut self) {
        self.conn.set(flags::READ_PAUSED);
    }

    /// Delivers data again after [`pause_reading`](Self::pause_reading).
    pub fn resume_reading(&mut self) {
        if self.conn.has(flags::READ_PAUSED) {
            self.conn.clear(flags::READ_PAUSED);
            let h = self.conn.handle;
            self.core.ops.push(Op::ResumeReading(h));
        }
    }

    /// Whether reading is paused.
    pub fn is_reading_paused(&self) -> bool {
        self.conn.has(flags::READ_PAUSED)
    }

    /// Sets the write buffer's water marks: above `high` the protocol hears
    /// `pause_writing`, below `low` again `resume_writing`. Defaults: 16 KiB / 64 KiB.
    pub fn set_write_water_marks(&mut self, low: usize, high: usize) {
        let mut l = self.conn.limits();
        l.low = low.min(high);
        l.high = high;
        self.conn.extra().limits = Some(l);
    }

    /// Sets the write buffer's hard cap: past it the connection is aborted with
    /// [`DisconnectReason::WriteBufferFull`]. Default: 64 MiB.
    pub fn set_write_buffer_cap(&mut self, cap: usize) {
        let mut l = self.conn.limits();
        l.cap = cap;
        self.conn.extra().limits = Some(l);
    }

    /// Streams `source` to the peer without ever buffering much more than the
    /// high water mark: the transport pulls the next chunk only while its buffer
    /// is below the mark, so a slow reader slows the source down instead of
    /// growing memory. When the source ends (or fails), the protocol hears
    /// [`Protocol::streaming_finished`]. Replaces a previous stream.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use torsion::{Context, Protocol};
    ///
    /// /// Sends a million numbered lines to whoever connects, then closes.
    /// struct Numbers;
    /// impl Protocol for Numbers {
    ///     fn connection_made(&mut self, ctx: &mut Context<'_>) {
    ///         ctx.stream_from((0..1_000_000u32).map(|i| Ok(Bytes::from(format!("{i}\n")))));
    ///     }
    ///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    ///     fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
    ///         result.expect("the source does not fail");
    ///         ctx.lose_connection();
    ///     }
    /// }
    /// ```
    pub fn stream_from(&mut self, source: impl Iterator<Item = std::io::Result<Bytes>> + 'static) {
        if self.conn.write_refused() {
            return;
        }
        self.conn.slow_extra().source = Some(Box::new(source));
        let h = self.conn.handle;
        self.core.ops.push(Op::Produce(h));
    }

    /// Whether a stream started with [`stream_from`](Self::stream_from) is still
    /// being sent.
    pub fn is_streaming(&self) -> bool {
        self.conn.extra.as_ref().is_some_and(|x| x.source.is_some())
    }

    /// Closes the connection when no data has been read or written for
    /// `timeout` (`None` turns it off). Every read and every write handed to the
    /// kernel restarts the count. What happens is up to
    /// [`Protocol::idle_timeout`] (default: a graceful close with
    /// [`DisconnectReason::TimedOut`]).
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        let now = self.core.now();
        let h = self.conn.handle;
        let x = self.conn.extra();
        if let Some(old) = x.idle.take() {
            if let Some(t) = old.timer {
                let _ = self.core.timers.cancel(t);
            }
        }
        if let Some(timeout) = timeout {
            let timer = self.core.schedule_internal(
                timeout,
                crate::core::ops::InternalTimer::Idle {
                    key: h.key as usize,
                    gen: h.gen,
                },
            );
            x.idle = Some(Idle {
                timeout,
                last_activity: self.core.stamp_of(now),
                timer: Some(timer),
            });
        }
    }

    /// The idle timer fired: whether the connection really was idle for its
    /// whole timeout. If not, the timer is re-armed for the rest of the period.
    pub(crate) fn idle_expired(&mut self) -> bool {
        let now = self.core.turn_time();
        let h = self.conn.handle;
        let Some(idle) = self.conn.extra.as_mut().and_then(|x| x.idle.as_mut()) else {
            return false;
        };
        idle.timer = None;
        let due = crate::context::later(self.core.instant_of(idle.last_activity), idle.timeout);
        if now < due {
            let t = crate::core::ops::InternalTimer::Idle {
                key: h.key as usize,
                gen: h.gen,
            };
            idle.timer = Some(self.core.schedule_internal(due - now, t));
            return false;
        }
        true
    }

    /// Restarts the idle count now, as traffic would.
    pub fn reset_idle_timeout(&mut self) {
        let now = self.core.now();
        self.conn.touch(self.core.stamp_of(now));
    }

    /// Limits how fast this connection reads, in bytes per second (`None`: no
    /// limit). Excess data waits in the kernel, whose window then slows the peer.
    /// Socket transports only: the in-memory transports of
    /// [`testing`](crate::testing) do not throttle.
    pub fn set_read_rate(&mut self, bytes_per_sec: Option<u64>) {
        let now = self.core.now();
        self.conn.slow_extra().read_rate = bytes_per_sec.map(|r| Rate::new(r, now));
        self.conn.recheck_slow();
    }

    /// Limits how fast this connection writes, in bytes per second (`None`: no
    /// limit). Excess data stays buffered and counts towards the water marks.
    /// Socket transports only, as [`set_read_rate`](Self::set_read_rate).
    pub fn set_write_rate(&mut self, bytes_per_sec: Option<u64>) {
        let now = self.core.now();
        self.conn.slow_extra().write_rate = bytes_per_sec.map(|r| Rate::new(r, now));
        self.conn.recheck_slow();
    }

    /// Runs `f` with this connection's protocol after `delay` (a connection's own
    /// timer): the first `P` from the outside in, so a protocol inside a
    /// [`Wrapper`](crate::protocol::Wrapper) is found. Nothing happens if the
    /// connection is gone by then. The same as
    /// `ctx.connection(ctx.handle()).call_later(delay, f)`.
    pub fn call_later_self<P: Protocol>(
        &mut self,
        delay: Duration,
        f: impl FnOnce(&mut P, &mut Context<'_>) + 'static,
    ) -> DelayedCall {
        let h = self.conn.handle;
        self.core.connection(h).call_later(delay, f)
    }
}
