//! [`Connection`]: a stream connection that `async` code reads and writes,
//! carried by a [`StreamProtocol`] on the reactor.
//!
//! The protocol and the connection share one state. The protocol fills the
//! input buffer from `data_received` (pausing the transport's reading when it
//! is full) and records the transport's write pressure (`pause_writing` /
//! `resume_writing`); the connection's futures read from that buffer and queue
//! writes, which the protocol hands to its transport in a callback run through
//! [`ConnectionRef::with_protocol`](crate::ConnectionRef::with_protocol) at the
//! end of the turn.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};

use super::StreamError;
use crate::address::Address;
use crate::context::{ConnectionHandle, Core};
use crate::error::{DisconnectReason, Error};
use crate::local::LocalHandle;
use crate::protocol::Protocol;
use crate::transport::{Context, DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER};

/// Default size of a connection's input buffer: past it, the transport stops
/// reading until the application has read some.
pub const DEFAULT_INPUT_BUFFER: usize = 256 * 1024;

/// How an async connection buffers. Applies from `connection_made`.
///
/// ```
/// use torsion::aio::{self, StreamOptions};
///
/// // Connections that buffer at most 16 KiB of input each.
/// let options = StreamOptions {
///     input_buffer: 16 * 1024,
///     ..StreamOptions::default()
/// };
/// let (_factory, _listener) = aio::accept_queue_with(options);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Bytes received and not yet read at which the transport stops reading
    /// (default [`DEFAULT_INPUT_BUFFER`]). One read of the transport may
    /// overshoot it by its read size (64 KiB on a socket); a
    /// [`read_line`](Connection::read_line) with a larger maximum raises it
    /// while it waits.
    pub input_buffer: usize,
    /// The transport's write buffer level above which
    /// [`write_all`](Connection::write_all) waits (default
    /// [`DEFAULT_HIGH_WATER`]); it also bounds the bytes queued in the
    /// connection before they reach the transport.
    pub write_high_water: usize,
    /// The level at which waiting writers go on (default
    /// [`DEFAULT_LOW_WATER`]).
    pub write_low_water: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            input_buffer: DEFAULT_INPUT_BUFFER,
            write_high_water: DEFAULT_HIGH_WATER,
            write_low_water: DEFAULT_LOW_WATER,
        }
    }
}

/// Where a [`flush`](Connection::flush) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    Idle,
    /// A check of the transport's buffer is queued.
    Probing,
    /// The transport's marks are lowered to zero: `resume_writing` says empty.
    Draining,
    /// The transport's buffer was found empty.
    Done,
}

/// Where the write side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteSide {
    Open,
    /// `shutdown_write` or `close` was asked for.
    Closing,
    /// The transport shut it down.
    Shut,
}

pub(super) type AcceptQueue = std::rc::Weak<RefCell<super::listen::Queue>>;

pub(super) struct Shared {
    options: StreamOptions,
    handle: Option<ConnectionHandle>,
    local: Option<LocalHandle>,
    peer: Option<Address>,
    host: Option<Address>,
    /// `connection_made` ran.
    made: bool,
    /// Nobody will take the connection (its `Connecting` was dropped).
    abandoned: bool,
    /// The `Connection` exists (until dropped).
    taken: bool,
    /// Where to put the connection once made (accepted ones).
    accept: Option<AcceptQueue>,
    connecting: Option<Waker>,

    input: BytesMut,
    eof: bool,
    lost: Option<DisconnectReason>,
    read_paused: bool,
    resume_queued: bool,
    /// What a waiting `read_line` needs buffered at once (raises the limit).
    want: usize,
    reader: Option<Waker>,

    queue: VecDeque<Bytes>,
    queued: usize,
    drain_queued: bool,
    write_paused: bool,
    /// The transport's buffer as last seen in a callback.
    transport_buffered: usize,
    write_side: WriteSide,
    /// `close` (or the drop) queued the close.
    close_queued: bool,
    flush: Flush,
    writer: Option<Waker>,
}

impl Shared {
    fn new(options: StreamOptions, accept: Option<AcceptQueue>) -> Shared {
        Shared {
            options,
            handle: None,
            local: None,
            peer: None,
            host: None,
            made: false,
            abandoned: false,
            taken: false,
            accept,
            connecting: None,
            input: BytesMut::new(),
            eof: false,
            lost: None,
            read_paused: false,
            resume_queued: false,
            want: 0,
            reader: None,
            queue: VecDeque::new(),
            queued: 0,
            drain_queued: false,
            write_paused: false,
            transport_buffered: 0,
            write_side: WriteSide::Open,
            close_queued: false,
            flush: Flush::Idle,
            writer: None,
        }
    }

