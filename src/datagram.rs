//! Datagrams: UDP and Unix-domain datagram sockets (Twisted's
//! `DatagramProtocol`, `listenUDP`, `listenMulticast`, `listenUNIXDatagram`).
//!
//! A [`DatagramProtocol`] owns one socket, opened with
//! [`Core::listen_udp`](crate::Core::listen_udp) or
//! [`Core::listen_unix_datagram`](crate::Core::listen_unix_datagram). It hears
//! `start_protocol`, then `datagram_received` for every datagram (with the
//! sender's [`Address`]), then `stop_protocol` when the port stops. Its
//! [`DatagramContext`] sends, connects, and sets multicast and broadcast
//! options; it dereferences to [`Core`] like a connection's `Context`.
//!
//! # Sending: no buffer, no surprise
//!
//! A datagram is handed to the kernel at once, whole or not at all. When the
//! kernel's send buffer is full, [`send_to`](DatagramContext::send_to) returns
//! [`DatagramError::WouldBlock`] and **the datagram is dropped**, not queued:
//! UDP may drop it anywhere on the path anyway, so a protocol that needs
//! delivery retransmits (or retries later with [`Core::call_later`]), and one
//! that does not simply goes on. Nothing grows without bound.
//!
//! # Receiving: drained with a budget
//!
//! The read loop takes datagrams until the socket would block, at most 64 per
//! readiness event; a busy socket then waits for the other sources and is read
//! again in the same turn's ready pass, so one flooded port cannot starve the
//! others. Datagrams up to 65,535 bytes are received (every UDP datagram
//! fits); a longer Unix datagram would be truncated and is dropped with a
//! warning.
//!
//! A panic in a callback closes that port (`stop_protocol` still runs), not the
//! reactor, as a panic costs a stream connection.
//!
//! ```
//! use std::net::SocketAddr;
//! use torsion::{Address, DatagramContext, DatagramProtocol, Reactor};
//!
//! /// Echoes every datagram to its sender.
//! struct Echo;
//! impl DatagramProtocol for Echo {
//!     fn datagram_received(&mut self, ctx: &mut DatagramContext<'_>, data: &[u8], from: &Address) {
//!         // A full send buffer drops the reply: fine for an echo.
//!         let _ = ctx.send_to(data, from);
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Echo)?;
//! println!("UDP echo on {}", port.local_addr());
//! # Ok::<(), torsion::Error>(())
//! ```

use std::any::Any;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};

use crate::address::{Address, UnixAddr, NO_IP};
use crate::context::{Core, Op};

/// One datagram socket's behaviour. Every method but
/// [`datagram_received`](Self::datagram_received) has an empty default.
///
/// ```no_run
/// use torsion::{Address, DatagramContext, DatagramProtocol, Reactor};
///
/// /// Echoes every datagram to its sender, counting them.
/// #[derive(Default)]
/// struct Echo {
///     echoed: u64,
/// }
///
/// impl DatagramProtocol for Echo {
///     fn start_protocol(&mut self, ctx: &mut DatagramContext<'_>) {
///         println!("listening on {}", ctx.local_address());
///     }
///
///     fn datagram_received(&mut self, ctx: &mut DatagramContext<'_>, data: &[u8], from: &Address) {
///         // A full send buffer drops the echo (an error value, not a panic),
///         // as the network might have.
///         if ctx.send_to(data, from).is_ok() {
///             self.echoed += 1;
///         }
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// reactor.listen_udp("127.0.0.1:8000".parse().unwrap(), Echo::default())?;
/// reactor.run()?;
/// # Ok::<(), torsion::Error>(())
/// ```
pub trait DatagramProtocol: Any {
    /// The port is open and registered (Twisted's `startProtocol`): join
    /// multicast groups, connect, send a first datagram here.
    fn start_protocol(&mut self, ctx: &mut DatagramContext<'_>) {
        let _ = ctx;
    }

