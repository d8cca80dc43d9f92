//! Endpoint strings (Twisted's `serverFromString` / `clientFromString`): where
//! to listen or connect, written in configuration files and command lines.
//!
//! Server strings:
//!
//! | string | meaning |
//! | --- | --- |
//! | `tcp:8000` | TCP port 8000 on every IPv4 interface |
//! | `tcp:8000:interface=127.0.0.1:backlog=128` | on one interface, with a backlog |
//! | `tcp6:8000` / `tcp6:8000:interface=\:\:1` | IPv6 (`interface=[::1]` works too) |
//! | `unix:/run/app.sock:mode=660:lockfile=1` | a Unix socket, its file mode (octal), removing a stale socket file |
//! | `tls:8443:cert=chain.pem:key=key.pem` | TLS over TCP (`interface`, IPv4 or IPv6, `backlog`, `alpn=h2,http/1.1` as for TCP); `certkey=both.pem` is the chain and the key in one file |
//!
//! Client strings:
//!
//! | string | meaning |
//! | --- | --- |
//! | `tcp:host=example.org:port=80:timeout=5` | TCP; `tcp:example.org:80` works too |
//! | `unix:path=/run/app.sock` | a Unix socket (`unix:/run/app.sock`) |
//! | `tls:host=example.org:port=443` | TLS, verified against the system's roots; `ca=ca.pem` trusts only that CA, `sni=name` checks another name, `alpn=h2` |
//!
//! A client host name is resolved on the reactor's thread pool and connected
//! to with Happy Eyeballs ([`Core::connect_happy_eyeballs`]). A `\` makes the
//! next character literal: `\:`, `\\`, `\=`, `\[`, `\]` in a value. Unknown
//! types, unknown parameters, a value given twice (`unix:/a:/b`,
//! `tcp:example.org:80:host=other`, `cert` and `certkey`), empty values and
//! bad values are [`EndpointError`]s, never silently ignored. A timeout is a
//! decimal number of seconds from 0.001 to 86400 (`timeout=0.25`), exact to
//! the nanosecond. What an endpoint prints (`to_string`) parses back to the
//! same endpoint.
//!
//! ```
//! use torsion::endpoints::{ClientEndpoint, ServerEndpoint};
//!
//! let server: ServerEndpoint = "tcp:8000:interface=127.0.0.1".parse()?;
//! assert_eq!(server.to_string(), "tcp:8000:interface=127.0.0.1");
//! let client: ClientEndpoint = "tcp:host=example.org:port=80:timeout=5".parse()?;
//! assert_eq!(client.to_string(), "tcp:host=example.org:port=80:timeout=5");
//! let err = "tcp:host=example.org".parse::<ClientEndpoint>().unwrap_err();
//! assert_eq!(err.to_string(), "tcp endpoint: missing parameter \"port\"");
//! # Ok::<(), torsion::endpoints::EndpointError>(())
//! ```

mod client;
pub(crate) mod eyeballs;
mod parse;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use client::ClientEndpoint;
pub use eyeballs::{interleave, CONNECTION_ATTEMPT_DELAY};

use crate::address::Address;
use crate::context::Core;
use crate::protocol::Factory;
use crate::reactor::{ListeningPort, TcpOptions, UnixListeningPort, UnixOptions};
pub(crate) use parse::esc;
use parse::{host, Parts};

