//! Datagram ports in the loop: UDP and Unix datagram sockets, their read loop
//! (drained with a budget) and the calls into their protocols.

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use mio::{Interest, Token};

use super::unix::{SocketFile, UnixOptions};
use super::{Entry, Net};
use crate::address::{Address, UnixAddr};
use crate::context::{Core, Op};
use crate::datagram::{DatagramContext, DatagramPort, DatagramProtocol, DatagramSocket};
use crate::error::Result;

/// Datagrams read per readiness event before the other sources get a turn.
pub(crate) const DATAGRAM_BUDGET: usize = 64;

/// Options for UDP ports.
///
/// ```
/// use torsion::UdpOptions;
///
/// // Several processes may receive the same multicast group on one port.
/// let options = UdpOptions::default().reuse_address(true).reuse_port(true);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct UdpOptions {
    /// `SO_REUSEADDR` (Twisted's `listenMultiple` for multicast).
    pub reuse_address: bool,
    /// `SO_REUSEPORT`: several sockets share the port (and its datagrams).
    pub reuse_port: bool,
    /// `SO_BROADCAST` from the start.
    pub broadcast: bool,
    /// `SO_RCVBUF`, when set.
    pub recv_buffer_size: Option<usize>,
    /// `SO_SNDBUF`, when set.
    pub send_buffer_size: Option<usize>,
}

impl UdpOptions {
    /// Options with `SO_REUSEADDR` as given.
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.reuse_address = on;
        self
    }

    /// Options with `SO_REUSEPORT` as given.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// Options with `SO_BROADCAST` as given.
    pub fn broadcast(mut self, on: bool) -> Self {
        self.broadcast = on;
        self
    }

    /// Options with the given kernel receive buffer size.
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.recv_buffer_size = Some(bytes);
        self
    }

    /// Options with the given kernel send buffer size.
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.send_buffer_size = Some(bytes);
        self
    }
}

/// A closure run against a datagram port's protocol.
use crate::datagram::DatagramFn;

/// A bound datagram socket waiting for the loop to register it.
pub(crate) struct PendingDatagram {
    port: DatagramPort,
    socket: DatagramSocket,
    protocol: Box<dyn DatagramProtocol>,
    socket_file: Option<SocketFile>,
}

/// An open datagram port in the slab.
pub(crate) struct DatagramEntry {
    socket: DatagramSocket,
    protocol: Box<dyn DatagramProtocol>,
    port: DatagramPort,
    connected: Option<Address>,
    pub(crate) gen: u32,
    /// Dropped after the socket: removes a Unix datagram port's file.
    socket_file: Option<SocketFile>,
}

impl Core {
    /// Opens a UDP port on `addr` with default [`UdpOptions`]; see
    /// [`listen_udp_with`](Self::listen_udp_with).
    ///
    /// # Errors
    /// The operating system's error if the address cannot be bound.
    pub fn listen_udp<P: DatagramProtocol>(
        &mut self,
        addr: SocketAddr,
        protocol: P,
    ) -> Result<DatagramPort> {
        self.listen_udp_with(addr, protocol, UdpOptions::default())
    }