    /// A datagram arrived from `from`. `data` points into the reactor's read
    /// buffer: copy what must outlive the call.
    fn datagram_received(&mut self, ctx: &mut DatagramContext<'_>, data: &[u8], from: &Address);

    /// On a connected socket (see [`DatagramContext::connect`]): the peer
    /// answered a datagram with "nothing listens here" (ICMP port unreachable).
    /// The port stays open.
    fn connection_refused(&mut self, ctx: &mut DatagramContext<'_>) {
        let _ = ctx;
    }

    /// The port stopped (Twisted's `stopProtocol`): after
    /// [`DatagramPort::stop_listening`], when the reactor is dropped, or after a
    /// callback panicked. Sends through `ctx` are refused with
    /// [`DatagramError::Closed`]; timers and the rest of [`Core`] still work.
    fn stop_protocol(&mut self, ctx: &mut DatagramContext<'_>) {
        let _ = ctx;
    }
}

/// Why a datagram could not be sent or an option set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// The destination is of another family than the socket (IPv6 from an
    /// IPv4 socket, a path from a UDP socket...).
    #[error("cannot send to {to} from {socket} socket")]
    WrongFamily {
        /// Where the datagram was to go.
        to: Address,
        /// The socket's kind, for the message ("an IPv4 UDP", "a Unix datagram").
        socket: &'static str,
    },
    /// The kernel's send buffer is full: the datagram was dropped, not queued.
    #[error("the send buffer is full: the datagram was dropped")]
    WouldBlock,
    /// On a connected socket: the peer refused an earlier datagram (nothing
    /// listens there), or for a Unix path: no socket is bound to it.
    #[error("connection refused: nothing listens at the destination")]
    Refused,
    /// The datagram is larger than the socket can send (`EMSGSIZE`).
    #[error("datagram of {len} bytes is too large to send")]
    TooLarge {
        /// The datagram's size.
        len: usize,
    },
    /// [`write`](DatagramContext::write) on a socket that is not connected.
    #[error("the datagram socket is not connected")]
    NotConnected,
    /// The port stopped listening.
    #[error("the datagram port is closed")]
    Closed,
    /// Any other operating-system error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Which interface a multicast option or membership applies to.
///
/// ```
/// use std::net::Ipv4Addr;
/// use torsion::MulticastInterface;
///
/// // For `ctx.join_group(group, interface)` in a DatagramProtocol.
/// let on_lan = MulticastInterface::Address(Ipv4Addr::new(192, 168, 1, 10));
/// let by_index = MulticastInterface::Index(2);
/// assert_ne!(on_lan, MulticastInterface::default());
/// # let _ = by_index;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MulticastInterface {
    /// The kernel's choice (from the routing table).
    #[default]
    Default,
    /// The IPv4 interface with this address (IPv4 sockets only).
    Address(Ipv4Addr),
    /// The interface with this index (`if_nametoindex`; IPv6, and IPv4 on Linux).
    Index(u32),
}

/// An open datagram port (UDP or Unix datagram): a handle to stop it or to
/// reach its protocol from a timer or another callback.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatagramPort {
    pub(crate) id: u64,
    pub(crate) local: Address,
}

impl DatagramPort {
    /// The bound IP address with the real port when 0 was asked for;
    /// [`NO_IP`] for a Unix datagram port (see [`address`](Self::address)).
    pub fn local_addr(&self) -> SocketAddr {
        self.local.inet().unwrap_or(NO_IP)
    }

    /// The bound address on any transport.
    pub fn address(&self) -> &Address {
        &self.local
    }

    /// Closes the socket once the current callback returns; the protocol hears
    /// `stop_protocol`, and a Unix datagram port's file is removed.
    pub fn stop_listening(&self, core: &mut Core) {
        core.ops.push(Op::StopListening(self.id));
    }

    /// Runs `f` with the port's protocol, if the port is open and runs a `P`,
    /// once the current callback has returned: how a timer sends a datagram.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::{Address, DatagramContext, DatagramProtocol, Reactor};
    ///
    /// struct Beacon;
    /// impl DatagramProtocol for Beacon {
    ///     fn datagram_received(&mut self, _: &mut DatagramContext<'_>, _: &[u8], _: &Address) {}
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// let port = reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Beacon)?;
    /// let to = port.local_addr();
    /// reactor.call_later(Duration::ZERO, move |core| {
    ///     port.with_protocol(core, move |_beacon: &mut Beacon, ctx| {
    ///         ctx.send_to(b"ping", to).expect("sent");
    ///         ctx.stop().unwrap();
    ///     });
    /// });
    /// reactor.run()?;
    /// # Ok::<(), torsion::Error>(())
    /// ```
    pub fn with_protocol<P: DatagramProtocol>(
        &self,
        core: &mut Core,
        f: impl FnOnce(&mut P, &mut DatagramContext<'_>) + 'static,
    ) {
        let f: DatagramFn = Box::new(
            move |p: &mut dyn DatagramProtocol, ctx: &mut DatagramContext<'_>| {
                let any: &mut dyn Any = p;
                match any.downcast_mut::<P>() {
                    Some(p) => f(p, ctx),
                    None => tracing::warn!(
                        "DatagramPort::with_protocol: the port does not run a {}",
                        std::any::type_name::<P>()
                    ),
                }
            },
        );
        core.ops.push(Op::DatagramCall(self.id, Box::new(f)));
    }
}

