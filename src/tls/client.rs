//! The factories behind `listen_tls` and `connect_tls`, and the verifier of
//! `insecure_client_config`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

use super::protocol::ClientHooks;
use super::{TlsProtocol, DEFAULT_HANDSHAKE_TIMEOUT};
use crate::address::Address;
use crate::context::{ConnectionHandle, Core};
use crate::error::DisconnectReason;
use crate::protocol::{ClientFactory, Factory, Protocol, Reconnect};
use crate::reactor::Connector;

/// A [`Factory`] that wraps each protocol `factory` builds in a server-side
/// [`TlsProtocol`] (with [`DEFAULT_HANDSHAKE_TIMEOUT`]): TLS on any listener,
/// for example a Unix socket's. [`Core::listen_tls`](crate::Core::listen_tls)
/// is `listen_tcp` with one of these.
///
/// ```no_run
/// use std::sync::Arc;
/// use torsion::tls::{self, TlsServerFactory};
/// # use torsion::{factory, Context, Factory, Protocol, Reactor, UnixOptions};
/// # struct Echo;
/// # impl Protocol for Echo {
/// #     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) { ctx.write(data); }
/// # }
///
/// let config = Arc::new(tls::server_config_from_files("chain.pem", "key.pem")?);
/// let mut reactor = Reactor::new()?;
/// reactor.listen_unix_with(
///     "/run/app.sock",
///     TlsServerFactory::new(config, factory(|_peer| Echo)),
///     UnixOptions::default(),
/// )?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TlsServerFactory<F> {
    config: Arc<ServerConfig>,
    factory: F,
}

impl<F: Factory> TlsServerFactory<F> {
    /// TLS with `config` around `factory`'s protocols.
    pub fn new(config: Arc<ServerConfig>, factory: F) -> Self {
        TlsServerFactory { config, factory }
    }
}

impl<F: Factory> Factory for TlsServerFactory<F> {
    type Protocol = TlsProtocol;

    fn build_protocol(&mut self, peer: &Address) -> Option<TlsProtocol> {
        let inner = self.factory.build_protocol(peer)?;
        match TlsProtocol::server(self.config.clone(), inner) {
            Ok(p) => Some(p.with_handshake_timeout(DEFAULT_HANDSHAKE_TIMEOUT)),
            Err(e) => {
                tracing::error!(error = %e, %peer, "cannot start a TLS server connection");
                None
            }
        }
    }

    fn start_factory(&mut self, core: &mut Core) {
        self.factory.start_factory(core);
    }

    fn stop_factory(&mut self, core: &mut Core) {
        self.factory.stop_factory(core);
    }
}

/// The user's client factory and what the wrapper must tell it.
struct Shared<F> {
    factory: F,
    connector: Option<Connector>,
    /// The current attempt built its protocol (the handshake was done): its
    /// end is `client_connection_lost`, not `client_connection_failed`.
    built: bool,
}

/// A [`ClientFactory`] that runs TLS over the connection it is given and
/// builds `factory`'s protocol only once the handshake is done: TLS on any
/// connector, for example `connect_unix`. A failed handshake, or one longer
/// than the timeout, reaches `factory`'s `client_connection_failed` (with
/// [`DisconnectReason::Tls`] or [`DisconnectReason::TimedOut`]).
/// [`Core::connect_tls`](crate::Core::connect_tls) is `connect_tcp` with one of
/// these.
///
/// ```no_run
/// use torsion::{client_factory, Address};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use torsion::tls::{self, TlsClientFactory};
/// use torsion::{Context, Protocol, Reactor};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, ctx: &mut Context<'_>) {
///         ctx.write(b"hello over TLS\n");
///     }
///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
/// }
///
/// // TLS over a Unix socket: the handshake runs first, then `Hello` is built.
/// let config = Arc::new(tls::client_config()?);
/// let name = tls::server_name("localhost")?;
/// let timeout = Duration::from_secs(10);
/// let factory = TlsClientFactory::new(client_factory(|_peer: &Address| Hello), config, name, timeout);
/// let mut reactor = Reactor::new()?;
/// reactor.connect_unix("/tmp/app.sock", factory, Duration::from_secs(5));
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TlsClientFactory<F> {
    shared: Rc<RefCell<Shared<F>>>,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    timeout: Duration,
}

impl<F> std::fmt::Debug for TlsClientFactory<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClientFactory")
            .field("server_name", &self.server_name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<F: ClientFactory> TlsClientFactory<F> {
    /// TLS to a server that must prove it is `server_name` (checked with
    /// `config`), with a handshake timeout, around `factory`.
    pub fn new(
        factory: F,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
        timeout: Duration,
    ) -> Self {
        TlsClientFactory {
            shared: Rc::new(RefCell::new(Shared {
                factory,
                connector: None,
                built: false,
            })),
            config,
            server_name,
            timeout,
        }
    }
}

struct Hooks<F>(Rc<RefCell<Shared<F>>>);

impl<F: ClientFactory> ClientHooks for Hooks<F> {
    fn build(&mut self, peer: &Address) -> Option<Box<dyn Protocol>> {
        let mut s = self.0.borrow_mut();
        let p = s.factory.build_protocol(peer)?;
        s.built = true;
        Some(Box::new(p))
    }

    fn made(&mut self, core: &mut Core, conn: ConnectionHandle) {
        let mut s = self.0.borrow_mut();
        if let Some(c) = s.connector {
            s.factory.client_connection_made(core, c, conn);
        }
    }
}

impl<F: ClientFactory> ClientFactory for TlsClientFactory<F> {
    type Protocol = TlsProtocol;

    fn started_connecting(&mut self, core: &mut Core, connector: Connector) {
        let mut s = self.shared.borrow_mut();
        s.connector = Some(connector);
        s.built = false;
        s.factory.started_connecting(core, connector);
    }

    fn build_protocol(&mut self, peer: &Address) -> Option<TlsProtocol> {
        let hooks = Box::new(Hooks(self.shared.clone()));
        match TlsProtocol::client_after_handshake(
            self.config.clone(),
            self.server_name.clone(),
            hooks,
        ) {
            Ok(p) => Some(p.with_handshake_timeout(self.timeout)),
            Err(e) => {
                tracing::error!(error = %e, %peer, "cannot start a TLS client connection");
                None
            }
        }
    }

    fn client_connection_failed(
        &mut self,
        core: &mut Core,
        connector: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let mut s = self.shared.borrow_mut();
        s.factory.client_connection_failed(core, connector, reason)
    }

    fn client_connection_lost(
        &mut self,
        core: &mut Core,
        connector: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let mut s = self.shared.borrow_mut();
        if s.built {
            s.factory.client_connection_lost(core, connector, reason)
        } else {
            // TCP connected but TLS never did: a failed attempt.
            s.factory.client_connection_failed(core, connector, reason)
        }
    }
}

/// Accepts any certificate (signatures are still checked, so the handshake is
/// sound; only the identity is not).
#[derive(Debug)]
pub(crate) struct NoVerification(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
