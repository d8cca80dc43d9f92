//! Client endpoints: parsing, printing, and connecting (resolution on the
//! thread pool, then Happy Eyeballs).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::parse::{seconds_str, Parts};
use super::{alpn_str, esc, EndpointError, DEFAULT_CONNECT_TIMEOUT};
use crate::context::{ConnectionHandle, Core};
use crate::defer::Deferred;
use crate::error::DisconnectReason;
use crate::protocol::Protocol;

/// Where to connect: a parsed client endpoint string (see the [module docs](crate::endpoints)).
///
/// ```
/// use torsion::endpoints::ClientEndpoint;
///
/// let ep: ClientEndpoint = "tcp:host=example.org:port=80:timeout=5".parse()?;
/// assert_eq!(ep.to_string().parse::<ClientEndpoint>()?, ep);
/// // Then: `ep.connect(&mut reactor, protocol)` gives a Deferred of the
/// // connection (host names are resolved and raced, Happy Eyeballs).
/// # Ok::<(), torsion::endpoints::EndpointError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEndpoint {
    /// TCP to a host name or address.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
        /// Connect timeout (per attempt).
        timeout: Duration,
    },
    /// A Unix stream socket.
    Unix {
        /// The socket file.
        path: PathBuf,
        /// Connect timeout.
        timeout: Duration,
    },
    /// TLS over TCP.
    Tls {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
        /// Connect timeout (per attempt), and the handshake's.
        timeout: Duration,
        /// Trust only the CA certificates of this PEM file (default: the
        /// system's roots).
        ca: Option<PathBuf>,
        /// The name to check the certificate against (default: `host`).
        sni: Option<String>,
        /// ALPN protocols offered, in order of preference.
        alpn: Vec<Vec<u8>>,
    },
}

impl FromStr for ClientEndpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, EndpointError> {
        let mut p = Parts::parse(s)?;
        let ep = match p.kind.as_str() {
            "tcp" | "tcp6" | "tls" | "ssl" => {
                let h = p.host(Some(0))?;
                let port = p.port(Some(1))?;
                let timeout = p.timeout(DEFAULT_CONNECT_TIMEOUT)?;
                if p.kind == "tls" || p.kind == "ssl" {
                    let ca = p.get("ca", None)?.map(PathBuf::from);
                    let sni = p.get("sni", None)?;
                    let alpn = p.alpn()?;
                    ClientEndpoint::Tls {
                        host: h,
                        port,
                        timeout,
                        ca,
                        sni,
                        alpn,
                    }
                } else {
                    ClientEndpoint::Tcp {
                        host: h,
                        port,
                        timeout,
                    }
                }
            }
            "unix" => {
                let path = match p.get_any(&["path", "address"], Some(0))? {
                    Some(a) => PathBuf::from(a),
                    None => {
                        return Err(EndpointError::Missing {
                            kind: p.kind,
                            name: "address",
                        })
                    }
                };
                let timeout = p.timeout(DEFAULT_CONNECT_TIMEOUT)?;
                ClientEndpoint::Unix { path, timeout }
            }
            _ => return Err(EndpointError::UnknownType(p.kind)),
        };
        p.finish()?;
        Ok(ep)
    }
}

/// A host as the parser reads it back: an IPv6 address in brackets,
/// anything else escaped.
fn host_str(h: &str) -> String {
    if h.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{h}]")
    } else {
        esc(h)
    }
}

fn secs(d: &Duration) -> String {
    seconds_str(*d)
}

impl fmt::Display for ClientEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientEndpoint::Tcp {
                host,
                port,
                timeout,
            } => write!(
                f,
                "tcp:host={}:port={port}:timeout={}",
                host_str(host),
                secs(timeout)
            ),
            ClientEndpoint::Unix { path, timeout } => {
                write!(
                    f,
                    "unix:path={}:timeout={}",
                    esc(&path.to_string_lossy()),
                    secs(timeout)
                )
            }
            ClientEndpoint::Tls {
                host,
                port,
                timeout,
                ca,
                sni,
                alpn,
            } => {
                write!(
                    f,
                    "tls:host={}:port={port}:timeout={}",
                    host_str(host),
                    secs(timeout)
                )?;
                if let Some(ca) = ca {
                    write!(f, ":ca={}", esc(&ca.to_string_lossy()))?;
                }
                if let Some(sni) = sni {
                    write!(f, ":sni={}", esc(sni))?;
                }
                if !alpn.is_empty() {
                    write!(f, ":alpn={}", esc(&alpn_str(alpn)))?;
                }
                Ok(())
            }
        }
    }
}

