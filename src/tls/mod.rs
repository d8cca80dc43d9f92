//! TLS with [`rustls`] (cargo feature `tls`): [`Core::listen_tls`],
//! [`Core::connect_tls`], [`Context::start_tls`], and the [`TlsProtocol`]
//! wrapper behind them, which runs over any transport (TCP, Unix sockets, the
//! in-memory [`Pump`](crate::testing::Pump)).
//!
//! Clients verify the server's certificate chain and host name by default,
//! against the system's roots ([`client_config`]) or a CA you give
//! ([`client_config_with_ca`]). Servers load a PEM certificate chain and key
//! ([`server_config_from_files`]). ALPN: set `alpn_protocols` on the
//! `rustls` config before wrapping it in an `Arc`; read the outcome from
//! [`Context::tls_info`]. The crypto provider is `ring`.
//!
//! A protocol's writes made before the handshake completes go out after it;
//! [`lose_connection`](Context::lose_connection) flushes, sends `close_notify`,
//! then closes. A handshake failure reaches `connection_lost` (server side,
//! `start_tls`) or `client_connection_failed` (`connect_tls`, whose protocol is
//! built only once the handshake is done) with [`DisconnectReason::Tls`](crate::DisconnectReason::Tls).
//!
//! # Example: a TLS echo server and client in one reactor
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use torsion::tls;
//! use torsion::{client_factory, factory, Context, DisconnectReason, Protocol, Reactor};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         ctx.write(data);
//!     }
//! }
//!
//! /// Sends a greeting once the handshake is done, closes after the echo.
//! struct Greeter;
//! impl Protocol for Greeter {
//!     fn connection_made(&mut self, ctx: &mut Context<'_>) {
//!         let alpn = ctx.tls_info().and_then(|i| i.alpn_protocol()).map(<[u8]>::to_vec);
//!         assert_eq!(alpn.as_deref(), Some(&b"echo/1"[..]));
//!         ctx.write(b"hello");
//!     }
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         assert_eq!(data, b"hello");
//!         ctx.lose_connection(); // close_notify, then FIN
//!     }
//!     fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
//!         assert!(reason.is_clean());
//!         ctx.stop().unwrap();
//!     }
//! }
//!
//! // A certificate for "localhost", made on the spot (rcgen); in production,
//! // `tls::server_config_from_files("chain.pem", "key.pem")`.
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
//! let mut server = tls::server_config_from_pem(
//!     cert.cert.pem().as_bytes(),
//!     cert.signing_key.serialize_pem().as_bytes(),
//! )?;
//! server.alpn_protocols = vec![b"echo/1".to_vec()];
//! // Trust exactly that certificate; `tls::client_config()` trusts the system's roots.
//! let mut client = tls::client_config_with_ca(cert.cert.pem().as_bytes())?;
//! client.alpn_protocols = vec![b"echo/1".to_vec()];
//!
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_tls("127.0.0.1:0".parse().unwrap(), Arc::new(server), factory(|_peer| Echo))?;
//! reactor.connect_tls(
//!     port.local_addr(),
//!     tls::server_name("localhost")?,
//!     Arc::new(client),
//!     client_factory(|_peer| Greeter),
//!     Duration::from_secs(5),
//! );
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod protocol;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
pub use rustls::{ClientConfig, ServerConfig};

pub use client::{TlsClientFactory, TlsServerFactory};
pub(crate) use protocol::ClientHooks;
pub use protocol::TlsProtocol;

use crate::context::Core;
use crate::error::{Error, Result};
use crate::protocol::{ClientFactory, Factory};
use crate::reactor::{Connector, ListeningPort, TcpOptions};
use crate::transport::Context;

/// How long a server waits for a client to complete the handshake before
/// closing the connection (a client that connects and says nothing must not
/// hold a connection forever).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors building TLS configurations and connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The PEM text holds no certificate.
    #[error("no certificate found in the PEM input")]
    NoCertificates,
    /// The PEM text holds no private key (PKCS#8, PKCS#1 or SEC1).
    #[error("no private key found in the PEM input")]
    NoPrivateKey,
    /// The PEM text is malformed.
    #[error("malformed PEM: {0}")]
    Pem(String),
    /// The system's certificate store held no usable root.
    #[error("no trusted root certificate found in the system store")]
    NoRoots,
    /// Not a valid DNS name or IP address for a server.
    #[error("invalid server name {0:?}")]
    InvalidServerName(String),
    /// `rustls` refused the configuration or connection.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// What a TLS handshake negotiated, from [`Context::tls_info`] or
