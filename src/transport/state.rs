//! The transport-independent state of one connection: flags, limits, and the
//! rarely used extras kept out of line.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::address::Address;
use crate::buf::WriteBuf;
use crate::context::ConnectionHandle;
use crate::core::timers::TimerId;
use crate::error::DisconnectReason;

pub(crate) mod flags {
    /// `lose_connection` was called: close after the flush.
    pub const CLOSING: u32 = 1 << 0;
    /// The connection is finished: aborted, or `connection_lost` is due.
    pub const DEAD: u32 = 1 << 1;
    /// The protocol asked not to be fed data.
    pub const READ_PAUSED: u32 = 1 << 2;
    /// `pause_writing` was delivered and `resume_writing` not yet.
    pub const PRODUCER_PAUSED: u32 = 1 << 3;
    /// The protocol opted into half-close.
    pub const HALF_CLOSE: u32 = 1 << 4;
    /// `lose_write_connection` was called.
    pub const WRITE_CLOSING: u32 = 1 << 5;
    /// The write side is shut down.
    pub const WRITE_SHUT: u32 = 1 << 6;
    /// The peer's EOF was seen.
    pub const READ_EOF: u32 = 1 << 7;
    /// `abort_connection` was called.
    pub const ABORT: u32 = 1 << 8;
    /// Readable while paused: read when resumed.
    pub const READ_PENDING: u32 = 1 << 9;
    /// `connection_made` has run (so `connection_lost` is owed).
    pub const MADE: u32 = 1 << 10;
    /// The read budget ran out with data possibly left: read again soon.
    pub const READ_AGAIN: u32 = 1 << 11;
    /// A producer has room to fill: pull from it soon.
    pub const PRODUCE: u32 = 1 << 12;
    /// Reading is held back by the read rate limit.
    pub const READ_THROTTLED: u32 = 1 << 13;
    /// Writing is held back by the write rate limit.
    pub const WRITE_THROTTLED: u32 = 1 << 14;
    /// The poller hinted that the peer's FIN arrived: read to EOF, do not trust a
    /// short read to mean "drained" (the hint's edge will not come again).
    pub const PEER_FIN: u32 = 1 << 15;
    /// The connection ended gracefully with input possibly still coming: the
    /// owner drains it until the peer's EOF (a lingering close).
    pub const LINGER: u32 = 1 << 16;
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
    pub(crate) flags: u32,
    /// The peer (the same size as a `SocketAddr`).
    pub(crate) peer: Address,
    /// Bytes the kernel (or the in-memory peer) refused, in order.
    pub(crate) pending: Option<Box<WriteBuf>>,
    /// Rarely used per-connection features, allocated on first use so an idle
    /// connection stays small.
    pub(crate) extra: Option<Box<Extra>>,
    /// Bytes read from the transport (for snapshots).
    pub(crate) bytes_in: u64,
    /// Bytes the transport took (for snapshots).
    pub(crate) bytes_out: u64,
    /// When the connection was made, in milliseconds after the reactor was
    /// (`Core::age_ms`).
    pub(crate) born_ms: u32,
}

/// A source of bytes the transport pulls from while its buffer has room (see
/// [`Context::stream_from`]).
pub(crate) type Source = Box<dyn Iterator<Item = std::io::Result<Bytes>>>;

/// Rate limit state: at most `per_window` bytes per [`RATE_WINDOW`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    pub(crate) per_window: usize,
    pub(crate) used: usize,
    pub(crate) window_start: Instant,
}

/// Length of a rate-limit accounting window.
pub(crate) const RATE_WINDOW: Duration = Duration::from_millis(100);

impl Rate {
    pub(crate) fn new(bytes_per_sec: u64, now: Instant) -> Rate {
        let per_window =
            (bytes_per_sec as u128 * RATE_WINDOW.as_nanos() / 1_000_000_000).max(1) as usize;
        Rate {
            per_window,
            used: 0,
            window_start: now,
        }
    }

    /// Bytes allowed now; rolls the window over when it has passed.
    pub(crate) fn allowance(&mut self, now: Instant) -> usize {
        if now.duration_since(self.window_start) >= RATE_WINDOW {
            self.window_start = now;
            self.used = 0;
        }
        self.per_window.saturating_sub(self.used)
    }

    /// When the current window ends.
    pub(crate) fn window_end(&self) -> Instant {
        self.window_start + RATE_WINDOW
    }
}

/// Idle timeout state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Idle {
    pub(crate) timeout: Duration,
    pub(crate) last_activity: Instant,
    pub(crate) timer: Option<TimerId>,
}

/// See [`ConnState::extra`].
#[derive(Default)]
pub(crate) struct Extra {
    /// Water marks and cap, when changed from the defaults.
    pub(crate) limits: Option<Limits>,
    /// A reason chosen by the protocol for its own close.
    pub(crate) close_reason: Option<DisconnectReason>,
    pub(crate) source: Option<Source>,
    pub(crate) idle: Option<Idle>,
    pub(crate) read_rate: Option<Rate>,
    pub(crate) write_rate: Option<Rate>,
    /// A timer is armed to lift throttling.
    pub(crate) throttle_timer: Option<TimerId>,
    /// `start_tls` was called: writes made since wait here for the wrapper
    /// (they go out encrypted, after the handshake).
    pub(crate) diverted: Option<WriteBuf>,
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extra")
            .field("limits", &self.limits)
            .field("close_reason", &self.close_reason)
            .field("streaming", &self.source.is_some())
            .field("idle", &self.idle)
            .field("read_rate", &self.read_rate)
            .field("write_rate", &self.write_rate)
            .finish()
    }
}

impl ConnState {
    pub(crate) fn new(handle: ConnectionHandle, peer: impl Into<Address>) -> Self {
        ConnState {
            handle,
            flags: 0,
            peer: peer.into(),
            pending: None,
            extra: None,
            bytes_in: 0,
            bytes_out: 0,
            born_ms: 0,
        }
    }

    pub(crate) fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    pub(crate) fn set(&mut self, f: u32) {
        self.flags |= f;
    }

    pub(crate) fn clear(&mut self, f: u32) {
        self.flags &= !f;
    }

    pub(crate) fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// Notes traffic for the idle timeout, if one is set.
    #[inline]
    pub(crate) fn touch(&mut self, now: Instant) {
        if let Some(x) = &mut self.extra {
            if let Some(idle) = &mut x.idle {
                idle.last_activity = now;
            }
        }
    }

    /// The reason the protocol chose for its own close, taken.
    pub(crate) fn take_close_reason(&mut self) -> Option<DisconnectReason> {
        self.extra.as_mut().and_then(|x| x.close_reason.take())
    }

    pub(crate) fn limits(&self) -> Limits {
        self.extra
            .as_ref()
            .and_then(|x| x.limits)
            .unwrap_or(DEFAULT_LIMITS)
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.len())
    }

    /// Whether the connection takes input now (on any transport). Marks a
    /// paused or throttled connection as having input waiting: it is read
    /// when reading resumes.
    #[inline]
    pub(crate) fn wants_input(&mut self) -> bool {
        if self.has(flags::DEAD | flags::READ_EOF) {
            return false;
        }
        if self.has(flags::READ_PAUSED | flags::READ_THROTTLED) {
            self.set(flags::READ_PENDING);
            return false;
        }
        true
    }

    /// Whether writes are refused.
    pub(crate) fn write_refused(&self) -> bool {
        self.has(
            flags::CLOSING | flags::DEAD | flags::ABORT | flags::WRITE_CLOSING | flags::WRITE_SHUT,
        )
    }
}
