//! The echo protocol the echo servers (`echo_server`, `tls_echo_server`) share:
//! TLS is a protocol wrapper, so the same protocol serves both.

use std::net::SocketAddr;
use std::time::Duration;

use torsion::{Context, DisconnectReason, Factory, Protocol};

/// Echoes every byte back to its sender (Twisted's tutorial `Echo`), and stops
/// reading while the peer is not reading its echo, so a client that only sends
/// cannot make the server buffer without bound.
#[derive(Debug)]
pub struct Echo {
    idle_timeout: Option<Duration>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        // Per connection: DEBUG (`-v`), so that a busy server's log stays small.
        tracing::debug!(peer = %ctx.peer_addr(), "client connected");
        ctx.set_idle_timeout(self.idle_timeout);
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        ctx.write(data);
    }

    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        ctx.pause_reading();
    }

    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        ctx.resume_reading();
    }

    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        tracing::debug!(peer = %ctx.peer_addr(), %reason, "client disconnected");
    }
}

/// Builds one [`Echo`] per connection.
#[derive(Debug, Clone, Copy)]
pub struct EchoFactory {
    /// Connections silent for this long are closed (`None`: never).
    pub idle_timeout: Option<Duration>,
}

impl Factory for EchoFactory {
    type Protocol = Echo;

    fn build_protocol(&mut self, _peer: SocketAddr) -> Option<Echo> {
        Some(Echo {
            idle_timeout: self.idle_timeout,
        })
    }
}
