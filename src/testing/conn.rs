//! In-memory connections (the recording transport's and the pump's), run by
//! the one engine, and the interpretation of queued operations for them.

use std::net::SocketAddr;
use std::time::Duration;

use crate::buf::WriteBuf;
use crate::conn::ops::{self, Connections, Driver};
use crate::conn::{Engine, Sink};
use crate::context::{ConnectionHandle, Core, InternalTimer};
use crate::core::ops::{ConnectRequest, Erased, ListenRequest};
use crate::core::TimerDriver;
use crate::protocol::Protocol;
use crate::transport::{flags, ConnState, Context, WrapFn};

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
    ) -> Engine<'a, &'a mut S> {
        Engine {
            core,
            state: &mut self.state,
            protocol: &mut self.protocol,
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

/// No connections at all: the bare [`Clock`](super::Clock).
pub(crate) struct NoConns;

impl Connections for NoConns {
    fn invoke(
        &mut self,
        _: &mut Core,
        h: ConnectionHandle,
        _: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) {
        tracing::debug!(?h, "operation on an unknown connection dropped");
    }
    fn resume_reading(&mut self, _: &mut Core, _: ConnectionHandle) {}
    fn produce(&mut self, _: &mut Core, _: ConnectionHandle) {}
    fn throttle_expired(&mut self, _: &mut Core, _: ConnectionHandle) {}
    fn live(&self) -> Vec<ConnectionHandle> {
        Vec::new()
    }
    fn wrap(&mut self, _: &mut Core, h: ConnectionHandle, _: WrapFn) {
        tracing::debug!(?h, "wrap of an unknown connection dropped");
    }
}

/// The test tools' side of the one interpreter of queued operations: the
/// in-memory connections, and the reactor-level requests, which are
/// recorded (Twisted's `MemoryReactor`), never carried out.
pub(crate) struct OpsDriver<'a, C> {
    pub(crate) conns: &'a mut C,
    pub(crate) requests: &'a mut Vec<Request>,
}

impl<C: Connections> Driver for OpsDriver<'_, C> {
    type Conns = C;
    fn conns(&mut self) -> &mut C {
        self.conns
    }
    fn listen(&mut self, _: &mut Core, req: ListenRequest) {
        self.requests.push(Request::Listen { addr: req.addr });
    }
    fn pipes(&mut self, _: &mut Core, _: Erased) {
        tracing::warn!("process pipes and standard I/O need a reactor: request dropped");
    }
    fn watch(&mut self, _: &mut Core, _: Erased) {
        tracing::warn!("signals need a reactor: request dropped");
    }
    fn listen_datagram(&mut self, _: &mut Core, _: Erased) {
        tracing::warn!("datagram ports are not simulated in memory: request dropped");
    }
    fn datagram_call(&mut self, _: &mut Core, _: u64, _: Erased) {
        tracing::warn!("datagram ports are not simulated in memory: request dropped");
    }
    fn stop_listening(&mut self, _: &mut Core, _: u64) {
        self.requests.push(Request::StopListening);
    }
    fn connect(&mut self, _: &mut Core, req: ConnectRequest) {
        let (addr, timeout) = req.target();
        self.requests.push(Request::Connect { addr, timeout });
    }
    fn stop_connecting(&mut self, _: &mut Core, _: u64) {
        self.requests.push(Request::StopConnecting);
    }
    fn disconnect(&mut self, _: &mut Core, _: u64) {
        self.requests.push(Request::Disconnect);
    }
    fn shutdown(&mut self, _: &mut Core, timeout: Duration) {
        self.requests.push(Request::Shutdown { timeout });
    }
    fn own_timer(&mut self, _: &mut Core, t: InternalTimer) {
        // Connect and linger timeouts, accept retries: sockets only.
        tracing::debug!(?t, "internal timer ignored by the in-memory driver");
    }
}

impl<C: Connections> TimerDriver for OpsDriver<'_, C> {
    fn internal_timer(&mut self, core: &mut Core, t: InternalTimer) {
        ops::on_timer(core, self, t);
    }
    fn process_ops(&mut self, core: &mut Core) {
        ops::process_ops(core, self);
    }
}
