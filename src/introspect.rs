//! Seeing inside a running reactor: a [`Snapshot`] of its connections,
//! listeners, timers and queues, the per-reactor [`Counters`], and the
//! durations of its callbacks ([`CallbackStats`]), with slow callbacks logged
//! and counted.
//!
//! Everything here is plain data (`Clone + Debug`, no references into the
//! reactor), so a snapshot can be sent to another thread, printed, or
//! rendered in a metrics format.
//!
//! * [`Reactor::snapshot`](crate::Reactor::snapshot): between turns (a test,
//!   a loop that embeds the reactor with `run_once`).
//! * [`Core::request_snapshot`](crate::Core::request_snapshot): from any
//!   callback on the reactor thread (a signal handler, an HTTP handler, a
//!   timer); the snapshot is taken once the current callback returns.
//! * [`ReactorHandle::request_snapshot`](crate::ReactorHandle::request_snapshot):
//!   from another thread.
//! * [`Core::counters`](crate::Core::counters) and
//!   [`Core::callback_stats`](crate::Core::callback_stats): the reactor-wide
//!   figures alone, at once, from anywhere on the reactor thread.
//!
//! Slow-callback detection: every protocol, timer and cross-thread callback
//! is timed while a threshold is set (100 ms by default, see
//! [`Core::set_slow_callback_threshold`](crate::Core::set_slow_callback_threshold));
//! one over it is logged once at WARN with its kind, the protocol's type
//! name and its duration, and counted in [`Counters::slow_callbacks`].
//! Timing costs one read of a tick counter per callback (the CPU's
//! time-stamp counter where it is invariant, else `Instant`): a callback's
//! time runs from the end of the reactor's previous timed step (the last
//! callback, or the turn's start after the poll) to its own end, so it
//! includes the little dispatch work just before it (for `data_received`,
//! the read that fetched its input). A factory's `build_protocol` counts
//! toward the `connection_made` that follows it; local tasks
//! (`spawn_local`) are not timed.
//!
//! ```
//! use std::time::Duration;
//! use torsion::{factory, Context, Protocol, Reactor};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         ctx.write(data);
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), factory(|_peer| Echo))?;
//! let mut client = std::net::TcpStream::connect(port.local_addr())?;
//! reactor.run_until(Duration::from_secs(10), |r| r.connection_count() == 1)?;
//!
//! let snap = reactor.snapshot();
//! assert_eq!(snap.listeners[0].accepted, 1);
//! assert_eq!(snap.connections.len(), 1);
//! assert!(snap.connections[0].protocol.ends_with("Echo"));
//! assert_eq!(snap.counters.accepted, 1);
//! # drop(client);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::error::DisconnectReason;

/// What a reactor runs, at one moment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Snapshot {
    /// When it was taken (the reactor's clock).
    pub taken: Instant,
    /// How long the reactor has existed.
    pub uptime: Duration,
    /// Every open connection, by slab order.
    pub connections: Vec<ConnectionInfo>,
    /// Every listening port.
    pub listeners: Vec<ListenerInfo>,
    /// The timer queue.
    pub timers: TimerInfo,
    /// Closures queued from other threads and not yet run.
    pub cross_thread_queued: usize,
    /// The reactor's thread pool (`defer_to_thread`, `resolve`).
    pub thread_pool: PoolInfo,
    /// Deferreds on this thread, where a cheap counter can tell.
    pub deferreds: DeferredStats,
    /// The reactor's counters since it was made.
    pub counters: Counters,
    /// Durations of the callbacks the reactor ran.
    pub callbacks: CallbackStats,
}

/// The transport under a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// A TCP socket.
    Tcp,
    /// TLS over a TCP socket (or over another stream).
    Tls,
    /// A Unix-domain stream socket.
    Unix,
    /// A pipe: a child process's standard I/O, or this process's.
    Pipe,
    /// An in-memory transport of the test tools.
    Memory,
}

