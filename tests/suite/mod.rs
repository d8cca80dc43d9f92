//! The behaviour suite: the same scenarios over every stream transport.
//!
//! A transport plugs in with an impl of [`Transport`] (how to listen, how to
//! connect) and one line, `behaviour_suite!(name, Type);`, which expands to a
//! `#[test]` per scenario in a module `name`.
#![allow(dead_code)]

#[cfg(feature = "tls")]
pub mod parity;
pub mod scenarios;
pub mod script;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tls")]
#[path = "../tls_util/mod.rs"]
pub mod tls_util;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use torsion::{Address, ClientFactory, Factory, Reactor, UnixOptions};

/// How to listen and connect on one transport.
pub trait Transport {
    /// Where a listener is.
    type Addr: Clone + 'static;
    /// What the peer's [`Address`] looks like on this transport (checked on
    /// both sides): `true` for an IP address.
    const INET: bool;
    /// Whether an abort reaches the peer as a reset (TCP does; a Unix peer
    /// with nothing unread on the aborting side sees a clean EOF).
    const ABORT_RESETS: bool;
    /// Whether TLS runs over it: a transport-level end without `close_notify`
    /// (a Unix peer's abort) then reaches the protocol as a TLS error.
    const TLS: bool = false;

    /// Starts listening with `factory`; `Err(why)` when the transport is not
    /// available here (the scenario prints why and passes).
    fn listen<F: Factory>(reactor: &mut Reactor, factory: F) -> Result<Self::Addr, String>;

    /// Connects to `addr` with `factory`.
    fn connect<F: ClientFactory>(reactor: &mut Reactor, addr: &Self::Addr, factory: F);

    /// The listener's address as a connection's `host()` reports it.
    fn address(addr: &Self::Addr) -> Address;
}

/// How long a connect may take in the suite.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP over 127.0.0.1.
pub struct TcpV4;

impl Transport for TcpV4 {
    type Addr = SocketAddr;
    const INET: bool = true;
    const ABORT_RESETS: bool = true;
    fn listen<F: Factory>(reactor: &mut Reactor, factory: F) -> Result<SocketAddr, String> {
        let port = reactor
            .listen_tcp("127.0.0.1:0".parse().unwrap(), factory)
            .map_err(|e| e.to_string())?;
        Ok(port.local_addr())
    }
    fn connect<F: ClientFactory>(reactor: &mut Reactor, addr: &SocketAddr, factory: F) {
        reactor.connect_tcp(*addr, factory, CONNECT_TIMEOUT);
    }
    fn address(addr: &SocketAddr) -> Address {
        Address::Inet(*addr)
    }
}

/// TCP over ::1 (skipped where the host has no IPv6 loopback).
pub struct TcpV6;

impl Transport for TcpV6 {
    type Addr = SocketAddr;
    const INET: bool = true;
    const ABORT_RESETS: bool = true;
    fn listen<F: Factory>(reactor: &mut Reactor, factory: F) -> Result<SocketAddr, String> {
        let port = reactor
            .listen_tcp("[::1]:0".parse().unwrap(), factory)
            .map_err(|e| format!("no IPv6 loopback here ({e})"))?;
        Ok(port.local_addr())
    }
    fn connect<F: ClientFactory>(reactor: &mut Reactor, addr: &SocketAddr, factory: F) {
        reactor.connect_tcp(*addr, factory, CONNECT_TIMEOUT);
    }
    fn address(addr: &SocketAddr) -> Address {
        Address::Inet(*addr)
    }
}

/// Unix-domain stream sockets, in a fresh temporary directory per listener.
pub struct Unix;

impl Transport for Unix {
    type Addr = PathBuf;
    const INET: bool = false;
    const ABORT_RESETS: bool = false;
    fn listen<F: Factory>(reactor: &mut Reactor, factory: F) -> Result<PathBuf, String> {
        let path = temp_socket_path("suite");
        reactor
            .listen_unix_with(&path, factory, UnixOptions::default())
            .map_err(|e| e.to_string())?;
        Ok(path)
    }
    fn connect<F: ClientFactory>(reactor: &mut Reactor, addr: &PathBuf, factory: F) {
        reactor.connect_unix(addr, factory, CONNECT_TIMEOUT);
    }
    fn address(addr: &PathBuf) -> Address {
        Address::unix(addr)
    }
}

/// A socket path unique to this process and call, in the temporary directory
/// (short: socket paths are limited to about 100 bytes).
pub fn temp_socket_path(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("torsion-{tag}-{}-{n}.sock", std::process::id()))
}

/// One `#[test]` per scenario for transport `$t`, in module `$name`.
#[macro_export]
macro_rules! behaviour_suite {
    ($name:ident, $t:ty) => {
        mod $name {
            use super::suite::scenarios;
            #[test]
            fn lifecycle_order_and_exactly_once_connection_lost() {
                scenarios::lifecycle::<$t>();
            }
            #[test]
            fn echo_in_many_sizes() {
                scenarios::echo::<$t>();
            }
            #[test]
            fn ten_mib_echoed_intact() {
                scenarios::large_transfer::<$t>();
            }
            #[test]
            fn lose_connection_delivers_everything_then_a_clean_close() {
                scenarios::lose_connection_delivers_everything::<$t>();
            }
            #[test]
            fn abort_drops_what_was_written() {
                scenarios::abort_drops::<$t>();
            }
            #[test]
            fn half_close_lets_the_peer_answer_after_our_eof() {
                scenarios::half_close::<$t>();
            }
            #[test]
            fn back_pressure_pauses_and_resumes_the_writer() {
                scenarios::back_pressure::<$t>();
            }
        }
    };
}