/// Connect timeout of a client endpoint without `timeout=` (Twisted's).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an endpoint string was refused, or an endpoint could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The string is empty.
    #[error("empty endpoint string")]
    Empty,
    /// The string does not follow the syntax.
    #[error("malformed endpoint {string:?}: {reason}")]
    Syntax {
        /// The string.
        string: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The type before the first `:` is not one we know.
    #[error("unknown endpoint type {0:?} (expected tcp, tcp6, unix or tls)")]
    UnknownType(String),
    /// A required parameter is missing.
    #[error("{kind} endpoint: missing parameter {name:?}")]
    Missing {
        /// The endpoint type.
        kind: String,
        /// The parameter.
        name: &'static str,
    },
    /// A parameter was given twice.
    #[error("{kind} endpoint: parameter {name:?} given twice")]
    Duplicate {
        /// The endpoint type.
        kind: String,
        /// The parameter.
        name: String,
    },
    /// A parameter or argument this endpoint type does not take.
    #[error("{kind} endpoint: unexpected {what}")]
    Unexpected {
        /// The endpoint type.
        kind: String,
        /// What it was.
        what: String,
    },
    /// A parameter's value is not valid.
    #[error("{kind} endpoint: invalid {name} {value:?}: {reason}")]
    Invalid {
        /// The endpoint type.
        kind: String,
        /// The parameter.
        name: String,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The endpoint needs a feature this build lacks (`tls`), or a transport
    /// this platform or version does not offer.
    #[error("{0} endpoints are not available in this build")]
    Unsupported(&'static str),
    /// Loading the TLS certificate, key or roots failed.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Listening failed (the address is in use...).
    #[error(transparent)]
    Listen(#[from] crate::error::Error),
}

impl EndpointError {
    fn syntax(s: &str, reason: &'static str) -> Self {
        EndpointError::Syntax {
            string: s.to_owned(),
            reason,
        }
    }
}

/// Where to listen: a parsed server endpoint string (see the [module docs](self)).
///
/// ```
/// use torsion::endpoints::ServerEndpoint;
///
/// // Twisted's endpoint strings, checked when parsed; they print back the same.
/// let tcp: ServerEndpoint = "tcp:8000:interface=127.0.0.1".parse()?;
/// let unix: ServerEndpoint = "unix:/tmp/app.sock".parse()?;
/// assert_eq!(tcp.to_string().parse::<ServerEndpoint>()?, tcp);
/// assert!("tcp:port=not-a-port".parse::<ServerEndpoint>().is_err());
/// // Then: `endpoint.listen(&mut reactor, factory)`.
/// # let _ = unix;
/// # Ok::<(), torsion::endpoints::EndpointError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEndpoint {
    /// TCP (`tcp:` or `tcp6:`).
    Tcp {
        /// Interface and port.
        addr: SocketAddr,
        /// Listen backlog, if given.
        backlog: Option<i32>,
    },
    /// A Unix stream socket.
    Unix {
        /// The socket file.
        path: PathBuf,
        /// File mode, if given (octal in the string).
        mode: Option<u32>,
        /// Remove a stale socket file first (`lockfile=1`).
        remove_stale: bool,
        /// Listen backlog, if given.
        backlog: Option<i32>,
    },
    /// TLS over TCP.
    Tls {
        /// Interface and port.
        addr: SocketAddr,
        /// Listen backlog, if given.
        backlog: Option<i32>,
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
        /// ALPN protocols offered, in order of preference.
        alpn: Vec<Vec<u8>>,
    },
}

/// `interface=`: an IP address of `default`'s family (`any_family`: either).
fn interface(p: &mut Parts, default: IpAddr, any_family: bool) -> Result<IpAddr, EndpointError> {
    let Some(v) = p.get("interface", Some(1))? else {
        return Ok(default);
    };
    let ip: IpAddr = host(&v)
        .parse()
        .map_err(|_| p.invalid("interface", &v, "not an IP address"))?;
    if !any_family && ip.is_ipv6() != default.is_ipv6() {
        let want = if default.is_ipv6() {
            "an IPv6"
        } else {
            "an IPv4"
        };
        return Err(p.invalid(
            "interface",
            &v,
            format!("{} endpoints take {want} address", p.kind),
        ));
    }
    Ok(ip)
}

impl FromStr for ServerEndpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, EndpointError> {
        let mut p = Parts::parse(s)?;
        let ep = match p.kind.as_str() {
            "tcp" | "tcp6" | "tls" | "ssl" => {
                let any: IpAddr = if p.kind == "tcp6" {
                    Ipv6Addr::UNSPECIFIED.into()
                } else {
                    Ipv4Addr::UNSPECIFIED.into()
                };
                let tls = p.kind == "tls" || p.kind == "ssl";
                let port = p.port(Some(0))?;
                let addr = SocketAddr::new(interface(&mut p, any, tls)?, port);
                let backlog = p.backlog()?;
                if tls {
                    // Twisted's names: `certKey` (the chain, and the key
                    // too unless `privateKey` is given).
                    let certkey = p.has("certkey");
                    let cert = p.get_any(&["cert", "certkey"], None)?;
                    let key = p.get_any(&["key", "privatekey"], None)?;
                    let (cert, key) = match (cert, key) {
                        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
                        (Some(c), None) if certkey => (PathBuf::from(&c), PathBuf::from(c)),
                        (None, _) => {
                            return Err(EndpointError::Missing {
                                kind: p.kind,
                                name: "certkey",
                            })
                        }
                        (Some(_), None) => {
                            return Err(EndpointError::Missing {
                                kind: p.kind,
                                name: "key",
                            })
                        }
                    };
                    let alpn = p.alpn()?;
                    ServerEndpoint::Tls {
                        addr,
                        backlog,
                        cert,
                        key,
                        alpn,
                    }
                } else {
                    ServerEndpoint::Tcp { addr, backlog }
                }
            }
            "unix" => {
                let path = match p.get_any(&["address", "path"], Some(0))? {
                    Some(a) => PathBuf::from(a),
                    None => {
                        return Err(EndpointError::Missing {
                            kind: p.kind,
                            name: "address",
                        })
                    }
                };
                let mode = match p.get("mode", None)? {
                    None => None,
                    Some(m) => Some(
                        u32::from_str_radix(m.trim(), 8)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| p.invalid("mode", &m, "not an octal file mode"))?,
                    ),
                };
                let remove_stale = p.flag("lockfile")?;
                let backlog = p.backlog()?;
                ServerEndpoint::Unix {
                    path,
                    mode,
                    remove_stale,
                    backlog,
                }
            }
            _ => return Err(EndpointError::UnknownType(p.kind)),
        };
        p.finish()?;
        Ok(ep)
    }
}

