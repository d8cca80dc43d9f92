//! What callbacks can reach: [`Core`] (the reactor's timers, stop, listen,
//! connect, other connections) and [`Context`] (a connection's transport plus
//! `Core`, through `Deref`).

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::buf::WriteBuf;
use crate::error::{DisconnectReason, Error, Result};
use crate::protocol::Protocol;
use crate::reactor::timers::{TimerId, TimerQueue};

/// A callback scheduled with [`Core::call_later`].
pub(crate) type TimerFn = Box<dyn FnOnce(&mut Core)>;
/// A closure sent from another thread with [`ReactorHandle::call_from_thread`].
pub(crate) type ThreadFn = Box<dyn FnOnce(&mut Core) + Send>;
/// A closure run against one connection's protocol.
pub(crate) type ProtoFn = Box<dyn FnOnce(&mut dyn Protocol, &mut Context<'_>)>;

/// What a timer entry does when it expires.
pub(crate) enum Timed {
    /// A user callback.
    Call(TimerFn),
    /// Something the driver handles itself (connect timeouts, lingering closes...).
    Internal(crate::reactor::InternalTimer),
}

impl fmt::Debug for Timed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timed::Call(_) => f.write_str("Call"),
            Timed::Internal(t) => write!(f, "Internal({t:?})"),
        }
    }
}

/// Work a callback asked for that the driver carries out once the callback returns.
pub(crate) enum Op {
    Write(ConnectionHandle, Bytes),
    Lose(ConnectionHandle),
    Abort(ConnectionHandle),
    PauseReading(ConnectionHandle),
    ResumeReading(ConnectionHandle),
    Call(ConnectionHandle, ProtoFn),
    Listen(crate::reactor::PendingListen),
    StopListening(u64),
    Connect(crate::reactor::PendingConnect),
    StopConnecting(u64),
    Disconnect(u64),
    Shutdown(Duration),
}

/// What happens when a callback panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// Log the panic, abort that connection, keep serving the others (default).
    #[default]
    AbortConnection,
    /// Like `AbortConnection`, and stop the reactor: `run` returns
    /// [`Error::Panicked`].
    StopReactor,
    /// Like `AbortConnection`, and remember the message: tests check
    /// [`Core::take_panics`] (or call `testing::assert_no_panics`).
    Record,
}

/// State shared with other threads through [`ReactorHandle`].
pub(crate) struct Shared {
    pub(crate) queue: Mutex<VecDeque<ThreadFn>>,
    pub(crate) waker: Option<mio::Waker>,
    pub(crate) running: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// A `Send + Clone` door into a reactor from other threads.
///
/// Closures queued with [`call_from_thread`](Self::call_from_thread) run on the
/// reactor thread, in the order queued, waking the reactor if it sleeps.
///
/// ```
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new().unwrap();
/// let handle = reactor.handle();
/// std::thread::spawn(move || {
///     handle.call_from_thread(|core| {
///         core.stop().unwrap();
///     });
/// });
/// reactor.run().unwrap(); // returns once the other thread's call has run
/// ```
#[derive(Clone, Debug)]
pub struct ReactorHandle {
    shared: Arc<Shared>,
}

impl ReactorHandle {
    /// Queues `f` to run on the reactor thread. Calls run in the order queued; a
    /// call queued while the reactor is not running waits for the next `run`.
    pub fn call_from_thread(&self, f: impl FnOnce(&mut Core) + Send + 'static) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Box::new(f));
        if let Some(w) = &self.shared.waker {
            if let Err(e) = w.wake() {
                tracing::error!(error = %e, "could not wake the reactor");
            }
        }
    }

    /// Stops the reactor from another thread.
    ///
    /// # Errors
    /// [`Error::NotRunning`] if the reactor is not running.
    pub fn stop(&self) -> Result<()> {
        if !self
            .shared
            .running
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(Error::NotRunning);
        }
        self.call_from_thread(|core| {
            let _ = core.stop();
        });
        Ok(())
    }
}