    fn limit(&self) -> usize {
        self.options.input_buffer.max(self.want).max(1)
    }

    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    fn wake_all(&mut self) {
        self.wake_reader();
        self.wake_writer();
        if let Some(w) = self.connecting.take() {
            w.wake();
        }
    }

    /// The error for an operation on a lost connection.
    fn lost_error(&self) -> Option<StreamError> {
        self.lost.as_ref().map(|r| match r {
            DisconnectReason::Done => StreamError::Closed,
            r => r.into(),
        })
    }
}

type SharedRef = Rc<RefCell<Shared>>;

/// Runs `f` with the connection's [`StreamProtocol`] and its context at the
/// end of the current turn. The one place async connections reach a
/// connection by handle.
///
/// Nothing happens when the connection is gone: its `connection_lost` has
/// then woken every waiting future already, so that failure
/// ([`Error::NoSuchHandle`]) is expected and swallowed; any other (a panic)
/// is left to the Deferred's unhandled-error log.
fn on_protocol(
    local: &LocalHandle,
    h: ConnectionHandle,
    f: impl FnOnce(&mut StreamProtocol, &mut Context<'_>) + 'static,
) {
    local.call(move |core: &mut Core| {
        let d = core.connection(h).with_protocol(f);
        drop(d.add_errback(|e| match e {
            Error::NoSuchHandle => Ok(()),
            e => Err(e),
        }));
    });
}

/// The protocol under an async [`Connection`]: it buffers what arrives and
/// writes what the connection queued. Connect it anywhere a protocol goes
/// (a listener's factory, `Core::connect_protocol`, the in-memory
/// [`Pump`](crate::testing::Pump)), and await the [`Connecting`] made with it
/// (see [`protocol`](super::protocol)).
pub struct StreamProtocol {
    shared: SharedRef,
}

impl fmt::Debug for StreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.borrow();
        f.debug_struct("StreamProtocol")
            .field("handle", &s.handle)
            .field("input", &s.input.len())
            .field("queued", &s.queued)
            .finish_non_exhaustive()
    }
}

impl StreamProtocol {
    pub(super) fn new(options: StreamOptions, accept: Option<AcceptQueue>) -> Self {
        StreamProtocol {
            shared: Rc::new(RefCell::new(Shared::new(options, accept))),
        }
    }

    pub(super) fn connecting(&self) -> Connecting {
        Connecting {
            shared: Some(self.shared.clone()),
        }
    }

    /// Hands the queued writes to the transport, unless it is over its high
    /// water mark (then `resume_writing` does).
    fn drain(&mut self, ctx: &mut Context<'_>) {
        let mut s = self.shared.borrow_mut();
        s.drain_queued = false;
        if s.write_paused || s.lost.is_some() {
            return;
        }
        while let Some(b) = s.queue.pop_front() {
            ctx.write_bytes(b);
        }
        s.queued = 0;
        s.transport_buffered = ctx.buffered_len();
        if s.write_side == WriteSide::Closing {
            ctx.lose_write_connection();
        }
        s.wake_writer();
    }

    /// Whether the transport's buffer is empty; if not, lowers its water marks
    /// so that `resume_writing` tells when it is.
    fn probe(&mut self, ctx: &mut Context<'_>) {
        let mut s = self.shared.borrow_mut();
        if s.flush != Flush::Probing {
            return;
        }
        if ctx.buffered_len() == 0 {
            s.flush = Flush::Done;
            s.wake_writer();
        } else {
            s.flush = Flush::Draining;
            ctx.set_write_water_marks(0, 0);
        }
    }
}