    /// Binds a UDP socket to `addr` now (so errors and the real port are known
    /// at once; port 0 picks one) and runs `protocol` on it from the loop's next
    /// turn (Twisted's `listenUDP`): `start_protocol`, then
    /// `datagram_received` for each datagram. An IPv6 socket is IPv6 only.
    ///
    /// # Errors
    /// The operating system's error if the socket cannot be made, configured
    /// or bound.
    pub fn listen_udp_with<P: DatagramProtocol>(
        &mut self,
        addr: SocketAddr,
        protocol: P,
        options: UdpOptions,
    ) -> Result<DatagramPort> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
        if options.reuse_address {
            socket.set_reuse_address(true)?;
        }
        if options.reuse_port {
            socket.set_reuse_port(true)?;
        }
        if options.broadcast {
            socket.set_broadcast(true)?;
        }
        if let Some(n) = options.recv_buffer_size {
            socket.set_recv_buffer_size(n)?;
        }
        if let Some(n) = options.send_buffer_size {
            socket.set_send_buffer_size(n)?;
        }
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let socket: std::net::UdpSocket = socket.into();
        let local = Address::Inet(socket.local_addr()?);
        let socket = DatagramSocket::Udp(socket);
        Ok(self.open_datagram(local, socket, Box::new(protocol), None))
    }

    /// Opens a Unix datagram socket at `path` with default [`UnixOptions`];
    /// see [`listen_unix_datagram_with`](Self::listen_unix_datagram_with).
    ///
    /// # Errors
    /// As [`listen_unix_datagram_with`](Self::listen_unix_datagram_with).
    pub fn listen_unix_datagram<P: DatagramProtocol>(
        &mut self,
        path: impl AsRef<Path>,
        protocol: P,
    ) -> Result<DatagramPort> {
        self.listen_unix_datagram_with(path, protocol, UnixOptions::default())
    }

    /// Binds a Unix datagram socket at `path` (Twisted's `listenUNIXDatagram`),
    /// with the same stale-file and mode options as
    /// [`listen_unix_with`](Self::listen_unix_with). The protocol sends to
    /// other sockets by path; peers that want replies bind a path too. The file
    /// is removed when the port stops.
    ///
    /// # Errors
    /// The operating system's error if the socket cannot be made or bound
    /// (`AddrInUse` when the path exists and is not a removable stale socket).
    pub fn listen_unix_datagram_with<P: DatagramProtocol>(
        &mut self,
        path: impl AsRef<Path>,
        protocol: P,
        options: UnixOptions,
    ) -> Result<DatagramPort> {
        let path = path.as_ref();
        let (socket, file) = super::unix::bind(path, socket2::Type::DGRAM, &options)?;
        let socket: std::os::unix::net::UnixDatagram = socket.into();
        let socket = DatagramSocket::Unix(socket);
        Ok(self.open_datagram(Address::unix(path), socket, Box::new(protocol), file))
    }

    fn open_datagram(
        &mut self,
        local: Address,
        socket: DatagramSocket,
        protocol: Box<dyn DatagramProtocol>,
        socket_file: Option<SocketFile>,
    ) -> DatagramPort {
        let port = DatagramPort {
            id: self.next_id(),
            local,
        };
        self.ops.push(Op::ListenDatagram(Box::new(PendingDatagram {
            port: port.clone(),
            socket,
            protocol,
            socket_file,
        })));
        port
    }
}

impl DatagramSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, Address)> {
        match self {
            DatagramSocket::Udp(s) => s.recv_from(buf).map(|(n, a)| (n, Address::Inet(a))),
            DatagramSocket::Unix(s) => s
                .recv_from(buf)
                .map(|(n, a)| (n, Address::Unix(UnixAddr::from_std(&a)))),
        }
    }

    /// The descriptor, to register with the poll.
    fn source(&self) -> FdSource {
        use std::os::fd::AsRawFd;
        FdSource(match self {
            DatagramSocket::Udp(s) => s.as_raw_fd(),
            DatagramSocket::Unix(s) => s.as_raw_fd(),
        })
    }
}

/// A datagram socket's descriptor as a `mio` source (the socket itself is a
/// `std` one, so the layers under the reactor never name `mio`).
struct FdSource(std::os::fd::RawFd);

impl mio::event::Source for FdSource {
    fn register(&mut self, r: &mio::Registry, t: Token, i: Interest) -> io::Result<()> {
        mio::unix::SourceFd(&self.0).register(r, t, i)
    }
    fn reregister(&mut self, r: &mio::Registry, t: Token, i: Interest) -> io::Result<()> {
        mio::unix::SourceFd(&self.0).reregister(r, t, i)
    }
    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        mio::unix::SourceFd(&self.0).deregister(r)
    }
}

impl Net {
    pub(crate) fn start_datagram(&mut self, core: &mut Core, p: crate::core::ops::Erased) {
        let Ok(p) = p.downcast::<PendingDatagram>() else {
            return;
        };
        let p = *p;
        let gen = self.next_gen();
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        if let Err(e) =
            self.registry
                .register(&mut p.socket.source(), Token(key), Interest::READABLE)
        {
            tracing::error!(error = %e, "could not register a datagram port");
            return;
        }
        let id = p.port.id;
        entry.insert(Entry::Datagram(Box::new(DatagramEntry {
            socket: p.socket,
            protocol: p.protocol,
            port: p.port,
            connected: None,
            gen,
            socket_file: p.socket_file,
        })));
        self.listeners.insert(id, key);
        self.invoke_datagram(core, key, |p, ctx| p.start_protocol(ctx));
        // Datagrams may have arrived before registration; their edge is gone.
        self.on_datagram_readable(core, key);
    }

