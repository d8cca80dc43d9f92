//! Unix-domain stream sockets: `listen_unix` and `connect_unix`. Connections
//! run through the same code as TCP (`conn.rs`): the same lifecycle, gathered
//! writes, back-pressure, lingering graceful close and abort.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mio::net::UnixStream;

use super::tcp::{ConnectParts, Connector, ListenParts, TcpOptions};
use crate::address::{Address, UnixAddr};
use crate::context::{Core, Op};
use crate::core::ops::{BoundListener, ConnectRequest, ListenRequest};
use crate::error::Result;
use crate::protocol::{ClientFactory, Factory};

/// Options for Unix-domain listeners (stream and datagram).
///
/// ```
/// use torsion::UnixOptions;
///
/// // rw for the owner and the group; replace a socket file left by a crash.
/// let options = UnixOptions::default().mode(0o660).remove_stale(true);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnixOptions {
    /// Permission bits for the socket file (`chmod`), set before the socket
    /// accepts anything. `None` leaves what the umask gives.
    pub mode: Option<u32>,
    /// When the path exists: remove it and bind anyway if it is a socket that
    /// nobody listens on (a file left by a process that died). A live socket, or
    /// anything that is not a socket, is never removed: binding then fails with
    /// `AddrInUse`. Default off: binding to an existing path fails.
    pub remove_stale: bool,
    /// Listen backlog (stream listeners). Default 1024.
    pub backlog: i32,
}

impl Default for UnixOptions {
    fn default() -> Self {
        UnixOptions {
            mode: None,
            remove_stale: false,
            backlog: 1024,
        }
    }
}

impl UnixOptions {
    /// Options with the socket file's permission bits set to `mode` (for
    /// example `0o660`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Options that remove a stale socket file before binding (see
    /// [`remove_stale`](Self::remove_stale)).
    pub fn remove_stale(mut self, on: bool) -> Self {
        self.remove_stale = on;
        self
    }

    /// Options with the given listen backlog.
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }
}

/// A listening Unix-domain socket (Twisted's `IListeningPort` for `listenUNIX`).
///
/// Its socket file is removed when it stops listening (or the reactor is
/// dropped), if the file is still the one it bound.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnixListeningPort {
    id: u64,
    path: Arc<Path>,
}

impl UnixListeningPort {
    /// The socket file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bound address.
    pub fn address(&self) -> Address {
        Address::Unix(UnixAddr::Path(self.path.clone()))
    }

    /// Stops accepting: the socket is closed, its file removed, and the factory
    /// hears `stop_factory` once the current callback returns. Open connections
    /// are not touched.
    pub fn stop_listening(&self, core: &mut Core) {
        core.ops.push(Op::StopListening(self.id));
    }
}

/// The socket file a listener bound: removed when dropped (the listener
/// stops, or its listen request is dropped unprocessed), unless something else
/// has replaced it since.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn of(path: &Path) -> Option<SocketFile> {
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(SocketFile {
            path: path.to_owned(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "could not remove the socket file");
                }
            }
            _ => {
                tracing::debug!(path = %self.path.display(), "socket file replaced or gone; left alone")
            }
        }
    }
}

/// Binds a Unix socket of `ty` at `path` with `options` (stale file removal,
/// mode), not yet listening. Returns the socket and its file.
pub(crate) fn bind(
    path: &Path,
    ty: socket2::Type,
    options: &UnixOptions,
) -> io::Result<(socket2::Socket, Option<SocketFile>)> {
    use socket2::{Domain, SockAddr, Socket};
    let addr = SockAddr::unix(path)?;
    if options.remove_stale {
        remove_if_stale(path, ty)?;
    }
    let socket = Socket::new(Domain::UNIX, ty, None)?;
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    socket.bind(&addr)?;
    let file = SocketFile::of(path);
    if let Some(mode) = options.mode {
        // Before `listen`: until then a connect is refused, so nobody gets in
        // under the umask's bits.
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            drop(file);
            return Err(e);
        }
    }
    Ok((socket, file))
}

/// Removes `path` if it is a socket nobody is bound to and listening on.
fn remove_if_stale(path: &Path, ty: socket2::Type) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    let probe = socket2::Socket::new(socket2::Domain::UNIX, ty, None)?;
    match probe.connect(&socket2::SockAddr::unix(path)?) {
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by a live socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale socket file");
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e),
    }
}

