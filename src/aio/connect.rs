//! Connecting and listening from `async` code.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use super::conn::{Connecting, Connection, StreamOptions, StreamProtocol};
use super::listen::Listener;
use super::StreamError;
use crate::address::Address;
use crate::context::{ConnectionHandle, Core};
use crate::defer::{Deferred, Trigger};
use crate::endpoints::{ClientEndpoint, Port, ServerEndpoint, DEFAULT_CONNECT_TIMEOUT};
use crate::error::DisconnectReason;
use crate::local::LocalHandle;

type Started = Result<Deferred<ConnectionHandle, DisconnectReason>, StreamError>;

/// The future of the `connect` functions: the [`Connection`] once the
/// connection is made (and, over TLS, its handshake done). Dropping it
/// before then stops the attempt.
pub struct Connect {
    handle: Deferred<ConnectionHandle, StreamError>,
    connecting: Connecting,
    done: bool,
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("connecting", &self.connecting)
            .field("done", &self.done)
            .finish()
    }
}

impl Future for Connect {
    type Output = Result<Connection, StreamError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        if self.done {
            return Poll::Pending;
        }
        match Pin::new(&mut self.handle).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                self.done = true;
                Poll::Ready(r.and_then(|_h| {
                    // The handle comes after `connection_made`: the connection
                    // is there, unless it was lost inside `connection_made`.
                    self.connecting.take_made().ok_or(StreamError::Closed)
                }))
            }
        }
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        if !self.done && !self.handle.is_called() {
            self.handle.cancel();
        }
        let _ = self.handle.take_result();
    }
}

/// Starts a connection at the end of the turn with `start`, which connects
/// the protocol it is given.
#[track_caller]
fn connect_with(
    local: &LocalHandle,
    options: StreamOptions,
    start: impl FnOnce(&mut Core, StreamProtocol) -> Started + 'static,
) -> Connect {
    let protocol = StreamProtocol::new(options, None);
    let connecting = protocol.connecting();
    let inner: std::rc::Rc<std::cell::RefCell<Option<Deferred<(), DisconnectReason>>>> =
        Default::default();
    let slot = inner.clone();
    let (handle, trigger) = Deferred::<ConnectionHandle, StreamError>::with_canceller(move |_| {
        if let Some(d) = slot.borrow_mut().take() {
            d.cancel();
        }
    });
    let fire = trigger.clone();
    let guard = FireOnDrop(Some(trigger));
    local.call(move |core| {
        let Some(trigger) = guard.take() else { return };
        if trigger.is_called() {
            return; // cancelled before it started
        }
        match start(core, protocol) {
            Err(e) => {
                let _ = trigger.errback(e);
            }
            Ok(d) => {
                let keep = inner.clone();
                let rest = d.add_both(move |r| {
                    keep.borrow_mut().take();
                    let _ = fire.fire(r.map_err(StreamError::from));
                    Ok::<(), DisconnectReason>(())
                });
                if !rest.is_called() {
                    *inner.borrow_mut() = Some(rest);
                }
            }
        }
    });
    Connect {
        handle,
        connecting,
        done: false,
    }
}

/// Fails its trigger with [`StreamError::ReactorGone`] if dropped untaken: a
/// call queued on a reactor that is gone is dropped without running.
struct FireOnDrop<T: 'static>(Option<Trigger<T, StreamError>>);

impl<T: 'static> FireOnDrop<T> {
    fn take(mut self) -> Option<Trigger<T, StreamError>> {
        self.0.take()
    }
}

impl<T: 'static> Drop for FireOnDrop<T> {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.errback(StreamError::ReactorGone);
        }
    }
}

/// A client factory for one protocol, reporting through a Deferred (for TLS,
/// whose connect takes a factory).
#[cfg(feature = "tls")]
struct OneShot {
    protocol: Option<StreamProtocol>,
    trigger: Trigger<ConnectionHandle, DisconnectReason>,
}

#[cfg(feature = "tls")]
impl crate::protocol::ClientFactory for OneShot {
    type Protocol = StreamProtocol;

