//! The engine of [`TlsProtocol`]: ciphertext in, plaintext out, the wrapped
//! protocol's buffer steps, the handshake's completion and failure.

use std::io::{self, Read};

use super::{abort, flush_tls, Mode, TlsProtocol, PLAINTEXT_CHUNK};
use crate::context::{flags, Context};
use crate::drive::{BufferStep, EofStep};
use crate::error::DisconnectReason;
use crate::tls::TlsInfo;

impl TlsProtocol {
    /// Encrypts buffered plaintext while the transport has room, and carries
    /// out what the wrapped protocol's buffer asks for (the reactor's
    /// `check_buffer`, with the TLS engine as the socket).
    pub(super) fn pump_out(&mut self, ctx: &mut Context<'_>) {
        loop {
            if ctx.conn.has(flags::DEAD | flags::ABORT) {
                return;
            }
            let Some(st) = self.state.as_mut() else {
                return;
            };
            if st.has(flags::DEAD) {
                return;
            }
            if self.handshake_done && !self.close_notify_sent {
                if let Some(p) = st.pending.as_mut().filter(|p| !p.is_empty()) {
                    // Fill the transport just past its high water mark: then
                    // either the kernel takes it all (and the continuation
                    // below moves more) or the transport pauses us (and
                    // resume_writing does). Each pass moves at least a byte.
                    let high = ctx.conn.limits().high;
                    let room = (high + 1).saturating_sub(ctx.buffered_len());
                    if room > 0 && !self.outer_paused {
                        let _ = p.write_to_limited(&mut self.tls.writer(), room);
                        flush_tls(&mut self.tls, ctx);
                    }
                    if !p.is_empty() && !self.outer_paused {
                        // The transport may take it all when this callback
                        // returns, and then no resume_writing would come.
                        self.queue_continue(ctx);
                    }
                }
            }
            let st = self.state.as_mut().expect("checked above");
            match st.buffer_step() {
                BufferStep::Idle => return,
                BufferStep::Close { reason, graceful } => {
                    if graceful {
                        self.send_close_notify(ctx);
                        ctx.lose_connection_with(reason);
                    } else {
                        abort(ctx, reason);
                    }
                    return;
                }
                BufferStep::PauseWriting => {
                    return self.call_inner(ctx, |p, ctx| p.pause_writing(ctx))
                }
                BufferStep::ResumeWriting => {
                    return self.call_inner(ctx, |p, ctx| p.resume_writing(ctx))
                }
                BufferStep::Produce => {
                    if !self.produce_one(ctx) {
                        return;
                    }
                }
                BufferStep::ShutdownWrite { close_after } => {
                    self.send_close_notify(ctx);
                    if close_after {
                        ctx.lose_connection();
                    } else {
                        ctx.lose_write_connection();
                    }
                    return;
                }
            }
        }
    }

