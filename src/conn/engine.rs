//! The connection state machine: what happens after every callback, every
//! write the sink refuses, every read and every end, for every transport.

use std::io::{self, IoSlice};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{BufferStep, EofStep};
use super::{Ending, Sink};
use crate::buf::WriteBuf;
use crate::context::{Core, Op};
use crate::core::ops::InternalTimer;
use crate::error::DisconnectReason;
use crate::introspect::CallbackKind;
use crate::protocol::Protocol;
use crate::transport::{flags, ConnState, Context};

/// Chunks a stream source may yield in one go before the other connections
/// get their turn (the producer loop's fairness budget).
pub(crate) const PRODUCE_BUDGET: usize = 16;

/// One connection, borrowed for one step: the reactor's clock and queues, the
/// connection's state and protocol, the gather buffer, and the sink its bytes
/// go to. Built afresh for each event (it is only references, so this costs
/// nothing); the owner looks at [`ConnState`]'s `DEAD` flag afterwards to know
/// whether to reap the connection (see [`Sink`]).
pub(crate) struct Engine<'a, S: Sink> {
    pub(crate) core: &'a mut Core,
    pub(crate) state: &'a mut ConnState,
    /// The box, not the protocol: its vtable pointer is loaded at the call,
    /// not copied into the engine and kept across the read.
    pub(crate) protocol: &'a mut Box<dyn Protocol>,
    pub(crate) out: &'a mut WriteBuf,
    pub(crate) sink: S,
}