impl ClientEndpoint {
    /// Connects `protocol`: resolves a host name on the thread pool, then
    /// connects with Happy Eyeballs ([`Core::connect_happy_eyeballs`]); over
    /// TLS the protocol is built and the Deferred fires only once the
    /// handshake is done. The Deferred fires with the connection's handle
    /// after `connection_made`.
    ///
    /// # Errors
    /// [`EndpointError`] at once if the TLS configuration cannot be built (CA
    /// file, server name) or the endpoint is not available in this build. The
    /// Deferred fails with the reason the connection failed (a name that does
    /// not resolve is an [`DisconnectReason::Io`] of kind `NotFound` or the
    /// resolver's own); cancelling it stops every attempt.
    #[track_caller]
    pub fn connect<P: Protocol>(
        &self,
        core: &mut Core,
        protocol: P,
    ) -> Result<Deferred<ConnectionHandle, DisconnectReason>, EndpointError> {
        match self {
            ClientEndpoint::Tcp {
                host,
                port,
                timeout,
            } => {
                let (port, timeout) = (*port, *timeout);
                Ok(resolve_then(core, host, move |core, addrs| {
                    core.connect_happy_eyeballs(&with_port(&addrs, port), protocol, timeout)
                }))
            }
            #[cfg(feature = "tls")]
            ClientEndpoint::Tls {
                host,
                port,
                timeout,
                ca,
                sni,
                alpn,
            } => {
                let name = crate::tls::server_name(sni.as_deref().unwrap_or(host))?;
                let mut config = match ca {
                    Some(ca) => {
                        let pem =
                            std::fs::read(ca).map_err(|source| crate::tls::TlsError::Read {
                                path: ca.display().to_string(),
                                source,
                            })?;
                        crate::tls::client_config_with_ca(&pem)?
                    }
                    None => crate::tls::client_config()?,
                };
                config.alpn_protocols = alpn.clone();
                let config = std::sync::Arc::new(config);
                let (port, timeout) = (*port, *timeout);
                Ok(resolve_then(core, host, move |core, addrs| {
                    super::eyeballs::connect_tls(
                        core,
                        &with_port(&addrs, port),
                        name,
                        config,
                        protocol,
                        timeout,
                    )
                }))
            }
            #[cfg(not(feature = "tls"))]
            ClientEndpoint::Tls { .. } => {
                let _ = protocol;
                Err(EndpointError::Unsupported("tls"))
            }
            ClientEndpoint::Unix { path, timeout } => Ok(core.connect_protocol_address(
                crate::address::Address::unix(path),
                protocol,
                *timeout,
            )),
        }
    }
}

fn with_port(ips: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
}

/// Resolves `host` (at once for an address literal, else on the thread
/// pool), then runs `then` on the reactor thread with the addresses; the
/// returned Deferred follows the one `then` returns. Cancelling it while
/// resolving stops there; afterwards it cancels `then`'s Deferred.
#[track_caller]
fn resolve_then(
    core: &mut Core,
    host: &str,
    then: impl FnOnce(&mut Core, Vec<IpAddr>) -> Deferred<ConnectionHandle, DisconnectReason> + 'static,
) -> Deferred<ConnectionHandle, DisconnectReason> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return then(core, vec![ip]);
    }
    use std::cell::RefCell;
    use std::rc::Rc;
    let inner: Rc<RefCell<Option<Deferred<(), DisconnectReason>>>> = Rc::default();
    let cancelled = Rc::new(std::cell::Cell::new(false));
    let (d, trigger) = {
        let (inner, cancelled) = (inner.clone(), cancelled.clone());
        Deferred::with_canceller(move |_| {
            cancelled.set(true);
            if let Some(d) = inner.borrow_mut().take() {
                d.cancel();
            }
        })
    };
    let local = core.local();
    let name = host.to_owned();
    drop(core.resolve(host).add_both(move |res| {
        match res {
            Err(e) => {
                tracing::debug!(host = %name, error = %e, "cannot resolve");
                let _ = trigger.errback(DisconnectReason::Io {
                    kind: e.kind(),
                    message: format!("cannot resolve {name}: {e}").into(),
                });
            }
            Ok(_) if cancelled.get() => {}
            Ok(addrs) => local.call(move |core| {
                if cancelled.get() {
                    return;
                }
                // Forward the outcome; keep a handle to cancel meanwhile.
                let (fwd, keep) = (trigger, inner.clone());
                let next = then(core, addrs).add_both(move |r| {
                    keep.borrow_mut().take();
                    let _ = fwd.fire(r);
                    Ok::<(), DisconnectReason>(())
                });
                if !next.is_called() {
                    *inner.borrow_mut() = Some(next);
                }
            }),
        }
        Ok::<(), std::io::Error>(())
    }));
    d
}
