//! The socket kinds behind stream connections and listeners: TCP and Unix
//! stream sockets share one connection code path (`conn.rs`) through these
//! small enums, dispatched with a `match`, not a vtable. A [`Stream`] is eight
//! bytes, like the descriptor it wraps plus a tag.

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use super::pipe::{pipe_peer, Pipe};
use crate::address::{no_ip, Address, UnixAddr};
use crate::transport::HostAddr;

/// A connected stream socket, or a pipe (a child's, or stdin/stdout).
/// Eight bytes in release builds: the descriptor and a tag (mio adds a
/// selector id to each in debug builds).
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Pipe(Pipe),
}

impl Stream {
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
            Stream::Pipe(p) => p.shutdown(),
        }
    }

    #[inline]
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => {
                let mut s: &TcpStream = s;
                s.read(buf)
            }
            Stream::Unix(s) => {
                let mut s: &UnixStream = s;
                s.read(buf)
            }
            Stream::Pipe(p) => p.read(buf),
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
            Stream::Pipe(_) => Ok(None),
        }
    }

    /// The peer's address; `NotConnected` while a connect is in progress.
    pub(crate) fn peer(&self) -> io::Result<Address> {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(Address::Inet),
            Stream::Unix(s) => s.peer_addr().map(|a| Address::Unix(UnixAddr::from_std(&a))),
            Stream::Pipe(_) => Ok(pipe_peer()),
        }
    }

    pub(crate) fn set_nodelay(&self, on: bool) {
        if let Stream::Tcp(s) = self {
            let _ = s.set_nodelay(on);
        }
    }

    /// Applies a connection's [`TcpOptions`](super::TcpOptions): `TCP_NODELAY`,
    /// keepalive and `TCP_USER_TIMEOUT`. A failure is logged, not fatal (the
    /// connection works without them).
    pub(crate) fn apply_options(&self, options: &super::TcpOptions) {
        self.set_nodelay(options.nodelay);
        if let (Stream::Tcp(s), Some(k)) = (self, options.keepalive) {
            let ka = socket2::TcpKeepalive::new()
                .with_time(k.idle)
                .with_interval(k.interval)
                .with_retries(k.count);
            if let Err(e) = socket2::SockRef::from(s).set_tcp_keepalive(&ka) {
                tracing::debug!(error = %e, "cannot set TCP keepalive");
            }
        }
        if let (Stream::Tcp(s), Some(t)) = (self, options.user_timeout) {
            set_user_timeout(s, t);
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_user_timeout(s: &mio::net::TcpStream, t: std::time::Duration) {
    if let Err(e) = socket2::SockRef::from(s).set_tcp_user_timeout(Some(t)) {
        tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_user_timeout(_s: &mio::net::TcpStream, _t: std::time::Duration) {
    tracing::debug!("TCP_USER_TIMEOUT is not available on this system: ignored");
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
            Stream::Pipe(p) => p.as_fd(),
        }
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
            Stream::Pipe(p) => p.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
            Stream::Pipe(p) => p.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
            Stream::Pipe(p) => p.deregister(r),
        }
    }
}

impl HostAddr for Stream {
    fn host_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr(),
            Stream::Unix(_) | Stream::Pipe(_) => Err(no_ip()),
        }
    }
    fn host(&self) -> io::Result<Address> {
        match self {
            Stream::Tcp(s) => s.local_addr().map(Address::Inet),
            Stream::Unix(s) => s
                .local_addr()
                .map(|a| Address::Unix(UnixAddr::from_std(&a))),
            Stream::Pipe(_) => Ok(pipe_peer()),
        }
    }
    fn nodelay(&self) -> Option<bool> {
        match self {
            Stream::Tcp(s) => s.nodelay().ok(),
            Stream::Unix(_) | Stream::Pipe(_) => None,
        }
    }
}

/// A listening stream socket.
pub(crate) enum Acceptor {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Acceptor {
    /// The bound address.
    pub(crate) fn local(&self) -> io::Result<Address> {
        match self {
            Acceptor::Tcp(l) => l.local_addr().map(Address::Inet),
            Acceptor::Unix(l) => l
                .local_addr()
                .map(|a| Address::Unix(UnixAddr::from_std(&a))),
        }
    }

    pub(crate) fn accept(&self) -> io::Result<(Stream, Address)> {
        match self {
            Acceptor::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), Address::Inet(a))),
            Acceptor::Unix(l) => l
                .accept()
                .map(|(s, a)| (Stream::Unix(s), Address::Unix(UnixAddr::from_std(&a)))),
        }
    }
}

impl Source for Acceptor {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Acceptor::Tcp(l) => l.register(r, t, i),
            Acceptor::Unix(l) => l.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Acceptor::Tcp(l) => l.reregister(r, t, i),
            Acceptor::Unix(l) => l.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Acceptor::Tcp(l) => l.deregister(r),
            Acceptor::Unix(l) => l.deregister(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_enum_keeps_connections_small() {
        let stream = std::mem::size_of::<Stream>();
        let entry = std::mem::size_of::<crate::reactor::Entry>();
        eprintln!("Stream {stream} bytes, slab Entry {entry} bytes");
        // Debug builds of mio add a registry id to every socket; measure release.
        if cfg!(not(debug_assertions)) {
            // A tag beside the descriptor, and the slab slot as before the enum.
            assert!(stream <= 8, "Stream grew to {stream} bytes");
            assert!(entry <= 96, "slab entry grew to {entry} bytes");
        }
    }
}
