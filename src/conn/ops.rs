//! The one interpreter of queued operations: what a callback asked for on
//! [`Core`] (writes and closes by handle, calls into a protocol, listen and
//! connect requests, shutdown), carried out once it returns, for the reactor
//! and for the test tools alike. Each driver says only what its connections
//! and its requests are ([`Driver`]); the meaning of every operation is here.

use std::time::Duration;

use crate::context::{ConnectionHandle, Core, InternalTimer, Op};
use crate::core::ops::{ConnectRequest, Erased, ListenRequest};
use crate::protocol::Protocol;
use crate::transport::{Context, ProtoFn, WrapFn};
use crate::wrap::innermost;

/// The connections of a driver, as the interpreter reaches them.
pub(crate) trait Connections {
    /// Runs `f` on the live connection `h` and settles it (the engine's
    /// `invoke`); ignores stale handles.
    fn invoke(
        &mut self,
        core: &mut Core,
        h: ConnectionHandle,
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    );
    /// `Context::resume_reading` cleared `h`'s pause: read what waited.
    fn resume_reading(&mut self, core: &mut Core, h: ConnectionHandle);
    /// Pull from `h`'s stream source (the engine's `produce`).
    fn produce(&mut self, core: &mut Core, h: ConnectionHandle);
    /// `h`'s write-rate window ended (the engine's `throttle_expired`).
    fn throttle_expired(&mut self, core: &mut Core, h: ConnectionHandle);
    /// Wrap `h`'s protocol (`start_tls`), then deliver the wrapper's
    /// `connection_made`.
    fn wrap(&mut self, core: &mut Core, h: ConnectionHandle, wrap: WrapFn);
    /// Every live connection (for shutdown).
    fn live(&self) -> Vec<ConnectionHandle>;
}

/// What the interpreter needs from a driver: its connections, and what it
/// does with the requests that are not about one connection.
pub(crate) trait Driver {
    /// The driver's connections.
    type Conns: Connections;
    /// Its connections (the reactor is its own).
    fn conns(&mut self) -> &mut Self::Conns;
    /// A listen request.
    fn listen(&mut self, core: &mut Core, req: ListenRequest);
    /// A datagram port request.
    fn listen_datagram(&mut self, core: &mut Core, req: Erased);
    /// A call into a datagram port's protocol.
    fn datagram_call(&mut self, core: &mut Core, id: u64, f: Erased);
    /// `stop_listening`.
    fn stop_listening(&mut self, core: &mut Core, id: u64);
    /// A connect request.
    fn connect(&mut self, core: &mut Core, req: ConnectRequest);
    /// `Connector::stop_connecting`.
    fn stop_connecting(&mut self, core: &mut Core, id: u64);
    /// `Connector::disconnect`.
    fn disconnect(&mut self, core: &mut Core, id: u64);
    /// `Core::shutdown`, before every live connection is asked to close.
    fn shutdown(&mut self, core: &mut Core, timeout: Duration);
    /// One of the driver's own timers (connects, lingering closes, accept
    /// retries, reconnects, the shutdown deadline).
    fn own_timer(&mut self, core: &mut Core, t: InternalTimer);
    /// Register a child's pipes or standard I/O (only the reactor can).
    fn pipes(&mut self, core: &mut Core, req: Erased);
    /// Watch a source of the reactor's own: signals (only the reactor can).
    fn watch(&mut self, core: &mut Core, req: Erased);
    /// A snapshot of everything the driver runs (`Core::request_snapshot`).
    fn snapshot(&mut self, core: &mut Core) -> crate::introspect::Snapshot {
        core.core_snapshot()
    }
}

/// Carries out `core.ops` until none are left (operations queue more).
pub(crate) fn process_ops(core: &mut Core, d: &mut impl Driver) {
    while !core.ops.is_empty() {
        let ops = std::mem::take(&mut core.ops);
        for op in ops {
            apply(core, d, op);
        }
    }
}

/// Operations by handle belong to the innermost protocol: through a TLS
/// wrapper, a write is encrypted and a close sends close_notify.
pub(crate) fn apply(core: &mut Core, d: &mut impl Driver, op: Op) {
    match op {
        Op::Write(h, data) => d.conns().invoke(core, h, |p, ctx| {
            innermost(p, ctx, |_, ctx| ctx.write_bytes(data))
        }),
        Op::Lose(h) => d.conns().invoke(core, h, |p, ctx| {
            innermost(p, ctx, |_, ctx| ctx.lose_connection())
        }),
        Op::Abort(h) => d.conns().invoke(core, h, |p, ctx| {
            innermost(p, ctx, |_, ctx| ctx.abort_connection())
        }),
        Op::PauseReading(h) => d.conns().invoke(core, h, |p, ctx| {
            innermost(p, ctx, |_, ctx| ctx.pause_reading())
        }),
        Op::ResumeReading(h) => d.conns().resume_reading(core, h),
        // Queued only by `Core::call_on` and `Core::wrap_on`, which erase
        // exactly these types.
        Op::Call(h, f) => match f.downcast::<ProtoFn>() {
            Ok(f) => d.conns().invoke(core, h, *f),
            Err(_) => debug_assert!(false, "Op::Call without a ProtoFn"),
        },
        Op::Wrap(h, w) => match w.downcast::<WrapFn>() {
            Ok(w) => d.conns().wrap(core, h, *w),
            Err(_) => debug_assert!(false, "Op::Wrap without a WrapFn"),
        },
        Op::Produce(h) => d.conns().produce(core, h),
        Op::Pipes(req) => d.pipes(core, req),
        Op::Watch(req) => d.watch(core, req),
        Op::Snapshot(f) => {
            let snap = d.snapshot(core);
            core.deliver_snapshot(f, snap);
        }
        Op::Listen(req) => d.listen(core, req),
        Op::ListenDatagram(req) => d.listen_datagram(core, req),
        Op::DatagramCall(id, f) => d.datagram_call(core, id, f),
        Op::StopListening(id) => d.stop_listening(core, id),
        Op::Connect(req) => d.connect(core, req),
        Op::StopConnecting(id) => d.stop_connecting(core, id),
        Op::Disconnect(id) => d.disconnect(core, id),
        Op::Shutdown(timeout) => {
            d.shutdown(core, timeout);
            for h in d.conns().live() {
                d.conns().invoke(core, h, |p, ctx| {
                    innermost(p, ctx, |_, ctx| ctx.lose_connection())
                });
            }
        }
    }
}

/// A driver's internal timer expired: a connection's own (idle, throttle)
/// are handled here for every transport, the rest by the driver.
pub(crate) fn on_timer(core: &mut Core, d: &mut impl Driver, t: InternalTimer) {
    match t {
        InternalTimer::Idle { key, gen } => d.conns().invoke(core, handle(key, gen), |p, ctx| {
            if ctx.idle_expired() {
                tracing::debug!(peer = %ctx.peer(), "idle timeout");
                p.idle_timeout(ctx);
            }
        }),
        InternalTimer::Throttle { key, gen } => d.conns().throttle_expired(core, handle(key, gen)),
        t => d.own_timer(core, t),
    }
}

fn handle(key: usize, gen: u32) -> ConnectionHandle {
    ConnectionHandle {
        key: key as u32,
        gen,
    }
}