    fn build_protocol(&mut self, _peer: &Address) -> Option<StreamProtocol> {
        if self.trigger.is_called() {
            return None;
        }
        self.protocol.take()
    }

    fn client_connection_made(
        &mut self,
        _core: &mut Core,
        _c: crate::reactor::Connector,
        conn: ConnectionHandle,
    ) {
        let _ = self.trigger.callback(conn);
    }

    fn client_connection_failed(
        &mut self,
        _core: &mut Core,
        _c: crate::reactor::Connector,
        reason: &DisconnectReason,
    ) -> crate::protocol::Reconnect {
        let _ = self.trigger.errback(reason.clone());
        crate::protocol::Reconnect::Never
    }

    fn client_connection_lost(
        &mut self,
        _core: &mut Core,
        _c: crate::reactor::Connector,
        reason: &DisconnectReason,
    ) -> crate::protocol::Reconnect {
        if !self.trigger.is_called() {
            let _ = self.trigger.errback(reason.clone());
        }
        crate::protocol::Reconnect::Never
    }
}

/// Connects over TCP to `addr` (timeout [`DEFAULT_CONNECT_TIMEOUT`]; wrap it
/// in [`timeout`](super::timeout) for another).
///
/// # Errors
/// The future fails with [`StreamError::Refused`] when nobody listens,
/// [`StreamError::TimedOut`], or [`StreamError::Lost`] with the reason.
#[track_caller]
pub fn connect_tcp(local: &LocalHandle, addr: SocketAddr) -> Connect {
    connect_address(local, Address::Inet(addr))
}

/// Connects to the Unix socket at `path`.
///
/// # Errors
/// As [`connect_tcp`].
#[track_caller]
pub fn connect_unix(local: &LocalHandle, path: impl AsRef<Path>) -> Connect {
    connect_address(local, Address::unix(path))
}

/// Connects to an IP or Unix-domain address.
///
/// # Errors
/// As [`connect_tcp`].
#[track_caller]
pub fn connect_address(local: &LocalHandle, addr: Address) -> Connect {
    connect_address_with(local, addr, StreamOptions::default())
}

/// [`connect_address`] with buffering options.
///
/// # Errors
/// As [`connect_tcp`].
#[track_caller]
pub fn connect_address_with(local: &LocalHandle, addr: Address, options: StreamOptions) -> Connect {
    connect_with(local, options, move |core, p| {
        Ok(core.connect_protocol_address(addr, p, DEFAULT_CONNECT_TIMEOUT))
    })
}

/// Connects to a client endpoint string (`tcp:host=example.org:port=80`,
/// `unix:path=/run/app.sock`, `tls:host=example.org:port=443`...; see
/// [`endpoints`](crate::endpoints)): host names are resolved on the thread
/// pool and connected with Happy Eyeballs; over TLS the connection is there
/// once the handshake is done.
///
/// # Errors
/// [`StreamError::Endpoint`] for a malformed string or unreadable TLS files;
/// otherwise as [`connect_tcp`].
#[track_caller]
pub fn connect(local: &LocalHandle, endpoint: &str) -> Connect {
    let parsed = endpoint.parse::<ClientEndpoint>();
    connect_with(local, StreamOptions::default(), move |core, p| {
        let ep = parsed?;
        Ok(ep.connect(core, p)?)
    })
}

/// Connects to a parsed client endpoint; see [`connect`].
///
/// # Errors
/// As [`connect`].
#[track_caller]
pub fn connect_endpoint(local: &LocalHandle, endpoint: &ClientEndpoint) -> Connect {
    let ep = endpoint.clone();
    connect_with(local, StreamOptions::default(), move |core, p| {
        Ok(ep.connect(core, p)?)
    })
}

