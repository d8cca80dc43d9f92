//! Outgoing connections: connectors with timeouts, the connect handshake
//! (writable, then `take_error`, then `peer_addr`), and reconnection.

use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::stream::Stream;
use super::tcp::{ConnectParts, Connector, TcpOptions};
use super::{Entry, InternalTimer, Net};
use crate::address::Address;
use crate::context::{ConnectionHandle, Core};
use crate::core::ops::ConnectRequest;
use crate::core::timers::TimerId;
use crate::error::DisconnectReason;
use crate::protocol::{ClientFactory, Protocol, Reconnect};

pub(crate) trait AnyClientFactory {
    fn started(&mut self, core: &mut Core, c: Connector);
    fn build(&mut self, peer: &Address) -> Option<Box<dyn Protocol>>;
    fn made(&mut self, core: &mut Core, c: Connector, conn: ConnectionHandle);
    fn failed(&mut self, core: &mut Core, c: Connector, r: &DisconnectReason) -> Reconnect;
    fn lost(&mut self, core: &mut Core, c: Connector, r: &DisconnectReason) -> Reconnect;
}

impl<F: ClientFactory> AnyClientFactory for F {
    fn started(&mut self, core: &mut Core, c: Connector) {
        self.started_connecting(core, c)
    }
    fn build(&mut self, peer: &Address) -> Option<Box<dyn Protocol>> {
        self.build_protocol(peer)
            .map(|p| Box::new(p) as Box<dyn Protocol>)
    }
    fn made(&mut self, core: &mut Core, c: Connector, conn: ConnectionHandle) {
        self.client_connection_made(core, c, conn)
    }
    fn failed(&mut self, core: &mut Core, c: Connector, r: &DisconnectReason) -> Reconnect {
        self.client_connection_failed(core, c, r)
    }
    fn lost(&mut self, core: &mut Core, c: Connector, r: &DisconnectReason) -> Reconnect {
        self.client_connection_lost(core, c, r)
    }
}

pub(crate) struct Connecting {
    stream: Stream,
    pub(crate) gen: u32,
    connector: u64,
    timer: TimerId,
}

enum ConnectorState {
    Idle,
    Connecting(usize),
    Connected(ConnectionHandle),
    Waiting(TimerId),
}

pub(crate) struct ConnectorEntry {
    factory: Box<dyn AnyClientFactory>,
    addr: Address,
    timeout: Duration,
    options: TcpOptions,
    state: ConnectorState,
    /// `stop_connecting` was called while connected: never reconnect.
    stopped: bool,
}

impl fmt::Debug for ConnectorEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorEntry")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn connect_stream(addr: &Address) -> io::Result<Stream> {
    match addr {
        Address::Inet(a) => TcpStream::connect(*a).map(Stream::tcp),
        Address::Unix(u) => super::unix::connect(u).map(Stream::unix),
    }
}

impl Net {
    pub(crate) fn add_connector(&mut self, core: &mut Core, req: ConnectRequest) {
        let Ok(p) = req.rest.downcast::<ConnectParts>() else {
            return;
        };
        let id = req.id;
        self.connectors.insert(
            id,
            ConnectorEntry {
                factory: p.factory,
                addr: req.addr,
                timeout: req.timeout,
                options: p.options,
                state: ConnectorState::Idle,
                stopped: false,
            },
        );
        self.start_attempt(core, id);
    }

