//! The in-memory connection engine shared by the recording transport and the
//! pump: the reactor's stream logic (`reactor/conn.rs`) with an in-memory
//! byte sink in place of the socket, built on the same `drive` helpers.

use std::io;
use std::net::SocketAddr;

use crate::buf::WriteBuf;
use crate::context::{flags, ConnState, ConnectionHandle, Context, Core, Op, ProtoFn, WrapFn};
use crate::drive::{call_connection_lost, call_protocol, BufferStep, EofStep, TimerDriver};
use crate::error::DisconnectReason;
use crate::protocol::Protocol;
use crate::reactor::InternalTimer;
use crate::wrap::innermost;

use super::Request;

/// Where a connection's bytes go: the in-memory stand-in for the socket's send
/// side. `write` takes what fits (`WouldBlock` when nothing does) and fails
/// with `ConnectionReset` once the peer reset the connection.
pub(crate) trait Sink: io::Write {
    /// Sends the end of stream (the socket's `shutdown(Write)` or a clean close).
    fn shutdown_write(&mut self);
    /// Resets the connection (abort, error or any unclean close).
    fn reset(&mut self);
}

/// One end of an in-memory connection.
pub(crate) struct MemConn {
    pub(crate) state: ConnState,
    pub(crate) protocol: Box<dyn Protocol>,
    pub(crate) host: SocketAddr,
    pub(crate) lost: Option<DisconnectReason>,
    /// Whether that end was graceful (the peer saw a clean end of stream).
    pub(crate) lost_gracefully: bool,
}

impl MemConn {
    pub(crate) fn new(
        handle: ConnectionHandle,
        protocol: Box<dyn Protocol>,
        host: SocketAddr,
        peer: SocketAddr,
    ) -> Self {
        MemConn {
            state: ConnState::new(handle, peer),
            protocol,
            host,
            lost: None,
            lost_gracefully: false,
        }
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.state.has(flags::DEAD)
    }

    /// Whether the connection would read input now (the reactor's
    /// `on_readable` preconditions). Marks a paused connection as having input.
    pub(crate) fn wants_input(&mut self) -> bool {
        if self.is_dead() || self.state.has(flags::READ_EOF) {
            return false;
        }
        if self.state.has(flags::READ_PAUSED) {
            self.state.set(flags::READ_PENDING);
            return false;
        }
        true
    }

    /// Wraps the protocol (`start_tls`) and tells the wrapper it is attached.
    pub(crate) fn wrap(
        &mut self,
        core: &mut Core,
        out: &mut WriteBuf,
        sink: &mut dyn Sink,
        wrap: WrapFn,
    ) {
        if self.is_dead() {
            return;
        }
        let p = std::mem::replace(&mut self.protocol, Box::new(crate::wrap::Unwrapped));
        self.protocol = wrap(p);
        self.invoke(core, out, sink, |p, ctx| p.connection_made(ctx));
    }

    /// Delivers `connection_made`.
    pub(crate) fn make(&mut self, core: &mut Core, out: &mut WriteBuf, sink: &mut dyn Sink) {
        self.state.set(flags::MADE);
        self.invoke(core, out, sink, |p, ctx| p.connection_made(ctx));
    }

    /// Runs `f` on the protocol and settles what it did (the reactor's `invoke`).
    pub(crate) fn invoke(
        &mut self,
        core: &mut Core,
        out: &mut WriteBuf,
        sink: &mut dyn Sink,
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) {
        if self.is_dead() {
            return;
        }
        call_protocol(
            core,
            &mut self.state,
            out,
            &self.host,
            &mut *self.protocol,
            f,
        );
        self.settle(core, out, sink);
    }

