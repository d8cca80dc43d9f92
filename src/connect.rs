//! Connecting with a Deferred (Twisted's `connectProtocol`): the Deferred fires
//! with the connection's handle once the protocol's `connection_made` has run.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::address::Address;
use crate::context::{ConnectionHandle, Core};
use crate::core::handles::Connector;
use crate::defer::{Deferred, Trigger};
use crate::error::DisconnectReason;
use crate::protocol::{ClientFactory, Protocol, Reconnect};

/// The one-shot client factory behind [`Core::connect_protocol`].
struct OneShot<P> {
    protocol: Option<P>,
    trigger: Trigger<ConnectionHandle, DisconnectReason>,
}

impl<P: Protocol> ClientFactory for OneShot<P> {
    type Protocol = P;

    fn build_protocol(&mut self, _peer: &Address) -> Option<P> {
        if self.trigger.is_called() {
            return None; // cancelled meanwhile
        }
        self.protocol.take()
    }

    fn client_connection_made(&mut self, core: &mut Core, _c: Connector, conn: ConnectionHandle) {
        if self.trigger.is_called() {
            // Cancelled while the connect completed: nobody wants it.
            core.connection(conn).abort_connection();
            return;
        }
        let _ = self.trigger.callback(conn);
    }

    fn client_connection_failed(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let _ = self.trigger.errback(reason.clone());
        Reconnect::Never
    }

    fn client_connection_lost(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        // Lost inside `connection_made`, before the handle was handed out.
        if !self.trigger.is_called() {
            let _ = self.trigger.errback(reason.clone());
        }
        Reconnect::Never
    }
}

impl Core {
    /// Connects `protocol` to `addr` and returns a Deferred that fires with the
    /// connection's handle once `connection_made` has run (Twisted's
    /// `connectProtocol`). Reach the protocol later with
    /// [`connection(handle).with_protocol`](crate::ConnectionRef::with_protocol).
    ///
    /// # Errors
    /// The Deferred fails with the reason the attempt failed
    /// ([`DisconnectReason::Refused`], [`DisconnectReason::TimedOut`] after
    /// `timeout`...). Cancelling it while connecting stops the attempt
    /// (`Connector::stop_connecting`) and fails it with
    /// [`DisconnectReason::Cancelled`]; the protocol is never built.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::{Context, DisconnectReason, Protocol, Reactor};
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    /// }
    ///
    /// let mut reactor = Reactor::new().unwrap();
    /// // Nothing listens on this port of a fresh listener we closed at once.
    /// let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    /// let d = reactor.connect_protocol(addr, Quiet, Duration::from_secs(5));
    /// let reason = reactor.run_until_complete(d).unwrap().unwrap_err();
    /// assert_eq!(reason, DisconnectReason::Refused);
    /// ```
    #[track_caller]
    pub fn connect_protocol<P: Protocol>(
        &mut self,
        addr: SocketAddr,
        protocol: P,
        timeout: Duration,
    ) -> Deferred<ConnectionHandle, DisconnectReason> {
        self.connect_protocol_address(Address::Inet(addr), protocol, timeout)
    }

    /// [`connect_protocol`](Self::connect_protocol) to any address: IP (TCP)
    /// or Unix-domain ([`connect_unix`](Self::connect_unix)).
    ///
    /// # Errors
    /// As [`connect_protocol`](Self::connect_protocol).
    #[track_caller]
    pub fn connect_protocol_address<P: Protocol>(
        &mut self,
        addr: Address,
        protocol: P,
        timeout: Duration,
    ) -> Deferred<ConnectionHandle, DisconnectReason> {
        let connector: Rc<Cell<Option<Connector>>> = Rc::new(Cell::new(None));
        let c = connector.clone();
        let local = self.local();
        let (d, trigger) = Deferred::with_canceller(move |_| {
            if let Some(connector) = c.get() {
                local.call(move |core| connector.stop_connecting(core));
            }
        });
        let factory = OneShot {
            protocol: Some(protocol),
            trigger,
        };
        connector.set(Some(self.connect_address(addr, factory, timeout)));
        d
    }
}