impl TransportKind {
    /// A short lower-case name (`"tcp"`, `"tls"`, `"unix"`, `"pipe"`, `"memory"`).
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Unix => "unix",
            TransportKind::Pipe => "pipe",
            TransportKind::Memory => "memory",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One open connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// Its handle (for [`Core::connection`](crate::Core::connection)).
    pub handle: crate::ConnectionHandle,
    /// The transport.
    pub kind: TransportKind,
    /// The peer's address.
    pub peer: Address,
    /// The local address, when the transport has one.
    pub host: Option<Address>,
    /// The type name of the protocol (the innermost one under wrappers such
    /// as TLS or policies).
    pub protocol: &'static str,
    /// Time since the connection was made (millisecond resolution).
    pub age: Duration,
    /// Bytes read from the transport.
    pub bytes_in: u64,
    /// Bytes the transport took for sending.
    pub bytes_out: u64,
    /// Bytes written but not yet taken by the transport.
    pub write_buffered: usize,
    /// Reading is paused (by the protocol or a read rate limit).
    pub paused: bool,
    /// The peer's end of stream arrived and the connection stays open for
    /// writing (half-close), or this side shut its write side.
    pub half_closed: bool,
    /// `lose_connection` was called: it closes once the buffer is flushed.
    pub closing: bool,
    /// When the idle timeout fires if nothing happens, from the snapshot's
    /// time; `None` without an idle timeout.
    pub idle_deadline: Option<Duration>,
}

/// One listening port.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListenerInfo {
    /// The bound address.
    pub address: Address,
    /// Connections accepted (whether or not the factory took them).
    pub accepted: u64,
    /// Connections closed at once because the process was out of descriptors.
    pub shed: u64,
}

/// The timer queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimerInfo {
    /// Timers pending (user calls and the reactor's own).
    pub pending: usize,
    /// How far away the next one is (zero if overdue).
    pub next_deadline: Option<Duration>,
}

/// The reactor's thread pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolInfo {
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Workers running a job.
    pub busy: usize,
    /// Workers started (busy and idle).
    pub workers: usize,
    /// The most workers the pool may start.
    pub max_workers: usize,
}

/// Deferreds of the reactor's thread ([`defer::stats`](crate::defer::stats)).
pub use crate::defer::DeferredStats;

/// Connections closed, by [`DisconnectReason`] kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClosedCounts {
    /// [`DisconnectReason::Done`].
    pub done: u64,
    /// [`DisconnectReason::Reset`].
    pub reset: u64,
    /// [`DisconnectReason::TimedOut`].
    pub timed_out: u64,
    /// [`DisconnectReason::Refused`].
    pub refused: u64,
    /// [`DisconnectReason::Unreachable`].
    pub unreachable: u64,
    /// [`DisconnectReason::Aborted`].
    pub aborted: u64,
    /// [`DisconnectReason::Cancelled`].
    pub cancelled: u64,
    /// [`DisconnectReason::WriteBufferFull`].
    pub write_buffer_full: u64,
    /// [`DisconnectReason::Panicked`].
    pub panicked: u64,
    /// [`DisconnectReason::Protocol`].
    pub protocol: u64,
    /// [`DisconnectReason::Tls`].
    pub tls: u64,
    /// [`DisconnectReason::Io`] (and kinds added later).
    pub io: u64,
}

impl ClosedCounts {
    /// Counts one connection closed for `reason`.
    pub fn record(&mut self, reason: &DisconnectReason) {
        *self.slot(reason) += 1;
    }

    /// The count for `reason`'s kind.
    pub fn get(&self, reason: &DisconnectReason) -> u64 {
        let mut c = *self;
        *c.slot(reason)
    }

    fn slot(&mut self, reason: &DisconnectReason) -> &mut u64 {
        match reason {
            DisconnectReason::Done => &mut self.done,
            DisconnectReason::Reset => &mut self.reset,
            DisconnectReason::TimedOut => &mut self.timed_out,
            DisconnectReason::Refused => &mut self.refused,
            DisconnectReason::Unreachable => &mut self.unreachable,
            DisconnectReason::Aborted => &mut self.aborted,
            DisconnectReason::Cancelled => &mut self.cancelled,
            DisconnectReason::WriteBufferFull => &mut self.write_buffer_full,
            DisconnectReason::Panicked(_) => &mut self.panicked,
            DisconnectReason::Protocol(_) => &mut self.protocol,
            DisconnectReason::Tls(_) => &mut self.tls,
            _ => &mut self.io,
        }
    }

    /// Every kind with its count, named in snake case (`"done"`,
    /// `"timed_out"`...), in a fixed order: for metrics labels.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("done", self.done),
            ("reset", self.reset),
            ("timed_out", self.timed_out),
            ("refused", self.refused),
            ("unreachable", self.unreachable),
            ("aborted", self.aborted),
            ("cancelled", self.cancelled),
            ("write_buffer_full", self.write_buffer_full),
            ("panicked", self.panicked),
            ("protocol", self.protocol),
            ("tls", self.tls),
            ("io", self.io),
        ]
        .into_iter()
    }

    /// All connections closed, whatever the reason.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }
}