/// A closure run against a datagram port's protocol.
pub(crate) type DatagramFn = Box<dyn FnOnce(&mut dyn DatagramProtocol, &mut DatagramContext<'_>)>;

/// A datagram socket of either kind (non-blocking `std` sockets; the reactor
/// registers their descriptors).
#[derive(Debug)]
pub(crate) enum DatagramSocket {
    Udp(std::net::UdpSocket),
    Unix(std::os::unix::net::UnixDatagram),
}

impl DatagramSocket {
    fn udp(&self) -> Result<socket2::SockRef<'_>, DatagramError> {
        match self {
            DatagramSocket::Udp(s) => Ok(socket2::SockRef::from(s)),
            DatagramSocket::Unix(_) => Err(DatagramError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "not a UDP socket",
            ))),
        }
    }
}

/// Classifies a send error.
fn send_error(e: io::Error, len: usize) -> DatagramError {
    match e.kind() {
        io::ErrorKind::WouldBlock => DatagramError::WouldBlock,
        io::ErrorKind::ConnectionRefused => DatagramError::Refused,
        // ENOENT: no socket file at the path.
        io::ErrorKind::NotFound => DatagramError::Refused,
        _ if e.raw_os_error() == Some(libc::EMSGSIZE) => DatagramError::TooLarge { len },
        _ => DatagramError::Io(e),
    }
}

/// The abstract name `name` as the path form socket2 understands (leading NUL).
fn abstract_path(name: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = Vec::with_capacity(name.len() + 1);
    bytes.push(0);
    bytes.extend_from_slice(name);
    std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&bytes))
}

/// A datagram socket and the reactor, as seen from a [`DatagramProtocol`]
/// callback. Dereferences to [`Core`].
pub struct DatagramContext<'a> {
    pub(crate) core: &'a mut Core,
    pub(crate) socket: &'a DatagramSocket,
    pub(crate) port: &'a DatagramPort,
    pub(crate) connected: &'a mut Option<Address>,
    pub(crate) closed: bool,
}

impl fmt::Debug for DatagramContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramContext")
            .field("local", &self.port.local)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl Deref for DatagramContext<'_> {
    type Target = Core;
    fn deref(&self) -> &Core {
        self.core
    }
}

impl DerefMut for DatagramContext<'_> {
    fn deref_mut(&mut self) -> &mut Core {
        self.core
    }
}

