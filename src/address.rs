//! Addresses of every transport: [`Address`] is an IP socket address or a
//! Unix-domain [`UnixAddr`] (Twisted's `IPv4Address`, `IPv6Address` and
//! `UNIXAddress` behind one `IAddress`).
//!
//! Factories see the peer's [`Address`]
//! ([`Factory::build_protocol`](crate::Factory::build_protocol)), and so does
//! [`Context::peer`](crate::Context::peer); TCP-only code may use
//! [`Context::peer_addr`](crate::Context::peer_addr), a [`SocketAddr`].
//!
//! ```
//! use std::net::SocketAddr;
//! use torsion::Address;
//!
//! let inet = Address::from("127.0.0.1:8000".parse::<SocketAddr>().unwrap());
//! assert_eq!(inet.to_string(), "127.0.0.1:8000");
//! let unix = Address::unix("/run/app.sock");
//! assert_eq!(unix.to_string(), "unix:/run/app.sock");
//! assert_eq!(unix.inet(), None);
//! ```

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What [`Context::peer_addr`](crate::Context::peer_addr) returns for a peer
/// without an IP address (a Unix-domain peer): `0.0.0.0:0`.
/// [`Context::peer`](crate::Context::peer) tells the real address.
pub const NO_IP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// The address of one end of a connection or of a datagram's sender.
///
/// Small (the size of a [`SocketAddr`]) and cheap to clone: a Unix path is
/// shared, not copied.
///
/// ```
/// use std::net::SocketAddr;
/// use torsion::Address;
///
/// let tcp: Address = "127.0.0.1:8000".parse::<SocketAddr>().unwrap().into();
/// let unix = Address::unix("/tmp/app.sock");
/// assert_eq!(tcp.inet().map(|a| a.port()), Some(8000));
/// assert_eq!(
///     unix.as_unix().and_then(|u| u.path()),
///     Some(std::path::Path::new("/tmp/app.sock"))
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// An IPv4 or IPv6 socket address (TCP, UDP, TLS over TCP).
    Inet(SocketAddr),
    /// A Unix-domain socket address.
    Unix(UnixAddr),
}

/// A Unix-domain socket address: a file-system path, a Linux abstract name, or
/// unnamed (a client socket that was never bound, the usual peer of a server).
///
/// ```
/// use torsion::{Address, UnixAddr};
///
/// // Usually seen, not made: `ctx.peer()` of a Unix-socket connection. A
/// // client that never bound its socket is unnamed.
/// let addr = Address::unix("/run/app.sock");
/// let unix: &UnixAddr = addr.as_unix().unwrap();
/// assert!(!unix.is_unnamed());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UnixAddr {
    /// No name: the socket was not bound.
    Unnamed,
    /// A path in the file system.
    Path(Arc<Path>),
    /// A name in Linux's abstract namespace (no file; shown with a leading `@`).
    Abstract(Arc<[u8]>),
}

impl Address {
    /// The address of the Unix socket at `path`.
    pub fn unix(path: impl AsRef<Path>) -> Address {
        Address::Unix(UnixAddr::Path(Arc::from(path.as_ref())))
    }

    /// The IP socket address, if this is one.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(a) => Some(*a),
            Address::Unix(_) => None,
        }
    }

    /// The Unix-domain address, if this is one.
    pub fn as_unix(&self) -> Option<&UnixAddr> {
        match self {
            Address::Unix(u) => Some(u),
            Address::Inet(_) => None,
        }
    }

    /// The IP socket address, or [`NO_IP`] for a Unix-domain address: what the
    /// `SocketAddr`-based TCP API sees.
    pub fn inet_or_unspecified(&self) -> SocketAddr {
        self.inet().unwrap_or(NO_IP)
    }
}

impl UnixAddr {
    /// The path, for a path address.
    pub fn path(&self) -> Option<&Path> {
        match self {
            UnixAddr::Path(p) => Some(p),
            _ => None,
        }
    }

    /// Whether the socket has no name.
    pub fn is_unnamed(&self) -> bool {
        matches!(self, UnixAddr::Unnamed)
    }

    /// Converts the standard library's Unix socket address.
    pub fn from_std(addr: &std::os::unix::net::SocketAddr) -> UnixAddr {
        if let Some(p) = addr.as_pathname() {
            return UnixAddr::Path(Arc::from(p));
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            if let Some(name) = addr.as_abstract_name() {
                return UnixAddr::Abstract(Arc::from(name));
            }
        }
        UnixAddr::Unnamed
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Inet(a)
    }
}

impl From<&SocketAddr> for Address {
    fn from(a: &SocketAddr) -> Address {
        Address::Inet(*a)
    }
}

impl From<&Address> for Address {
    fn from(a: &Address) -> Address {
        a.clone()
    }
}

impl From<UnixAddr> for Address {
    fn from(a: UnixAddr) -> Address {
        Address::Unix(a)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Address {
        Address::unix(p)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Address {
        Address::unix(p)
    }
}

impl From<&PathBuf> for Address {
    fn from(p: &PathBuf) -> Address {
        Address::unix(p)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(a) => a.fmt(f),
            Address::Unix(u) => write!(f, "unix:{u}"),
        }
    }
}

impl fmt::Display for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddr::Unnamed => f.write_str("(unnamed)"),
            UnixAddr::Path(p) => p.display().fmt(f),
            UnixAddr::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// No IP address on a Unix socket.
pub(crate) fn no_ip() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "a Unix socket has no IP address (use Context::host)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_displayable() {
        assert!(std::mem::size_of::<Address>() <= std::mem::size_of::<SocketAddr>());
        assert_eq!(
            Address::Unix(UnixAddr::Unnamed).to_string(),
            "unix:(unnamed)"
        );
        assert_eq!(
            Address::Unix(UnixAddr::Abstract(Arc::from(&b"x"[..]))).to_string(),
            "unix:@x"
        );
        assert_eq!(Address::unix("/a").inet_or_unspecified(), NO_IP);
        let a: SocketAddr = "[::1]:5".parse().unwrap();
        assert_eq!(Address::from(a).inet(), Some(a));
        assert_eq!(
            Address::unix("/a").as_unix().and_then(|u| u.path()),
            Some(Path::new("/a"))
        );
    }

    #[test]
    fn converts_std_unix_addresses() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(UnixAddr::from_std(&a.local_addr().unwrap()).is_unnamed());
    }
}
