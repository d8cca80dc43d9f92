//! TCP: listeners with an accept loop that survives running out of descriptors,
//! and connectors with timeouts and optional reconnection.

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Interest, Token};

use super::connect::AnyClientFactory;
use super::stream::{Acceptor, Stream};
use super::{Connection, Entry, InternalTimer, Net, READ_BUDGET};
use crate::address::Address;
use crate::context::{ConnectionHandle, Core, Op};
pub use crate::core::handles::{Connector, ListeningPort};
use crate::core::ops::{BoundListener, ConnectRequest, ListenRequest};
use crate::core::timers::TimerId;
use crate::error::Result;
use crate::protocol::{ClientFactory, Factory, Protocol};
use crate::transport::{flags, ConnState};

/// How long the accept loop waits before trying again when it could not even
/// shed connections (no descriptor left at all), or after an unexpected error.
const ACCEPT_RETRY: Duration = Duration::from_millis(250);

/// Socket options for listeners and connections.
///
/// ```
/// use torsion::TcpOptions;
///
/// // For `listen_tcp_with` / `connect_tcp_with`: several reactors sharing a
/// // port, a longer backlog, Nagle left on.
/// let options = TcpOptions::default().reuse_port(true).backlog(4096).nodelay(false);
/// assert!(options.reuse_port && !options.nodelay);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpOptions {
    /// Disable Nagle's algorithm on every connection (`TCP_NODELAY`). Default on:
    /// gathered writes already make few, full segments.
    pub nodelay: bool,
    /// Listen backlog. Default 1024.
    pub backlog: i32,
    /// Set `SO_REUSEPORT` on listeners, so several reactors can share a port.
    pub reuse_port: bool,
    /// TCP keepalive on every connection (`SO_KEEPALIVE` with `TCP_KEEPIDLE`,
    /// `TCP_KEEPINTVL`, `TCP_KEEPCNT`). Default off. It finds a peer that
    /// vanished (a blackhole, a host that lost power) on a connection with
    /// nothing to send: after `idle + interval * count` without an answer
    /// the kernel drops the connection and the protocol hears
    /// `connection_lost` with [`DisconnectReason::TimedOut`](crate::DisconnectReason::TimedOut).
    /// While data is unacknowledged, retransmission timeouts apply instead
    /// (minutes); an idle timeout
    /// ([`Context::set_idle_timeout`](crate::Context::set_idle_timeout))
    /// bounds both.
    pub keepalive: Option<Keepalive>,
    /// `TCP_USER_TIMEOUT`: how long written data may stay unacknowledged
    /// before the kernel drops the connection (the protocol then hears
    /// `connection_lost` with
    /// [`DisconnectReason::TimedOut`](crate::DisconnectReason::TimedOut)).
    /// Default off (the kernel's retransmission limits, about 15 minutes).
    /// It bounds what keepalive cannot: keepalive probes stop while data is
    /// in flight, so a peer that vanishes while we are sending is found only
    /// by this. With keepalive on it also bounds the probes (Linux counts
    /// unanswered probes against it). Linux and Android only; elsewhere it is
    /// ignored (logged at DEBUG).
    pub user_timeout: Option<Duration>,
}

/// TCP keepalive settings (see [`TcpOptions::keepalive`]).
///
/// ```
/// use std::time::Duration;
/// use torsion::{Keepalive, TcpOptions};
///
/// // Probe after 30 s of silence, every 5 s; give up after 3 unanswered.
/// let options = TcpOptions::default().keepalive(Keepalive::new(Duration::from_secs(30)));
/// assert_eq!(options.keepalive.unwrap().interval, Duration::from_secs(5));
/// let fast = Keepalive::new(Duration::from_secs(1))
///     .interval(Duration::from_secs(1))
///     .count(2);
/// assert_eq!(fast.count, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keepalive {
    /// Silence before the first probe (`TCP_KEEPIDLE`; whole seconds, at
    /// least one).
    pub idle: Duration,
    /// Time between probes (`TCP_KEEPINTVL`; whole seconds, at least one).
    /// Default 5 s.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (`TCP_KEEPCNT`).
    /// Default 3.
    pub count: u32,
}

impl Keepalive {
    /// Probes after `idle` of silence, every 5 s, 3 times.
    pub fn new(idle: Duration) -> Keepalive {
        Keepalive {
            idle,
            interval: Duration::from_secs(5),
            count: 3,
        }
    }

    /// With probes `interval` apart.
    pub fn interval(mut self, interval: Duration) -> Keepalive {
        self.interval = interval;
        self
    }