    /// After a callback: gathered writes to the sink, close, abort, back-pressure.
    fn settle(&mut self, core: &mut Core, out: &mut WriteBuf, sink: &mut dyn Sink) {
        if let Some(reason) = self.state.abort_requested() {
            out.clear();
            return self.close(core, out, sink, reason);
        }
        if !out.is_empty() {
            match &mut self.state.pending {
                Some(p) if !p.is_empty() => p.append(out),
                _ => match out.write_to(&mut SinkWriter(sink)) {
                    Ok(n) => {
                        if n > 0 {
                            self.state.touch(core.turn_time());
                        }
                        if !out.is_empty() {
                            self.state
                                .pending
                                .get_or_insert_with(Default::default)
                                .append(out);
                        }
                    }
                    Err(e) => {
                        out.clear();
                        return self.close(core, out, sink, DisconnectReason::from_io(&e));
                    }
                },
            }
            out.clear();
        }
        self.check_buffer(core, out, sink);
    }

    fn check_buffer(&mut self, core: &mut Core, out: &mut WriteBuf, sink: &mut dyn Sink) {
        if self.is_dead() {
            return;
        }
        match self.state.buffer_step() {
            BufferStep::Idle => {}
            BufferStep::Close { reason, graceful } => {
                self.finish(core, out, sink, reason, graceful)
            }
            BufferStep::Produce => self.produce(core, out, sink),
            BufferStep::PauseWriting => self.invoke(core, out, sink, |p, ctx| p.pause_writing(ctx)),
            BufferStep::ResumeWriting => {
                self.invoke(core, out, sink, |p, ctx| p.resume_writing(ctx))
            }
            BufferStep::ShutdownWrite { close_after } => {
                sink.shutdown_write();
                if close_after {
                    return self.close(core, out, sink, DisconnectReason::Done);
                }
                self.invoke(core, out, sink, |p, ctx| p.write_connection_lost(ctx));
            }
        }
    }

    /// The sink has room again (the reactor's `on_writable`).
    pub(crate) fn writable(&mut self, core: &mut Core, out: &mut WriteBuf, sink: &mut dyn Sink) {
        if self.is_dead() {
            return;
        }
        let Some(p) = &mut self.state.pending else {
            return;
        };
        match p.write_to(&mut SinkWriter(sink)) {
            Ok(n) if n > 0 => self.state.touch(core.turn_time()),
            Ok(_) => {}
            Err(e) => return self.close(core, out, sink, DisconnectReason::from_io(&e)),
        }
        self.check_buffer(core, out, sink);
    }

