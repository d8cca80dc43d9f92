//! Stream connections: the read, write and close logic every stream transport
//! shares.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::stream::Stream;
use super::{Entry, InternalTimer, Net, READ_BUDGET};
use crate::buf::WriteBuf;
use crate::context::{flags, ConnState, Context, Core};
use crate::drive::{call_connection_lost, BufferStep, EofStep};
use crate::error::DisconnectReason;
use crate::protocol::Protocol;

/// How long a gracefully closed socket keeps draining input, waiting for the
/// peer's EOF, before it is closed anyway.
pub(crate) const LINGER_TIMEOUT: Duration = Duration::from_secs(5);

/// One established stream connection.
pub(crate) struct Connection {
    pub(crate) stream: Stream,
    pub(crate) state: ConnState,
    pub(crate) protocol: Box<dyn Protocol>,
    /// The connector that made it (client side), or 0.
    pub(crate) connector: u64,
}

/// A socket whose write side is shut, read until EOF before closing, so the
/// peer does not see a reset with our last bytes unread.
pub(crate) struct Lingering {
    pub(crate) stream: Stream,
    pub(crate) gen: u32,
    pub(crate) timer: crate::reactor::timers::TimerId,
}

/// Writes with `MSG_NOSIGNAL`, so a write to a reset peer is an `EPIPE` error
/// for that connection and never a `SIGPIPE` for the process, whatever the
/// process's signal disposition (std's `write_vectored` uses `writev`, which has no
/// such flag).
pub(crate) struct NoSigPipe<'a>(pub(crate) &'a Stream);

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd"
))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
// Apple platforms: mio sets SO_NOSIGPIPE on every socket instead.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
const SEND_FLAGS: libc::c_int = 0;

impl io::Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        socket2::SockRef::from(self.0).send_with_flags(buf, SEND_FLAGS)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        socket2::SockRef::from(self.0).send_vectored_with_flags(bufs, SEND_FLAGS)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Net {
    /// Runs `f` on the protocol of connection `key` under `catch_unwind`, then
    /// settles what it did: flushes its writes, applies close requests.
    pub(crate) fn invoke(
        &mut self,
        core: &mut Core,
        key: usize,
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        call(core, c, &mut self.out, &[], f);
        self.settle(core, key);
    }

    /// After a callback: move gathered writes to the socket, apply close,
    /// abort and back-pressure.
    pub(crate) fn settle(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(reason) = c.state.abort_requested() {
            self.out.clear();
            return self.close(core, key, reason);
        }
        if !self.out.is_empty() {
            if let Err(e) = self.write_out(core, key) {
                return self.close(core, key, DisconnectReason::from_io(&e));
            }
        }
        if let Some(Entry::Conn(c)) = self.entries.get(key) {
            if c.state.pending.is_none() && c.state.flags == flags::MADE && c.state.extra.is_none()
            {
                return; // nothing buffered and nothing to close: no step to take
            }
        }
        self.check_buffer(core, key);
    }