impl<S: Sink> Engine<'_, S> {
    /// Whether the connection is over (`connection_lost` ran or is running).
    #[inline]
    pub(crate) fn is_dead(&self) -> bool {
        self.state.has(flags::DEAD)
    }

    /// Delivers `connection_made` (`connection_lost` is owed from now on).
    pub(crate) fn make(&mut self) {
        self.state.set(flags::MADE);
        self.invoke(|p, ctx| p.connection_made(ctx));
    }

    /// Runs `f` on the protocol under `catch_unwind`, then settles what it did.
    /// Nothing happens once the connection is dead.
    #[inline]
    pub(crate) fn invoke(&mut self, f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>)) {
        if self.is_dead() {
            return;
        }
        self.call(&[], f);
        self.settle();
    }

    /// Calls `f` with a fresh context, under the connection's span when the
    /// subscriber takes DEBUG; a panic aborts the connection with
    /// [`DisconnectReason::Panicked`]. `input` is what `data_received` is handed
    /// (writes of it may be gathered by reference).
    #[inline]
    fn call(&mut self, input: &[u8], f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>)) {
        let res = if tracing::level_enabled!(tracing::Level::DEBUG) {
            let _span = span(self.state);
            self.run_callback(input, f)
        } else {
            self.run_callback(input, f)
        };
        if let Err(p) = res {
            let msg = self.core.caught_panic(p, "protocol callback");
            self.state.set(flags::ABORT);
            self.state.extra().close_reason = Some(DisconnectReason::Panicked(msg));
        }
    }

    /// The one place where a protocol callback runs (every callback of every
    /// transport comes through here, `connection_lost` included): a fresh
    /// context, the sink's `enter`/`leave` around it, `catch_unwind`. Returns
    /// the panic, if any, for the caller to handle.
    #[inline(always)]
    fn run_callback(
        &mut self,
        input: &[u8],
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) -> std::thread::Result<()> {
        self.sink.enter(self.state);
        let host = self.sink.host();
        let mut ctx = Context::new(self.core, self.state, self.out, host).with_input(input);
        let protocol = &mut **self.protocol;
        let res = catch_unwind(AssertUnwindSafe(|| f(protocol, &mut ctx)));
        // Slow-callback detection: one tick read (see `core::timing`), for
        // the transport's own engine only (a TLS connection's inner callbacks
        // run inside the outer one's).
        // (The protocol's name is looked up only for a slow one: nothing of
        // it is loaded or kept on the common path.)
        if S::OUTER {
            if let Some(ns) = self.core.callback_timed() {
                let name = crate::wrap::protocol_name(&**self.protocol);
                self.core.slow_callback(CallbackKind::Protocol, name, ns);
            }
        }
        self.sink.leave(self.state);
        res
    }

    /// The same engine, borrowed again: what the cold paths are called on,
    /// so that the hot path's engine is never passed by address and its
    /// fields stay in registers (a non-inlined call on `self` makes the
    /// compiler keep the whole engine in memory).
    #[inline(always)]
    fn again(&mut self) -> Engine<'_, S::Again<'_>> {
        Engine {
            core: self.core,
            state: self.state,
            protocol: &mut *self.protocol,
            out: self.out,
            sink: self.sink.again(),
        }
    }

    /// After a callback: the gathered writes go to the sink, then abort, close
    /// and back-pressure are applied.
    #[inline]
    pub(crate) fn settle(&mut self) {
        // The common case, inline: nothing gathered (the fused path sent it),
        // nothing buffered, no close, abort or stream source pending (`SLOW`
        // is clear: see `ConnState::is_hot`).
        if self.out.is_empty() && self.state.flags == flags::MADE {
            return;
        }
        self.again().settle_now();
    }

    #[inline(never)]
    fn settle_now(&mut self) {
        if self.is_dead() {
            self.out.clear();
            return;
        }
        if let Some(reason) = self.state.abort_requested() {
            self.out.clear();
            return self.close(reason);
        }
        if !self.out.is_empty() {
            if let Err(e) = self.write_out() {
                return self.close(DisconnectReason::from_io(&e));
            }
        }
        self.state.recheck_slow();
        if self.state.flags == flags::MADE {
            return; // nothing buffered and nothing to close: no step to take
        }
        self.check_buffer();
    }

    /// Hands the gathered writes to the sink, keeping what it refuses.
    #[inline]
    fn write_out(&mut self) -> io::Result<()> {
        // Pending bytes exist only while the sink refuses more (every write
        // goes on until it refuses or the buffer is empty) or the write rate
        // holds them back; either way a writable edge or a timer will come for
        // them. Otherwise write now. The common case: nothing buffered, no rate
        // limit, all the gathered bytes in one piece: one send.
        if self.state.writes_direct() {
            self.state.touch(self.core.turn_stamp());
            let mut w = Writer::new(&mut self.sink);
            let res = self.out.write_contiguous(&mut w);
            count_out::<S>(self.core, self.state, w.n);
            match res {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => {
                    self.out.clear();
                    return Err(e);
                }
                None => {}
            }
        }
        let waiting = self.state.pending_len() > 0 || self.state.has(flags::WRITE_THROTTLED);
        if !waiting {
            if let Err(e) = write_buf(self.core, self.state, &mut self.sink, self.out) {
                self.out.clear();
                return Err(e);
            }
        }
        if !self.out.is_empty() {
            self.state.pending_or_insert().append(self.out);
        }
        self.out.clear();
        Ok(())
    }

    /// Water marks, hard cap, the stream source, and the closes that wait for
    /// an empty buffer (the decision is [`ConnState::buffer_step`]).
    pub(crate) fn check_buffer(&mut self) {
        if self.is_dead() {
            return;
        }
        match self.state.buffer_step() {
            BufferStep::Idle => {}
            BufferStep::Close { reason, graceful } => self.finish(reason, graceful),
            BufferStep::PauseWriting => self.invoke(|p, ctx| p.pause_writing(ctx)),
            BufferStep::ResumeWriting => self.invoke(|p, ctx| p.resume_writing(ctx)),
            BufferStep::Produce => self.produce_soon(),
            BufferStep::ShutdownWrite { close_after } => {
                if let Err(e) = self.sink.shutdown_write() {
                    return self.close(DisconnectReason::from_io(&e));
                }
                if close_after {
                    return self.close(DisconnectReason::Done);
                }
                self.invoke(|p, ctx| p.write_connection_lost(ctx));
            }
        }
    }

    /// The source has room to fill: the owner pulls from it after the current
    /// event ([`Sink::produce_later`]), or the engine does through the
    /// operation queue.
    fn produce_soon(&mut self) {
        // `buffer_step` set PRODUCE: it stays set until `produce` runs.
        let h = self.state.handle;
        if !self.sink.produce_later(h) {
            self.core.ops.push(Op::Produce(h));
        }
    }

    /// Pulls chunks from the connection's stream source while its buffer is
    /// below the high water mark, at most [`PRODUCE_BUDGET`] of them; then the
    /// other connections get their turn and this one continues after them.
    /// A panicking source ends the stream with an error (the protocol hears
    /// `streaming_finished`), as a failing one does.
    pub(crate) fn produce(&mut self) {
        for _ in 0..PRODUCE_BUDGET {
            self.state.clear(flags::PRODUCE);
            if self
                .state
                .has(flags::DEAD | flags::ABORT | flags::WRITE_SHUT)
            {
                return;
            }
            if self.state.pending_len() >= self.state.limits().high {
                return self.check_buffer();
            }
            let Some(source) = self.state.extra.as_mut().and_then(|x| x.source.as_mut()) else {
                return;
            };
            let next = match catch_unwind(AssertUnwindSafe(|| source.next())) {
                Ok(n) => n,
                Err(p) => Some(Err(io::Error::other(
                    self.core.caught_panic(p, "stream source").to_string(),
                ))),
            };
            match next {
                Some(Ok(chunk)) => {
                    self.out.push_bytes(chunk);
                    if let Err(e) = self.write_out() {
                        return self.close(DisconnectReason::from_io(&e));
                    }
                }
                end => {
                    if let Some(x) = &mut self.state.extra {
                        x.source = None;
                    }
                    self.state.recheck_slow();
                    let result = match end {
                        Some(Err(e)) => Err(e),
                        _ => Ok(()),
                    };
                    return self.invoke(move |p, ctx| p.streaming_finished(ctx, result));
                }
            }
        }
        // Budget spent: continue after the other sources had their turn.
        self.state.set(flags::PRODUCE);
        self.produce_soon();
    }

    /// Output may move again (a TLS handshake completed, a transport under a
    /// wrapper resumed): flush what waits, or carry out what waited for it.
    pub(crate) fn resume_output(&mut self) {
        if self.state.has_pending() {
            self.writable();
        } else {
            self.check_buffer();
        }
    }

    /// The sink has room again: flush what it refused before.
    pub(crate) fn writable(&mut self) {
        if self.is_dead() || self.state.has(flags::WRITE_THROTTLED) {
            return;
        }
        let Some(mut p) = self.state.take_pending() else {
            return;
        };
        let res = write_buf(self.core, self.state, &mut self.sink, &mut p);
        self.state.put_pending(p);
        if let Err(e) = res {
            return self.close(DisconnectReason::from_io(&e));
        }
        self.check_buffer();
    }

    /// A rate window ended: lift write throttling and flush. Returns whether
    /// reading was throttled (the owner then resumes reading).
    pub(crate) fn throttle_expired(&mut self) -> bool {
        if self.is_dead() {
            return false;
        }
        self.state.extra().throttle_timer = None;
        let read = self.state.has(flags::READ_THROTTLED);
        let write = self.state.has(flags::WRITE_THROTTLED);
        self.state
            .clear(flags::READ_THROTTLED | flags::WRITE_THROTTLED);
        if write {
            self.writable();
        }
        read && !self.is_dead()
    }

    /// Bytes arrived: `data_received`, then the gathered writes go out. A write
    /// of the input itself (an echo) is sent from `input`, copying only what
    /// the sink refuses.
    #[inline]
    pub(crate) fn data(&mut self, input: &[u8]) {
        self.state.count_in(input.len());
        if S::OUTER {
            self.core.counters.bytes_read += input.len() as u64;
        }
        if !self.state.is_hot() && self.state.has(flags::DEAD | flags::CLOSING) {
            // Input after `lose_connection` still counts as traffic.
            if !self.is_dead() {
                self.state.touch(self.core.turn_stamp());
            }
            return;
        }
        self.state.touch(self.core.turn_stamp());
        self.call(input, |p, ctx| p.data_received(ctx, input));
        if let Some((off, len)) = self.out.take_input_ref() {
            let bytes = &input[off..off + len];
            // The echo, fused: the callback wrote (part of) its input and
            // nothing else, and the connection is in the common state (open,
            // nothing buffered, no write rate, no stream source, no close
            // asked for): one send, and when the sink takes it all there is
            // nothing to settle.
            if self.state.is_hot() {
                match self.sink.write(bytes) {
                    Ok(n) if n == len => return count_out::<S>(self.core, self.state, n as u64),
                    Ok(n) => {
                        count_out::<S>(self.core, self.state, n as u64);
                        self.out.push_slice(&bytes[n..]);
                    }
                    // A hard error is met again by `settle`'s write (the copy
                    // keeps the order); `WouldBlock` keeps the bytes.
                    Err(_) => self.out.push_slice(bytes),
                }
            } else {
                self.send_input(bytes);
            }
        }
        self.settle();
    }

    /// Sends bytes of the input that the protocol wrote back (gathered by
    /// reference), when nothing is buffered ahead of them; gathers a copy of
    /// whatever the sink did not take. A hard error is left for `settle` to
    /// meet on its next write (the copy keeps the order).
    #[inline]
    fn send_input(&mut self, bytes: &[u8]) {
        let mut sent = 0;
        if self.state.writes_direct() && !self.is_dead() {
            while sent < bytes.len() {
                match self.sink.write(&bytes[sent..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        sent += n;
                        count_out::<S>(self.core, self.state, n as u64);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        if sent < bytes.len() {
            self.out.push_slice(&bytes[sent..]);
        }
    }

    /// The peer's end of stream arrived.
    pub(crate) fn eof(&mut self) {
        if self.is_dead() {
            return;
        }
        match self.state.eof_step() {
            // Both ways are shut: a clean end, with the protocol's own reason
            // if it chose one.
            EofStep::Close => {
                let reason = self
                    .state
                    .take_close_reason()
                    .unwrap_or(DisconnectReason::Done);
                self.finish(reason, true)
            }
            EofStep::ReadConnectionLost => self.invoke(|p, ctx| p.read_connection_lost(ctx)),
            // Not half-closeable: flush what was written, then close cleanly.
            EofStep::FlushThenClose => self.check_buffer(),
        }
    }

    /// Ends the connection: gracefully for clean reasons, with a reset for the
    /// others. See [`finish`](Self::finish).
    pub(crate) fn close(&mut self, reason: DisconnectReason) {
        let graceful = reason.is_clean();
        self.finish(reason, graceful)
    }

    /// Ends the connection: `DEAD` is set, the buffer dropped, the idle and
    /// throttle timers cancelled, the sink closed (`graceful`: end of stream
    /// after everything, else a reset), and the protocol hears
    /// `connection_lost` exactly once. The owner then reaps the connection
    /// (slab removal, lingering when `LINGER` is set).
    pub(crate) fn finish(&mut self, reason: DisconnectReason, graceful: bool) {
        if self.is_dead() {
            return;
        }
        self.state.set(flags::DEAD);
        if let Some(x) = self.state.extra.take() {
            for t in [x.idle.and_then(|i| i.timer), x.throttle_timer]
                .into_iter()
                .flatten()
            {
                let _ = self.core.timers.cancel(t);
            }
            self.state.extra = ConnState::keep_after_end(&x);
        }
        // The same span as the other callbacks', so connection_lost logs under
        // it too.
        let _span = tracing::level_enabled!(tracing::Level::DEBUG).then(|| span(self.state));
        tracing::debug!(%reason, "connection lost");
        let end = Ending {
            reason: &reason,
            graceful,
            write_shut: self.state.has(flags::WRITE_SHUT),
            peer_done: self.state.has(flags::READ_EOF),
        };
        if self.sink.close(&end) && graceful && !end.peer_done {
            self.state.set(flags::LINGER);
        }
        if self.state.has(flags::MADE) {
            if S::OUTER {
                self.core.counters.closed.record(&reason);
            }
            if let Err(p) = self.run_callback(&[], |p, ctx| p.connection_lost(ctx, &reason)) {
                self.core.caught_panic(p, "connection_lost");
            }
        }
        // Writes made in `connection_lost` have nowhere to go.
        self.out.clear();
    }
}

/// The connection's span (`conn`, with its id and peer), entered.
fn span(state: &ConnState) -> tracing::span::EnteredSpan {
    tracing::debug_span!("conn", id = state.handle.key, peer = %state.peer()).entered()
}

/// Writes `buf` to the sink within the write rate, noting traffic for the
/// idle timeout. Leaves in `buf` what the sink refused or the rate held
/// back (and then arms the throttle timer).
fn write_buf<S: Sink + ?Sized>(
    core: &mut Core,
    state: &mut ConnState,
    sink: &mut S,
    buf: &mut WriteBuf,
) -> io::Result<()> {
    let mut limit = usize::MAX;
    if let Some(rate) = state.extra.as_mut().and_then(|x| x.write_rate.as_mut()) {
        // A rate window must not see an old turn's time (it would not roll).
        limit = rate.allowance(core.fresh_turn_time());
    }
    let n = if limit == 0 {
        0
    } else {
        let mut w = Writer::new(sink);
        let res = buf.write_to_limited(&mut w, limit);
        count_out::<S>(core, state, w.n);
        res?
    };
    if n > 0 {
        state.touch(core.turn_stamp());
    }
    let h = state.handle;
    if let Some(x) = state.extra.as_mut() {
        if let Some(rate) = x.write_rate.as_mut() {
            rate.used += n;
            if !buf.is_empty() && n >= limit {
                state.flags |= flags::WRITE_THROTTLED;
                let at = rate.window_end();
                if x.throttle_timer.is_none() {
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

/// Counts `n` bytes the sink took: the connection's, and the reactor's
/// when the sink is the transport itself.
#[inline]
fn count_out<S: Sink + ?Sized>(core: &mut Core, state: &mut ConnState, n: u64) {
    state.count_out(n as usize);
    if S::OUTER {
        core.counters.bytes_written += n;
    }
}

/// `io::Write` over a sink (so `WriteBuf` can write to it), counting what
/// it took.
struct Writer<'a, S: ?Sized> {
    sink: &'a mut S,
    n: u64,
}

impl<'a, S: ?Sized> Writer<'a, S> {
    #[inline]
    fn new(sink: &'a mut S) -> Self {
        Writer { sink, n: 0 }
    }
}

impl<S: Sink + ?Sized> io::Write for Writer<'_, S> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.sink.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.sink.write_vectored(bufs)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