    /// Pulls from the stream source while the buffer is below the high water
    /// mark (the reactor's `produce`; the sink's room bounds the loop).
    fn produce(&mut self, core: &mut Core, out: &mut WriteBuf, sink: &mut dyn Sink) {
        loop {
            self.state.clear(flags::PRODUCE);
            if self
                .state
                .has(flags::DEAD | flags::ABORT | flags::WRITE_SHUT)
            {
                return;
            }
            if self.state.pending_len() >= self.state.limits().high {
                return self.check_buffer(core, out, sink);
            }
            let Some(source) = self.state.extra.as_mut().and_then(|x| x.source.as_mut()) else {
                return;
            };
            let next =
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.next())) {
                    Ok(n) => n,
                    Err(p) => Some(Err(io::Error::other(
                        core.caught_panic(p, "stream source").to_string(),
                    ))),
                };
            match next {
                Some(Ok(chunk)) => {
                    out.push_bytes(chunk);
                    let waiting = self.state.pending.as_ref().is_some_and(|p| !p.is_empty());
                    if !waiting {
                        match out.write_to(&mut SinkWriter(sink)) {
                            Ok(n) if n > 0 => self.state.touch(core.turn_time()),
                            Ok(_) => {}
                            Err(e) => {
                                out.clear();
                                return self.close(core, out, sink, DisconnectReason::from_io(&e));
                            }
                        }
                    }
                    if !out.is_empty() {
                        self.state
                            .pending
                            .get_or_insert_with(Default::default)
                            .append(out);
                    }
                    out.clear();
                }
                end => {
                    if let Some(x) = &mut self.state.extra {
                        x.source = None;
                    }
                    let result = match end {
                        Some(Err(e)) => Err(e),
                        _ => Ok(()),
                    };
                    return self.invoke(core, out, sink, move |p, ctx| {
                        p.streaming_finished(ctx, result)
                    });
                }
            }
        }
    }

    /// Bytes arrived (the reactor's read path; check [`wants_input`] first).
    pub(crate) fn data(
        &mut self,
        core: &mut Core,
        out: &mut WriteBuf,
        sink: &mut dyn Sink,
        data: &[u8],
    ) {
        self.state.touch(core.turn_time());
        if !self.state.has(flags::CLOSING) {
            self.invoke(core, out, sink, |p, ctx| p.data_received(ctx, data));
        }
    }

    /// The peer's end of stream arrived.
    pub(crate) fn eof(&mut self, core: &mut Core, out: &mut WriteBuf, sink: &mut dyn Sink) {
        if self.is_dead() {
            return;
        }
        match self.state.eof_step() {
            EofStep::Close => self.close(core, out, sink, DisconnectReason::Done),
            EofStep::ReadConnectionLost => {
                self.invoke(core, out, sink, |p, ctx| p.read_connection_lost(ctx))
            }
            EofStep::FlushThenClose => self.check_buffer(core, out, sink),
        }
    }

    /// Ends the connection: the peer sees a reset (unclean reasons) or the end
    /// of stream (clean), and the protocol hears `connection_lost` once.
    pub(crate) fn close(
        &mut self,
        core: &mut Core,
        out: &mut WriteBuf,
        sink: &mut dyn Sink,
        reason: DisconnectReason,
    ) {
        let graceful = reason.is_clean();
        self.finish(core, out, sink, reason, graceful)
    }

    /// Like [`close`](Self::close); `graceful` says whether the peer sees the end
    /// of stream after everything (a close that waited for the flush) or a reset.
    pub(crate) fn finish(
        &mut self,
        core: &mut Core,
        out: &mut WriteBuf,
        sink: &mut dyn Sink,
        reason: DisconnectReason,
        graceful: bool,
    ) {
        if self.is_dead() {
            return;
        }
        self.state.set(flags::DEAD);
        self.state.pending = None;
        tracing::debug!(peer = %self.state.peer, %reason, "in-memory connection lost");
        if let Some(x) = self.state.extra.take() {
            if let Some(t) = x.idle.and_then(|i| i.timer) {
                let _ = core.timers.cancel(t);
            }
        }
        if !graceful {
            sink.reset();
        } else if !self.state.has(flags::WRITE_SHUT) {
            sink.shutdown_write();
        }
        self.lost = Some(reason.clone());
        self.lost_gracefully = graceful;
        call_connection_lost(
            core,
            &mut self.state,
            out,
            &self.host,
            &mut *self.protocol,
            &reason,
        );
    }
}

/// `io::Write` over a `&mut dyn Sink` (so `WriteBuf::write_to` can use it).
struct SinkWriter<'a>(&'a mut dyn Sink);

impl io::Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connections the operations queued on [`Core`] can name.
pub(crate) trait Conns {
    /// Runs `f` on the live connection `h` and settles it; ignores stale handles.
    fn invoke(&mut self, core: &mut Core, h: ConnectionHandle, f: ProtoFn);
    /// The reactor's `ResumeReading` op: reading is on again for `h`.
    fn resume_reading(&mut self, core: &mut Core, h: ConnectionHandle);
    /// Every live connection (for `shutdown`).
    fn live(&self) -> Vec<ConnectionHandle>;
    /// The reactor's `Wrap` op: `h`'s protocol is wrapped (`start_tls`).
    fn wrap(&mut self, core: &mut Core, h: ConnectionHandle, wrap: WrapFn);
}

/// No connections at all: the bare [`Clock`](super::Clock).
pub(crate) struct NoConns;

impl Conns for NoConns {
    fn invoke(&mut self, _: &mut Core, h: ConnectionHandle, _: ProtoFn) {
        tracing::debug!(?h, "operation on an unknown connection dropped");
    }
    fn resume_reading(&mut self, _: &mut Core, _: ConnectionHandle) {}
    fn live(&self) -> Vec<ConnectionHandle> {
        Vec::new()
    }
    fn wrap(&mut self, _: &mut Core, h: ConnectionHandle, _: WrapFn) {
        tracing::debug!(?h, "wrap of an unknown connection dropped");
    }
}