/// Connects over TLS to `addr`, verifying the server's certificate for
/// `server_name` with `config`. The connection is there once the handshake
/// is done.
///
/// # Errors
/// A failed handshake is [`StreamError::Lost`] with
/// [`DisconnectReason::Tls`]; otherwise as [`connect_tcp`].
#[cfg(feature = "tls")]
#[track_caller]
pub fn connect_tls(
    local: &LocalHandle,
    addr: SocketAddr,
    server_name: rustls::pki_types::ServerName<'static>,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Connect {
    connect_with(local, StreamOptions::default(), move |core, p| {
        let connector: std::rc::Rc<std::cell::Cell<Option<crate::reactor::Connector>>> =
            Default::default();
        let c = connector.clone();
        let stop = core.local();
        let (d, trigger) = Deferred::with_canceller(move |_| {
            if let Some(connector) = c.get() {
                stop.call(move |core| connector.stop_connecting(core));
            }
        });
        let factory = OneShot {
            protocol: Some(p),
            trigger,
        };
        connector.set(Some(core.connect_tls(
            addr,
            server_name,
            config,
            factory,
            DEFAULT_CONNECT_TIMEOUT,
        )));
        Ok(d)
    })
}

/// Starts listening at the end of the turn with `start`.
async fn listen_with(
    local: &LocalHandle,
    start: impl FnOnce(&mut Core, super::AcceptFactory) -> Result<Port, StreamError> + 'static,
) -> Result<Listener, StreamError> {
    let (factory, mut listener) = Listener::new(StreamOptions::default());
    let (d, trigger) = Deferred::<Port, StreamError>::new();
    let guard = FireOnDrop(Some(trigger));
    local.call(move |core| {
        if let Some(trigger) = guard.take() {
            let _ = trigger.fire(start(core, factory));
        }
    });
    let port = d.await?;
    listener.set_port(port, local.clone());
    Ok(listener)
}

/// Listens on TCP `addr` (port 0 picks a free port: see
/// [`Listener::local_addr`]).
///
/// # Errors
/// [`StreamError::Listen`] if the address cannot be bound.
pub async fn listen_tcp(local: &LocalHandle, addr: SocketAddr) -> Result<Listener, StreamError> {
    listen_with(local, move |core, f| {
        Ok(core
            .listen_tcp(addr, f)
            .map_err(StreamError::Listen)?
            .into())
    })
    .await
}

/// Listens on the Unix socket `path` (default [`UnixOptions`](crate::UnixOptions)).
///
/// # Errors
/// [`StreamError::Listen`] if the socket cannot be bound.
pub async fn listen_unix(
    local: &LocalHandle,
    path: impl AsRef<Path>,
) -> Result<Listener, StreamError> {
    let path = path.as_ref().to_path_buf();
    listen_with(local, move |core, f| {
        Ok(core
            .listen_unix(&path, f)
            .map_err(StreamError::Listen)?
            .into())
    })
    .await
}

/// Listens for TLS connections on `addr`. A connection is accepted when the
/// TCP connection is; its reads wait for the handshake, and a failed
/// handshake ends it with [`DisconnectReason::Tls`].
///
/// # Errors
/// [`StreamError::Listen`] if the address cannot be bound.
#[cfg(feature = "tls")]
pub async fn listen_tls(
    local: &LocalHandle,
    addr: SocketAddr,
    config: std::sync::Arc<rustls::ServerConfig>,
) -> Result<Listener, StreamError> {
    listen_with(local, move |core, f| {
        Ok(core
            .listen_tls(addr, config, f)
            .map_err(StreamError::Listen)?
            .into())
    })
    .await
}

/// Listens on a server endpoint string (`tcp:8000:interface=127.0.0.1`,
/// `unix:/run/app.sock`, `tls:8443:cert=c.pem:key=k.pem`; see
/// [`endpoints`](crate::endpoints)).
///
/// # Errors
/// [`StreamError::Endpoint`] for a malformed string, an address that cannot
/// be bound or unreadable TLS files.
pub async fn listen(local: &LocalHandle, endpoint: &str) -> Result<Listener, StreamError> {
    let parsed = endpoint.parse::<ServerEndpoint>();
    listen_with(local, move |core, f| Ok(parsed?.listen(core, f)?)).await
}