    /// Giving up after `count` unanswered probes (at least 1).
    pub fn count(mut self, count: u32) -> Keepalive {
        self.count = count.max(1);
        self
    }
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            nodelay: true,
            backlog: 1024,
            reuse_port: false,
            keepalive: None,
            user_timeout: None,
        }
    }
}

impl TcpOptions {
    /// Options with `TCP_NODELAY` set as given.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// Options with the given listen backlog.
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Options with TCP keepalive on, as `keepalive` says.
    pub fn keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = Some(keepalive);
        self
    }

    /// Options with `TCP_USER_TIMEOUT` set to `timeout` (see
    /// [`user_timeout`](Self::user_timeout); whole milliseconds, at least
    /// one).
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::TcpOptions;
    ///
    /// let options = TcpOptions::default().user_timeout(Duration::from_secs(20));
    /// assert_eq!(options.user_timeout, Some(Duration::from_secs(20)));
    /// ```
    pub fn user_timeout(mut self, timeout: Duration) -> Self {
        self.user_timeout = Some(timeout.max(Duration::from_millis(1)));
        self
    }

    /// Options with `SO_REUSEPORT` as given.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }
}

/// What the reactor needs of a listen request besides its socket (the
/// erased part of a [`ListenRequest`]).
pub(crate) struct ListenParts {
    pub(crate) factory: Box<dyn AnyFactory>,
    pub(crate) options: TcpOptions,
    /// A Unix listener's socket file, removed when it stops.
    pub(crate) socket_file: Option<Box<super::unix::SocketFile>>,
}

/// What the reactor needs of a connect request besides where and how long
/// (the erased part of a [`ConnectRequest`]).
pub(crate) struct ConnectParts {
    pub(crate) factory: Box<dyn AnyClientFactory>,
    pub(crate) options: TcpOptions,
}

pub(crate) trait AnyFactory {
    fn build(&mut self, peer: &Address) -> Option<Box<dyn Protocol>>;
    fn start(&mut self, core: &mut Core);
    fn stop(&mut self, core: &mut Core);
}

impl<F: Factory> AnyFactory for F {
    fn build(&mut self, peer: &Address) -> Option<Box<dyn Protocol>> {
        self.build_protocol(peer)
            .map(|p| Box::new(p) as Box<dyn Protocol>)
    }
    fn start(&mut self, core: &mut Core) {
        self.start_factory(core)
    }
    fn stop(&mut self, core: &mut Core) {
        self.stop_factory(core)
    }
}

pub(crate) struct Listener {
    listener: Acceptor,
    socket_file: Option<Box<super::unix::SocketFile>>,
    factory: Box<dyn AnyFactory>,
    pub(crate) gen: u32,
    options: TcpOptions,
    pub(crate) retry: Option<TimerId>,
    /// Out of descriptors since the last successful accept (log once).
    exhausted: bool,
    shed: u64,
    accepted: u64,
}

impl Listener {
    /// What a snapshot shows of it.
    pub(crate) fn info(&self) -> crate::introspect::ListenerInfo {
        crate::introspect::ListenerInfo {
            address: self.listener.local().unwrap_or_else(|_| {
                crate::address::Address::Inet(SocketAddr::from(([0, 0, 0, 0], 0)))
            }),
            accepted: self.accepted,
            shed: self.shed,
        }
    }
}

impl Core {
    /// Listens on `addr` with default [`TcpOptions`]; see
    /// [`listen_tcp_with`](Self::listen_tcp_with).
    ///
    /// # Errors
    /// The operating system's error if the address cannot be bound.
    pub fn listen_tcp<F: Factory>(
        &mut self,
        addr: SocketAddr,
        factory: F,
    ) -> Result<ListeningPort> {
        self.listen_tcp_with(addr, factory, TcpOptions::default())
    }

