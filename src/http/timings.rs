//! The phase [`Timings`] of each client response: when resolving,
//! connecting, TLS, writing the request, the first byte and the body's end
//! were done.

use std::time::{Duration, Instant};

/// When each phase of one response ended, as offsets from the moment the
/// client started the request (curl's `-w time_*` values), with the phases
/// between them as methods (blackbox_exporter's
/// `probe_http_duration_seconds{phase=...}`).
///
/// The marks, in the order they happen (each is at least the one before):
///
/// * `resolved`: the server's address is known (zero for an IP address, or
///   a reused connection).
/// * `connected`: the TCP connection is established (the connect call
///   succeeded; zero for a reused connection).
/// * `tls_done`: the TLS handshake is complete (`None` for `http://` and for
///   a reused connection).
/// * `request_written`: the whole request was handed to the connection (its
///   transport sends it as the kernel takes it).
/// * `first_byte`: the first byte of the response arrived.
/// * `complete`: the body's last byte arrived (`None` while a streamed body
///   is still coming).
///
/// Times are taken with [`Instant::now`] (the real monotonic clock).
///
/// ```
/// use std::time::Duration;
/// use torsion::http::Timings;
///
/// let ms = Duration::from_millis;
/// let mut t = Timings::default();
/// t.resolved = ms(2);
/// t.connected = ms(5);
/// t.tls_done = Some(ms(12));
/// t.request_written = ms(12);
/// t.first_byte = ms(30);
/// t.complete = Some(ms(31));
/// assert_eq!(t.connect(), ms(3));
/// assert_eq!(t.tls(), Some(ms(7)));
/// assert_eq!(t.processing(), ms(18));
/// assert_eq!(t.transfer(), Some(ms(1)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Timings {
    /// Whether the request went on a kept-alive connection from the pool
    /// (then there was no resolve, connect or handshake).
    pub reused: bool,
    /// The address was known.
    pub resolved: Duration,
    /// TCP was connected.
    pub connected: Duration,
    /// TLS was established (`https://` on a new connection only).
    pub tls_done: Option<Duration>,
    /// The request was written.
    pub request_written: Duration,
    /// The response's first byte arrived.
    pub first_byte: Duration,
    /// The body was complete.
    pub complete: Option<Duration>,
}

impl Timings {
    /// Resolving the host name (blackbox_exporter's `resolve` phase).
    pub fn resolve(&self) -> Duration {
        self.resolved
    }

    /// Connecting TCP (`connect`).
    pub fn connect(&self) -> Duration {
        self.connected.saturating_sub(self.resolved)
    }

    /// The TLS handshake (`tls`), for a new `https://` connection.
    pub fn tls(&self) -> Option<Duration> {
        self.tls_done.map(|t| t.saturating_sub(self.connected))
    }

    /// From a ready connection to the response's first byte: writing the
    /// request and the server's work (`processing`).
    pub fn processing(&self) -> Duration {
        self.first_byte
            .saturating_sub(self.tls_done.unwrap_or(self.connected))
    }

    /// From the first byte to the end of the body (`transfer`); `None` while
    /// a streamed body is still coming.
    pub fn transfer(&self) -> Option<Duration> {
        self.complete.map(|c| c.saturating_sub(self.first_byte))
    }

    /// From the start to the end of the body.
    pub fn total(&self) -> Option<Duration> {
        self.complete
    }
}

/// The instants behind [`Timings`], gathered as a request goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Marks {
    pub(crate) start: Instant,
    pub(crate) reused: bool,
    pub(crate) resolved: Option<Instant>,
    pub(crate) connected: Option<Instant>,
    pub(crate) tls_done: Option<Instant>,
    pub(crate) written: Option<Instant>,
    pub(crate) first_byte: Option<Instant>,
    pub(crate) complete: Option<Instant>,
}

impl Marks {
    pub(crate) fn new() -> Marks {
        Marks {
            start: Instant::now(),
            reused: false,
            resolved: None,
            connected: None,
            tls_done: None,
            written: None,
            first_byte: None,
            complete: None,
        }
    }

    /// The offsets, each at least the one before (a mark not taken is the
    /// one before it).
    pub(crate) fn timings(&self) -> Timings {
        let at = |t: Option<Instant>, before: Duration| {
            t.map_or(before, |t| t.saturating_duration_since(self.start))
                .max(before)
        };
        let resolved = at(self.resolved, Duration::ZERO);
        let connected = at(self.connected, resolved);
        let tls_done = self.tls_done.map(|t| at(Some(t), connected));
        let request_written = at(self.written, tls_done.unwrap_or(connected));
        let first_byte = at(self.first_byte, request_written);
        let complete = self.complete.map(|t| at(Some(t), first_byte));
        Timings {
            reused: self.reused,
            resolved,
            connected,
            tls_done,
            request_written,
            first_byte,
            complete,
        }
    }
}