    /// Hands the gathered writes to the kernel, keeping what it refuses.
    fn write_out(&mut self, core: &mut Core, key: usize) -> io::Result<()> {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            self.out.clear();
            return Ok(());
        };
        // Pending bytes exist only while the kernel refuses more (every write goes
        // on until WouldBlock or empty) or the write rate holds them back; either
        // way a writable edge or a timer will come for them. Otherwise write now.
        // The common case: nothing buffered, no rate limit or idle timer, and all
        // the gathered bytes in one piece: one send.
        if c.state.pending.is_none() && c.state.extra.is_none() {
            match self.out.write_contiguous(&mut NoSigPipe(&c.stream)) {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => {
                    self.out.clear();
                    return Err(e);
                }
                None => {}
            }
        }
        let waiting = c.state.pending.as_ref().is_some_and(|p| !p.is_empty())
            || c.state.has(flags::WRITE_THROTTLED);
        if !waiting {
            let res = write_buf(&mut self.out, &c.stream, &mut c.state, core);
            if let Err(e) = res {
                self.out.clear();
                return Err(e);
            }
        }
        if !self.out.is_empty() {
            c.state
                .pending
                .get_or_insert_with(Default::default)
                .append(&mut self.out);
        }
        self.out.clear();
        Ok(())
    }

    /// Water marks, hard cap, the stream source, and the closes that wait for an
    /// empty buffer (the decision is [`ConnState::buffer_step`], shared with the
    /// in-memory transports).
    pub(crate) fn check_buffer(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        match c.state.buffer_step() {
            BufferStep::Idle => {}
            BufferStep::Close { reason, graceful } => self.finish(core, key, reason, graceful),
            BufferStep::PauseWriting => self.invoke(core, key, |p, ctx| p.pause_writing(ctx)),
            BufferStep::ResumeWriting => self.invoke(core, key, |p, ctx| p.resume_writing(ctx)),
            BufferStep::Produce => self.ready.push((key, c.state.handle.gen)),
            BufferStep::ShutdownWrite { close_after } => {
                if let Err(e) = c.stream.shutdown(std::net::Shutdown::Write) {
                    return self.close(core, key, DisconnectReason::from_io(&e));
                }
                if close_after {
                    return self.close(core, key, DisconnectReason::Done);
                }
                self.invoke(core, key, |p, ctx| p.write_connection_lost(ctx));
            }
        }
    }

    /// Pulls chunks from the connection's stream source while its buffer is
    /// below the high water mark (a bounded number per turn, for fairness).
    pub(crate) fn produce(&mut self, core: &mut Core, key: usize) {
        for _ in 0..READ_BUDGET {
            let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
                return;
            };
            c.state.clear(flags::PRODUCE);
            if c.state.has(flags::DEAD | flags::ABORT | flags::WRITE_SHUT) {
                return;
            }
            if c.state.pending_len() >= c.state.limits().high {
                return self.check_buffer(core, key);
            }
            let Some(source) = c.state.extra.as_mut().and_then(|x| x.source.as_mut()) else {
                return;
            };
            let next = match catch_unwind(AssertUnwindSafe(|| source.next())) {
                Ok(n) => n,
                Err(p) => Some(Err(io::Error::other(
                    core.caught_panic(p, "stream source").to_string(),
                ))),
            };
            match next {
                Some(Ok(chunk)) => {
                    self.out.push_bytes(chunk);
                    if let Err(e) = self.write_out(core, key) {
                        return self.close(core, key, DisconnectReason::from_io(&e));
                    }
                }
                end => {
                    if let Some(x) = &mut c.state.extra {
                        x.source = None;
                    }
                    let result = match end {
                        Some(Err(e)) => Err(e),
                        _ => Ok(()),
                    };
                    return self.invoke(core, key, move |p, ctx| p.streaming_finished(ctx, result));
                }
            }
        }
        // Budget spent: continue after the other sources had their turn.
        if let Some(Entry::Conn(c)) = self.entries.get_mut(key) {
            c.state.set(flags::PRODUCE);
            self.ready.push((key, c.state.handle.gen));
        }
    }

    pub(crate) fn on_writable(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        if c.state.has(flags::WRITE_THROTTLED) {
            return;
        }
        let Some(mut p) = c.state.pending.take() else {
            return;
        };
        let res = write_buf(&mut p, &c.stream, &mut c.state, core);
        c.state.pending = Some(p);
        if let Err(e) = res {
            return self.close(core, key, DisconnectReason::from_io(&e));
        }
        self.check_buffer(core, key);
    }

    /// Reads until `WouldBlock`, a short read, or the budget runs out.
    pub(crate) fn on_readable(&mut self, core: &mut Core, key: usize, read_closed: bool) {
        if read_closed {
            if let Some(Entry::Conn(c)) = self.entries.get_mut(key) {
                c.state.set(flags::PEER_FIN);
            }
        }
        for _ in 0..READ_BUDGET {
            let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
                return;
            };
            if c.state.has(flags::READ_PAUSED | flags::READ_THROTTLED) {
                c.state.set(flags::READ_PENDING);
                return;
            }
            if c.state.has(flags::READ_EOF) {
                return;
            }
            let mut cap = self.read_buf.len();
            if let Some(rate) = c.state.extra.as_mut().and_then(|x| x.read_rate.as_mut()) {
                let allowed = rate.allowance(core.turn_time());
                if allowed == 0 {
                    let at = rate.window_end();
                    c.state.set(flags::READ_THROTTLED | flags::READ_PENDING);
                    return self.arm_throttle(core, key, at);
                }
                cap = cap.min(allowed);
            }
            match c.stream.read(&mut self.read_buf[..cap]) {
                Ok(0) => return self.on_eof(core, key),
                Ok(n) => {
                    let short = n < cap;
                    let now = core.turn_time();
                    c.state.touch(now);
                    if let Some(rate) = c.state.extra.as_mut().and_then(|x| x.read_rate.as_mut()) {
                        rate.used += n;
                    }
                    if !c.state.has(flags::CLOSING) {
                        let data = &self.read_buf[..n];
                        call(core, c, &mut self.out, data, |p, ctx| {
                            p.data_received(ctx, data)
                        });
                        if let Some((off, len)) = self.out.take_input_ref() {
                            // Echoed input: send it from the read buffer, copying
                            // only what the kernel refuses.
                            send_input(c, &mut self.out, &self.read_buf[off..off + len]);
                        }
                        self.settle(core, key);
                    }
                    // On epoll a short read proves the socket is drained, unless
                    // the peer's FIN is waiting behind the data.
                    // (The hint is kept in PEER_FIN: its edge does not come again.)
                    if short
                        && cap == self.read_buf.len()
                        && cfg!(any(target_os = "linux", target_os = "android"))
                        && !matches!(self.entries.get(key), Some(Entry::Conn(c)) if c.state.has(flags::PEER_FIN))
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.close(core, key, DisconnectReason::from_io(&e)),
            }
        }
        // Budget spent with data possibly left: come back after the others.
        if let Some(Entry::Conn(c)) = self.entries.get_mut(key) {
            c.state.set(flags::READ_AGAIN);
            self.ready.push((key, c.state.handle.gen));
        }
    }

    fn on_eof(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        match c.state.eof_step() {
            EofStep::Close => self.close(core, key, DisconnectReason::Done),
            EofStep::ReadConnectionLost => {
                self.invoke(core, key, |p, ctx| p.read_connection_lost(ctx))
            }
            // Not half-closeable: flush what was written, then close cleanly.
            EofStep::FlushThenClose => self.check_buffer(core, key),
        }
    }

    /// Ends connection `key`: the socket is reset (abort, errors) or its write side
    /// shut and left to linger (clean close), and the protocol hears
    /// `connection_lost` exactly once, then the client factory, if any, hears
    /// `client_connection_lost`.
    pub(crate) fn close(&mut self, core: &mut Core, key: usize, reason: DisconnectReason) {
        let graceful = reason.is_clean();
        self.finish(core, key, reason, graceful)
    }

    /// Like [`close`](Self::close); `graceful` says whether the socket gets a FIN
    /// and a lingering drain (everything was flushed) or a reset.
    pub(crate) fn finish(
        &mut self,
        core: &mut Core,
        key: usize,
        reason: DisconnectReason,
        graceful: bool,
    ) {
        let Entry::Conn(c) = self.vacate(key) else {
            return;
        };
        let Connection {
            mut stream,
            mut state,
            mut protocol,
            connector,
        } = c;
        self.live_conns -= 1;
        let _ = self.registry.deregister(&mut stream);
        state.set(flags::DEAD);
        state.pending = None;
        if let Some(x) = state.extra.take() {
            for t in [x.idle.and_then(|i| i.timer), x.throttle_timer]
                .into_iter()
                .flatten()
            {
                let _ = core.timers.cancel(t);
            }
        }
        // The same span as the other callbacks', so connection_lost (and the
        // client factory's client_connection_lost) log under it too.
        let _span =
            tracing::debug_span!("conn", id = state.handle.key, peer = %state.peer).entered();
        tracing::debug!(%reason, "connection lost");
        // FIN now for a graceful close (then drain input until the peer's EOF:
        // a lingering close); SO_LINGER 0 so that closing resets otherwise.
        let linger = graceful
            && !state.has(flags::READ_EOF)
            && stream.shutdown(std::net::Shutdown::Write).is_ok();
        if !graceful {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
        // The socket stays open during the callback, so `host_addr` is looked up
        // only if the protocol asks (no system call per connection otherwise).
        call_connection_lost(
            core,
            &mut state,
            &mut self.out,
            &stream,
            &mut *protocol,
            &reason,
        );
        if linger {
            self.linger(core, stream);
        } else {
            drop(stream);
        }
        drop(protocol);
        if connector != 0 {
            self.connector_lost(core, connector, reason);
        }
    }

    fn linger(&mut self, core: &mut Core, mut stream: Stream) {
        let gen = self.next_gen();
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        if self
            .registry
            .register(&mut stream, mio::Token(key), mio::Interest::READABLE)
            .is_err()
        {
            return;
        }
        let timer =
            core.schedule_internal(LINGER_TIMEOUT, InternalTimer::LingerTimeout { key, gen });
        entry.insert(Entry::Lingering(Box::new(Lingering { stream, gen, timer })));
        // Data may already be waiting; an edge may not come again.
        self.on_linger_readable(core, key);
    }

    pub(crate) fn on_linger_readable(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Lingering(l)) = self.entries.get_mut(key) else {
            return;
        };
        loop {
            match l.stream.read(&mut self.read_buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let timer = l.timer;
        let _ = core.timers.cancel(timer);
        if let Entry::Lingering(mut l) = self.vacate(key) {
            let _ = self.registry.deregister(&mut l.stream);
        }
    }
}

/// Calls `f` on the connection's protocol with a fresh context, catching panics.
pub(crate) fn call(
    core: &mut Core,
    c: &mut Connection,
    out: &mut crate::buf::WriteBuf,
    input: &[u8],
    f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
) {
    let _span =
        tracing::debug_span!("conn", id = c.state.handle.key, peer = %c.state.peer).entered();
    crate::drive::call_protocol_with_input(
        core,
        &mut c.state,
        out,
        &c.stream,
        input,
        &mut *c.protocol,
        f,
    );
}

/// Writes `buf` to the socket within the write rate, noting traffic for the idle
/// timeout. Leaves in `buf` what the kernel refused or the rate held back (and
/// then arms the throttle timer).
fn write_buf(
    buf: &mut WriteBuf,
    stream: &Stream,
    state: &mut ConnState,
    core: &mut Core,
) -> io::Result<()> {
    let now = core.turn_time();
    let mut limit = usize::MAX;
    if let Some(rate) = state.extra.as_mut().and_then(|x| x.write_rate.as_mut()) {
        limit = rate.allowance(now);
    }
    let n = if limit == 0 {
        0
    } else {
        buf.write_to_limited(&mut NoSigPipe(stream), limit)?
    };
    if n > 0 {
        state.touch(now);
    }
    if let Some(x) = state.extra.as_mut() {
        if let Some(rate) = x.write_rate.as_mut() {
            rate.used += n;
            if !buf.is_empty() && n >= limit {
                state.flags |= flags::WRITE_THROTTLED;
                let at = rate.window_end();
                if x.throttle_timer.is_none() {
                    let h = state.handle;
                    x.throttle_timer = Some(core.schedule_internal(
                        at.saturating_duration_since(core.now()),
                        InternalTimer::Throttle {
                            key: h.key as usize,
                            gen: h.gen,
                        },
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Sends bytes of the read buffer that the protocol wrote back (gathered by
/// reference), when nothing is buffered ahead of them; gathers a copy of
/// whatever the kernel did not take. A hard error is left for `settle` to meet
/// on its next write of the same connection (the copy keeps the order).
fn send_input(c: &mut Connection, out: &mut WriteBuf, bytes: &[u8]) {
    let mut sent = 0;
    if c.state.pending.is_none() && c.state.extra.is_none() {
        while sent < bytes.len() {
            match io::Write::write(&mut NoSigPipe(&c.stream), &bytes[sent..]) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    out.push_slice(&bytes[sent..]);
}
