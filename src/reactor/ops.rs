//! Work that reaches the loop other than readiness: what the one interpreter
//! of queued operations ([`crate::conn::ops`]) asks of the reactor, the
//! reactor's own timers, and graceful shutdown.

use std::time::Duration;

use super::{Entry, InternalTimer, Net};
use crate::conn::ops::{Connections, Driver};
use crate::context::{ConnectionHandle, Core};
use crate::core::ops::{ConnectRequest, Erased, ListenRequest};
use crate::protocol::Protocol;
use crate::transport::{flags, Context, WrapFn};

impl Connections for Net {
    #[inline]
    fn invoke(
        &mut self,
        core: &mut Core,
        h: ConnectionHandle,
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) {
        if let Some(key) = self.conn_key(h) {
            Net::invoke(self, core, key, f);
        }
    }
    fn resume_reading(&mut self, _core: &mut Core, h: ConnectionHandle) {
        let Some(key) = self.conn_key(h) else {
            return;
        };
        if let Entry::Conn(c) = &mut self.entries[key] {
            // `Context::resume_reading` cleared the pause; a pause made since
            // then must stand. Reading goes on after the current event.
            if !c.state.has(flags::READ_PAUSED)
                && c.state.has(flags::READ_PENDING)
                && !c.state.has(flags::READ_THROTTLED)
            {
                c.state.clear(flags::READ_PENDING);
                c.state.set(flags::READ_AGAIN);
                self.ready.push((key, h.gen));
            }
        }
    }
    fn produce(&mut self, core: &mut Core, h: ConnectionHandle) {
        if let Some(key) = self.conn_key(h) {
            Net::produce(self, core, key);
        }
    }
    fn throttle_expired(&mut self, core: &mut Core, h: ConnectionHandle) {
        if let Some(key) = self.conn_key(h) {
            self.on_throttle_timer(core, key);
        }
    }
    fn wrap(&mut self, core: &mut Core, h: ConnectionHandle, wrap: WrapFn) {
        if let Some(key) = self.conn_key(h) {
            if let Entry::Conn(c) = &mut self.entries[key] {
                crate::conn::rewrap(&mut c.protocol, wrap);
            }
            Net::invoke(self, core, key, |p, ctx| p.connection_made(ctx));
        }
    }
    fn live(&self) -> Vec<ConnectionHandle> {
        self.entries
            .iter()
            .filter_map(|(_, e)| match e {
                Entry::Conn(c) => Some(c.state.handle),
                _ => None,
            })
            .collect()
    }
}

impl Driver for Net {
    type Conns = Net;
    #[inline]
    fn conns(&mut self) -> &mut Net {
        self
    }
    fn listen(&mut self, core: &mut Core, req: ListenRequest) {
        self.start_listening(core, req);
    }
    fn pipes(&mut self, core: &mut Core, req: Erased) {
        match req.downcast::<super::PipeRequest>() {
            Ok(req) => self.add_pipes(core, *req),
            Err(_) => debug_assert!(false, "Op::Pipes without a PipeRequest"),
        }
    }
    fn watch(&mut self, core: &mut Core, req: Erased) {
        match req.downcast::<Box<dyn super::ExtraSource>>() {
            Ok(source) => {
                if let Err(e) = self.add_source(core, *source) {
                    tracing::error!(error = %e, "cannot watch for signals; they will not be seen");
                }
            }
            Err(_) => debug_assert!(false, "Op::Watch without an ExtraSource"),
        }
    }
    fn listen_datagram(&mut self, core: &mut Core, req: Erased) {
        self.start_datagram(core, req);
    }
    fn datagram_call(&mut self, core: &mut Core, id: u64, f: Erased) {
        Net::datagram_call(self, core, id, f);
    }
    fn stop_listening(&mut self, core: &mut Core, id: u64) {
        Net::stop_listening(self, core, id);
    }
    fn connect(&mut self, core: &mut Core, req: ConnectRequest) {
        self.add_connector(core, req);
    }
    fn stop_connecting(&mut self, core: &mut Core, id: u64) {
        Net::stop_connecting(self, core, id);
    }
    fn disconnect(&mut self, core: &mut Core, id: u64) {
        Net::disconnect(self, core, id);
    }
    /// Stops every listener and connector and arms the deadline; the
    /// interpreter then asks every connection to close.
    fn shutdown(&mut self, core: &mut Core, timeout: Duration) {
        Net::shutdown(self, core, timeout);
    }
    fn own_timer(&mut self, core: &mut Core, t: InternalTimer) {
        self.on_internal_timer(core, t);
    }
    fn snapshot(&mut self, core: &mut Core) -> crate::introspect::Snapshot {
        Net::snapshot(self, core)
    }
}

impl Net {
    fn on_internal_timer(&mut self, core: &mut Core, t: InternalTimer) {
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
            InternalTimer::LingerTimeout { key, gen } => {
                if self.gen_of(key) == Some(gen) {
                    self.vacate(key);
                }
            }
            // A connection's own timers: the interpreter's (`conn::ops::on_timer`).
            InternalTimer::Idle { .. } | InternalTimer::Throttle { .. } => {}
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

    /// Stops every listener and connector and arms the deadline; the
    /// interpreter then asks every connection to close.
    fn shutdown(&mut self, core: &mut Core, timeout: Duration) {
        let ids: Vec<u64> = self.listeners.keys().copied().collect();
        for id in ids {
            self.stop_listening(core, id);
        }
        let ids: Vec<u64> = self.connectors.keys().copied().collect();
        for id in ids {
            self.stop_connecting(core, id);
        }
        if let Some(t) = self.shutting_down.take() {
            let _ = core.timers.cancel(t);
        }
        self.shutting_down = Some(core.schedule_internal(timeout, InternalTimer::ShutdownDeadline));
    }
}