/// [`TlsProtocol::info`].
#[derive(Clone, PartialEq, Eq)]
pub struct TlsInfo {
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
    cipher_suite: Option<rustls::CipherSuite>,
    peer_certificates: Vec<CertificateDer<'static>>,
    server_name: Option<String>,
}

impl fmt::Debug for TlsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsInfo")
            .field("alpn", &self.alpn.as_deref().map(String::from_utf8_lossy))
            .field("version", &self.version)
            .field("cipher_suite", &self.cipher_suite)
            .field("peer_certificates", &self.peer_certificates.len())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsInfo {
    fn from_connection(c: &rustls::Connection) -> TlsInfo {
        TlsInfo {
            alpn: c.alpn_protocol().map(<[u8]>::to_vec),
            version: c.protocol_version(),
            cipher_suite: c.negotiated_cipher_suite().map(|s| s.suite()),
            peer_certificates: c.peer_certificates().map(<[_]>::to_vec).unwrap_or_default(),
            server_name: match c {
                rustls::Connection::Server(s) => s.server_name().map(str::to_owned),
                rustls::Connection::Client(_) => None,
            },
        }
    }

    /// The application protocol agreed with ALPN, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// The TLS version (for example `TLSv1_3`).
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.version
    }

    /// The cipher suite.
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        self.cipher_suite
    }

    /// The peer's certificate chain, end entity first (empty for a client that
    /// sent none).
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.peer_certificates
    }

    /// The name the client asked for (SNI), on the server side.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file (a chain: end entity first).
///
/// # Errors
/// [`TlsError::Read`], [`TlsError::Pem`], [`TlsError::NoCertificates`].
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_from_pem(&read(path.as_ref())?)
}

/// Reads the first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// [`TlsError::Read`], [`TlsError::Pem`], [`TlsError::NoPrivateKey`].
pub fn load_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, TlsError> {
    key_from_pem(&read(path.as_ref())?)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Parses every certificate of PEM text.
///
/// # Errors
/// [`TlsError::Pem`], [`TlsError::NoCertificates`].
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates);
    }
    Ok(certs)
}

/// Parses the first private key of PEM text.
///
/// # Errors
/// [`TlsError::Pem`], [`TlsError::NoPrivateKey`].
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::{self, PemObject};
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(k) => Ok(k),
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoPrivateKey),
        Err(e) => Err(TlsError::Pem(e.to_string())),
    }
}

/// A server configuration from a certificate chain and its key.
///
/// # Errors
/// [`TlsError::Rustls`] if the key does not fit the certificate or is of an
/// unsupported kind.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?)
}

/// A server configuration from PEM text (certificate chain, key).
///
/// # Errors
/// As [`certs_from_pem`], [`key_from_pem`] and [`server_config`].
pub fn server_config_from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, TlsError> {
    server_config(certs_from_pem(chain_pem)?, key_from_pem(key_pem)?)
}

/// A server configuration from PEM files (certificate chain, key).
///
/// # Errors
/// As [`load_certs`], [`load_key`] and [`server_config`].
pub fn server_config_from_files(
    chain: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<ServerConfig, TlsError> {
    server_config(load_certs(chain)?, load_key(key)?)
}

/// A client configuration that trusts the system's root certificates and
/// checks the server's host name.
///
/// # Errors
/// [`TlsError::NoRoots`] if the system store holds no usable certificate.
pub fn client_config() -> Result<ClientConfig, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "while loading the system's root certificates");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::NoRoots);
    }
    client_config_with_roots(roots)
}