    /// Pulls one chunk from the wrapped protocol's stream source. Returns
    /// whether to go on (false when the source ended and the protocol heard it).
    pub(super) fn produce_one(&mut self, ctx: &mut Context<'_>) -> bool {
        let Some(st) = self.state.as_mut() else {
            return false;
        };
        st.clear(flags::PRODUCE);
        let Some(source) = st.extra.as_mut().and_then(|x| x.source.as_mut()) else {
            return false;
        };
        let next = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.next())) {
            Ok(n) => n,
            Err(p) => Some(Err(io::Error::other(
                ctx.core.caught_panic(p, "stream source").to_string(),
            ))),
        };
        match next {
            Some(Ok(chunk)) => {
                st.pending
                    .get_or_insert_with(Default::default)
                    .push_bytes(chunk);
                true
            }
            end => {
                if let Some(x) = &mut st.extra {
                    x.source = None;
                }
                let result = match end {
                    Some(Err(e)) => Err(e),
                    _ => Ok(()),
                };
                self.call_inner(ctx, move |p, ctx| p.streaming_finished(ctx, result));
                false
            }
        }
    }

    pub(super) fn send_close_notify(&mut self, ctx: &mut Context<'_>) {
        if !self.close_notify_sent {
            self.close_notify_sent = true;
            self.tls.send_close_notify();
            flush_tls(&mut self.tls, ctx);
        }
    }

    /// Mirrors the wrapped protocol's read pause onto the transport (once the
    /// handshake is done: the handshake itself must be read), and delivers
    /// what waited when it resumes.
    pub(super) fn sync_reading(&mut self, ctx: &mut Context<'_>) {
        let Some(st) = self.state.as_ref() else {
            return;
        };
        let paused = self.handshake_done && st.has(flags::READ_PAUSED);
        if paused && !self.paused_outer {
            self.paused_outer = true;
            ctx.pause_reading();
        } else if !paused && self.paused_outer {
            self.paused_outer = false;
            ctx.resume_reading();
            self.pump_in(ctx);
        }
    }

    /// Feeds ciphertext to the engine and plaintext to the wrapped protocol
    /// while it reads.
    pub(super) fn pump_in(&mut self, ctx: &mut Context<'_>) {
        if self.pumping {
            return;
        }
        self.pumping = true;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(PLAINTEXT_CHUNK, 0);
        loop {
            if self.failed.is_some() || ctx.conn.has(flags::DEAD | flags::ABORT) {
                break;
            }
            if self.wants_plaintext() {
                match self.tls.reader().read(&mut scratch) {
                    Ok(0) => {
                        self.inner_eof(ctx);
                        continue;
                    }
                    Ok(n) => {
                        let data = &scratch[..n];
                        self.call_inner(ctx, |p, ctx| {
                            if !ctx.conn.has(flags::CLOSING) {
                                p.data_received(ctx, data)
                            }
                        });
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        // The transport ended without close_notify.
                        if let Some(st) = self.state.as_mut() {
                            let x = st.extra();
                            if x.close_reason.is_none() {
                                x.close_reason = Some(DisconnectReason::Tls(
                                    "the peer closed the connection without close_notify".into(),
                                ));
                            }
                        }
                        self.inner_eof(ctx);
                        continue;
                    }
                }
            }
            if self.cipher_pos < self.cipher_in.len() {
                match self.tls.read_tls(&mut &self.cipher_in[self.cipher_pos..]) {
                    Ok(n) => {
                        self.cipher_pos += n;
                        if self.cipher_pos == self.cipher_in.len() {
                            self.cipher_in.clear();
                            self.cipher_pos = 0;
                        }
                    }
                    // Its plaintext buffer is full: the wrapped protocol paused.
                    Err(_) => break,
                }
            } else if self.outer_eof && !self.eof_fed {
                self.eof_fed = true;
                let _ = self.tls.read_tls(&mut io::empty());
            } else {
                break;
            }
            if let Err(e) = self.tls.process_new_packets() {
                self.fail(ctx, DisconnectReason::Tls(e.to_string().into()));
                break;
            }
            flush_tls(&mut self.tls, ctx);
            self.check_handshake(ctx);
            if self.eof_fed && !self.handshake_done && self.failed.is_none() {
                self.fail(
                    ctx,
                    DisconnectReason::Tls(
                        "the peer closed the connection during the handshake".into(),
                    ),
                );
                break;
            }
        }
        self.scratch = scratch;
        self.pumping = false;
    }

    /// Whether decrypted data may go to the wrapped protocol now.
    pub(super) fn wants_plaintext(&self) -> bool {
        self.handshake_done
            && self.state.as_ref().is_some_and(|st| {
                st.has(flags::MADE) && !st.has(flags::DEAD | flags::READ_EOF | flags::READ_PAUSED)
            })
    }

    /// The peer's `close_notify` (or the transport's end) reached the wrapped
    /// protocol's read side.
    pub(super) fn inner_eof(&mut self, ctx: &mut Context<'_>) {
        let Some(st) = self.state.as_mut() else {
            return;
        };
        match st.eof_step() {
            EofStep::Close => {
                let reason = st.take_close_reason().unwrap_or(DisconnectReason::Done);
                ctx.lose_connection_with(reason);
            }
            EofStep::ReadConnectionLost => {
                self.call_inner(ctx, |p, ctx| p.read_connection_lost(ctx))
            }
            EofStep::FlushThenClose => self.pump_out(ctx),
        }
    }

    /// The handshake just completed: note what it negotiated, let the wrapped
    /// protocol start (or build it), and send what it wrote meanwhile.
    pub(super) fn check_handshake(&mut self, ctx: &mut Context<'_>) {
        if self.handshake_done || self.tls.is_handshaking() {
            return;
        }
        self.handshake_done = true;
        if let Some(t) = self.handshake_timer.take() {
            let _ = t.cancel(ctx.core);
        }
        self.host.info = Some(TlsInfo::from_connection(&self.tls));
        tracing::debug!(peer = %ctx.peer_addr(), side = self.side(), "TLS handshake done");
        if self.mode == Mode::AfterHandshake {
            let peer = ctx.peer().clone();
            let built = self.hooks.as_mut().and_then(|h| h.build(&peer));
            let Some(inner) = built else {
                return self.fail(ctx, DisconnectReason::Cancelled);
            };
            self.inner = inner;
            if let Some(st) = self.state.as_mut() {
                st.set(flags::MADE);
            }
            self.call_inner(ctx, |p, ctx| p.connection_made(ctx));
            let alive = self
                .state
                .as_ref()
                .is_some_and(|st| !st.has(flags::DEAD | flags::ABORT))
                && !ctx.conn.has(flags::DEAD | flags::ABORT);
            if alive {
                if let Some(h) = self.hooks.as_mut() {
                    h.made(ctx.core, ctx.conn.handle);
                }
            }
        }
        self.pump_out(ctx);
        self.sync_reading(ctx);
    }

    /// Gives up on the connection: the alert (if any) is flushed, then the
    /// transport closes; everyone hears `reason`.
    pub(super) fn fail(&mut self, ctx: &mut Context<'_>, reason: DisconnectReason) {
        tracing::debug!(peer = %ctx.peer_addr(), %reason, "TLS failed");
        if self.failed.is_none() {
            self.failed = Some(reason.clone());
        }
        flush_tls(&mut self.tls, ctx);
        ctx.lose_connection_with(reason);
    }
}