/// The part of the reactor that callbacks reach: the clock, timers, stop, and
/// operations on listeners, connectors and connections by handle.
///
/// A [`Reactor`](crate::Reactor) dereferences to its `Core`, and so does every
/// [`Context`], so `reactor.call_later(..)` and `ctx.call_later(..)` are the same
/// call.
pub struct Core {
    now: Instant,
    pub(crate) timers: TimerQueue<Timed>,
    pub(crate) ops: Vec<Op>,
    pub(crate) running: bool,
    pub(crate) stop_requested: bool,
    pub(crate) shared: Arc<Shared>,
    next_id: u64,
    pub(crate) panic_policy: PanicPolicy,
    pub(crate) panics: Vec<String>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("now", &self.now)
            .field("timers", &self.timers.len())
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn new(now: Instant, waker: Option<mio::Waker>) -> Core {
        Core {
            now,
            timers: TimerQueue::new(),
            ops: Vec::new(),
            running: false,
            stop_requested: false,
            shared: Arc::new(Shared {
                queue: Mutex::new(VecDeque::new()),
                waker,
                running: std::sync::atomic::AtomicBool::new(false),
            }),
            next_id: 1,
            panic_policy: PanicPolicy::default(),
            panics: Vec::new(),
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The reactor's current time: a monotonic clock read once per turn (or the
    /// fake clock's time in tests).
    pub fn now(&self) -> Instant {
        self.now
    }

    pub(crate) fn set_now(&mut self, now: Instant) {
        // Monotonic even if a caller hands in an older instant.
        if now > self.now {
            self.now = now;
        }
    }

    /// Whether the reactor is inside `run`.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Asks the reactor to return from `run` at the end of this turn.
    ///
    /// # Errors
    /// [`Error::NotRunning`] if the reactor is not running.
    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Err(Error::NotRunning);
        }
        self.stop_requested = true;
        Ok(())
    }

    /// A `Send + Clone` handle for other threads.
    pub fn handle(&self) -> ReactorHandle {
        ReactorHandle {
            shared: self.shared.clone(),
        }
    }

    /// Runs `f` after `delay`, on the reactor thread. A zero delay runs it on the
    /// next turn, never inside the current callback. Calls due at the same time run
    /// in the order they were scheduled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::Reactor;
    ///
    /// let mut reactor = Reactor::new().unwrap();
    /// let call = reactor.call_later(Duration::from_secs(60), |_| unreachable!());
    /// reactor.call_later(Duration::ZERO, move |core| {
    ///     call.cancel(core).unwrap();
    ///     core.stop().unwrap();
    /// });
    /// reactor.run().unwrap();
    /// ```
    pub fn call_later(
        &mut self,
        delay: Duration,
        f: impl FnOnce(&mut Core) + 'static,
    ) -> DelayedCall {
        let deadline = self.now + delay;
        DelayedCall {
            id: self.timers.schedule(deadline, Timed::Call(Box::new(f))),
        }
    }

    pub(crate) fn schedule_internal(
        &mut self,
        delay: Duration,
        t: crate::reactor::InternalTimer,
    ) -> TimerId {
        let deadline = self.now + delay;
        self.timers.schedule(deadline, Timed::Internal(t))
    }

    /// Writes `data` to another connection (or this one) by handle. The write
    /// happens when the current callback returns. Writes to a connection that is
    /// gone or closing are dropped, as [`Context::write`] drops them.
    pub fn write_to(&mut self, conn: ConnectionHandle, data: impl Into<Bytes>) {
        self.ops.push(Op::Write(conn, data.into()));
    }

    /// Closes a connection by handle after flushing it (see
    /// [`Context::lose_connection`]).
    pub fn lose_connection(&mut self, conn: ConnectionHandle) {
        self.ops.push(Op::Lose(conn));
    }

    /// Aborts a connection by handle (see [`Context::abort_connection`]).
    pub fn abort_connection(&mut self, conn: ConnectionHandle) {
        self.ops.push(Op::Abort(conn));
    }

    /// Pauses reading on a connection by handle.
    pub fn pause_reading(&mut self, conn: ConnectionHandle) {
        self.ops.push(Op::PauseReading(conn));
    }