impl Protocol for StreamProtocol {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        let accept = {
            let mut s = self.shared.borrow_mut();
            ctx.set_half_close(true);
            let o = s.options;
            ctx.set_write_water_marks(o.write_low_water, o.write_high_water);
            s.handle = Some(ctx.handle());
            s.local = Some(ctx.local());
            s.peer = Some(ctx.peer().clone());
            s.host = ctx.host().ok();
            s.made = true;
            if s.abandoned {
                tracing::debug!(peer = %ctx.peer(), "async connection not wanted: closing");
                ctx.lose_connection();
                return;
            }
            s.wake_all();
            s.accept.take()
        };
        if let Some(q) = accept {
            if let Some(conn) = Connection::new(self.shared.clone()) {
                // If the listener is gone, the connection is dropped: closed.
                super::listen::push(&q, conn);
            }
        }
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        let mut s = self.shared.borrow_mut();
        s.input.extend_from_slice(data);
        if s.input.len() >= s.limit() && !s.read_paused {
            ctx.pause_reading();
            s.read_paused = true;
        }
        s.wake_reader();
    }

    fn read_connection_lost(&mut self, _ctx: &mut Context<'_>) {
        let mut s = self.shared.borrow_mut();
        s.eof = true;
        s.wake_reader();
    }

    fn write_connection_lost(&mut self, _ctx: &mut Context<'_>) {
        let mut s = self.shared.borrow_mut();
        s.write_side = WriteSide::Shut;
        s.wake_writer();
    }

    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        let mut s = self.shared.borrow_mut();
        s.write_paused = true;
        s.transport_buffered = ctx.buffered_len();
    }

    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        {
            let mut s = self.shared.borrow_mut();
            s.write_paused = false;
            s.transport_buffered = ctx.buffered_len();
            if s.flush == Flush::Draining {
                let o = s.options;
                ctx.set_write_water_marks(o.write_low_water, o.write_high_water);
                s.flush = Flush::Done;
            }
            s.wake_writer();
        }
        self.drain(ctx);
    }

    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let mut s = self.shared.borrow_mut();
        tracing::debug!(peer = ?s.peer, %reason, "async connection lost");
        s.lost = Some(reason.clone());
        s.queue.clear();
        s.queued = 0;
        s.transport_buffered = 0;
        s.wake_all();
    }
}

impl Drop for StreamProtocol {
    fn drop(&mut self) {
        let Ok(mut s) = self.shared.try_borrow_mut() else {
            return;
        };
        // Built for a listener, never made (the handshake or the connect
        // failed first): no longer coming.
        if let Some(q) = s.accept.take() {
            super::listen::forget(&q);
        }
        // Never connected (refused, cancelled...): whoever awaits the
        // connection hears it.
        if !s.made && s.lost.is_none() {
            s.lost = Some(DisconnectReason::Cancelled);
            s.wake_all();
        }
    }
}

/// An outgoing or accepted connection on its way: resolves to the
/// [`Connection`] once the protocol's `connection_made` has run (see
/// [`protocol`](super::protocol)). Dropping it before then closes the
/// connection when it is made.
pub struct Connecting {
    shared: Option<SharedRef>,
}

impl fmt::Debug for Connecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connecting")
            .field("made", &self.shared.as_ref().map(|s| s.borrow().made))
            .finish()
    }
}

impl Connecting {
    /// The connection, if `connection_made` has run (once).
    pub(super) fn take_made(&mut self) -> Option<Connection> {
        let made = self.shared.as_ref()?.borrow().made;
        if !made {
            return None;
        }
        self.shared.take().and_then(Connection::new)
    }
}

impl Future for Connecting {
    type Output = Result<Connection, StreamError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let Some(shared) = self.shared.clone() else {
            return Poll::Pending; // taken already
        };
        let mut s = shared.borrow_mut();
        if s.made {
            drop(s);
            return match self.take_made() {
                Some(c) => Poll::Ready(Ok(c)),
                None => Poll::Ready(Err(StreamError::Closed)),
            };
        }
        if let Some(r) = &s.lost {
            return Poll::Ready(Err(r.into()));
        }
        s.connecting = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            if let Ok(mut s) = s.try_borrow_mut() {
                s.abandoned = true;
            }
        }
    }
}

