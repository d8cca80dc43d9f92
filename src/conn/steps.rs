//! The transport-independent half of driving a connection, shared by the real
//! reactor and the in-memory transports of [`testing`](crate::testing): how a
//! connection's flags are read after each callback, how a callback runs under
//! `catch_unwind`, and how due timers run. Keeping these in one place is what
//! lets tests promise production semantics.

use crate::error::DisconnectReason;
use crate::transport::{flags, ConnState};

/// What a connection's write buffer asks for once a callback (or a flush) is done.
#[derive(Debug)]
pub(crate) enum BufferStep {
    /// Nothing to do now.
    Idle,
    /// Close the connection for this reason: gracefully (FIN after the flush:
    /// a close that waited for it) or not (reset: over the cap).
    Close {
        /// Why, for `connection_lost`.
        reason: DisconnectReason,
        /// Whether everything was flushed and the peer gets a clean EOF.
        graceful: bool,
    },
    /// A stream source has room to fill: pull from it (`PRODUCE` is now set).
    Produce,
    /// The buffer rose above the high water mark: call `pause_writing`.
    PauseWriting,
    /// The buffer fell to the low water mark: call `resume_writing`.
    ResumeWriting,
    /// `lose_write_connection` and the buffer is empty: shut the write side
    /// down. Then, when `close_after` (the peer's EOF was seen already), close
    /// with [`DisconnectReason::Done`]; otherwise call `write_connection_lost`.
    ShutdownWrite {
        /// Whether the connection is finished once the write side is shut.
        close_after: bool,
    },
}

/// What the peer's end of stream means for a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EofStep {
    /// Our write side is shut too: close cleanly.
    Close,
    /// Half-close is on: call `read_connection_lost` and keep the connection.
    ReadConnectionLost,
    /// Flush what was written, then close cleanly (`CLOSING` is now set; run
    /// the buffer check).
    FlushThenClose,
}

impl ConnState {
    /// After a callback: `Some(reason)` if the protocol aborted the connection
    /// (buffered and gathered data must then be dropped).
    pub(crate) fn abort_requested(&mut self) -> Option<DisconnectReason> {
        if !self.has(flags::ABORT) {
            return None;
        }
        Some(
            self.take_close_reason()
                .unwrap_or(DisconnectReason::Aborted),
        )
    }

    /// Water marks, hard cap, and the closes that wait for an empty buffer.
    /// Updates the flags as if the returned step were carried out.
    pub(crate) fn buffer_step(&mut self) -> BufferStep {
        // Fast path, after every callback that wrote everything it had.
        if !self.has(flags::CLOSING | flags::WRITE_CLOSING | flags::PRODUCER_PAUSED)
            && self
                .extra
                .as_ref()
                .is_none_or(|x| x.pending.is_none() && x.source.is_none())
        {
            return BufferStep::Idle;
        }
        let buffered = self.pending_len();
        let limits = self.limits();
        if buffered > limits.cap {
            tracing::warn!(peer = %self.peer(), buffered, "write buffer over its cap: aborting");
            return BufferStep::Close {
                reason: DisconnectReason::WriteBufferFull,
                graceful: false,
            };
        }
        if buffered > limits.high && !self.has(flags::PRODUCER_PAUSED) {
            self.set(flags::PRODUCER_PAUSED);
            return BufferStep::PauseWriting;
        }
        if buffered <= limits.low && self.has(flags::PRODUCER_PAUSED) {
            self.clear(flags::PRODUCER_PAUSED);
            return BufferStep::ResumeWriting;
        }
        if self.extra.as_ref().is_some_and(|x| x.source.is_some()) {
            // Streaming: refill below the low mark; closes wait for the end.
            if buffered <= limits.low && !self.has(flags::PRODUCE) {
                self.set(flags::PRODUCE);
                return BufferStep::Produce;
            }
            return BufferStep::Idle;
        }
        if buffered > 0 {
            return BufferStep::Idle;
        }
        self.drop_pending();
        if self.has(flags::CLOSING) {
            let reason = self.take_close_reason().unwrap_or(DisconnectReason::Done);
            return BufferStep::Close {
                reason,
                graceful: true,
            };
        }
        if self.has(flags::WRITE_CLOSING) && !self.has(flags::WRITE_SHUT) {
            self.set(flags::WRITE_SHUT);
            return BufferStep::ShutdownWrite {
                close_after: self.has(flags::READ_EOF),
            };
        }
        BufferStep::Idle
    }

    /// The peer closed its sending side. Updates the flags.
    pub(crate) fn eof_step(&mut self) -> EofStep {
        self.set(flags::READ_EOF);
        if self.has(flags::WRITE_SHUT) {
            return EofStep::Close;
        }
        if self.has(flags::HALF_CLOSE) && !self.has(flags::CLOSING) {
            return EofStep::ReadConnectionLost;
        }
        self.set(flags::CLOSING);
        EofStep::FlushThenClose
    }
}
