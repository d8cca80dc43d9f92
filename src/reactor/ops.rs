//! Work that reaches the loop other than readiness: operations queued by
//! callbacks on `Core`, the reactor's own timers, and graceful shutdown.

use std::time::Duration;

use super::{Entry, InternalTimer, Net};
use crate::context::{Core, Op};
use crate::wrap::innermost;

impl Net {
    pub(super) fn on_internal_timer(&mut self, core: &mut Core, t: InternalTimer) {
        match t {
            InternalTimer::ConnectTimeout { key, gen } => {
                if self.gen_of(key) == Some(gen) {
                    self.connect_failed(core, key, crate::DisconnectReason::TimedOut);
                }
            }
            InternalTimer::Reconnect { id } => self.start_attempt(core, id),
            InternalTimer::AcceptRetry { key, gen } => {
                if self.gen_of(key) == Some(gen) {
                    if let Entry::Listener(l) = &mut self.entries[key] {
                        l.retry = None;
                    }
                    self.accept(core, key);
                }
            }
            InternalTimer::Idle { key, gen } => {
                if self.gen_of(key) == Some(gen) {
                    self.on_idle_timer(core, key);
                }
            }
            InternalTimer::Throttle { key, gen } => {
                if self.gen_of(key) == Some(gen) {
                    self.on_throttle_timer(core, key);
                }
            }
            InternalTimer::LingerTimeout { key, gen } => {
                if self.gen_of(key) == Some(gen) {
                    self.vacate(key);
                }
            }
            InternalTimer::ShutdownDeadline => {
                self.shutting_down = None;
                let keys: Vec<usize> = self
                    .entries
                    .iter()
                    .filter(|(_, e)| matches!(e, Entry::Conn(_) | Entry::Lingering(_)))
                    .map(|(k, _)| k)
                    .collect();
                for key in keys {
                    match &self.entries[key] {
                        Entry::Conn(_) => self.close(core, key, crate::DisconnectReason::Aborted),
                        _ => {
                            self.vacate(key);
                        }
                    }
                }
                let _ = core.stop();
            }
        }
    }

    pub(super) fn apply(&mut self, core: &mut Core, op: Op) {
        match op {
            // Operations by handle belong to the innermost protocol: through a
            // TLS wrapper, a write is encrypted and a close sends close_notify.
            Op::Write(h, data) => {
                if let Some(key) = self.conn_key(h) {
                    self.invoke(core, key, |p, ctx| {
                        innermost(p, ctx, |_, ctx| ctx.write_bytes(data))
                    });
                }
            }
            Op::Lose(h) => {
                if let Some(key) = self.conn_key(h) {
                    self.invoke(core, key, |p, ctx| {
                        innermost(p, ctx, |_, ctx| ctx.lose_connection())
                    });
                }
            }
            Op::Abort(h) => {
                if let Some(key) = self.conn_key(h) {
                    self.invoke(core, key, |p, ctx| {
                        innermost(p, ctx, |_, ctx| ctx.abort_connection())
                    });
                }
            }
            Op::PauseReading(h) => {
                if let Some(key) = self.conn_key(h) {
                    self.invoke(core, key, |p, ctx| {
                        innermost(p, ctx, |_, ctx| ctx.pause_reading())
                    });
                }
            }
            Op::ResumeReading(h) => {
                if let Some(key) = self.conn_key(h) {
                    if let Entry::Conn(c) = &mut self.entries[key] {
                        // `Context::resume_reading` cleared the pause; a pause
                        // made since then must stand.
                        if !c.state.has(crate::context::flags::READ_PAUSED)
                            && c.state.has(crate::context::flags::READ_PENDING)
                            && !c.state.has(crate::context::flags::READ_THROTTLED)
                        {
                            c.state.clear(crate::context::flags::READ_PENDING);
                            c.state.set(crate::context::flags::READ_AGAIN);
                            self.ready.push((key, h.gen));
                        }
                    }
                }
            }
            Op::Call(h, f) => {
                if let Some(key) = self.conn_key(h) {
                    self.invoke(core, key, f);
                }
            }
            Op::Listen(p) => self.start_listening(core, p),
            Op::ListenDatagram(p) => self.start_datagram(core, p),
            Op::DatagramCall(id, f) => self.datagram_call(core, id, f),
            Op::StopListening(id) => self.stop_listening(core, id),
            Op::Connect(p) => self.add_connector(core, p),
            Op::StopConnecting(id) => self.stop_connecting(core, id),
            Op::Disconnect(id) => self.disconnect(core, id),
            Op::Shutdown(timeout) => self.shutdown(core, timeout),
            Op::Produce(h) => {
                if let Some(key) = self.conn_key(h) {
                    self.produce(core, key);
                }
            }
            Op::Pipes(p) => self.add_pipes(core, p),
            Op::Wrap(h, wrap) => {
                if let Some(key) = self.conn_key(h) {
                    if let Entry::Conn(c) = &mut self.entries[key] {
                        let p =
                            std::mem::replace(&mut c.protocol, Box::new(crate::wrap::Unwrapped));
                        c.protocol = wrap(p);
                    }
                    self.invoke(core, key, |p, ctx| p.connection_made(ctx));
                }
            }
        }
    }

    fn shutdown(&mut self, core: &mut Core, timeout: Duration) {
        let ids: Vec<u64> = self.listeners.keys().copied().collect();
        for id in ids {
            self.stop_listening(core, id);
        }
        let ids: Vec<u64> = self.connectors.keys().copied().collect();
        for id in ids {
            self.stop_connecting(core, id);
        }
        let keys: Vec<usize> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Conn(_)))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.invoke(core, key, |p, ctx| {
                innermost(p, ctx, |_, ctx| ctx.lose_connection())
            });
        }
        if let Some(t) = self.shutting_down.take() {
            let _ = core.timers.cancel(t);
        }
        self.shutting_down = Some(core.schedule_internal(timeout, InternalTimer::ShutdownDeadline));
    }
}
