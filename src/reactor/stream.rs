//! The socket kinds behind stream connections and listeners: TCP and Unix
//! stream sockets share one connection code path (`conn.rs`) through these
//! small enums, dispatched with a `match`, not a vtable. A [`Stream`] is eight
//! bytes, like the descriptor it wraps plus a tag.
//!
//! A connected socket is std's own type, registered with mio by its
//! descriptor ([`SourceFd`]): mio's socket types add nothing on Linux but a
//! layer of calls the compiler cannot inline across crates, on every read
//! and write (mio accepts and connects, then hands the socket over).

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;

use mio::event::Source;
use mio::net::{TcpListener, UnixListener};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::pipe::{pipe_peer, Pipe};
use crate::address::{no_ip, Address, UnixAddr};
use crate::transport::HostAddr;

/// A connected stream socket (non-blocking), or a pipe (a child's, or
/// stdin/stdout). Eight bytes in release builds: the descriptor and a tag
/// (mio adds a selector id to its pipes in debug builds).
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Pipe(Pipe),
}

impl Stream {
    /// A socket from mio's connect (non-blocking already).
    pub(crate) fn tcp(s: mio::net::TcpStream) -> Stream {
        Stream::Tcp(s.into())
    }

    /// A Unix socket from mio's connect or accept (non-blocking already).
    pub(crate) fn unix(s: mio::net::UnixStream) -> Stream {
        Stream::Unix(s.into())
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
            Stream::Pipe(p) => p.shutdown(),
        }
    }

    /// Reads into `buf`: `recv` on the socket's descriptor itself (what
    /// mio's and std's `Read` come down to, without their layers), `read`
    /// on a pipe. (The read loop uses [`read_raw`](Self::read_raw), inlined.)
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut err = None;
        let n = self.read_raw(buf, &mut err);
        raw_result(n, err)
    }

    /// [`read`](Self::read) for the read loop: the byte count (0: end of
    /// stream), or a negative count with the error in `err` (a pipe's) or
    /// the error number negated (a socket's). A count, not an `io::Result`: the two
    /// kinds of stream's results would be merged into one `Result` and its
    /// variant tested again after the system call had told already.
    #[inline(always)]
    pub(crate) fn read_raw(&self, buf: &mut [u8], err: &mut Option<io::Error>) -> isize {
        if let Stream::Pipe(p) = self {
            return match p.read(buf) {
                // (At most `buf.len()`, which is at most `isize::MAX`.)
                Ok(n) => n as isize,
                Err(e) => {
                    *err = Some(e);
                    -1
                }
            };
        }
        super::sys::recv(self.raw_fd(), buf)
    }

    /// Writes `buf` as [`read_raw`](Self::read_raw) reads: the count, or a
    /// negative count with the error in `err` (a pipe's) or the error number
    /// negated. A socket's is
    /// `send` on the descriptor itself with `MSG_NOSIGNAL` (no mio, std or
    /// socket2 layers on the hot path); a pipe's write blocks SIGPIPE instead.
    #[inline(always)]
    pub(crate) fn send_raw(&self, buf: &[u8], err: &mut Option<io::Error>) -> isize {
        if let Stream::Pipe(p) = self {
            return match p.write_vectored(&[io::IoSlice::new(buf)]) {
                // (At most `buf.len()`, which is at most `isize::MAX`.)
                Ok(n) => n as isize,
                Err(e) => {
                    *err = Some(e);
                    -1
                }
            };
        }
        super::sys::send(self.raw_fd(), buf, super::sys::NO_SIGPIPE)
    }

    /// The descriptor. `as_raw_fd`, not `as_fd`: std inlines the one and
    /// not the other (a call per read and per write otherwise).
    #[inline(always)]
    pub(crate) fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Pipe(p) => p.as_fd().as_raw_fd(),
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
fn set_user_timeout(s: &TcpStream, t: std::time::Duration) {
    if let Err(e) = socket2::SockRef::from(s).set_tcp_user_timeout(Some(t)) {
        tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_user_timeout(_s: &TcpStream, _t: std::time::Duration) {
    tracing::debug!("TCP_USER_TIMEOUT is not available on this system: ignored");
}

impl AsFd for Stream {
    #[inline]
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
            Stream::Pipe(p) => p.register(r, t, i),
            _ => SourceFd(&self.as_fd().as_raw_fd()).register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Pipe(p) => p.reregister(r, t, i),
            _ => SourceFd(&self.as_fd().as_raw_fd()).reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Pipe(p) => p.deregister(r),
            _ => SourceFd(&self.as_fd().as_raw_fd()).deregister(r),
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
            Acceptor::Tcp(l) => l.accept().map(|(s, a)| (Stream::tcp(s), Address::Inet(a))),
            Acceptor::Unix(l) => l
                .accept()
                .map(|(s, a)| (Stream::unix(s), Address::Unix(UnixAddr::from_std(&a)))),
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

/// The `io::Result` of a raw count (see [`Stream::read_raw`]): the count, or
/// the error kept in `err` or else the one the count's negation numbers.
#[inline(always)]
pub(crate) fn raw_result(n: isize, err: Option<io::Error>) -> io::Result<usize> {
    if n < 0 {
        return Err(raw_error(n, err));
    }
    Ok(n as usize)
}

/// The error of a negative raw count `n`: the one kept in `err`, or else the
/// error numbered `-n`.
#[inline(always)]
pub(crate) fn raw_error(n: isize, err: Option<io::Error>) -> io::Error {
    err.unwrap_or_else(|| io::Error::from_raw_os_error(-n as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_enum_keeps_connections_small() {
        let stream = std::mem::size_of::<Stream>();
        let entry = std::mem::size_of::<crate::reactor::Entry>();
        eprintln!("Stream {stream} bytes, slab Entry {entry} bytes");
        // Debug builds of mio add a registry id to its pipes; measure release.
        if cfg!(not(debug_assertions)) {
            // A tag beside the descriptor, and the slab slot as before the enum.
            assert!(stream <= 8, "Stream grew to {stream} bytes");
            assert!(entry <= 96, "slab entry grew to {entry} bytes");
        }
    }
}