    /// Resumes reading on a connection by handle.
    pub fn resume_reading(&mut self, conn: ConnectionHandle) {
        self.ops.push(Op::ResumeReading(conn));
    }

    /// Runs `f` with the protocol of `conn`, if it still exists and is a `P`, once
    /// the current callback has returned. This is how a timer or another
    /// connection calls into a protocol.
    pub fn with_protocol<P: Protocol>(
        &mut self,
        conn: ConnectionHandle,
        f: impl FnOnce(&mut P, &mut Context<'_>) + 'static,
    ) {
        self.ops.push(Op::Call(
            conn,
            Box::new(move |p: &mut dyn Protocol, ctx: &mut Context<'_>| {
                let any: &mut dyn std::any::Any = p;
                match any.downcast_mut::<P>() {
                    Some(p) => f(p, ctx),
                    None => tracing::warn!(
                        "with_protocol: connection {:?} does not run a {}",
                        ctx.handle(),
                        std::any::type_name::<P>()
                    ),
                }
            }),
        ));
    }

    /// Schedules `f` to run with the protocol of `conn` after `delay` (nothing
    /// happens if the connection is gone by then).
    pub fn call_later_on<P: Protocol>(
        &mut self,
        conn: ConnectionHandle,
        delay: Duration,
        f: impl FnOnce(&mut P, &mut Context<'_>) + 'static,
    ) -> DelayedCall {
        self.call_later(delay, move |core| core.with_protocol(conn, f))
    }

    /// Sets what happens when a callback panics.
    pub fn set_panic_policy(&mut self, policy: PanicPolicy) {
        self.panic_policy = policy;
    }

    /// The messages of panics recorded under [`PanicPolicy::Record`], emptied.
    pub fn take_panics(&mut self) -> Vec<String> {
        std::mem::take(&mut self.panics)
    }

    /// Records a caught panic according to the policy. Returns the message.
    pub(crate) fn caught_panic(
        &mut self,
        payload: Box<dyn std::any::Any + Send>,
        what: &str,
    ) -> Arc<str> {
        let msg: Arc<str> = if let Some(s) = payload.downcast_ref::<&str>() {
            Arc::from(*s)
        } else if let Some(s) = payload.downcast_ref::<String>() {
            Arc::from(s.as_str())
        } else {
            Arc::from("(non-string panic payload)")
        };
        tracing::error!(panic = %msg, "{what} panicked");
        match self.panic_policy {
            PanicPolicy::AbortConnection => {}
            PanicPolicy::StopReactor | PanicPolicy::Record => self.panics.push(msg.to_string()),
        }
        if self.panic_policy == PanicPolicy::StopReactor && self.running {
            self.stop_requested = true;
        }
        msg
    }
}

/// A call scheduled with [`Core::call_later`] (Twisted's `IDelayedCall`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DelayedCall {
    id: TimerId,
}

impl DelayedCall {
    /// Cancels the call.
    ///
    /// # Errors
    /// [`Error::AlreadyCalled`] if it already ran or was cancelled.
    pub fn cancel(&self, core: &mut Core) -> Result<()> {
        core.timers
            .cancel(self.id)
            .map(drop)
            .map_err(|_| Error::AlreadyCalled)
    }

    /// Moves the call to `delay` from now.
    ///
    /// # Errors
    /// [`Error::AlreadyCalled`] if it already ran or was cancelled.
    pub fn reset(&self, core: &mut Core, delay: Duration) -> Result<()> {
        let deadline = core.now() + delay;
        core.timers
            .reset(self.id, deadline)
            .map_err(|_| Error::AlreadyCalled)
    }

    /// Pushes the call `by` later than it was due.
    ///
    /// # Errors
    /// [`Error::AlreadyCalled`] if it already ran or was cancelled.
    pub fn delay(&self, core: &mut Core, by: Duration) -> Result<()> {
        let due = core.timers.deadline(self.id).ok_or(Error::AlreadyCalled)?;
        core.timers
            .reset(self.id, due + by)
            .map_err(|_| Error::AlreadyCalled)
    }

    /// Whether the call is still pending.
    pub fn active(&self, core: &Core) -> bool {
        core.timers.is_active(self.id)
    }

