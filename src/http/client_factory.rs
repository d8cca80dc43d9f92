//! The factories behind the client's connections: [`ConnFactory`] builds
//! one job's connection, [`MarkTcp`] notes when TCP connected under TLS.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::client::{ClientError, ClientShared, Job};
use super::client_conn::ClientConnection;
use crate::context::{ConnectionHandle, Core};
use crate::error::DisconnectReason;
use crate::protocol::{ClientFactory, Reconnect};
use crate::reactor::Connector;

/// Builds the connection for one job.
pub(crate) struct ConnFactory {
    pub(crate) shared: Rc<ClientShared>,
    pub(crate) job: Option<Job>,
    pub(crate) addr: SocketAddr,
    /// Under TLS: when TCP connected (this factory builds after the
    /// handshake).
    pub(crate) tcp_at: Option<Rc<Cell<Option<Instant>>>>,
}

/// Notes when TCP connected, under the TLS factory (which builds the
/// connection's protocol only after the handshake).
#[cfg(feature = "tls")]
pub(crate) struct MarkTcp<F> {
    pub(crate) inner: F,
    pub(crate) at: Rc<Cell<Option<Instant>>>,
}

#[cfg(feature = "tls")]
impl<F: ClientFactory> ClientFactory for MarkTcp<F> {
    type Protocol = F::Protocol;

    fn started_connecting(&mut self, core: &mut Core, connector: Connector) {
        self.inner.started_connecting(core, connector);
    }

    fn build_protocol(&mut self, peer: &crate::Address) -> Option<F::Protocol> {
        self.at.set(Some(Instant::now()));
        self.inner.build_protocol(peer)
    }

    fn client_connection_made(&mut self, core: &mut Core, c: Connector, conn: ConnectionHandle) {
        self.inner.client_connection_made(core, c, conn);
    }

    fn client_connection_failed(
        &mut self,
        core: &mut Core,
        c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        self.inner.client_connection_failed(core, c, reason)
    }

    fn client_connection_lost(
        &mut self,
        core: &mut Core,
        c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        self.inner.client_connection_lost(core, c, reason)
    }
}

impl ConnFactory {
    pub(crate) fn fail(mut self, e: ClientError) {
        if let Some(job) = self.job.take() {
            job.fail(e);
        }
    }
}

impl ClientFactory for ConnFactory {
    type Protocol = ClientConnection;

    fn build_protocol(&mut self, _peer: &crate::Address) -> Option<ClientConnection> {
        let mut job = self.job.take()?;
        let now = Instant::now();
        match &self.tcp_at {
            None => job.marks.connected = Some(now),
            Some(at) => {
                job.marks.connected = Some(at.get().unwrap_or(now));
                job.marks.tls_done = Some(now);
            }
        }
        Some(ClientConnection::new(self.shared.clone(), job))
    }

    fn client_connection_failed(
        &mut self,
        _core: &mut Core,
        _connector: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        if let Some(job) = self.job.take() {
            job.fail(ClientError::Connect {
                addr: self.addr.to_string(),
                reason: reason.clone(),
            });
        }
        Reconnect::Never
    }
}