    /// Binds `addr` now (so errors and the real port are known at once) and starts
    /// accepting when the loop next runs. IPv4 and IPv6; port 0 picks a port.
    ///
    /// # Errors
    /// The operating system's error if the socket cannot be made or bound.
    pub fn listen_tcp_with<F: Factory>(
        &mut self,
        addr: SocketAddr,
        factory: F,
        options: TcpOptions,
    ) -> Result<ListeningPort> {
        use socket2::{Domain, Socket, Type};
        let id = self.next_id();
        let parts = ListenParts {
            factory: Box::new(factory),
            options,
            socket_file: None,
        };
        if self.is_simulated() {
            // The fake clock binds nothing: the request is recorded with the
            // address asked for (a made-up port for port 0).
            let mut local = addr;
            if local.port() == 0 {
                local.set_port(20000 + (id % 40000) as u16);
            }
            self.ops.push(Op::Listen(ListenRequest {
                id,
                addr: Some(local),
                socket: None,
                rest: Box::new(parts),
            }));
            return Ok(ListeningPort { id, addr: local });
        }
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if options.reuse_port {
            socket.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(options.backlog)?;
        let listener: std::net::TcpListener = socket.into();
        let local = listener.local_addr()?;
        self.ops.push(Op::Listen(ListenRequest {
            id,
            addr: Some(local),
            socket: Some(BoundListener::Tcp(listener)),
            rest: Box::new(parts),
        }));
        Ok(ListeningPort { id, addr: local })
    }

    /// Connects to `addr` with default [`TcpOptions`]. The factory hears
    /// `started_connecting`, then `client_connection_failed` (refused, unreachable,
    /// no answer within `timeout`...) or builds the protocol.
    pub fn connect_tcp<F: ClientFactory>(
        &mut self,
        addr: SocketAddr,
        factory: F,
        timeout: Duration,
    ) -> Connector {
        self.connect_tcp_with(addr, factory, timeout, TcpOptions::default())
    }

    /// [`connect_tcp`](Self::connect_tcp) with options.
    pub fn connect_tcp_with<F: ClientFactory>(
        &mut self,
        addr: SocketAddr,
        factory: F,
        timeout: Duration,
        options: TcpOptions,
    ) -> Connector {
        let id = self.next_id();
        self.ops.push(Op::Connect(ConnectRequest {
            id,
            addr: Address::Inet(addr),
            timeout,
            rest: Box::new(ConnectParts {
                factory: Box::new(factory),
                options,
            }),
        }));
        Connector { id }
    }

    /// Graceful shutdown: stops every listener and connector, closes every
    /// connection after its flush, and stops the reactor once all are closed, or
    /// when `timeout` passes (aborting what is left).
    pub fn shutdown(&mut self, timeout: Duration) {
        self.ops.push(Op::Shutdown(timeout));
    }
}

/// Whether an accept failed for want of descriptors or memory: the listener
/// then sheds a connection or retries on a timer instead of spinning.
fn is_descriptor_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) || matches!(e.raw_os_error(), Some(libc::EPERM | libc::EPROTO)) // EPERM: a firewall
}