/// A client configuration that trusts only the CA certificates of `ca_pem`
/// (and checks the server's host name).
///
/// # Errors
/// As [`certs_from_pem`]; [`TlsError::Rustls`] if a certificate is not a
/// usable trust anchor.
pub fn client_config_with_ca(ca_pem: &[u8]) -> Result<ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs_from_pem(ca_pem)? {
        roots.add(cert)?;
    }
    client_config_with_roots(roots)
}

/// A client configuration that trusts `roots`.
///
/// # Errors
/// [`TlsError::Rustls`] if the provider cannot be used.
pub fn client_config_with_roots(roots: rustls::RootCertStore) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client configuration that accepts **any** certificate for any name: the
/// connection is encrypted but the server is not authenticated, so anyone on
/// the path can impersonate it. For tests and `--insecure` switches only.
///
/// # Errors
/// [`TlsError::Rustls`] if the provider cannot be used.
pub fn insecure_client_config() -> Result<ClientConfig, TlsError> {
    let verifier = Arc::new(client::NoVerification(provider()));
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// A [`ServerName`] from a host name or an IP address literal.
///
/// # Errors
/// [`TlsError::InvalidServerName`].
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::InvalidServerName(host.to_owned()))
}

impl Core {
    /// Listens on `addr` for TLS connections: each accepted connection runs
    /// `factory`'s protocol inside a [`TlsProtocol`] (server side), which hears
    /// `connection_made` at once (its writes go out after the handshake) and
    /// `connection_lost` with [`DisconnectReason::Tls`](crate::DisconnectReason::Tls) if the handshake fails.
    /// A client that has not completed the handshake within
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`] is disconnected.
    ///
    /// # Errors
    /// The operating system's error if the address cannot be bound.
    pub fn listen_tls<F: Factory>(
        &mut self,
        addr: SocketAddr,
        config: Arc<ServerConfig>,
        factory: F,
    ) -> Result<ListeningPort> {
        self.listen_tls_with(addr, config, factory, TcpOptions::default())
    }

    /// [`listen_tls`](Self::listen_tls) with socket options.
    ///
    /// # Errors
    /// The operating system's error if the address cannot be bound.
    pub fn listen_tls_with<F: Factory>(
        &mut self,
        addr: SocketAddr,
        config: Arc<ServerConfig>,
        factory: F,
        options: TcpOptions,
    ) -> Result<ListeningPort> {
        self.listen_tcp_with(addr, TlsServerFactory::new(config, factory), options)
    }

    /// Connects to `addr` over TLS, verifying the server's certificate for
    /// `server_name` with `config`. The factory builds its protocol only once
    /// the handshake is done; a refused connect, a failed handshake
    /// ([`DisconnectReason::Tls`](crate::DisconnectReason::Tls)), or a connect
    /// or a handshake longer than `timeout` each, reaches
    /// `client_connection_failed`. Reconnecting works as for
    /// [`connect_tcp`](Core::connect_tcp).
    pub fn connect_tls<F: ClientFactory>(
        &mut self,
        addr: SocketAddr,
        server_name: ServerName<'static>,
        config: Arc<ClientConfig>,
        factory: F,
        timeout: Duration,
    ) -> Connector {
        self.connect_tls_with(
            addr,
            server_name,
            config,
            factory,
            timeout,
            TcpOptions::default(),
        )
    }

    /// [`connect_tls`](Self::connect_tls) with socket options (keepalive,
    /// `TCP_USER_TIMEOUT`, `TCP_NODELAY`), applied to the TCP connection
    /// under TLS as [`connect_tcp_with`](Core::connect_tcp_with) applies them.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use torsion::tls;
    /// use torsion::{client_factory, Address, Context, Keepalive, Protocol, Reactor, TcpOptions};
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    /// }
    ///
    /// let mut reactor = Reactor::new()?;
    /// let options = TcpOptions::default()
    ///     .keepalive(Keepalive::new(Duration::from_secs(10)))
    ///     .user_timeout(Duration::from_secs(30));
    /// reactor.connect_tls_with(
    ///     "192.0.2.1:443".parse()?,
    ///     tls::server_name("example.org")?,
    ///     Arc::new(tls::client_config()?),
    ///     client_factory(|_peer: &Address| Quiet),
    ///     Duration::from_secs(10),
    ///     options,
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_tls_with<F: ClientFactory>(
        &mut self,
        addr: SocketAddr,
        server_name: ServerName<'static>,
        config: Arc<ClientConfig>,
        factory: F,
        timeout: Duration,
        options: TcpOptions,
    ) -> Connector {
        self.connect_tcp_with(
            addr,
            TlsClientFactory::new(factory, config, server_name, timeout),
            timeout,
            options,
        )
    }
}

/// Which side of TLS [`Context::start_tls`] takes.
///
/// ```no_run
/// use std::sync::Arc;
/// use torsion::tls::{self, StartTls};
/// use torsion::{Context, Protocol};
///
/// /// Upgrades to TLS when the server says `OK STARTTLS` (as SMTP or IMAP do).
/// struct Upgrading {
///     config: Arc<tls::ClientConfig>,
/// }
///
/// impl Protocol for Upgrading {
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         if data.starts_with(b"OK STARTTLS") {
///             let name = tls::server_name("mail.example.org").unwrap();
///             ctx.start_tls(StartTls::Client(self.config.clone(), name));
///         }
///     }
/// }
///
/// let config = Arc::new(tls::client_config()?);
/// let _protocol = Upgrading { config };
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StartTls {
    /// The client side, verifying the server's certificate for the name.
    Client(Arc<ClientConfig>, ServerName<'static>),
    /// The server side.
    Server(Arc<ServerConfig>),
}

impl Context<'_> {
    /// Starts TLS on this live connection (STARTTLS). What was written before
    /// goes out in the clear; writes made from here on, in this callback and
    /// later, are encrypted and go out once the handshake is done. The
    /// protocol keeps its state and callbacks, and can be reached as before
    /// (with [`ConnectionRef::with_protocol`](crate::ConnectionRef::with_protocol)); a failed handshake ends the connection
    /// with [`DisconnectReason::Tls`](crate::DisconnectReason::Tls).
    ///
    /// # Errors
    /// [`Error::ConnectionClosed`] if the connection is closing;
    /// [`Error::Tls`] if `rustls` cannot start a connection with the config,
    /// or `start_tls` was called already in this callback.
    ///
    /// # Examples
    ///
    /// A server side of STARTTLS: answers in the clear, then upgrades.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use torsion::tls::{ServerConfig, StartTls};
    /// use torsion::{Context, Protocol};
    ///
    /// struct Smtp {
    ///     tls: Arc<ServerConfig>,
    /// }
    /// impl Protocol for Smtp {
    ///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
    ///         if data == b"STARTTLS\r\n" && ctx.tls_info().is_none() {
    ///             ctx.write(b"220 Ready to start TLS\r\n"); // in the clear
    ///             if ctx.start_tls(StartTls::Server(self.tls.clone())).is_err() {
    ///                 ctx.abort_connection();
    ///             }
    ///         }
    ///     }
    /// }
    /// ```
    pub fn start_tls(&mut self, side: StartTls) -> Result<()> {
        if self.conn.write_refused() {
            return Err(Error::ConnectionClosed);
        }
        if self
            .conn
            .extra
            .as_ref()
            .is_some_and(|x| x.diverted.is_some())
        {
            return Err(Error::Tls("start_tls was already called".into()));
        }
        let tls = match side {
            StartTls::Client(config, name) => {
                rustls::ClientConnection::new(config, name).map(rustls::Connection::Client)
            }
            StartTls::Server(config) => {
                rustls::ServerConnection::new(config).map(rustls::Connection::Server)
            }
        }
        .map_err(|e| Error::Tls(e.to_string()))?;
        self.conn.slow_extra().diverted = Some(crate::buf::WriteBuf::new());
        let h = self.conn.handle;
        self.core.wrap_on(
            h,
            Box::new(move |inner| {
                Box::new(
                    TlsProtocol::live(tls, inner).with_handshake_timeout(DEFAULT_HANDSHAKE_TIMEOUT),
                )
            }),
        );
        Ok(())
    }

    /// What the TLS layer under this protocol negotiated, once its handshake
    /// is done (`None` on a plain connection).
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.host.tls()?.downcast_ref()
    }
}
