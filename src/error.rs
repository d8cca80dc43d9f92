//! Errors returned by torsion's API, and the reasons a connection ends.

use std::fmt;
use std::io;
use std::sync::Arc;

/// Errors returned by torsion's calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `stop()` was called on a reactor that is not running.
    #[error("the reactor is not running")]
    NotRunning,
    /// The call already ran, or was cancelled (timers, Deferreds).
    #[error("the call already ran or was cancelled")]
    AlreadyCalled,
    /// The connection is closing or closed: the write or close was refused.
    #[error("the connection is closing or closed")]
    ConnectionClosed,
    /// The handle names a connection, listener or connector that no longer exists.
    #[error("no such connection, listener or connector")]
    NoSuchHandle,
    /// [`ConnectionRef::with_protocol`](crate::ConnectionRef::with_protocol)
    /// asked for a protocol type the connection does not run (not even inside
    /// a wrapper).
    #[error("the connection does not run a {expected}")]
    WrongProtocol {
        /// The type asked for.
        expected: &'static str,
    },
    /// The reactor was stopped before the Deferred it was running for fired
    /// (`Reactor::run_until_complete`).
    #[error("the reactor stopped before the Deferred fired")]
    Stopped,
    /// A callback panicked and the reactor's panic policy turns that into an error.
    #[error("a callback panicked: {0}")]
    Panicked(String),
    /// TLS could not be started (see `Context::start_tls`).
    #[error("TLS: {0}")]
    Tls(String),
    /// An operating-system error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a connection ended, or why a connection attempt failed.
///
/// Passed to `Protocol::connection_lost`, `ClientFactory::client_connection_failed`
/// and `ClientFactory::client_connection_lost`. [`is_clean`](Self::is_clean) tells a
/// graceful end from every other.
///
/// ```
/// use torsion::DisconnectReason;
///
/// // What a protocol closes with when the peer breaks the rules...
/// let reason = DisconnectReason::protocol("bad greeting");
/// assert_eq!(reason.to_string(), "protocol error: bad greeting");
/// // ...and how `connection_lost` tells a clean end from the others.
/// assert!(DisconnectReason::Done.is_clean());
/// assert!(!DisconnectReason::Reset.is_clean());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Closed cleanly: `lose_connection` flushed everything, or the peer closed its
    /// side after sending all it had (Twisted's `ConnectionDone`).
    Done,
    /// The peer reset the connection, or it broke while writing (`ECONNRESET`,
    /// `EPIPE`).
    Reset,
    /// A connect or idle timeout expired.
    TimedOut,
    /// The peer refused the connection (`ECONNREFUSED`).
    Refused,
    /// The host or network could not be reached.
    Unreachable,
    /// This side called `abort_connection`, or the reactor was dropped with
    /// the connection open: buffered data was dropped.
    Aborted,
    /// A pending connection attempt was cancelled with `stop_connecting`, or
    /// the reactor was dropped before it completed.
    Cancelled,
    /// The peer stopped reading and the write buffer reached its hard cap.
    WriteBufferFull,
    /// A callback panicked; the message is the panic payload.
    Panicked(Arc<str>),
    /// The protocol closed the connection because of bad input or another error of
    /// its own (for example an over-long line or a malformed frame).
    Protocol(Arc<str>),
    /// TLS failed: the handshake (a certificate that does not verify, no
    /// common protocol version or cipher...), a record that did not decrypt, or
    /// a peer that ended the connection without `close_notify`. The text says
    /// which.
    Tls(Arc<str>),
    /// Any other operating-system error.
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// The error's text.
        message: Arc<str>,
    },
}

impl DisconnectReason {
    /// Whether the connection ended gracefully ([`Done`](Self::Done)).
    pub fn is_clean(&self) -> bool {
        matches!(self, DisconnectReason::Done)
    }

    /// A [`Protocol`](Self::Protocol) reason from any message.
    pub fn protocol(message: impl Into<String>) -> Self {
        DisconnectReason::Protocol(Arc::from(message.into()))
    }

    /// Classifies an I/O error.
    pub fn from_io(e: &io::Error) -> Self {
        use io::ErrorKind as K;
        match e.kind() {
            K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted => DisconnectReason::Reset,
            K::ConnectionRefused => DisconnectReason::Refused,
            K::TimedOut => DisconnectReason::TimedOut,
            K::HostUnreachable | K::NetworkUnreachable => DisconnectReason::Unreachable,
            _ => match e.raw_os_error() {
                Some(113) | Some(101) if cfg!(target_os = "linux") => DisconnectReason::Unreachable,
                _ => DisconnectReason::Io {
                    kind: e.kind(),
                    message: Arc::from(e.to_string()),
                },
            },
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Done => f.write_str("connection closed cleanly"),
            DisconnectReason::Reset => f.write_str("connection reset by peer"),
            DisconnectReason::TimedOut => f.write_str("timed out"),
            DisconnectReason::Refused => f.write_str("connection refused"),
            DisconnectReason::Unreachable => f.write_str("host unreachable"),
            DisconnectReason::Aborted => f.write_str("connection aborted"),
            DisconnectReason::Cancelled => f.write_str("connection attempt cancelled"),
            DisconnectReason::WriteBufferFull => {
                f.write_str("peer stopped reading and the write buffer is full")
            }
            DisconnectReason::Panicked(m) => write!(f, "a callback panicked: {m}"),
            DisconnectReason::Protocol(m) => write!(f, "protocol error: {m}"),
            DisconnectReason::Tls(m) => write!(f, "TLS error: {m}"),
            DisconnectReason::Io { message, .. } => write!(f, "I/O error: {message}"),
        }
    }
}

impl std::error::Error for DisconnectReason {}

/// A `Result` with torsion's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_io_errors() {
        let r = |k| DisconnectReason::from_io(&io::Error::from(k));
        assert_eq!(r(io::ErrorKind::ConnectionReset), DisconnectReason::Reset);
        assert_eq!(r(io::ErrorKind::BrokenPipe), DisconnectReason::Reset);
        assert_eq!(
            r(io::ErrorKind::ConnectionRefused),
            DisconnectReason::Refused
        );
        assert_eq!(r(io::ErrorKind::TimedOut), DisconnectReason::TimedOut);
        assert!(matches!(
            r(io::ErrorKind::PermissionDenied),
            DisconnectReason::Io { .. }
        ));
        assert_eq!(DisconnectReason::Refused.to_string(), "connection refused");
        assert!(DisconnectReason::Done.is_clean());
        assert!(!DisconnectReason::Aborted.is_clean());
    }
}
