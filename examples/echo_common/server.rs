//! The echo protocol the echo servers (`echo_server`, `tls_echo_server`) share:
//! TLS is a protocol wrapper, so the same protocol serves both.

use std::time::Duration;

use torsion::{Context, DisconnectReason, Protocol};

/// Echoes every byte back to its sender (Twisted's tutorial `Echo`), and stops
/// reading while the peer is not reading its echo, so a client that only sends
/// cannot make the server buffer without bound.
#[derive(Debug)]
pub struct Echo {
    idle_timeout: Option<Duration>,
}

impl Echo {
    /// An echo for one connection, closed after `idle_timeout` of silence
    /// (`None`: never). A factory is a closure:
    /// `torsion::factory(move |_peer| Echo::new(idle_timeout))`.
    pub fn new(idle_timeout: Option<Duration>) -> Echo {
        Echo { idle_timeout }
    }
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