    pub(crate) fn start_attempt(&mut self, core: &mut Core, id: u64) {
        let Some(ce) = self.connectors.get_mut(&id) else {
            return;
        };
        let factory = &mut ce.factory;
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
            factory.started(core, Connector::from_id(id))
        })) {
            core.caught_panic(panic, "started_connecting");
            self.connectors.remove(&id);
            return;
        }
        let timeout = ce.timeout;
        let mut stream = match connect_stream(&ce.addr) {
            Ok(s) => s,
            Err(e) => return self.attempt_failed(core, id, DisconnectReason::from_io(&e)),
        };
        let gen = self.next_gen();
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.registry.register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.attempt_failed(core, id, DisconnectReason::from_io(&e));
        }
        let timer = core.schedule_internal(timeout, InternalTimer::ConnectTimeout { key, gen });
        entry.insert(Entry::Connecting(Box::new(Connecting {
            stream,
            gen,
            connector: id,
            timer,
        })));
        if let Some(ce) = self.connectors.get_mut(&id) {
            ce.state = ConnectorState::Connecting(key);
        }
    }

    /// A pending connect became ready: connected, failed, or a spurious event.
    pub(crate) fn on_connect_ready(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Connecting(c)) = self.entries.get_mut(key) else {
            return;
        };
        match c.stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                return self.connect_failed(core, key, DisconnectReason::from_io(&e))
            }
        }
        let peer = match c.stream.peer() {
            Ok(peer) => peer,
            Err(e)
                if e.kind() == io::ErrorKind::NotConnected
                    || e.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                return
            }
            Err(e) => return self.connect_failed(core, key, DisconnectReason::from_io(&e)),
        };
        let Entry::Connecting(c) = self.vacate(key) else {
            unreachable!("checked above")
        };
        let Connecting {
            mut stream,
            connector: id,
            timer,
            ..
        } = *c;
        let _ = core.timers.cancel(timer);
        let _ = self.registry.deregister(&mut stream);
        let Some(ce) = self.connectors.get_mut(&id) else {
            return;
        };
        stream.apply_options(&ce.options);
        let factory = &mut ce.factory;
        let proto = match catch_unwind(AssertUnwindSafe(|| factory.build(&peer))) {
            Ok(Some(p)) => p,
            Ok(None) => return self.attempt_failed(core, id, DisconnectReason::Cancelled),
            Err(panic) => {
                let msg = core.caught_panic(panic, "build_protocol");
                return self.attempt_failed(core, id, DisconnectReason::Panicked(msg));
            }
        };
        ce.state = ConnectorState::Idle;
        if let Some(h) = self.add_connection(core, stream, peer, proto, id) {
            let alive = self.conn_key(h).is_some();
            if let Some(ce) = self.connectors.get_mut(&id) {
                if alive && matches!(ce.state, ConnectorState::Idle) {
                    ce.state = ConnectorState::Connected(h);
                    let factory = &mut ce.factory;
                    let c = Connector::from_id(id);
                    if let Err(p) = catch_unwind(AssertUnwindSafe(|| factory.made(core, c, h))) {
                        core.caught_panic(p, "client_connection_made");
                    }
                }
            }
        }
    }

    pub(crate) fn connect_failed(&mut self, core: &mut Core, key: usize, reason: DisconnectReason) {
        if let Entry::Connecting(mut c) = self.vacate(key) {
            let _ = core.timers.cancel(c.timer);
            let _ = self.registry.deregister(&mut c.stream);
            let id = c.connector;
            drop(c);
            self.attempt_failed(core, id, reason);
        }
    }

    fn attempt_failed(&mut self, core: &mut Core, id: u64, reason: DisconnectReason) {
        tracing::debug!(%reason, "connection attempt failed");
        self.connector_ended(core, id, reason, false);
    }

    pub(crate) fn connector_lost(&mut self, core: &mut Core, id: u64, reason: DisconnectReason) {
        self.connector_ended(core, id, reason, true);
    }

    fn connector_ended(
        &mut self,
        core: &mut Core,
        id: u64,
        reason: DisconnectReason,
        was_connected: bool,
    ) {
        let Some(ce) = self.connectors.get_mut(&id) else {
            return;
        };
        ce.state = ConnectorState::Idle;
        let factory = &mut ce.factory;
        let c = Connector::from_id(id);
        let next = catch_unwind(AssertUnwindSafe(|| {
            if was_connected {
                factory.lost(core, c, &reason)
            } else {
                factory.failed(core, c, &reason)
            }
        }));
        let next = match next {
            Ok(r) => r,
            Err(panic) => {
                core.caught_panic(panic, "client factory callback");
                Reconnect::Never
            }
        };
        match next {
            Reconnect::After(delay) if !ce.stopped => {
                ce.state = ConnectorState::Waiting(
                    core.schedule_internal(delay, InternalTimer::Reconnect { id }),
                );
            }
            _ => {
                self.connectors.remove(&id);
            }
        }
    }

    pub(crate) fn stop_connecting(&mut self, core: &mut Core, id: u64) {
        let Some(ce) = self.connectors.get_mut(&id) else {
            return;
        };
        ce.stopped = true;
        match ce.state {
            ConnectorState::Connecting(key) => {
                if let Entry::Connecting(mut c) = self.vacate(key) {
                    let _ = core.timers.cancel(c.timer);
                    let _ = self.registry.deregister(&mut c.stream);
                }
                self.attempt_failed(core, id, DisconnectReason::Cancelled);
            }
            ConnectorState::Waiting(t) => {
                let _ = core.timers.cancel(t);
                self.connectors.remove(&id);
            }
            ConnectorState::Idle => {
                self.connectors.remove(&id);
            }
            ConnectorState::Connected(_) => {}
        }
    }

    /// The reactor is going away: no connector tries again, and each one that
    /// is not connected hears `client_connection_failed` with
    /// [`DisconnectReason::Cancelled`] (a connected one ends with its
    /// connection).
    pub(crate) fn end_connectors(&mut self, core: &mut Core) {
        for ce in self.connectors.values_mut() {
            ce.stopped = true;
        }
        let ids: Vec<u64> = self.connectors.keys().copied().collect();
        for id in ids {
            let Some(ce) = self.connectors.get(&id) else {
                continue;
            };
            match ce.state {
                ConnectorState::Connected(_) => {}
                ConnectorState::Connecting(_) => self.stop_connecting(core, id),
                ConnectorState::Waiting(t) => {
                    let _ = core.timers.cancel(t);
                    self.attempt_failed(core, id, DisconnectReason::Cancelled);
                }
                ConnectorState::Idle => self.attempt_failed(core, id, DisconnectReason::Cancelled),
            }
        }
    }

    /// A connect that was queued but never started, while the reactor goes
    /// away: its factory hears `started_connecting`, then
    /// `client_connection_failed` with [`DisconnectReason::Cancelled`].
    pub(crate) fn cancel_pending_connect(&mut self, core: &mut Core, req: ConnectRequest) {
        let Ok(p) = req.rest.downcast::<ConnectParts>() else {
            return;
        };
        let mut factory = p.factory;
        let c = Connector::from_id(req.id);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
            factory.started(core, c);
            let _ = factory.failed(core, c, &DisconnectReason::Cancelled);
        })) {
            core.caught_panic(panic, "client factory callback");
        }
    }

    pub(crate) fn disconnect(&mut self, core: &mut Core, id: u64) {
        let Some(ce) = self.connectors.get(&id) else {
            return;
        };
        match ce.state {
            ConnectorState::Connected(h) => {
                if let Some(key) = self.conn_key(h) {
                    self.invoke(core, key, |p, ctx| {
                        crate::wrap::innermost(p, ctx, |_, ctx| ctx.lose_connection())
                    });
                }
            }
            _ => self.stop_connecting(core, id),
        }
    }
}