    /// When the call is due, while it is pending.
    pub fn time(&self, core: &Core) -> Option<Instant> {
        core.timers.deadline(self.id)
    }
}

/// Names one connection, from anywhere on the reactor thread (another
/// connection's callback, a timer). Stale handles, of connections that closed,
/// are recognised and ignored, even after their slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionHandle {
    pub(crate) key: u32,
    pub(crate) gen: u32,
}

pub(crate) mod flags {
    /// `lose_connection` was called: close after the flush.
    pub const CLOSING: u16 = 1 << 0;
    /// The connection is finished: aborted, or `connection_lost` is due.
    pub const DEAD: u16 = 1 << 1;
    /// The protocol asked not to be fed data.
    pub const READ_PAUSED: u16 = 1 << 2;
    /// `pause_writing` was delivered and `resume_writing` not yet.
    pub const PRODUCER_PAUSED: u16 = 1 << 3;
    /// The protocol opted into half-close.
    pub const HALF_CLOSE: u16 = 1 << 4;
    /// `lose_write_connection` was called.
    pub const WRITE_CLOSING: u16 = 1 << 5;
    /// The write side is shut down.
    pub const WRITE_SHUT: u16 = 1 << 6;
    /// The peer's EOF was seen.
    pub const READ_EOF: u16 = 1 << 7;
    /// `abort_connection` was called.
    pub const ABORT: u16 = 1 << 8;
    /// Readable while paused: read when resumed.
    pub const READ_PENDING: u16 = 1 << 9;
    /// `connection_made` has run (so `connection_lost` is owed).
    pub const MADE: u16 = 1 << 10;
}

/// Default high water mark of a write buffer.
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Default low water mark of a write buffer.
pub const DEFAULT_LOW_WATER: usize = 16 * 1024;
/// Default hard cap of a write buffer: a peer that lets this much pile up is aborted.
pub const DEFAULT_WRITE_CAP: usize = 64 * 1024 * 1024;

/// Per-connection limits, kept out of line until somebody changes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) low: usize,
    pub(crate) high: usize,
    pub(crate) cap: usize,
}

pub(crate) const DEFAULT_LIMITS: Limits = Limits {
    low: DEFAULT_LOW_WATER,
    high: DEFAULT_HIGH_WATER,
    cap: DEFAULT_WRITE_CAP,
};

/// The transport-independent state of one connection.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) handle: ConnectionHandle,
    pub(crate) flags: u16,
    pub(crate) peer: SocketAddr,
    /// Bytes the kernel (or the in-memory peer) refused, in order.
    pub(crate) pending: Option<Box<WriteBuf>>,
    pub(crate) limits: Option<Box<Limits>>,
    /// A reason chosen by the protocol for its own close.
    pub(crate) close_reason: Option<Box<DisconnectReason>>,
}

impl ConnState {
    pub(crate) fn new(handle: ConnectionHandle, peer: SocketAddr) -> Self {
        ConnState {
            handle,
            flags: 0,
            peer,
            pending: None,
            limits: None,
            close_reason: None,
        }
    }

    pub(crate) fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    pub(crate) fn set(&mut self, f: u16) {
        self.flags |= f;
    }

    pub(crate) fn clear(&mut self, f: u16) {
        self.flags &= !f;
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits.as_deref().copied().unwrap_or(DEFAULT_LIMITS)
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.len())
    }

    /// Whether writes are refused.
    pub(crate) fn write_refused(&self) -> bool {
        self.has(
            flags::CLOSING | flags::DEAD | flags::ABORT | flags::WRITE_CLOSING | flags::WRITE_SHUT,
        )
    }
}

/// Source of a connection's local address (a socket, or a fixed test address).
pub(crate) trait HostAddr {
    fn host_addr(&self) -> std::io::Result<SocketAddr>;

    /// Writes `data` to the transport at once, where it can (`None`: it cannot,
    /// and the write is gathered as usual).
    fn write_now(&self, data: &[u8]) -> Option<std::io::Result<usize>> {
        let _ = data;
        None
    }
}