/// A reactor's counters, since it was made. Plain integers: increments on
/// paths that exist anyway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Connections accepted by listeners (including those the factory refused).
    pub accepted: u64,
    /// Accepted connections whose factory's `build_protocol` returned `None`.
    pub refused_by_factory: u64,
    /// Connections closed at once by a listener out of descriptors.
    pub shed_fd_exhaustion: u64,
    /// Connections that ended, by reason (each once, when `connection_lost`
    /// is delivered).
    pub closed: ClosedCounts,
    /// Bytes read from connections' transports (sockets, pipes).
    pub bytes_read: u64,
    /// Bytes connections' transports took for sending.
    pub bytes_written: u64,
    /// Callbacks that panicked (and were caught).
    pub callbacks_panicked: u64,
    /// Callbacks that ran longer than the slow-callback threshold.
    pub slow_callbacks: u64,
}

/// What kind of callback ran (in slow-callback logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallbackKind {
    /// A protocol callback (`data_received`, `connection_lost`...).
    Protocol,
    /// A timer (`call_later`).
    Timer,
    /// A closure queued from another thread (`call_from_thread`).
    CrossThread,
    /// A signal's callback (`Core::watch_signals`).
    Signal,
}

impl CallbackKind {
    /// A short lower-case name (`"protocol"`, `"timer"`, `"cross_thread"`,
    /// `"signal"`).
    pub fn name(self) -> &'static str {
        match self {
            CallbackKind::Protocol => "protocol",
            CallbackKind::Timer => "timer",
            CallbackKind::CrossThread => "cross_thread",
            CallbackKind::Signal => "signal",
        }
    }
}

impl fmt::Display for CallbackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Durations of the callbacks a reactor timed (while slow-callback detection
/// is on). Quantiles come from a log histogram with four buckets per power
/// of two: a quantile is the upper end of its bucket, at most 25 % above the
/// true value, and never above `max`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallbackStats {
    /// Callbacks timed.
    pub count: u64,
    /// Sum of their durations.
    pub total: Duration,
    /// The median.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The longest.
    pub max: Duration,
    /// The histogram's non-empty buckets, as (upper end, count), in
    /// increasing order (for metrics histograms: accumulate them).
    pub buckets: Vec<(Duration, u64)>,
}

/// Buckets of [`Histogram`]: four per power of two of nanoseconds, up to
/// 2^64 ns.
const BUCKETS: usize = 252;

/// A fixed-bucket log histogram of durations in nanoseconds: recording is
/// a few instructions, memory is fixed (2 KiB).
#[derive(Clone)]
pub(crate) struct Histogram {
    /// Values per bucket (their sum is the count: not kept apart, so
    /// that recording, once per callback, touches one field less).
    counts: Box<[u64; BUCKETS]>,
    /// Wrapping: 2^64 nanoseconds (or time-stamp counter ticks) of
    /// callbacks are centuries.
    total_ns: u64,
    max_ns: u64,
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .field("max_ns", &self.max_ns)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total_ns: 0,
            max_ns: 0,
        }
    }
}

/// The bucket of `ns`: values 0..4 have their own; above, the power of two
/// and the two bits below the leading one.
#[inline]
pub(crate) fn bucket_of(ns: u64) -> usize {
    // The leading one shifted to the top: its three top bits are 1xx, xx
    // the two below it. With e = 63 - lz (the power of two, >= 2), the
    // bucket is 4 * (e - 1) + xx = 4 * (61 - lz) + 0b1xx. Below 4, `ns | 4`
    // gives lz = 61, and the top three bits of `ns << 61` are `ns` itself:
    // the same formula, without a branch.
    let lz = (ns | 4).leading_zeros() as usize; // <= 61
    4 * (61 - lz) + ((ns << lz) >> 61) as usize
}

/// The smallest value of bucket `i`, and one past its largest (saturating).
pub(crate) fn bucket_range(i: usize) -> (u64, u64) {
    if i < 4 {
        return (i as u64, i as u64 + 1);
    }
    let e = (i / 4 + 1) as u32;
    let sub = (i % 4) as u64;
    let low = (4 + sub) << (e - 2);
    let high = (5 + sub).checked_shl(e - 2).filter(|h| *h > low);
    (low, high.unwrap_or(u64::MAX))
}

impl Histogram {
    /// Records one duration.
    #[cfg(test)]
    pub(crate) fn record(&mut self, ns: u64) {
        self.record_below_max(ns);
        self.note_max(ns);
    }

    /// Records one duration known to be at most [`max`](Self::max): the
    /// count and the sum (the caller keeps the maximum with
    /// [`note_max`](Self::note_max) when it may be exceeded).
    #[inline]
    pub(crate) fn record_below_max(&mut self, ns: u64) {
        self.counts[bucket_of(ns)] += 1;
        self.total_ns = self.total_ns.wrapping_add(ns);
    }