impl Net {
    pub(crate) fn start_listening(&mut self, core: &mut Core, req: ListenRequest) {
        let (Some(socket), Ok(p)) = (req.socket, req.rest.downcast::<ListenParts>()) else {
            return;
        };
        let mut listener = match socket {
            BoundListener::Tcp(l) => Acceptor::Tcp(TcpListener::from_std(l)),
            BoundListener::Unix(l) => Acceptor::Unix(mio::net::UnixListener::from_std(l)),
        };
        let gen = self.next_gen();
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .registry
            .register(&mut listener, Token(key), Interest::READABLE)
        {
            tracing::error!(error = %e, "could not register a listener");
            return;
        }
        entry.insert(Entry::Listener(Box::new(Listener {
            listener,
            socket_file: p.socket_file,
            factory: p.factory,
            gen,
            options: p.options,
            retry: None,
            exhausted: false,
            shed: 0,
            accepted: 0,
        })));
        self.listeners.insert(req.id, key);
        if let Entry::Listener(l) = &mut self.entries[key] {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| l.factory.start(core))) {
                core.caught_panic(panic, "start_factory");
            }
        }
        self.accept(core, key);
    }

    pub(crate) fn stop_listening(&mut self, core: &mut Core, id: u64) {
        let Some(key) = self.listeners.remove(&id) else {
            return;
        };
        let l = match self.vacate(key) {
            Entry::Listener(l) => Some(l),
            Entry::Datagram(d) => {
                self.close_datagram(core, *d);
                None
            }
            _ => None,
        };
        if let Some(mut l) = l {
            let _ = self.registry.deregister(&mut l.listener);
            if let Some(t) = l.retry.take() {
                let _ = core.timers.cancel(t);
            }
            // Closes the socket, then removes a Unix listener's file.
            drop(l.listener);
            drop(l.socket_file.take());
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| l.factory.stop(core))) {
                core.caught_panic(panic, "stop_factory");
            }
        }
    }

    /// Accepts until `WouldBlock` or the budget runs out.
    pub(crate) fn accept(&mut self, core: &mut Core, key: usize) {
        for _ in 0..READ_BUDGET * 4 {
            let Some(Entry::Listener(l)) = self.entries.get_mut(key) else {
                return;
            };
            match l.listener.accept() {
                Ok((stream, peer)) => {
                    if l.exhausted {
                        l.exhausted = false;
                        tracing::warn!(shed = l.shed, "descriptors available again: accepting");
                    }
                    self.accepted(core, key, stream, peer)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient_accept_error(&e) => {}
                Err(e) if is_descriptor_exhaustion(&e) => return self.shed(core, key, &e),
                Err(e) => {
                    tracing::error!(error = %e, "accept failed; retrying shortly");
                    return self.retry_accept(core, key);
                }
            }
        }
        self.ready.push((key, self.gen_of(key).unwrap_or(0)));
    }

    /// Out of descriptors: close the pending connections with the spare
    /// descriptor's help, so the listener neither spins nor stalls, and retry on a
    /// timer if even that was impossible.
    fn shed(&mut self, core: &mut Core, key: usize, e: &io::Error) {
        let Some(Entry::Listener(l)) = self.entries.get_mut(key) else {
            return;
        };
        if !l.exhausted {
            l.exhausted = true;
            tracing::warn!(error = %e, "out of descriptors: shedding new connections until some are free");
        }
        drop(self.spare_fd.take());
        let mut drained = false;
        loop {
            match l.listener.accept() {
                Ok(_) => {
                    // Dropped at once: the peer sees a close.
                    l.shed += 1;
                    core.counters.shed_fd_exhaustion += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if is_transient_accept_error(&e) => {}
                Err(_) => break,
            }
        }
        self.spare_fd = std::fs::File::open("/dev/null").ok();
        if !drained || self.spare_fd.is_none() {
            self.retry_accept(core, key);
        }
    }

    fn retry_accept(&mut self, core: &mut Core, key: usize) {
        let Some(gen) = self.gen_of(key) else { return };
        if let Some(Entry::Listener(l)) = self.entries.get_mut(key) {
            if l.retry.is_none() {
                l.retry = Some(
                    core.schedule_internal(ACCEPT_RETRY, InternalTimer::AcceptRetry { key, gen }),
                );
            }
        }
    }

    fn accepted(&mut self, core: &mut Core, key: usize, stream: Stream, peer: Address) {
        let Some(Entry::Listener(l)) = self.entries.get_mut(key) else {
            return;
        };
        l.accepted += 1;
        core.counters.accepted += 1;
        stream.apply_options(&l.options);
        let factory = &mut l.factory;
        let proto = match catch_unwind(AssertUnwindSafe(|| factory.build(&peer))) {
            Ok(Some(p)) => p,
            Ok(None) => {
                core.counters.refused_by_factory += 1;
                tracing::debug!(%peer, "factory refused the connection");
                return;
            }
            Err(panic) => {
                core.caught_panic(panic, "build_protocol");
                return;
            }
        };
        self.add_connection(core, stream, peer, proto, 0);
    }

    /// Registers a new connection and delivers `connection_made`.
    pub(crate) fn add_connection(
        &mut self,
        core: &mut Core,
        mut stream: Stream,
        peer: Address,
        protocol: Box<dyn Protocol>,
        connector: u64,
    ) -> Option<ConnectionHandle> {
        let gen = self.next_gen();
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.registry.register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::error!(error = %e, %peer, "could not register a connection");
            return None;
        }
        let handle = ConnectionHandle {
            key: key as u32,
            gen,
        };
        tracing::debug!(%peer, key, "connection made");
        let mut state = ConnState::new(handle, peer);
        state.set(flags::MADE);
        state.born_ms = core.age_ms();
        if connector != 0 {
            state.set(flags::CLIENT);
            self.clients.insert(key, connector);
        }
        entry.insert(Entry::Conn(Connection {
            stream,
            state,
            protocol,
        }));
        self.live_conns += 1;
        self.invoke(core, key, |p, ctx| p.connection_made(ctx));
        Some(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn accept_errors_are_classified_by_the_platform_errno_names() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(is_descriptor_exhaustion(&os(code)), "{code}");
            assert!(!is_transient_accept_error(&os(code)), "{code}");
        }
        for code in [libc::EPERM, libc::EPROTO, libc::ECONNABORTED, libc::EINTR] {
            assert!(is_transient_accept_error(&os(code)), "{code}");
            assert!(!is_descriptor_exhaustion(&os(code)), "{code}");
        }
        for code in [libc::EBADF, libc::EINVAL] {
            assert!(!is_transient_accept_error(&os(code)) && !is_descriptor_exhaustion(&os(code)));
        }
    }
}
