//! Deterministic tools for testing protocols without sockets or real time:
//! a [`RecordingTransport`], a fake [`Clock`], and a client/server [`Pump`]
//! with seeded [`Faults`].
//!
//! All three drive the same [`Protocol`] code through a real
//! [`Context`](crate::Context) and interpret what it asked for with the same
//! code the reactor uses (`lose_connection` flushes then closes, writes are
//! refused after it, `abort_connection` drops the buffer, `connection_lost` runs
//! exactly once and never re-entrantly, panics abort only their connection,
//! water marks, half-close, paused reading). Timers live in the reactor's own
//! timer queue and run in the reactor's order; time moves only when the test
//! moves it. So a protocol that passes here behaves the same over TCP.
//!
//! # Testing your protocol
//!
//! 1. **By hand**, with a [`RecordingTransport`]: feed bytes with
//!    [`receive`](RecordingTransport::receive), look at what came out with
//!    [`written`](RecordingTransport::written) and how it ended with
//!    [`lost`](RecordingTransport::lost). Good for exact responses to exact
//!    inputs, and for timeouts with [`advance`](RecordingTransport::advance).
//! 2. **Against its peer**, with a [`Pump`]: connect a client and a server
//!    protocol and [`flush`](Pump::flush). Good for conversations, closes
//!    and back-pressure.
//! 3. **However the bytes arrive**: feed the same input in every chunk size
//!    from one byte up, and pump with [`Faults::chaos`] over many seeds; the
//!    result must not change. A failing pump prints its seed;
//!    [`Faults::from_env`] replays it (`TORSION_SEED=… cargo test name`).
//! 4. **No hidden panics**: callbacks run under `catch_unwind` as in
//!    production, so a panic shows up as an aborted connection. The testing
//!    core records them; finish with [`assert_no_panics`].
//!
//! Here is a protocol that answers `PING` with `PONG` and hangs up on a peer
//! that stays silent for 30 seconds, tested all three ways:
//!
//! ```
//! use std::time::Duration;
//! use torsion::testing::{assert_no_panics, Faults, Pump, RecordingTransport};
//! use torsion::{Context, DelayedCall, DisconnectReason, Protocol};
//!
//! #[derive(Default)]
//! struct Pinger {
//!     buf: Vec<u8>,
//!     idle: Option<DelayedCall>,
//! }
//!
//! impl Protocol for Pinger {
//!     fn connection_made(&mut self, ctx: &mut Context<'_>) {
//!         self.idle = Some(ctx.call_later_self(Duration::from_secs(30), |_: &mut Pinger, ctx| {
//!             ctx.lose_connection_with(DisconnectReason::TimedOut);
//!         }));
//!     }
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         if let Some(idle) = self.idle {
//!             let _ = idle.reset(ctx, Duration::from_secs(30));
//!         }
//!         self.buf.extend_from_slice(data);
//!         while self.buf.len() >= 4 {
//!             let word: Vec<u8> = self.buf.drain(..4).collect();
//!             if word == b"PING" {
//!                 ctx.write(b"PONG");
//!             } else {
//!                 ctx.lose_connection_with(DisconnectReason::protocol("expected PING"));
//!                 return;
//!             }
//!         }
//!     }
//! }
//!
//! // 1. By hand.
//! let mut t = RecordingTransport::new(Pinger::default());
//! t.receive(b"PI");
//! assert_eq!(t.written(), b"");
//! t.receive(b"NGPING");
//! assert_eq!(t.written(), b"PONGPONG");
//! t.advance(Duration::from_secs(29));
//! assert!(t.lost().is_none());
//! t.advance(Duration::from_secs(1));
//! assert_eq!(t.lost(), Some(&DisconnectReason::TimedOut));
//!
//! // 2 and 3. Against a client, however the bytes are cut and delayed.
//! #[derive(Default)]
//! struct Client {
//!     got: Vec<u8>,
//! }
//! impl Protocol for Client {
//!     fn connection_made(&mut self, ctx: &mut Context<'_>) {
//!         ctx.write(b"PINGPINGPING");
//!     }
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         self.got.extend_from_slice(data);
//!         if self.got.len() == 12 {
//!             ctx.lose_connection();
//!         }
//!     }
//! }
//! for seed in 0..50 {
//!     let mut pump = Pump::with_faults(Faults::chaos(seed));
//!     let link = pump.connect(Client::default(), Pinger::default());
//!     pump.flush();
//!     assert_eq!(pump.client(link).got, b"PONGPONGPONG");
//!     assert_eq!(pump.server_lost(link), Some(&DisconnectReason::Done));
//!     // 4. Nothing panicked behind our back.
//!     assert_no_panics(pump.core_mut());
//! }
//! ```

mod clock;
mod conn;
mod faults;
mod pump;
mod transport;
mod wire;

use std::net::SocketAddr;
use std::time::Duration;

pub use clock::Clock;
pub use faults::{Direction, Faults};
pub use pump::{Link, NeverQuiet, Pump, PumpConfig, DEFAULT_MAX_ROUNDS, DEFAULT_WIRE_CAPACITY};
pub use transport::{RecordingTransport, DEFAULT_HOST, DEFAULT_PEER};

use crate::context::Core;
use crate::protocol::Protocol;

/// A reactor-level request a callback made under the testing tools. They are
/// recorded, like Twisted's `MemoryReactor` does, and never carried out: the
/// socket `listen_tcp` bound is closed at once, and a connect's client factory
/// is dropped without hearing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `listen_tcp` (the address it bound, if it could still tell).
    Listen {
        /// The bound address.
        addr: Option<SocketAddr>,
    },
    /// `ListeningPort::stop_listening`.
    StopListening,
    /// `connect_tcp`.
    Connect {
        /// Where to.
        addr: SocketAddr,
        /// The connect timeout.
        timeout: Duration,
    },
    /// `Connector::stop_connecting`.
    StopConnecting,
    /// `Connector::disconnect`.
    Disconnect,
    /// `Core::shutdown`: the in-memory connections were asked to close.
    Shutdown {
        /// The grace period asked for.
        timeout: Duration,
    },
}

/// Fails the test if a callback panicked since the last check (the testing
/// tools record panics; a reactor does under
/// [`PanicPolicy::Record`](crate::PanicPolicy::Record)).
///
/// # Panics
/// When panics were recorded, listing their messages.
pub fn assert_no_panics(core: &mut Core) {
    let panics = core.take_panics();
    assert!(
        panics.is_empty(),
        "{} callback(s) panicked: {panics:?}",
        panics.len()
    );
}

/// The connection's `P`, looking through wrappers (a protocol that started
/// TLS is still found).
fn downcast<P: Protocol>(p: &dyn Protocol) -> &P {
    crate::wrap::find_ref::<P>(p).expect("the protocol type is fixed when the connection is made")
}

fn downcast_mut<P: Protocol>(p: &mut dyn Protocol) -> &mut P {
    crate::wrap::find_mut::<P>(p).expect("the protocol type is fixed when the connection is made")
}

#[cfg(test)]
mod tests;