    /// Runs `f` on the protocol of datagram port `key` under `catch_unwind`.
    /// A panic closes the port. Returns whether the port is still open.
    fn invoke_datagram(
        &mut self,
        core: &mut Core,
        key: usize,
        f: impl FnOnce(&mut dyn DatagramProtocol, &mut DatagramContext<'_>),
    ) -> bool {
        let Some(Entry::Datagram(d)) = self.entries.get_mut(key) else {
            return false;
        };
        if call_datagram(core, d, f) {
            return true;
        }
        let id = d.port.id;
        self.stop_listening(core, id);
        false
    }

    /// Runs a [`DatagramPort::with_protocol`] call.
    pub(crate) fn datagram_call(&mut self, core: &mut Core, id: u64, f: crate::core::ops::Erased) {
        let Ok(f) = f.downcast::<DatagramFn>() else {
            return;
        };
        let f = *f;
        if let Some(&key) = self.listeners.get(&id) {
            self.invoke_datagram(core, key, f);
        }
    }

    /// Reads datagrams until `WouldBlock` or the budget runs out; then the port
    /// waits in the ready list for the other sources to have their turn.
    pub(crate) fn on_datagram_readable(&mut self, core: &mut Core, key: usize) {
        for _ in 0..DATAGRAM_BUDGET {
            let Some(Entry::Datagram(d)) = self.entries.get_mut(key) else {
                return;
            };
            match d.socket.recv_from(&mut self.read_buf[..]) {
                Ok((n, from)) => {
                    if n >= self.read_buf.len() {
                        tracing::warn!(%from, "datagram of 64 KiB or more truncated: dropped");
                        continue;
                    }
                    let data = &self.read_buf[..n];
                    if !call_datagram(core, d, |p, ctx| p.datagram_received(ctx, data, &from)) {
                        let id = d.port.id;
                        return self.stop_listening(core, id);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    if !self.invoke_datagram(core, key, |p, ctx| p.connection_refused(ctx)) {
                        return;
                    }
                }
                Err(e) => {
                    // Other ICMP reports on a connected socket (unreachable
                    // host...) are consumed by this read; anything else would
                    // repeat, so wait for the next event rather than spin.
                    tracing::warn!(error = %e, "datagram receive failed");
                    return;
                }
            }
            if !core.ops.is_empty() {
                self.process_ops(core);
            }
        }
        if let Some(gen) = self.gen_of(key) {
            self.ready.push((key, gen));
        }
    }

    /// Closes datagram port `entry` (already out of the slab): `stop_protocol`,
    /// then the socket, then its file.
    pub(crate) fn close_datagram(&mut self, core: &mut Core, mut d: DatagramEntry) {
        let _ = self.registry.deregister(&mut d.socket.source());
        let mut ctx = DatagramContext {
            core: &mut *core,
            socket: &d.socket,
            port: &d.port,
            connected: &mut d.connected,
            closed: true,
        };
        let protocol = &mut *d.protocol;
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| protocol.stop_protocol(&mut ctx))) {
            core.caught_panic(p, "stop_protocol");
        }
        let DatagramEntry {
            socket,
            socket_file,
            ..
        } = d;
        drop(socket);
        drop(socket_file);
    }
}

/// Calls `f` on a datagram port's protocol with a fresh context, catching
/// panics (logged by the panic policy). Returns `false` if it panicked.
fn call_datagram(
    core: &mut Core,
    d: &mut DatagramEntry,
    f: impl FnOnce(&mut dyn DatagramProtocol, &mut DatagramContext<'_>),
) -> bool {
    let mut ctx = DatagramContext {
        core: &mut *core,
        socket: &d.socket,
        port: &d.port,
        connected: &mut d.connected,
        closed: false,
    };
    let protocol = &mut *d.protocol;
    match catch_unwind(AssertUnwindSafe(|| f(protocol, &mut ctx))) {
        Ok(()) => true,
        Err(p) => {
            core.caught_panic(p, "datagram protocol callback");
            false
        }
    }
}
