//! The read side of [`TlsProtocol`]: ciphertext in, plaintext to the wrapped
//! connection's engine, the handshake's completion and failure.

use std::io::{self, Read};

use super::{flush_tls, Mode, TlsProtocol, PLAINTEXT_CHUNK};
use crate::error::DisconnectReason;
use crate::tls::TlsInfo;
use crate::transport::{flags, Context};

impl TlsProtocol {
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
                        self.run(ctx, |e| e.data(data));
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
        self.run(ctx, |e| e.eof());
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
            self.run(ctx, |e| e.make());
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
        // What the wrapped protocol wrote meanwhile goes out now.
        self.run(ctx, |e| e.resume_output());
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
