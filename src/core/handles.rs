//! Handles on what a reactor runs besides connections: listening ports and
//! connectors. Each is an id; its methods queue operations on [`Core`].

use std::net::SocketAddr;

use super::ops::Op;
use super::Core;

/// A listening TCP port (Twisted's `IListeningPort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListeningPort {
    pub(crate) id: u64,
    pub(crate) addr: SocketAddr,
}

impl ListeningPort {
    /// The bound address, with the real port when 0 was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting: the socket is closed and the factory hears `stop_factory`
    /// once the current callback returns. Open connections are not touched.
    pub fn stop_listening(&self, core: &mut Core) {
        core.ops.push(Op::StopListening(self.id));
    }
}

/// An outgoing connection attempt and the connection it makes (Twisted's
/// `IConnector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connector {
    pub(crate) id: u64,
}

impl Connector {
    pub(crate) fn from_id(id: u64) -> Connector {
        Connector { id }
    }

    /// Stops trying: a pending attempt is cancelled (the factory hears
    /// `client_connection_failed` with [`DisconnectReason::Cancelled`](crate::DisconnectReason::Cancelled)), a pending
    /// reconnect is dropped, and an established connection will not be
    /// reconnected when it ends.
    pub fn stop_connecting(&self, core: &mut Core) {
        core.ops.push(Op::StopConnecting(self.id));
    }

    /// Closes the established connection gracefully (the factory may still
    /// reconnect), or stops a pending attempt.
    pub fn disconnect(&self, core: &mut Core) {
        core.ops.push(Op::Disconnect(self.id));
    }
}