/// A stream connection (TCP, Unix, TLS, or in memory) for `async` code on the
/// reactor thread.
///
/// Reads come from a bounded input buffer: while it is full the transport
/// stops reading, so a slow reader slows the peer down (TCP's window) instead
/// of growing memory. Writes are queued and handed to the transport at the end
/// of the reactor turn; [`write_all`](Self::write_all) waits while the
/// transport's buffer is above its high water mark. The connection is
/// half-closable: after the peer's end of stream, reads return 0 and writes
/// go on until [`shutdown_write`](Self::shutdown_write) or
/// [`close`](Self::close).
///
/// Dropping the connection closes it after flushing what was written (as
/// [`Context::lose_connection`]).
///
/// It implements [`futures_io::AsyncRead`] and [`futures_io::AsyncWrite`]
/// (`poll_close` shuts the write side down).
///
/// All its futures are for tasks on the connection's own reactor
/// ([`Core::spawn_local`]).
pub struct Connection {
    shared: SharedRef,
    local: LocalHandle,
    handle: ConnectionHandle,
    peer: Address,
    host: Option<Address>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.borrow();
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("host", &self.host)
            .field("input_buffered", &s.input.len())
            .field("write_queued", &s.queued)
            .field("lost", &s.lost)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The connection over a made protocol, once.
    fn new(shared: SharedRef) -> Option<Connection> {
        let (local, handle, peer, host) = {
            let mut s = shared.borrow_mut();
            if s.taken {
                return None;
            }
            s.taken = true;
            (s.local.clone()?, s.handle?, s.peer.clone()?, s.host.clone())
        };
        Some(Connection {
            shared,
            local,
            handle,
            peer,
            host,
        })
    }

    /// The peer's address (IP, or Unix-domain).
    pub fn peer(&self) -> &Address {
        &self.peer
    }

    /// This side's address, if the socket could tell when connected.
    pub fn host(&self) -> Option<&Address> {
        self.host.as_ref()
    }

    /// The connection's handle, to reach it from protocol-style code.
    pub fn handle(&self) -> ConnectionHandle {
        self.handle
    }

    /// Bytes received and not read yet.
    pub fn input_buffered(&self) -> usize {
        self.shared.borrow().input.len()
    }

    /// Bytes written and not yet taken by the kernel (or the in-memory peer):
    /// those queued here plus the transport's buffer as last seen.
    pub fn write_buffered(&self) -> usize {
        let s = self.shared.borrow();
        s.queued + s.transport_buffered
    }

    /// The options the connection runs with.
    pub fn options(&self) -> StreamOptions {
        self.shared.borrow().options
    }

    /// Why the connection ended, once it did.
    pub fn lost(&self) -> Option<DisconnectReason> {
        self.shared.borrow().lost.clone()
    }

    /// After consuming input: resumes the transport's reading once the buffer
    /// is half empty (or below what a waiting line needs).
    fn maybe_resume(&self, s: &mut Shared) {
        if !s.read_paused || s.resume_queued || s.lost.is_some() {
            return;
        }
        let limit = s.limit();
        let low = if s.want > s.options.input_buffer {
            limit - 1
        } else {
            limit / 2
        };
        if s.input.len() > low {
            return;
        }
        s.resume_queued = true;
        let shared = self.shared.clone();
        on_protocol(&self.local, self.handle, move |_p, ctx| {
            let mut s = shared.borrow_mut();
            s.resume_queued = false;
            if s.input.len() < s.limit() {
                s.read_paused = false;
                ctx.resume_reading();
            }
        });
    }