fn alpn_str(alpn: &[Vec<u8>]) -> String {
    alpn.iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for ServerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerEndpoint::Tcp { addr, backlog } | ServerEndpoint::Tls { addr, backlog, .. } => {
                let kind = match (self, addr.is_ipv6()) {
                    (ServerEndpoint::Tls { .. }, _) => "tls",
                    (_, true) => "tcp6",
                    _ => "tcp",
                };
                write!(
                    f,
                    "{kind}:{}:interface={}",
                    addr.port(),
                    esc(&addr.ip().to_string())
                )?;
                if let Some(b) = backlog {
                    write!(f, ":backlog={b}")?;
                }
                if let ServerEndpoint::Tls {
                    cert, key, alpn, ..
                } = self
                {
                    write!(
                        f,
                        ":cert={}:key={}",
                        esc(&cert.to_string_lossy()),
                        esc(&key.to_string_lossy())
                    )?;
                    if !alpn.is_empty() {
                        write!(f, ":alpn={}", esc(&alpn_str(alpn)))?;
                    }
                }
                Ok(())
            }
            ServerEndpoint::Unix {
                path,
                mode,
                remove_stale,
                backlog,
            } => {
                write!(f, "unix:{}", esc(&path.to_string_lossy()))?;
                if let Some(m) = mode {
                    write!(f, ":mode={m:o}")?;
                }
                if *remove_stale {
                    write!(f, ":lockfile=1")?;
                }
                if let Some(b) = backlog {
                    write!(f, ":backlog={b}")?;
                }
                Ok(())
            }
        }
    }
}

/// A listener started from an endpoint: TCP (TLS included) or Unix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Port {
    /// A TCP listener (plain or TLS).
    Tcp(ListeningPort),
    /// A Unix socket listener.
    Unix(UnixListeningPort),
}

impl Port {
    /// The bound address (with the real port when 0 was asked for).
    pub fn address(&self) -> Address {
        match self {
            Port::Tcp(p) => Address::Inet(p.local_addr()),
            Port::Unix(p) => p.address(),
        }
    }

    /// The bound IP address, for a TCP listener.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Port::Tcp(p) => Some(p.local_addr()),
            Port::Unix(_) => None,
        }
    }

    /// Stops accepting (see [`ListeningPort::stop_listening`]).
    pub fn stop_listening(&self, core: &mut Core) {
        match self {
            Port::Tcp(p) => p.stop_listening(core),
            Port::Unix(p) => p.stop_listening(core),
        }
    }
}

impl From<ListeningPort> for Port {
    fn from(p: ListeningPort) -> Port {
        Port::Tcp(p)
    }
}

impl From<UnixListeningPort> for Port {
    fn from(p: UnixListeningPort) -> Port {
        Port::Unix(p)
    }
}

impl ServerEndpoint {
    /// Starts listening with `factory` (a TLS endpoint loads its certificate
    /// and key now).
    ///
    /// # Errors
    /// [`EndpointError::Listen`] if the address cannot be bound;
    /// `EndpointError::Tls` if the certificate or key cannot be loaded;
    /// [`EndpointError::Unsupported`] for a TLS endpoint in a build without
    /// the `tls` feature.
    pub fn listen<F: Factory>(&self, core: &mut Core, factory: F) -> Result<Port, EndpointError> {
        match self {
            ServerEndpoint::Tcp { addr, backlog } => Ok(core
                .listen_tcp_with(*addr, factory, options(*backlog))?
                .into()),
            #[cfg(feature = "tls")]
            ServerEndpoint::Tls {
                addr,
                backlog,
                cert,
                key,
                alpn,
            } => {
                let mut config = crate::tls::server_config_from_files(cert, key)?;
                config.alpn_protocols = alpn.clone();
                let port = core.listen_tls_with(
                    *addr,
                    std::sync::Arc::new(config),
                    factory,
                    options(*backlog),
                )?;
                Ok(port.into())
            }
            #[cfg(not(feature = "tls"))]
            ServerEndpoint::Tls { .. } => {
                let _ = factory;
                Err(EndpointError::Unsupported("tls"))
            }
            ServerEndpoint::Unix {
                path,
                mode,
                remove_stale,
                backlog,
            } => {
                let mut o = UnixOptions::default().remove_stale(*remove_stale);
                if let Some(m) = mode {
                    o = o.mode(*m);
                }
                if let Some(b) = backlog {
                    o = o.backlog(*b);
                }
                Ok(core.listen_unix_with(path, factory, o)?.into())
            }
        }
    }
}

fn options(backlog: Option<i32>) -> TcpOptions {
    let o = TcpOptions::default();
    match backlog {
        Some(b) => o.backlog(b),
        None => o,
    }
}