impl DatagramContext<'_> {
    /// The port this context belongs to (to reach it later from a timer).
    pub fn port(&self) -> DatagramPort {
        self.port.clone()
    }

    /// The bound address.
    pub fn local_address(&self) -> &Address {
        &self.port.local
    }

    /// The address given to [`connect`](Self::connect), if any.
    pub fn remote(&self) -> Option<&Address> {
        self.connected.as_ref()
    }

    /// Sends one datagram to `to` (a `SocketAddr` for UDP, a path or
    /// [`Address`] for Unix datagrams) now, whole or not at all.
    ///
    /// # Errors
    /// [`DatagramError::WouldBlock`] when the kernel's send buffer is full (the
    /// datagram is dropped, not queued: see the [module docs](self));
    /// [`WrongFamily`](DatagramError::WrongFamily) for an address the socket
    /// cannot reach (checked before any system call);
    /// [`TooLarge`](DatagramError::TooLarge), [`Refused`](DatagramError::Refused)
    /// (Unix: nothing bound at the path), [`Closed`](DatagramError::Closed)
    /// after the port stopped, or the operating system's error.
    pub fn send_to(&mut self, data: &[u8], to: impl Into<Address>) -> Result<(), DatagramError> {
        if self.closed {
            return Err(DatagramError::Closed);
        }
        let to = to.into();
        let res = match (self.socket, &to) {
            (DatagramSocket::Udp(s), Address::Inet(a)) => {
                if a.is_ipv6() != self.is_v6() {
                    return Err(self.wrong_family(to));
                }
                s.send_to(data, *a)
            }
            (DatagramSocket::Unix(s), Address::Unix(UnixAddr::Path(p))) => s.send_to(data, p),
            (DatagramSocket::Unix(s), Address::Unix(UnixAddr::Abstract(name))) => {
                let addr = socket2::SockAddr::unix(abstract_path(name))?;
                socket2::SockRef::from(s).send_to(data, &addr)
            }
            (DatagramSocket::Unix(_), Address::Unix(UnixAddr::Unnamed)) => {
                return Err(DatagramError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot send to an unnamed Unix socket",
                )))
            }
            _ => return Err(self.wrong_family(to)),
        };
        match res {
            Ok(_) => Ok(()),
            Err(e) => Err(send_error(e, data.len())),
        }
    }

    fn wrong_family(&self, to: Address) -> DatagramError {
        let socket = match (&self.port.local, self.is_v6()) {
            (Address::Unix(_), _) => "a Unix datagram",
            (_, true) => "an IPv6 UDP",
            (_, false) => "an IPv4 UDP",
        };
        DatagramError::WrongFamily { to, socket }
    }

    fn is_v6(&self) -> bool {
        self.port.local.inet().is_some_and(|a| a.is_ipv6())
    }

    /// Sends one datagram to the connected peer.
    ///
    /// # Errors
    /// [`DatagramError::NotConnected`] before [`connect`](Self::connect);
    /// [`Refused`](DatagramError::Refused) when the peer refused an earlier
    /// datagram; otherwise as [`send_to`](Self::send_to).
    pub fn write(&mut self, data: &[u8]) -> Result<(), DatagramError> {
        if self.closed {
            return Err(DatagramError::Closed);
        }
        if self.connected.is_none() {
            return Err(DatagramError::NotConnected);
        }
        let res = match self.socket {
            DatagramSocket::Udp(s) => s.send(data),
            DatagramSocket::Unix(s) => s.send(data),
        };
        res.map(drop).map_err(|e| send_error(e, data.len()))
    }

    /// Connects the socket to `to`: only its datagrams are received from then
    /// on, [`write`](Self::write) sends to it, and a refusal from it reaches
    /// [`DatagramProtocol::connection_refused`]. Connecting again moves the
    /// socket to another peer.
    ///
    /// # Errors
    /// [`WrongFamily`](DatagramError::WrongFamily), [`Closed`](DatagramError::Closed),
    /// or the operating system's error (for a Unix path: nothing bound there).
    pub fn connect(&mut self, to: impl Into<Address>) -> Result<(), DatagramError> {
        if self.closed {
            return Err(DatagramError::Closed);
        }
        let to = to.into();
        match (self.socket, &to) {
            (DatagramSocket::Udp(s), Address::Inet(a)) => {
                if a.is_ipv6() != self.is_v6() {
                    return Err(self.wrong_family(to));
                }
                s.connect(*a)?
            }
            (DatagramSocket::Unix(s), Address::Unix(UnixAddr::Path(p))) => s.connect(p)?,
            (DatagramSocket::Unix(s), Address::Unix(UnixAddr::Abstract(name))) => {
                let addr = socket2::SockAddr::unix(abstract_path(name))?;
                socket2::SockRef::from(s).connect(&addr)?
            }
            _ => return Err(self.wrong_family(to)),
        }
        *self.connected = Some(to);
        Ok(())
    }

    /// Closes the port once this callback returns (see
    /// [`DatagramPort::stop_listening`]).
    pub fn stop_listening(&mut self) {
        let port = self.port.clone();
        port.stop_listening(self.core);
    }

    /// Joins the multicast `group` on `interface` (Twisted's `joinGroup`).
    ///
    /// # Errors
    /// [`WrongFamily`](DatagramError::WrongFamily) for a group of the other IP
    /// family; `InvalidInput` for an IPv6 group on an interface named by
    /// address; the operating system's error (not a multicast address, no
    /// such interface, no multicast route).
    pub fn join_group(
        &mut self,
        group: IpAddr,
        interface: MulticastInterface,
    ) -> Result<(), DatagramError> {
        self.membership(group, interface, true)
    }

    /// Leaves a multicast group joined with [`join_group`](Self::join_group).
    ///
    /// # Errors
    /// As [`join_group`](Self::join_group); also when the group was not joined.
    pub fn leave_group(
        &mut self,
        group: IpAddr,
        interface: MulticastInterface,
    ) -> Result<(), DatagramError> {
        self.membership(group, interface, false)
    }

    fn membership(
        &mut self,
        group: IpAddr,
        interface: MulticastInterface,
        join: bool,
    ) -> Result<(), DatagramError> {
        let s = self.udp_of_family(group)?;
        match (group, interface) {
            (IpAddr::V4(g), MulticastInterface::Index(i)) => {
                let i = socket2::InterfaceIndexOrAddress::Index(i);
                if join {
                    s.join_multicast_v4_n(&g, &i)?
                } else {
                    s.leave_multicast_v4_n(&g, &i)?
                }
            }
            (IpAddr::V4(g), iface) => {
                let ifa = match iface {
                    MulticastInterface::Address(a) => a,
                    _ => Ipv4Addr::UNSPECIFIED,
                };
                if join {
                    s.join_multicast_v4(&g, &ifa)?
                } else {
                    s.leave_multicast_v4(&g, &ifa)?
                }
            }
            (IpAddr::V6(g), iface) => {
                let index = v6_index(iface)?;
                if join {
                    s.join_multicast_v6(&g, index)?
                } else {
                    s.leave_multicast_v6(&g, index)?
                }
            }
        }
        Ok(())
    }

    fn udp_of_family(&self, ip: IpAddr) -> Result<socket2::SockRef<'_>, DatagramError> {
        let s = self.socket.udp()?;
        if ip.is_ipv6() != self.is_v6() {
            return Err(self.wrong_family(Address::Inet(SocketAddr::new(ip, 0))));
        }
        Ok(s)
    }

    /// Sets the time to live (IPv6: hop limit) of multicast datagrams sent
    /// from this socket. Default 1: the local network only.
    ///
    /// # Errors
    /// Not a UDP socket, or the operating system's error.
    pub fn set_multicast_ttl(&mut self, ttl: u32) -> Result<(), DatagramError> {
        let s = self.socket.udp()?;
        if self.is_v6() {
            s.set_multicast_hops_v6(ttl)?
        } else {
            s.set_multicast_ttl_v4(ttl)?
        }
        Ok(())
    }

    /// Whether multicast datagrams sent from this socket come back to this
    /// host's own members of the group (`IP_MULTICAST_LOOP`; default on).
    ///
    /// # Errors
    /// Not a UDP socket, or the operating system's error.
    pub fn set_multicast_loop(&mut self, on: bool) -> Result<(), DatagramError> {
        let s = self.socket.udp()?;
        if self.is_v6() {
            s.set_multicast_loop_v6(on)?
        } else {
            s.set_multicast_loop_v4(on)?
        }
        Ok(())
    }

    /// The interface multicast datagrams leave through (`IP_MULTICAST_IF`).
    ///
    /// # Errors
    /// Not a UDP socket; `InvalidInput` for an IPv6 socket and an interface
    /// named by address, or an IPv4 socket and one named by index; the
    /// operating system's error.
    pub fn set_multicast_interface(
        &mut self,
        interface: MulticastInterface,
    ) -> Result<(), DatagramError> {
        let s = self.socket.udp()?;
        if self.is_v6() {
            s.set_multicast_if_v6(v6_index(interface)?)?
        } else {
            match interface {
                MulticastInterface::Default => s.set_multicast_if_v4(&Ipv4Addr::UNSPECIFIED)?,
                MulticastInterface::Address(a) => s.set_multicast_if_v4(&a)?,
                MulticastInterface::Index(_) => {
                    return Err(invalid("name an IPv4 multicast interface by its address").into())
                }
            }
        }
        Ok(())
    }

    /// Allows sending to broadcast addresses (`SO_BROADCAST`).
    ///
    /// # Errors
    /// Not a UDP socket, or the operating system's error.
    pub fn set_broadcast(&mut self, on: bool) -> Result<(), DatagramError> {
        self.socket.udp()?.set_broadcast(on)?;
        Ok(())
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn v6_index(interface: MulticastInterface) -> Result<u32, DatagramError> {
    match interface {
        MulticastInterface::Default => Ok(0),
        MulticastInterface::Index(i) => Ok(i),
        MulticastInterface::Address(_) => {
            Err(invalid("IPv6 multicast interfaces are named by index").into())
        }
    }
}