    /// Raises the maximum to `ns` if it is below.
    #[inline]
    pub(crate) fn note_max(&mut self, ns: u64) {
        self.max_ns = self.max_ns.max(ns);
    }

    /// The longest duration recorded (0: none).
    #[inline]
    pub(crate) fn max(&self) -> u64 {
        self.max_ns
    }

    /// Values recorded.
    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value at quantile `q` (0..=1): the largest value of the bucket
    /// holding the `ceil(q * count)`-th smallest duration, capped at the max.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let count = self.count();
        if count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (bucket_range(i).1 - 1).min(self.max_ns);
            }
        }
        self.max_ns
    }

    /// The plain-data summary, of values in nanoseconds.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> CallbackStats {
        self.stats_scaled(|v| v)
    }

    /// The plain-data summary, of values converted to nanoseconds by
    /// `to_ns` (monotonic: the histogram may count clock ticks).
    pub(crate) fn stats_scaled(&self, to_ns: impl Fn(u64) -> u64) -> CallbackStats {
        let d = |v: u64| Duration::from_nanos(to_ns(v));
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (d(bucket_range(i).1 - 1), *n))
            .collect();
        CallbackStats {
            count: self.count(),
            total: d(self.total_ns),
            p50: d(self.quantile(0.5)),
            p99: d(self.quantile(0.99)),
            max: d(self.max_ns),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut last_high = 0;
        for i in 0..BUCKETS {
            let (low, high) = bucket_range(i);
            assert_eq!(
                low,
                last_high,
                "bucket {i} starts where {} ends",
                i.max(1) - 1
            );
            assert!(high > low, "bucket {i}");
            assert_eq!(bucket_of(low), i);
            assert_eq!(bucket_of(high - 1), i);
            last_high = high;
        }
        assert_eq!(last_high, u64::MAX);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn buckets_are_within_a_quarter() {
        for ns in [5u64, 17, 999, 123_456, 99_999_999, 1 << 40, u64::MAX / 3] {
            let (low, high) = bucket_range(bucket_of(ns));
            assert!(low <= ns && ns < high, "{ns} in [{low}, {high})");
            assert!(
                (high - 1 - low) as f64 <= 0.25 * low as f64,
                "{ns}: [{low}, {high})"
            );
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Histogram::default();
        // 1..=1000 microseconds.
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let s = h.stats();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max, Duration::from_micros(1000));
        // The true median is 500 us, the true p99 990 us: each is reported
        // as the top of its bucket, at most 25 % above.
        let p50 = s.p50.as_nanos() as f64;
        assert!((500_000.0..=625_000.0).contains(&p50), "p50 {p50}");
        let p99 = s.p99.as_nanos() as f64;
        assert!((990_000.0..=1_000_000.0).contains(&p99), "p99 {p99}");
        assert_eq!(s.total, Duration::from_micros(500_500));
        assert_eq!(s.buckets.iter().map(|b| b.1).sum::<u64>(), 1000);
        assert!(s.buckets.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn quantiles_of_one_value_are_that_value_at_most() {
        let mut h = Histogram::default();
        h.record(7_000);
        assert_eq!(h.quantile(0.5), 7_000);
        assert_eq!(h.quantile(0.0), 7_000);
        assert_eq!(h.quantile(1.0), 7_000);
        let empty = Histogram::default();
        assert_eq!(empty.stats().p99, Duration::ZERO);
        assert!(empty.stats().buckets.is_empty());
    }

    #[test]
    fn a_skewed_distribution_puts_p99_in_the_tail() {
        let mut h = Histogram::default();
        for _ in 0..98 {
            h.record(1_000);
        }
        h.record(50_000_000);
        h.record(60_000_000);
        let s = h.stats();
        assert!(s.p50 <= Duration::from_nanos(1_250));
        assert!(s.p99 >= Duration::from_millis(50), "{:?}", s.p99);
        assert_eq!(s.max, Duration::from_millis(60));
    }

    #[test]
    fn closed_counts_by_kind() {
        let mut c = ClosedCounts::default();
        c.record(&DisconnectReason::Done);
        c.record(&DisconnectReason::Done);
        c.record(&DisconnectReason::protocol("bad"));
        c.record(&DisconnectReason::Reset);
        assert_eq!(c.get(&DisconnectReason::Done), 2);
        assert_eq!(c.protocol, 1);
        assert_eq!(c.reset, 1);
        assert_eq!(c.total(), 4);
        assert_eq!(c.iter().count(), 12);
    }
}