    /// Reads what is there into `buf`, or waits for something.
    fn poll_read_buf(
        &self,
        cx: &mut TaskContext<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<usize, StreamError>> {
        let mut s = self.shared.borrow_mut();
        // A line that was waited for and given up (a timeout) no longer
        // raises the limit.
        s.want = 0;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !s.input.is_empty() {
            let n = buf.len().min(s.input.len());
            buf[..n].copy_from_slice(&s.input[..n]);
            s.input.advance(n);
            self.maybe_resume(&mut s);
            return Poll::Ready(Ok(n));
        }
        if s.eof {
            return Poll::Ready(Ok(0));
        }
        match &s.lost {
            Some(DisconnectReason::Done) => Poll::Ready(Ok(0)),
            Some(r) => Poll::Ready(Err(r.into())),
            None => {
                s.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Reads at least one byte into `buf` (as many as are there, up to its
    /// length), waiting for them. Returns 0 at the end of the stream (or for
    /// an empty `buf`).
    ///
    /// # Errors
    /// The reason the connection ended, if not cleanly: [`StreamError::Reset`]
    /// and so on. Bytes that arrived before are read first.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        poll_fn(|cx| self.poll_read_buf(cx, buf)).await
    }

    /// Fills `buf` completely.
    ///
    /// # Errors
    /// [`StreamError::UnexpectedEof`] if the stream ends first (what was read
    /// is in `buf`); otherwise as [`read`](Self::read). Not cancel-safe: bytes
    /// read before the future is dropped are lost.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StreamError> {
        let mut at = 0;
        while at < buf.len() {
            match self.read(&mut buf[at..]).await? {
                0 => {
                    return Err(StreamError::UnexpectedEof {
                        missing: buf.len() - at,
                    })
                }
                n => at += n,
            }
        }
        Ok(())
    }

    /// Reads up to and including the next `delim`; the line (without `delim`)
    /// may be at most `max` bytes long. At the end of the stream, the last
    /// bytes without `delim` are returned; then an empty vector.
    ///
    /// # Errors
    /// [`StreamError::LineTooLong`] when more than `max` bytes come without
    /// `delim`: nothing is consumed (a [`read`](Self::read) can still take the
    /// bytes). The reason, if the connection broke off before `delim` (the
    /// partial line is left for [`read`](Self::read)).
    pub async fn read_until(&mut self, delim: u8, max: usize) -> Result<Vec<u8>, StreamError> {
        let r = poll_fn(|cx| self.poll_read_until(cx, delim, max)).await;
        self.shared.borrow_mut().want = 0;
        r
    }

    fn poll_read_until(
        &self,
        cx: &mut TaskContext<'_>,
        delim: u8,
        max: usize,
    ) -> Poll<Result<Vec<u8>, StreamError>> {
        let mut s = self.shared.borrow_mut();
        let window = s.input.len().min(max.saturating_add(1));
        if let Some(i) = s.input[..window].iter().position(|&b| b == delim) {
            let line = s.input.split_to(i + 1).to_vec();
            s.want = 0;
            self.maybe_resume(&mut s);
            return Poll::Ready(Ok(line));
        }
        if s.input.len() > max {
            return Poll::Ready(Err(StreamError::LineTooLong { max }));
        }
        match &s.lost {
            // Broken off: the partial line stays for `read`.
            Some(r) if !r.is_clean() => return Poll::Ready(Err(r.into())),
            Some(_) => return Poll::Ready(Ok(s.input.split().to_vec())),
            None if s.eof => return Poll::Ready(Ok(s.input.split().to_vec())),
            None => {}
        }
        // The line needs up to `max + 1` bytes buffered at once.
        s.want = max.saturating_add(1);
        self.maybe_resume(&mut s);
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Reads a line ending in `\n` (included, with any `\r` before it), at most
    /// `max` bytes long without the `\n`. Returns an empty string at the end of
    /// the stream; a last line without `\n` is returned as it is.
    ///
    /// # Errors
    /// [`StreamError::LineTooLong`] (nothing consumed), or
    /// [`StreamError::InvalidUtf8`] (the line is consumed); otherwise as
    /// [`read`](Self::read).
    pub async fn read_line(&mut self, max: usize) -> Result<String, StreamError> {
        let line = self.read_until(b'\n', max).await?;
        String::from_utf8(line).map_err(|_| StreamError::InvalidUtf8)
    }

    /// Waits until the connection may queue more, then queues up to that much
    /// of `data`. Returns how much was queued.
    fn poll_write_some(
        &self,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<Result<usize, StreamError>> {
        let mut s = self.shared.borrow_mut();
        if let Some(e) = s.lost_error() {
            return Poll::Ready(Err(e));
        }
        if s.write_side != WriteSide::Open || s.close_queued {
            return Poll::Ready(Err(StreamError::Closed));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let high = s.options.write_high_water.max(1);
        if s.write_paused || s.queued >= high {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = data.len().min(high - s.queued);
        s.queue.push_back(Bytes::copy_from_slice(&data[..n]));
        s.queued += n;
        self.queue_drain(&mut s);
        Poll::Ready(Ok(n))
    }

    fn queue_drain(&self, s: &mut Shared) {
        if !s.drain_queued {
            s.drain_queued = true;
            on_protocol(&self.local, self.handle, |p, ctx| p.drain(ctx));
        }
    }

    /// Writes all of `data`: queues it for the transport, waiting whenever
    /// the transport's buffer is above its high water mark (so the bytes
    /// buffered for this connection stay under about twice the mark). Returns
    /// once everything is queued; [`flush`](Self::flush) waits until it is
    /// sent.
    ///
    /// # Errors
    /// [`StreamError::Closed`] after [`shutdown_write`](Self::shutdown_write);
    /// the reason, if the connection ended. Not cancel-safe: part of `data`
    /// may have been queued.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), StreamError> {
        let mut rest = data;
        while !rest.is_empty() {
            let n = poll_fn(|cx| self.poll_write_some(cx, rest)).await?;
            rest = &rest[n..];
        }
        Ok(())
    }

    fn poll_flush_inner(&self, cx: &mut TaskContext<'_>) -> Poll<Result<(), StreamError>> {
        let mut s = self.shared.borrow_mut();
        match &s.lost {
            Some(DisconnectReason::Done) => return Poll::Ready(Ok(())),
            Some(r) => return Poll::Ready(Err(r.into())),
            None => {}
        }
        if s.write_side == WriteSide::Shut {
            return Poll::Ready(Ok(()));
        }
        if s.flush == Flush::Done {
            s.flush = Flush::Idle;
            if s.queued == 0 {
                return Poll::Ready(Ok(()));
            }
        }
        if s.queued == 0 && !s.write_paused && s.flush == Flush::Idle {
            s.flush = Flush::Probing;
            on_protocol(&self.local, self.handle, |p, ctx| p.probe(ctx));
        }
        s.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Waits until everything written was taken by the kernel (or the
    /// in-memory peer).
    ///
    /// # Errors
    /// The reason, if the connection ended otherwise than cleanly.
    pub async fn flush(&mut self) -> Result<(), StreamError> {
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    fn poll_shutdown(&self, cx: &mut TaskContext<'_>) -> Poll<Result<(), StreamError>> {
        let mut s = self.shared.borrow_mut();
        match &s.lost {
            Some(DisconnectReason::Done) => return Poll::Ready(Ok(())),
            Some(r) => return Poll::Ready(Err(r.into())),
            None => {}
        }
        match s.write_side {
            WriteSide::Shut => return Poll::Ready(Ok(())),
            WriteSide::Open => {
                s.write_side = WriteSide::Closing;
                // The drain closes the write side after the queued bytes.
                s.drain_queued = false;
                self.queue_drain(&mut s);
            }
            WriteSide::Closing => {}
        }
        s.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Half-closes: sends what was written, then the end of stream (`FIN`);
    /// reading goes on. Waits until the write side is shut down.
    ///
    /// # Errors
    /// The reason, if the connection ended otherwise than cleanly.
    pub async fn shutdown_write(&mut self) -> Result<(), StreamError> {
        poll_fn(|cx| self.poll_shutdown(cx)).await
    }

    /// Closes the connection after sending what was written, and waits until
    /// it is closed. Unread input is dropped.
    ///
    /// # Errors
    /// The reason, if the connection ended otherwise than cleanly (a reset
    /// while flushing...).
    pub async fn close(self) -> Result<(), StreamError> {
        self.start_close();
        let shared = self.shared.clone();
        drop(self);
        poll_fn(move |cx| {
            let mut s = shared.borrow_mut();
            match &s.lost {
                Some(DisconnectReason::Done) => Poll::Ready(Ok(())),
                Some(r) => Poll::Ready(Err(r.into())),
                None => {
                    s.writer = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Aborts the connection at once: buffered data is dropped and the peer
    /// sees a reset.
    pub fn abort(self) {
        self.shared.borrow_mut().close_queued = true;
        let shared = self.shared.clone();
        on_protocol(&self.local, self.handle, move |_p, ctx| {
            shared.borrow_mut().queue.clear();
            ctx.abort_connection();
        });
    }

    fn start_close(&self) {
        let mut s = self.shared.borrow_mut();
        if s.lost.is_some() || s.close_queued {
            return;
        }
        s.close_queued = true;
        let shared = self.shared.clone();
        on_protocol(&self.local, self.handle, move |p, ctx| {
            p.drain(ctx);
            // Still paused: what is left goes with the close.
            let mut s = shared.borrow_mut();
            while let Some(b) = s.queue.pop_front() {
                ctx.write_bytes(b);
            }
            s.queued = 0;
            ctx.lose_connection();
        });
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let open = self
            .shared
            .try_borrow()
            .is_ok_and(|s| s.lost.is_none() && !s.close_queued);
        if open {
            self.start_close();
        }
    }
}

impl futures_io::AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_buf(cx, buf).map_err(io::Error::from)
    }
}

impl futures_io::AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_some(cx, buf).map_err(io::Error::from)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        self.poll_flush_inner(cx).map_err(io::Error::from)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        self.poll_shutdown(cx).map_err(io::Error::from)
    }
}
