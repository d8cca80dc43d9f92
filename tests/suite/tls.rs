//! TLS transports for the behaviour suite: over TCP, and over Unix sockets
//! (TLS is a protocol wrapper, so it runs over either).

use std::net::SocketAddr;
use std::path::PathBuf;

use torsion::tls::{self, TlsClientFactory, TlsServerFactory};
use torsion::{Address, ClientFactory, Factory, Reactor, UnixOptions};

use super::tls_util::{self, shared_certs};
use super::{temp_socket_path, Transport, CONNECT_TIMEOUT};

/// TLS over TCP on 127.0.0.1, with a certificate made for the test.
pub struct TlsTcp;

impl Transport for TlsTcp {
    type Addr = SocketAddr;
    const INET: bool = true;
    const ABORT_RESETS: bool = true;
    const TLS: bool = true;
    fn listen<F: Factory>(reactor: &mut Reactor, factory: F) -> Result<SocketAddr, String> {
        Ok(tls_util::listen(reactor, factory))
    }
    fn connect<F: ClientFactory>(reactor: &mut Reactor, addr: &SocketAddr, factory: F) {
        tls_util::connect(reactor, *addr, factory);
    }
    fn address(addr: &SocketAddr) -> Address {
        Address::Inet(*addr)
    }
}

/// TLS over a Unix-domain stream socket.
pub struct TlsUnix;

impl Transport for TlsUnix {
    type Addr = PathBuf;
    const INET: bool = false;
    const ABORT_RESETS: bool = false;
    const TLS: bool = true;
    fn listen<F: Factory>(reactor: &mut Reactor, factory: F) -> Result<PathBuf, String> {
        let path = temp_socket_path("suite-tls");
        let factory = TlsServerFactory::new(shared_certs().server(), factory);
        reactor
            .listen_unix_with(&path, factory, UnixOptions::default())
            .map_err(|e| e.to_string())?;
        Ok(path)
    }
    fn connect<F: ClientFactory>(reactor: &mut Reactor, addr: &PathBuf, factory: F) {
        let factory = TlsClientFactory::new(
            factory,
            shared_certs().client(),
            tls::server_name("localhost").unwrap(),
            CONNECT_TIMEOUT,
        );
        reactor.connect_unix(addr, factory, CONNECT_TIMEOUT);
    }
    fn address(addr: &PathBuf) -> Address {
        Address::unix(addr)
    }
}