/// Starts a non-blocking connect to a Unix address.
pub(crate) fn connect(addr: &UnixAddr) -> io::Result<UnixStream> {
    let res = match addr {
        UnixAddr::Path(p) => UnixStream::connect(p),
        UnixAddr::Abstract(name) => abstract_addr(name).and_then(|a| UnixStream::connect_addr(&a)),
        UnixAddr::Unnamed => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot connect to an unnamed Unix socket",
        )),
    };
    match res {
        // A Unix connect does not go on in the background: EAGAIN means the
        // listener's backlog is full and nothing is pending.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "the Unix listener's backlog is full",
        )),
        other => other,
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract Unix socket names exist only on Linux",
    ))
}

impl Core {
    /// Listens on the Unix socket `path` with default [`UnixOptions`]; see
    /// [`listen_unix_with`](Self::listen_unix_with).
    ///
    /// # Errors
    /// As [`listen_unix_with`](Self::listen_unix_with).
    pub fn listen_unix<F: Factory>(
        &mut self,
        path: impl AsRef<Path>,
        factory: F,
    ) -> Result<UnixListeningPort> {
        self.listen_unix_with(path, factory, UnixOptions::default())
    }

    /// Binds the Unix socket `path` now (so errors are known at once) and starts
    /// accepting when the loop next runs (Twisted's `listenUNIX`). Connections
    /// behave as TCP ones: same callbacks, back-pressure and close semantics.
    /// The factory's [`build_protocol`](Factory::build_protocol) sees
    /// the peer's [`Address::Unix`] (usually unnamed).
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use torsion::{factory, Context, Factory, Protocol, Reactor, UnixOptions};
    ///
    /// struct Echo;
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
    ///         ctx.write(data);
    ///     }
    /// }
    ///
    /// let dir = std::env::temp_dir().join(format!("torsion-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let mut reactor = Reactor::new()?;
    /// let options = UnixOptions::default().mode(0o600).remove_stale(true);
    /// let port = reactor.listen_unix_with(dir.join("echo.sock"), factory(|_peer| Echo), options)?;
    /// assert!(port.path().exists());
    /// drop(reactor); // stops listening: the socket file is removed
    /// assert!(!port.path().exists());
    /// # std::fs::remove_dir(&dir)?;
    /// # Ok::<(), torsion::Error>(())
    /// ```
    ///
    /// # Errors
    /// The operating system's error if the socket cannot be made or bound
    /// (`AddrInUse` when the path exists and is not a stale socket that
    /// [`UnixOptions::remove_stale`] may remove; `InvalidInput` for a path too
    /// long for a socket address).
    pub fn listen_unix_with<F: Factory>(
        &mut self,
        path: impl AsRef<Path>,
        factory: F,
        options: UnixOptions,
    ) -> Result<UnixListeningPort> {
        let path = path.as_ref();
        let id = self.next_id();
        let mut parts = ListenParts {
            factory: Box::new(factory),
            options: TcpOptions::default(),
            socket_file: None,
        };
        let socket = if self.is_simulated() {
            None // the fake clock binds nothing
        } else {
            let (socket, file) = bind(path, socket2::Type::STREAM, &options)?;
            if let Err(e) = socket.listen(options.backlog) {
                drop(file); // removes it
                return Err(e.into());
            }
            parts.socket_file = file.map(Box::new);
            Some(BoundListener::Unix(socket.into()))
        };
        self.ops.push(Op::Listen(ListenRequest {
            id,
            addr: None,
            socket,
            rest: Box::new(parts),
        }));
        Ok(UnixListeningPort {
            id,
            path: Arc::from(path),
        })
    }

    /// Connects to the Unix socket `path` (Twisted's `connectUNIX`). The factory
    /// hears `started_connecting`, then `client_connection_failed` (refused when
    /// nobody listens, the file missing, the listener's backlog full, no answer
    /// within `timeout`) or builds the protocol; the returned [`Connector`]
    /// works as for TCP, reconnection included.
    pub fn connect_unix<F: ClientFactory>(
        &mut self,
        path: impl AsRef<Path>,
        factory: F,
        timeout: Duration,
    ) -> Connector {
        self.connect_address(Address::unix(path), factory, timeout)
    }

    /// Connects to `addr`, IP or Unix-domain: [`connect_tcp`](Self::connect_tcp)
    /// or [`connect_unix`](Self::connect_unix) by the address's kind.
    pub fn connect_address<F: ClientFactory>(
        &mut self,
        addr: Address,
        factory: F,
        timeout: Duration,
    ) -> Connector {
        let id = self.next_id();
        self.ops.push(Op::Connect(ConnectRequest {
            id,
            addr,
            timeout,
            rest: Box::new(ConnectParts {
                factory: Box::new(factory),
                options: TcpOptions::default(),
            }),
        }));
        Connector::from_id(id)
    }
}