/// Carries out `core.ops` as the reactor's `Net::apply` does, for the
/// in-memory connections; reactor-level requests are recorded.
pub(crate) fn process_ops(core: &mut Core, conns: &mut impl Conns, requests: &mut Vec<Request>) {
    while !core.ops.is_empty() {
        let ops = std::mem::take(&mut core.ops);
        for op in ops {
            apply(core, conns, requests, op);
        }
    }
}

fn apply(core: &mut Core, conns: &mut impl Conns, requests: &mut Vec<Request>, op: Op) {
    match op {
        // As the reactor: operations by handle reach the innermost protocol.
        Op::Write(h, data) => conns.invoke(
            core,
            h,
            Box::new(move |p, ctx| innermost(p, ctx, |_, ctx| ctx.write_bytes(data))),
        ),
        Op::Lose(h) => conns.invoke(
            core,
            h,
            Box::new(|p, ctx| innermost(p, ctx, |_, ctx| ctx.lose_connection())),
        ),
        Op::Abort(h) => conns.invoke(
            core,
            h,
            Box::new(|p, ctx| innermost(p, ctx, |_, ctx| ctx.abort_connection())),
        ),
        Op::PauseReading(h) => conns.invoke(
            core,
            h,
            Box::new(|p, ctx| innermost(p, ctx, |_, ctx| ctx.pause_reading())),
        ),
        Op::Wrap(h, wrap) => conns.wrap(core, h, wrap),
        Op::ResumeReading(h) => conns.resume_reading(core, h),
        Op::Call(h, f) => conns.invoke(core, h, f),
        Op::Listen(p) => requests.push(Request::Listen {
            addr: p.local_addr(),
        }),
        Op::StopListening(_) => requests.push(Request::StopListening),
        // Datagram ports need the real reactor's sockets.
        Op::ListenDatagram(_) | Op::DatagramCall(..) => {
            tracing::warn!("datagram ports are not simulated in memory: request dropped")
        }
        // A child's pipes and stdin/stdout need the real reactor.
        Op::Pipes(_) => {
            tracing::warn!("process pipes and standard I/O need a reactor: request dropped")
        }
        Op::Connect(p) => {
            let (addr, timeout) = p.target();
            requests.push(Request::Connect { addr, timeout });
        }
        Op::StopConnecting(_) => requests.push(Request::StopConnecting),
        Op::Disconnect(_) => requests.push(Request::Disconnect),
        // An empty callback: settling it pulls from the stream source.
        Op::Produce(h) => conns.invoke(core, h, Box::new(|_, _| {})),
        Op::Shutdown(timeout) => {
            requests.push(Request::Shutdown { timeout });
            for h in conns.live() {
                conns.invoke(
                    core,
                    h,
                    Box::new(|p, ctx| innermost(p, ctx, |_, ctx| ctx.lose_connection())),
                );
            }
        }
    }
}

/// Runs timers for in-memory connections.
pub(crate) struct OpsDriver<'a, C> {
    pub(crate) conns: &'a mut C,
    pub(crate) requests: &'a mut Vec<Request>,
}

impl<C: Conns> TimerDriver for OpsDriver<'_, C> {
    fn internal_timer(&mut self, core: &mut Core, t: InternalTimer) {
        match t {
            InternalTimer::Idle { key, gen } => {
                let h = ConnectionHandle {
                    key: key as u32,
                    gen,
                };
                self.conns.invoke(
                    core,
                    h,
                    Box::new(|p, ctx| {
                        if ctx.idle_expired() {
                            p.idle_timeout(ctx);
                        }
                    }),
                );
            }
            // The rest belong to sockets (connect and linger timeouts, accept
            // retries, rate windows: the in-memory transports do not throttle).
            t => tracing::debug!(?t, "internal timer ignored by the in-memory driver"),
        }
    }
    fn process_ops(&mut self, core: &mut Core) {
        process_ops(core, self.conns, self.requests);
    }
}
