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
    /// A connector made the connection (client side): the owner tells it
    /// when the connection ends.
    pub const CLIENT: u32 = 1 << 17;
    /// The extras may hold what the read and write paths must look at: a
    /// write queue, a stream source, a read or write rate, writes diverted
    /// by `start_tls`. Set whenever one of them is put in, cleared (by
    /// [`ConnState::recheck_slow`](super::ConnState::recheck_slow)) once
    /// they are all gone; so a connection whose flags are `MADE` alone
    /// ([`ConnState::is_hot`](super::ConnState::is_hot)) has none of them,
    /// without a look at the extras.
    pub const SLOW: u32 = 1 << 18;
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

/// The transport-independent state of one connection. Kept small: an idle
/// connection's whole record in the reactor's slab is this, its socket and
/// its protocol (see `reactor::snapshot`'s size test); what only some
/// connections use lives in [`Extra`], allocated on first use.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) handle: ConnectionHandle,
    pub(crate) flags: u32,
    /// When the connection was made, in milliseconds after the reactor was
    /// (`Core::age_ms`).
    pub(crate) born_ms: u32,
    /// Bytes read from the transport, modulo 2^32 (the carries are in
    /// [`Extra::bytes_high`]): see [`bytes_in`](Self::bytes_in).
    bytes_in: u32,
    /// Bytes the transport took, modulo 2^32: see [`bytes_out`](Self::bytes_out).
    bytes_out: u32,
    /// The peer: IPv4 inline, other addresses in [`Extra::peer`].
    peer: Peer,
    /// The write queue and the rarely used per-connection features,
    /// allocated on first use (and freed when nothing in it is in use) so
    /// an idle connection stays small: one pointer for all of them.
    pub(crate) extra: Option<Box<Extra>>,
}

/// `low + n` as a low 32-bit word and the carry into the high word.
fn add_carry(low: u32, n: usize) -> (u32, u32) {
    let (v, wrapped) = low.overflowing_add(n as u32);
    // (`n >> 32` in two steps: a shift by 32 overflows a 32-bit usize.)
    (v, ((n >> 16) >> 16) as u32 + u32::from(wrapped))
}

/// A connection's peer address in eight bytes: an IPv4 address and port, or
/// an unnamed Unix peer (the usual client of a Unix listener, and pipes),
/// inline; any other address is kept in [`Extra::peer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    V4(std::net::SocketAddrV4),
    Unnamed,
    InExtra,
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
    /// The last traffic's time, as a stamp (see `Core::stamp_of`).
    pub(crate) last_activity: u64,
    pub(crate) timer: Option<TimerId>,
}

/// See [`ConnState::extra`].
#[derive(Default)]
pub(crate) struct Extra {
    /// Bytes the kernel (or the in-memory peer) refused, in order.
    pub(crate) pending: Option<WriteBuf>,
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
    /// The peer's address when it is not an IPv4 one (see [`Peer`]).
    pub(crate) peer: Option<Address>,
    /// How many times the byte counters of [`ConnState`] wrapped past
    /// 2^32: (in, out).
    pub(crate) bytes_high: (u32, u32),
}

impl Extra {
    /// Whether it holds none of what [`flags::SLOW`] stands for.
    fn is_fast(&self) -> bool {
        self.pending.is_none()
            && self.source.is_none()
            && self.read_rate.is_none()
            && self.write_rate.is_none()
            && self.diverted.is_none()
    }

