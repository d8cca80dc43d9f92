//! In-memory connections (the recording transport's and the pump's), run by
//! the one engine, and the interpretation of queued operations for them.

use std::net::SocketAddr;

use crate::buf::WriteBuf;
use crate::conn::{Engine, Sink};
use crate::context::{flags, ConnState, ConnectionHandle, Core, Op, ProtoFn, WrapFn};
use crate::drive::TimerDriver;
use crate::protocol::Protocol;
use crate::reactor::InternalTimer;
use crate::wrap::innermost;

use super::Request;

/// One end of an in-memory connection: its state and protocol. It runs on
/// the one engine ([`crate::conn::Engine`]); its sink is the recorder or a
/// pipe of the pump.
pub(crate) struct MemConn {
    pub(crate) state: ConnState,
    pub(crate) protocol: Box<dyn Protocol>,
}

impl MemConn {
    pub(crate) fn new(
        handle: ConnectionHandle,
        protocol: Box<dyn Protocol>,
        peer: SocketAddr,
    ) -> Self {
        MemConn {
            state: ConnState::new(handle, peer),
            protocol,
        }
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.state.has(flags::DEAD)
    }

    /// The engine of this connection, writing into `sink`.
    pub(crate) fn engine<'a, S: Sink>(
        &'a mut self,
        core: &'a mut Core,
        out: &'a mut WriteBuf,
        sink: &'a mut S,
    ) -> Engine<'a, S> {
        Engine {
            core,
            state: &mut self.state,
            protocol: &mut *self.protocol,
            out,
            sink,
        }
    }

    /// Wraps the protocol (`start_tls`) and tells the wrapper it is attached.
    pub(crate) fn wrap<S: Sink>(
        &mut self,
        core: &mut Core,
        out: &mut WriteBuf,
        sink: &mut S,
        wrap: WrapFn,
    ) {
        if self.is_dead() {
            return;
        }
        crate::conn::rewrap(&mut self.protocol, wrap);
        self.engine(core, out, sink)
            .invoke(|p, ctx| p.connection_made(ctx));
    }
}

/// Connections the operations queued on [`Core`] can name.
pub(crate) trait Conns {
    /// Runs `f` on the live connection `h` and settles it; ignores stale handles.
    fn invoke(&mut self, core: &mut Core, h: ConnectionHandle, f: ProtoFn);
    /// The reactor's `ResumeReading` op: reading is on again for `h`.
    fn resume_reading(&mut self, core: &mut Core, h: ConnectionHandle);
    /// Pull from `h`'s stream source.
    fn produce(&mut self, core: &mut Core, h: ConnectionHandle);
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
    fn produce(&mut self, _: &mut Core, _: ConnectionHandle) {}
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
        Op::Connect(p) => {
            let (addr, timeout) = p.target();
            requests.push(Request::Connect { addr, timeout });
        }
        Op::StopConnecting(_) => requests.push(Request::StopConnecting),
        Op::Disconnect(_) => requests.push(Request::Disconnect),
        Op::Produce(h) => conns.produce(core, h),
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