/// A write at least this long, made when nothing is gathered or buffered, goes
/// to the socket at once instead of being copied into the gather buffer: copying
/// it would cost more than the system call that gathering saves.
pub(crate) const WRITE_THROUGH: usize = 8 * 1024;

impl HostAddr for SocketAddr {
    fn host_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(*self)
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
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("conn", &self.conn.handle)
            .field("peer", &self.conn.peer)
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

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer
    }

    /// This side's address.
    ///
    /// # Errors
    /// The operating system's error, if the socket can no longer tell.
    pub fn host_addr(&self) -> std::io::Result<SocketAddr> {
        self.host.host_addr()
    }

    /// Queues `data` for the peer. Silently dropped after `lose_connection`,
    /// `abort_connection` or once the connection is lost (Twisted's rule); use
    /// [`try_write`](Self::try_write) to be told.
    pub fn write(&mut self, data: &[u8]) {
        let _ = self.try_write(data);
    }

    /// Queues `data` for the peer.
    ///
    /// # Errors
    /// [`Error::ConnectionClosed`] after `lose_connection`, `lose_write_connection`,
    /// `abort_connection`, or once the connection is lost.
    pub fn try_write(&mut self, data: &[u8]) -> Result<()> {
        if self.conn.write_refused() {
            return Err(Error::ConnectionClosed);
        }
        if data.len() >= WRITE_THROUGH && self.out.is_empty() && self.conn.pending.is_none() {
            match self.host.write_now(data) {
                Some(Ok(n)) => {
                    self.out.push_slice(&data[n..]);
                    return Ok(());
                }
                Some(Err(e))
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::Interrupted =>
                {
                    // The connection is broken: it ends when the callback returns,
                    // as if the gathered write had failed there.
                    if self.conn.close_reason.is_none() {
                        self.conn.close_reason = Some(Box::new(DisconnectReason::from_io(&e)));
                    }
                    self.conn.set(flags::ABORT);
                    return Ok(());
                }
                _ => {}
            }
        }
        self.out.push_slice(data);
        Ok(())
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
        self.out.push_bytes(data);
        Ok(())
    }

    /// Queues several buffers in order (Twisted's `writeSequence`).
    pub fn write_sequence(&mut self, parts: &[&[u8]]) {
        if self.conn.write_refused() {
            return;
        }
        for p in parts {
            self.out.push_slice(p);
        }
    }

    /// Bytes written but not yet taken by the kernel (or the in-memory peer).
    pub fn buffered_len(&self) -> usize {
        self.conn.pending_len() + self.out.len()
    }

    /// Closes the connection once everything written has been flushed.
    /// `connection_lost` follows with [`DisconnectReason::Done`].
    pub fn lose_connection(&mut self) {
        self.conn.set(flags::CLOSING);
    }

    /// Like [`lose_connection`](Self::lose_connection), but `connection_lost` hears
    /// `reason` (for example a protocol error after bad input).
    pub fn lose_connection_with(&mut self, reason: DisconnectReason) {
        if self.conn.close_reason.is_none() {
            self.conn.close_reason = Some(Box::new(reason));
        }
        self.conn.set(flags::CLOSING);
    }

    /// Drops everything buffered and resets the connection.
    /// `connection_lost` follows with [`DisconnectReason::Aborted`].
    pub fn abort_connection(&mut self) {
        self.out.clear();
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
        self.conn.limits = Some(Box::new(l));
    }

    /// Sets the write buffer's hard cap: past it the connection is aborted with
    /// [`DisconnectReason::WriteBufferFull`]. Default: 64 MiB.
    pub fn set_write_buffer_cap(&mut self, cap: usize) {
        let mut l = self.conn.limits();
        l.cap = cap;
        self.conn.limits = Some(Box::new(l));
    }

    /// Runs `f` with this connection's protocol after `delay` (a connection's own
    /// timer). Nothing happens if the connection is gone by then.
    pub fn call_later_self<P: Protocol>(
        &mut self,
        delay: Duration,
        f: impl FnOnce(&mut P, &mut Context<'_>) + 'static,
    ) -> DelayedCall {
        let h = self.conn.handle;
        self.core.call_later_on(h, delay, f)
    }
}