    /// Whether nothing in it is in use (it can be freed).
    fn is_unused(&self) -> bool {
        self.is_fast()
            && self.limits.is_none()
            && self.close_reason.is_none()
            && self.idle.is_none()
            && self.throttle_timer.is_none()
            && self.peer.is_none()
            && self.bytes_high == (0, 0)
    }
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extra")
            .field("pending", &self.pending.as_ref().map(|p| p.len()))
            .field("limits", &self.limits)
            .field("close_reason", &self.close_reason)
            .field("streaming", &self.source.is_some())
            .field("idle", &self.idle)
            .field("read_rate", &self.read_rate)
            .field("write_rate", &self.write_rate)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl ConnState {
    pub(crate) fn new(handle: ConnectionHandle, peer: impl Into<Address>) -> Self {
        let mut state = ConnState {
            handle,
            flags: 0,
            born_ms: 0,
            bytes_in: 0,
            bytes_out: 0,
            peer: Peer::Unnamed,
            extra: None,
        };
        state.peer = match peer.into() {
            Address::Inet(std::net::SocketAddr::V4(a)) => Peer::V4(a),
            Address::Unix(crate::address::UnixAddr::Unnamed) => Peer::Unnamed,
            other => {
                state.extra().peer = Some(other);
                Peer::InExtra
            }
        };
        state
    }

    /// The peer's address.
    pub(crate) fn peer(&self) -> Address {
        match self.peer {
            Peer::V4(a) => Address::Inet(a.into()),
            Peer::Unnamed => Address::Unix(crate::address::UnixAddr::Unnamed),
            Peer::InExtra => self
                .extra
                .as_ref()
                .and_then(|x| x.peer.clone())
                .unwrap_or(Address::Unix(crate::address::UnixAddr::Unnamed)),
        }
    }

    /// The peer's IP address, or `0.0.0.0:0` for other transports.
    pub(crate) fn peer_addr(&self) -> std::net::SocketAddr {
        match self.peer {
            Peer::V4(a) => a.into(),
            _ => self.peer().inet_or_unspecified(),
        }
    }

    /// Counts `n` bytes read from the transport.
    #[inline]
    pub(crate) fn count_in(&mut self, n: usize) {
        // The low word always takes the sum (one add to memory); the rare
        // carry, or a count past 2^32, goes to the extras.
        let (v, carry) = add_carry(self.bytes_in, n);
        self.bytes_in = v;
        if carry != 0 {
            self.carry_in(carry);
        }
    }

    /// Counts `n` bytes the transport took.
    #[inline]
    pub(crate) fn count_out(&mut self, n: usize) {
        let (v, carry) = add_carry(self.bytes_out, n);
        self.bytes_out = v;
        if carry != 0 {
            self.carry_out(carry);
        }
    }

    /// [`count_in`](Self::count_in) past 2^32: the carries go to the extras.
    #[cold]
    #[inline(never)]
    fn carry_in(&mut self, carry: u32) {
        let h = &mut self.extra().bytes_high;
        h.0 = h.0.wrapping_add(carry);
    }

    /// [`count_out`](Self::count_out) past 2^32.
    #[cold]
    #[inline(never)]
    fn carry_out(&mut self, carry: u32) {
        let h = &mut self.extra().bytes_high;
        h.1 = h.1.wrapping_add(carry);
    }

    fn high(&self) -> (u32, u32) {
        self.extra.as_ref().map_or((0, 0), |x| x.bytes_high)
    }

    /// Bytes read from the transport.
    pub(crate) fn bytes_in(&self) -> u64 {
        (u64::from(self.high().0) << 32) | u64::from(self.bytes_in)
    }

    /// Bytes the transport took.
    pub(crate) fn bytes_out(&self) -> u64 {
        (u64::from(self.high().1) << 32) | u64::from(self.bytes_out)
    }

    /// The extras a closed connection keeps: what tells who the peer was
    /// and how much went through (the rest is dropped with the connection's
    /// end).
    pub(crate) fn keep_after_end(x: &Extra) -> Option<Box<Extra>> {
        (x.peer.is_some() || x.bytes_high != (0, 0)).then(|| {
            Box::new(Extra {
                peer: x.peer.clone(),
                bytes_high: x.bytes_high,
                ..Default::default()
            })
        })
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

    /// The extras, to put in (or change) what [`flags::SLOW`] stands for: a
    /// write queue, a stream source, a rate, a diverted buffer.
    pub(crate) fn slow_extra(&mut self) -> &mut Extra {
        self.flags |= flags::SLOW;
        self.extra.get_or_insert_with(Default::default)
    }

    /// Clears [`flags::SLOW`] once the extras hold none of what it stands for.
    pub(crate) fn recheck_slow(&mut self) {
        if self.has(flags::SLOW) && self.extra.as_ref().is_none_or(|x| x.is_fast()) {
            self.clear(flags::SLOW);
        }
    }

    /// Whether the connection is in the common state: made, open both ways,
    /// not paused, throttled or closing, with nothing queued and nothing
    /// shaping or diverting its traffic (the flags other than half-close and
    /// client are `MADE` alone: one test on the hot path).
    #[inline]
    pub(crate) fn is_hot(&self) -> bool {
        self.flags & !(flags::HALF_CLOSE | flags::CLIENT) == flags::MADE
    }

    /// Notes traffic for the idle timeout, if one is set. Never moves the
    /// last activity back (a turn's time can be older than the moment the
    /// timeout was set: see `Core::turn_time`).
    #[inline]
    pub(crate) fn touch(&mut self, stamp: u64) {
        if let Some(x) = &mut self.extra {
            if let Some(idle) = &mut x.idle {
                idle.last_activity = idle.last_activity.max(stamp);
            }
        }
    }

    /// Whether writes may go straight to the sink: nothing is buffered ahead
    /// of them and no write rate holds them back.
    #[inline]
    pub(crate) fn writes_direct(&self) -> bool {
        self.extra
            .as_ref()
            .is_none_or(|x| x.pending.is_none() && x.write_rate.is_none())
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
        self.pending().map_or(0, |p| p.len())
    }

    /// The write queue, if there is one (it may be empty).
    #[inline]
    pub(crate) fn pending(&self) -> Option<&WriteBuf> {
        self.extra.as_ref().and_then(|x| x.pending.as_ref())
    }

    /// Whether there is a write queue (possibly empty: the sink refused
    /// bytes since it was last drained).
    ///
    /// One test of the flags first: a queue is only ever put in with
    /// [`flags::SLOW`] set (see [`slow_extra`](Self::slow_extra)), and the
    /// reactor asks at every writable edge.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.has(flags::SLOW) && self.pending().is_some()
    }

    /// The write queue, made if there is none.
    pub(crate) fn pending_or_insert(&mut self) -> &mut WriteBuf {
        self.slow_extra()
            .pending
            .get_or_insert_with(Default::default)
    }

    /// Takes the write queue out (to write it while the state is borrowed).
    pub(crate) fn take_pending(&mut self) -> Option<WriteBuf> {
        self.extra.as_mut().and_then(|x| x.pending.take())
    }

    /// Puts back a queue from [`take_pending`](Self::take_pending).
    pub(crate) fn put_pending(&mut self, p: WriteBuf) {
        self.slow_extra().pending = Some(p);
    }

    /// The queue is drained: drops it, and the extras too if nothing else
    /// in them is in use (so a connection that once buffered is small again).
    pub(crate) fn drop_pending(&mut self) {
        if let Some(x) = &mut self.extra {
            x.pending = None;
            if x.is_unused() {
                self.extra = None;
            }
        }
        self.recheck_slow();
    }

    /// Whether the connection takes input now (on any transport). Marks a
    /// paused or throttled connection as having input waiting: it is read
    /// when reading resumes.
    #[inline]
    pub(crate) fn wants_input(&mut self) -> bool {
        if !self.has(flags::DEAD | flags::READ_EOF | flags::READ_PAUSED | flags::READ_THROTTLED) {
            return true;
        }
        if self.has(flags::DEAD | flags::READ_EOF) {
            return false;
        }
        self.set(flags::READ_PENDING);
        false
    }

    /// Whether writes are refused.
    pub(crate) fn write_refused(&self) -> bool {
        self.has(
            flags::CLOSING | flags::DEAD | flags::ABORT | flags::WRITE_CLOSING | flags::WRITE_SHUT,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> ConnectionHandle {
        ConnectionHandle { key: 1, gen: 1 }
    }

    #[test]
    fn every_kind_of_peer_comes_back_as_it_went_in() {
        let v4: std::net::SocketAddr = "10.1.2.3:4567".parse().unwrap();
        let v6: std::net::SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        for peer in [
            Address::Inet(v4),
            Address::Inet(v6),
            Address::Unix(crate::address::UnixAddr::Unnamed),
            Address::unix("/run/x.sock"),
        ] {
            let st = ConnState::new(handle(), peer.clone());
            assert_eq!(st.peer(), peer);
            assert_eq!(st.peer_addr(), peer.inet_or_unspecified());
        }
        // IPv4 and unnamed peers take no allocation; others keep theirs in
        // the extras, which outlive the connection's end.
        assert!(ConnState::new(handle(), Address::Inet(v4)).extra.is_none());
        let st = ConnState::new(handle(), Address::Inet(v6));
        let kept = ConnState::keep_after_end(st.extra.as_ref().unwrap()).unwrap();
        assert_eq!(kept.peer, Some(Address::Inet(v6)));
    }

    #[test]
    fn byte_counters_carry_past_four_gigabytes() {
        let mut st = ConnState::new(handle(), Address::Inet("1.2.3.4:5".parse().unwrap()));
        st.count_in(100);
        assert_eq!(st.bytes_in(), 100);
        assert!(st.extra.is_none(), "no carry, no allocation");
        for _ in 0..5 {
            st.count_in(1 << 30);
            st.count_out((1 << 31) + 7);
        }
        assert_eq!(st.bytes_in(), 100 + 5 * (1u64 << 30));
        assert_eq!(st.bytes_out(), 5 * ((1u64 << 31) + 7));
        if usize::BITS == 64 {
            st.count_out(1 << 33);
            assert_eq!(st.bytes_out(), 5 * ((1u64 << 31) + 7) + (1 << 33));
        }
    }
}
