//! The wrapped connection's sink: plaintext goes into the TLS engine and its
//! records into the transport's gather buffer, as far as the transport has
//! room. The wrapped connection itself runs on the one engine
//! ([`crate::conn::Engine`]), like every other connection.

use std::io::{self, Write};

use rustls::Connection;

use super::InnerHost;
use crate::buf::WriteBuf;
use crate::conn::{Ending, Sink};
use crate::context::ConnectionHandle;
use crate::transport::{flags, ConnState, HostAddr};

/// The TLS engine's plaintext side over the transport (its state and gather
/// buffer), for one step of the wrapped connection.
pub(super) struct TlsSink<'s> {
    pub(super) tls: &'s mut Connection,
    /// The transport's state and gather buffer.
    pub(super) outer: &'s mut ConnState,
    pub(super) outer_out: &'s mut WriteBuf,
    pub(super) host: &'s InnerHost,
    /// Application data may be sent (the handshake is done).
    pub(super) handshake_done: bool,
    /// The transport said `pause_writing`.
    pub(super) outer_paused: bool,
    pub(super) close_notify_sent: &'s mut bool,
    /// The wrapped protocol's stream source wants another turn.
    pub(super) produce: &'s mut bool,
}

impl TlsSink<'_> {
    fn send_close_notify(&mut self) {
        if !*self.close_notify_sent {
            *self.close_notify_sent = true;
            self.tls.send_close_notify();
            flush_records(self.tls, self.outer, self.outer_out);
        }
    }
}

impl Sink for TlsSink<'_> {
    const OUTER: bool = false;
    crate::conn::lent_sink_again!();

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.handshake_done
            || *self.close_notify_sent
            || self.outer_paused
            || self.outer.has(flags::DEAD | flags::ABORT)
        {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // Fill the transport just past its high water mark: then either the
        // kernel takes it all (and a continuation moves more) or the transport
        // pauses us (and resume_writing does).
        let high = self.outer.limits().high;
        let room = (high + 1).saturating_sub(self.outer.pending_len() + self.outer_out.len());
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write(&buf[..buf.len().min(room)])?;
        flush_records(self.tls, self.outer, self.outer_out);
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.send_close_notify();
        self.outer.set(flags::WRITE_CLOSING);
        Ok(())
    }

    fn close(&mut self, end: &Ending<'_>) -> bool {
        if self.outer.has(flags::DEAD) {
            return false;
        }
        let x = self.outer.extra();
        if x.close_reason.is_none() {
            x.close_reason = Some(end.reason.clone());
        }
        if end.graceful {
            // close_notify after everything, then the transport's own
            // flush-then-close.
            self.send_close_notify();
            self.outer.set(flags::CLOSING);
        } else {
            abort_outer(self.outer, self.outer_out);
        }
        false
    }

    fn host(&self) -> &dyn HostAddr {
        self.host
    }

    fn produce_later(&mut self, _h: ConnectionHandle) -> bool {
        *self.produce = true;
        true
    }

    // Idle timeouts and rate limits live on the transport between calls (it
    // sees the traffic and runs their timers), on the wrapped connection
    // during its calls.
    fn enter(&mut self, state: &mut ConnState) {
        swap_shaping(self.outer, state);
    }

    fn leave(&mut self, state: &mut ConnState) {
        swap_shaping(self.outer, state);
    }
}

/// What `abort_connection` does to the transport.
pub(super) fn abort_outer(outer: &mut ConnState, out: &mut WriteBuf) {
    out.clear();
    if let Some(x) = &mut outer.extra {
        x.diverted = None;
    }
    outer.set(flags::ABORT);
}

/// Moves what the TLS engine has to send into the transport's gather buffer
/// (dropped once the transport refuses writes: it has nowhere to go).
pub(super) fn flush_records(tls: &mut Connection, outer: &ConnState, out: &mut WriteBuf) {
    let mut w = Records {
        refused: outer.write_refused(),
        out,
    };
    while tls.wants_write() {
        match tls.write_tls(&mut w) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

struct Records<'a> {
    refused: bool,
    out: &'a mut WriteBuf,
}

impl io::Write for Records<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.refused {
            self.out.push_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Exchanges the traffic-shaping state (idle timeout, rate limits) between
/// the transport's state and the wrapped protocol's.
fn swap_shaping(outer: &mut ConnState, inner: &mut ConnState) {
    if outer.extra.is_none() && inner.extra.is_none() {
        return;
    }
    let (o, i) = (outer.slow_extra(), inner.slow_extra());
    std::mem::swap(&mut o.idle, &mut i.idle);
    std::mem::swap(&mut o.read_rate, &mut i.read_rate);
    std::mem::swap(&mut o.write_rate, &mut i.write_rate);
    outer.recheck_slow();
    inner.recheck_slow();
}
