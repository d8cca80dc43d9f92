//! The errors of async connections.

use std::io;

use crate::defer::{Cancelled, TimedOut};
use crate::error::DisconnectReason;

/// Why an operation on an async [`Connection`](super::Connection) or
/// [`Listener`](super::Listener) failed. The common reasons a connection ends
/// have their own variants; every other reason is in
/// [`Lost`](Self::Lost).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The peer refused the connection (`ECONNREFUSED`, nobody listening).
    #[error("connection refused")]
    Refused,
    /// The peer reset the connection, or it broke while writing.
    #[error("connection reset by peer")]
    Reset,
    /// A connect timed out, an idle timeout closed the connection, or a
    /// [`timeout`](super::timeout) expired.
    #[error("timed out")]
    TimedOut,
    /// [`read_line`](super::Connection::read_line) found no end of line within
    /// its maximum. Nothing was consumed.
    #[error("line longer than {max} bytes")]
    LineTooLong {
        /// The maximum that was asked for.
        max: usize,
    },
    /// [`read_line`](super::Connection::read_line) read a line that is not
    /// UTF-8 (it is consumed; [`read_until`](super::Connection::read_until)
    /// reads bytes).
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    /// The peer finished sending before
    /// [`read_exact`](super::Connection::read_exact) had its bytes.
    #[error("the peer closed the connection {missing} bytes short")]
    UnexpectedEof {
        /// How many bytes were still missing.
        missing: usize,
    },
    /// The write side was closed (by [`shutdown_write`](super::Connection::shutdown_write)
    /// or [`close`](super::Connection::close)): nothing more can be written.
    #[error("the connection is closed for writing")]
    Closed,
    /// The connection ended for another reason (aborted, TLS failure, over the
    /// write cap, a callback panicked, an OS error...).
    #[error("{0}")]
    Lost(DisconnectReason),
    /// Listening failed (address in use, permission denied...).
    #[error("{0}")]
    Listen(crate::error::Error),
    /// The reactor of [`run`](super::run) could not start, or failed.
    #[error("{0}")]
    Reactor(crate::error::Error),
    /// An endpoint string was malformed, or its TLS files could not be read.
    #[error("{0}")]
    Endpoint(#[from] crate::endpoints::EndpointError),
    /// The reactor this was started on is gone.
    #[error("the reactor is gone")]
    ReactorGone,
}

impl StreamError {
    /// The disconnect reason this error stands for, if it is one (refused,
    /// reset, timed out or lost).
    pub fn reason(&self) -> Option<DisconnectReason> {
        match self {
            StreamError::Refused => Some(DisconnectReason::Refused),
            StreamError::Reset => Some(DisconnectReason::Reset),
            StreamError::TimedOut => Some(DisconnectReason::TimedOut),
            StreamError::Lost(r) => Some(r.clone()),
            _ => None,
        }
    }
}

impl From<DisconnectReason> for StreamError {
    fn from(r: DisconnectReason) -> Self {
        match r {
            DisconnectReason::Refused => StreamError::Refused,
            DisconnectReason::Reset => StreamError::Reset,
            DisconnectReason::TimedOut => StreamError::TimedOut,
            r => StreamError::Lost(r),
        }
    }
}

impl From<&DisconnectReason> for StreamError {
    fn from(r: &DisconnectReason) -> Self {
        r.clone().into()
    }
}

impl From<TimedOut> for StreamError {
    fn from(_: TimedOut) -> Self {
        StreamError::TimedOut
    }
}

impl From<Cancelled> for StreamError {
    fn from(_: Cancelled) -> Self {
        StreamError::Lost(DisconnectReason::Cancelled)
    }
}

impl From<StreamError> for io::Error {
    /// For the [`futures_io`] traits: the matching [`io::ErrorKind`], with the
    /// `StreamError` inside.
    fn from(e: StreamError) -> io::Error {
        use io::ErrorKind as K;
        let kind = match &e {
            StreamError::Refused => K::ConnectionRefused,
            StreamError::Reset => K::ConnectionReset,
            StreamError::TimedOut => K::TimedOut,
            StreamError::LineTooLong { .. } | StreamError::InvalidUtf8 => K::InvalidData,
            StreamError::UnexpectedEof { .. } => K::UnexpectedEof,
            StreamError::Closed => K::BrokenPipe,
            StreamError::Lost(DisconnectReason::Aborted) => K::ConnectionAborted,
            StreamError::Lost(DisconnectReason::Io { kind, .. }) => *kind,
            StreamError::Listen(crate::error::Error::Io(io))
            | StreamError::Reactor(crate::error::Error::Io(io)) => io.kind(),
            _ => K::Other,
        };
        io::Error::new(kind, e)
    }
}
