//! Work a callback asks for that the driver (the reactor or the test tools)
//! carries out once the callback returns, and the timers drivers keep for
//! themselves. Everything here is plain `std` data: no `mio` type, nothing
//! bound to a poller, so the fake clock can record a listen that binds
//! nothing. What belongs to a layer above (a closure over a protocol, a
//! factory) travels as an [`Erased`] value that only that layer opens.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::ConnectionHandle;
use crate::address::Address;

/// A value of a layer above `core`, carried through the queue unopened.
pub(crate) type Erased = Box<dyn Any>;

/// A callback scheduled with `Core::call_later`.
pub(crate) type TimerFn = Box<dyn FnOnce(&mut super::Core)>;

/// What a timer entry does when it expires.
pub(crate) enum Timed {
    /// A user callback.
    Call(TimerFn),
    /// Something the driver handles itself (connect timeouts, lingering closes...).
    Internal(InternalTimer),
}

impl fmt::Debug for Timed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timed::Call(_) => f.write_str("Call"),
            Timed::Internal(t) => write!(f, "Internal({t:?})"),
        }
    }
}

/// Timers the drivers handle themselves. `Idle` and `Throttle` belong to a
/// connection (every transport); the others to the reactor's sockets.
#[derive(Debug)]
pub(crate) enum InternalTimer {
    ConnectTimeout { key: usize, gen: u32 },
    Reconnect { id: u64 },
    AcceptRetry { key: usize, gen: u32 },
    LingerTimeout { key: usize, gen: u32 },
    Idle { key: usize, gen: u32 },
    Throttle { key: usize, gen: u32 },
    ShutdownDeadline,
}

/// A stream listener bound by `listen_tcp` or `listen_unix`, as `std` sockets.
#[derive(Debug)]
pub(crate) enum BoundListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// A listen request.
pub(crate) struct ListenRequest {
    pub(crate) id: u64,
    /// The address it listens on (an IP address; `None` for a Unix socket).
    pub(crate) addr: Option<SocketAddr>,
    /// The bound socket; `None` under the fake clock, which binds nothing.
    pub(crate) socket: Option<BoundListener>,
    /// The factory and options (opened by the reactor).
    pub(crate) rest: Erased,
}

/// A connect request.
pub(crate) struct ConnectRequest {
    pub(crate) id: u64,
    pub(crate) addr: Address,
    pub(crate) timeout: Duration,
    /// The client factory and options (opened by the reactor).
    pub(crate) rest: Erased,
}

impl ConnectRequest {
    /// Where and how long to try (for in-memory drivers that record the request).
    pub(crate) fn target(&self) -> (SocketAddr, Duration) {
        (self.addr.inet_or_unspecified(), self.timeout)
    }
}

/// Work a callback asked for that the driver carries out once the callback
/// returns.
pub(crate) enum Op {
    Write(ConnectionHandle, Bytes),
    Lose(ConnectionHandle),
    Abort(ConnectionHandle),
    PauseReading(ConnectionHandle),
    ResumeReading(ConnectionHandle),
    /// A closure over the connection's protocol and context (a `ProtoFn`).
    Call(ConnectionHandle, Erased),
    Listen(ListenRequest),
    /// A datagram port (opened by the reactor).
    ListenDatagram(Erased),
    /// A closure over a datagram port's protocol (opened by the reactor).
    DatagramCall(u64, Erased),
    StopListening(u64),
    Connect(ConnectRequest),
    StopConnecting(u64),
    Disconnect(u64),
    Shutdown(Duration),
    /// Pull from the connection's stream source.
    Produce(ConnectionHandle),
    /// Replace the connection's protocol with a wrapper around it, then call
    /// the wrapper's `connection_made` (`start_tls`; a `WrapFn`).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Wrap(ConnectionHandle, Erased),
    /// Register a child's pipes and exit watcher, or standard I/O (the
    /// reactor's `PipeRequest`).
    Pipes(Erased),
    /// Watch a source of the reactor's own (`Core::watch_signals`; opened by
    /// the reactor).
    Watch(Erased),
    /// Take a snapshot and hand it to the callback (`Core::request_snapshot`).
    Snapshot(super::stats::SnapshotFn),
}
