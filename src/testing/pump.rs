//! A client/server pump: protocols connected in memory, bytes moved on demand.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::conn::MemConn;
use super::faults::{Direction, Faults, Rng};
use super::wire::{Net, Pipe};
use super::{downcast, downcast_mut, Clock};
use crate::buf::WriteBuf;
use crate::context::{ConnectionHandle, Core};
use crate::error::DisconnectReason;
use crate::protocol::{Factory, Protocol};
use crate::transport::Context;

/// Bytes in flight one way before the sender's writes stay in its own buffer
/// (the two socket buffers of a loopback connection, roughly).
pub const DEFAULT_WIRE_CAPACITY: usize = 256 * 1024;
/// Rounds [`Pump::flush`] runs before it declares the connections never quiet.
pub const DEFAULT_MAX_ROUNDS: u64 = 100_000;

/// How a [`Pump`] behaves.
///
/// ```
/// use torsion::testing::{Faults, Pump, PumpConfig};
///
/// // A tiny wire (so back-pressure shows at once) and seeded chaos.
/// let config = PumpConfig {
///     wire_capacity: 64,
///     faults: Faults::chaos(7),
///     ..PumpConfig::default()
/// };
/// let pump = Pump::with_config(config);
/// assert_eq!(pump.seed(), 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PumpConfig {
    /// Faults to inject (default: none).
    pub faults: Faults,
    /// Bytes in flight per direction and connection (default
    /// [`DEFAULT_WIRE_CAPACITY`]); past it, writes pile up in the sender's
    /// buffer and its water marks apply.
    pub wire_capacity: usize,
    /// Rounds before [`Pump::flush`] gives up (default [`DEFAULT_MAX_ROUNDS`]).
    pub max_rounds: u64,
}

impl Default for PumpConfig {
    fn default() -> Self {
        PumpConfig {
            faults: Faults::none(),
            wire_capacity: DEFAULT_WIRE_CAPACITY,
            max_rounds: DEFAULT_MAX_ROUNDS,
        }
    }
}

/// [`Pump::try_flush`] ran out of rounds: something keeps the connections busy
/// forever (a ping-pong, a call that reschedules itself with zero delay...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pump never got quiet after {rounds} rounds (fault seed {seed}): {state}")]
pub struct NeverQuiet {
    /// Rounds run.
    pub rounds: u64,
    /// The fault seed, to replay.
    pub seed: u64,
    /// What was still moving.
    pub state: String,
}

/// Names one pumped connection and the types of its two protocols.
pub struct Link<C, S> {
    index: usize,
    _types: PhantomData<fn() -> (C, S)>,
}

impl<C, S> Clone for Link<C, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C, S> Copy for Link<C, S> {}

impl<C, S> fmt::Debug for Link<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Link({})", self.index)
    }
}

impl<C, S> Link<C, S> {
    fn client(&self) -> usize {
        self.index * 2
    }
    fn server(&self) -> usize {
        self.index * 2 + 1
    }
}

/// Client and server protocols connected in memory (Twisted's `iosim`), with
/// the reactor's semantics and optional seeded [`Faults`].
///
/// A pump holds any number of connections ([`connect`](Self::connect) returns
/// a typed [`Link`]) sharing one [`Clock`]'s core, so protocols reach each
/// other by handle ([`Core::connection`](crate::Core::connection)) as under the reactor;
/// a chat server's clients can all be pumped together.
///
/// Nothing moves until the test says so: [`step`](Self::step) runs one round
/// (due zero-delay calls, then every ready byte each way), [`flush`](Self::flush)
/// runs rounds until nothing more happens and panics if that never comes, and
/// [`advance`](Self::advance) moves the clock, then flushes. Closes travel as
/// on TCP: a clean close is an end of stream after the data (the closed end
/// drains what still comes, like a lingering close); an abort, error or panic
/// reaches the peer as a reset (`connection_lost` with
/// [`DisconnectReason::Reset`]) after the bytes already in flight. Half-close,
/// pausing and water marks work as on a socket: each direction holds at most
/// [`PumpConfig::wire_capacity`] bytes in flight. Listen and connect requests
/// are recorded in [`clock().requests()`](Clock::requests).
///
/// ```
/// use torsion::testing::{Faults, Pump};
/// use torsion::{Context, DisconnectReason, Protocol};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         ctx.write(data);
///     }
/// }
///
/// #[derive(Default)]
/// struct Client {
///     got: Vec<u8>,
///     lost: Option<DisconnectReason>,
/// }
/// impl Protocol for Client {
///     fn connection_made(&mut self, ctx: &mut Context<'_>) {
///         ctx.write(b"hello, world");
///     }
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         self.got.extend_from_slice(data);
///         if self.got.len() == 12 {
///             ctx.lose_connection();
///         }
///     }
///     fn connection_lost(&mut self, _: &mut Context<'_>, reason: &DisconnectReason) {
///         self.lost = Some(reason.clone());
///     }
/// }
///
/// for seed in 0..20 {
///     let mut pump = Pump::with_faults(Faults::chaos(seed));
///     let link = pump.connect(Client::default(), Echo);
///     pump.flush();
///     assert_eq!(pump.client(link).got, b"hello, world");
///     assert_eq!(pump.client(link).lost, Some(DisconnectReason::Done));
///     assert_eq!(pump.server_lost(link), Some(&DisconnectReason::Done));
/// }
/// ```
pub struct Pump {
    clock: Clock,
    net: Net,
    config: PumpConfig,
    rng: Rng,
    round: u64,
}

impl fmt::Debug for Pump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pump")
            .field("connections", &(self.net.conns.len() / 2))
            .field("round", &self.round)
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish()
    }
}

impl Default for Pump {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        if std::thread::panicking() && self.config.faults.is_active() {
            eprintln!(
                "torsion::testing::Pump: faults seed {seed}; replay with \
                 TORSION_SEED={seed} (read by Faults::from_env)",
                seed = self.config.faults.seed()
            );
        }
    }
}

impl Pump {
    /// A pump without faults.
    pub fn new() -> Pump {
        Pump::with_config(PumpConfig::default())
    }

    /// A pump injecting `faults`.
    pub fn with_faults(faults: Faults) -> Pump {
        Pump::with_config(PumpConfig {
            faults,
            ..PumpConfig::default()
        })
    }

    /// A pump configured in full.
    pub fn with_config(config: PumpConfig) -> Pump {
        Pump {
            clock: Clock::new(),
            net: Net {
                conns: Vec::new(),
                pipes: Vec::new(),
                out: WriteBuf::new(),
            },
            rng: Rng::new(config.faults.seed()),
            config,
            round: 0,
        }
    }

    /// The fault seed.
    pub fn seed(&self) -> u64 {
        self.config.faults.seed()
    }

    /// Connects `client` to `server`: the server hears `connection_made`, then
    /// the client. Nothing is delivered until the next [`step`](Self::step) or
    /// [`flush`](Self::flush). The client's address is `10.0.0.2` with a port
    /// unique to the link, the server's `10.0.0.1:8123`.
    pub fn connect<C: Protocol, S: Protocol>(&mut self, client: C, server: S) -> Link<C, S> {
        let link = Link {
            index: self.net.conns.len() / 2,
            _types: PhantomData,
        };
        let (caddr, saddr) = Self::addresses(link.index);
        let reset = self.config.faults.reset_point(&mut self.rng);
        for (i, proto, host, peer) in [
            (
                link.client(),
                Box::new(client) as Box<dyn Protocol>,
                caddr,
                saddr,
            ),
            (
                link.server(),
                Box::new(server) as Box<dyn Protocol>,
                saddr,
                caddr,
            ),
        ] {
            let handle = ConnectionHandle {
                key: i as u32,
                gen: 1,
            };
            self.net.conns.push(MemConn::new(handle, proto, peer));
            let dir = if i % 2 == 0 {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            };
            self.net.pipes.push(Pipe {
                segs: VecDeque::new(),
                in_flight: 0,
                capacity: self.config.wire_capacity.max(1),
                peer_reset: false,
                delivered: 0,
                reset_at: reset.filter(|r| r.0 == dir).map(|r| r.1),
                rng: Rng::new(self.rng.next()),
                split: self.config.faults.split,
                max_delay: self.config.faults.max_delay,
                round: self.round,
                last_ready: 0,
                host,
                lost: None,
                lost_gracefully: false,
            });
        }
        for i in [link.server(), link.client()] {
            let Net { conns, pipes, out } = &mut self.net;
            conns[i]
                .engine(&mut self.clock.core, out, &mut pipes[i])
                .make();
            self.clock.ops(&mut self.net);
        }
        link
    }

    /// Builds the server protocol with `factory` (as a listener would, for the
    /// client's address) and connects `client` to it; `None` if the factory
    /// refuses.
    pub fn connect_factory<C: Protocol, F: Factory>(
        &mut self,
        client: C,
        factory: &mut F,
    ) -> Option<Link<C, F::Protocol>> {
        let (caddr, _) = Self::addresses(self.net.conns.len() / 2);
        let server = factory.build_protocol(&crate::Address::Inet(caddr))?;
        Some(self.connect(client, server))
    }

    fn addresses(index: usize) -> (SocketAddr, SocketAddr) {
        let port = 40000 + (index % 20000) as u16;
        (
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), port)),
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 8123)),
        )
    }

    /// The client protocol of `link`.
    pub fn client<C: Protocol, S>(&self, link: Link<C, S>) -> &C {
        downcast(&*self.net.conns[link.client()].protocol)
    }

    /// The client protocol of `link`, mutably (outside any callback).
    pub fn client_mut<C: Protocol, S>(&mut self, link: Link<C, S>) -> &mut C {
        downcast_mut(&mut *self.net.conns[link.client()].protocol)
    }

    /// The server protocol of `link`.
    pub fn server<C, S: Protocol>(&self, link: Link<C, S>) -> &S {
        downcast(&*self.net.conns[link.server()].protocol)
    }

    /// The server protocol of `link`, mutably (outside any callback).
    pub fn server_mut<C, S: Protocol>(&mut self, link: Link<C, S>) -> &mut S {
        downcast_mut(&mut *self.net.conns[link.server()].protocol)
    }

    /// Runs `f` as a callback of the client of `link` (writes, closes,
    /// pauses...), then settles it. `None` if that connection is lost.
    pub fn with_client<C: Protocol, S, R>(
        &mut self,
        link: Link<C, S>,
        f: impl FnOnce(&mut C, &mut Context<'_>) -> R,
    ) -> Option<R> {
        self.with_at(link.client(), f)
    }

    /// Runs `f` as a callback of the server of `link`, then settles it.
    pub fn with_server<C, S: Protocol, R>(
        &mut self,
        link: Link<C, S>,
        f: impl FnOnce(&mut S, &mut Context<'_>) -> R,
    ) -> Option<R> {
        self.with_at(link.server(), f)
    }

    fn with_at<P: Protocol, R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut P, &mut Context<'_>) -> R,
    ) -> Option<R> {
        if self.net.conns[i].is_dead() {
            return None;
        }
        let mut result = None;
        self.net.invoke_at(&mut self.clock.core, i, |p, ctx| {
            result = Some(f(downcast_mut(p), ctx));
        });
        self.clock.ops(&mut self.net);
        result
    }

    /// Why the client of `link` ended, once it did.
    pub fn client_lost<C, S>(&self, link: Link<C, S>) -> Option<&DisconnectReason> {
        self.net.pipes[link.client()].lost.as_ref()
    }

    /// Why the server of `link` ended, once it did.
    pub fn server_lost<C, S>(&self, link: Link<C, S>) -> Option<&DisconnectReason> {
        self.net.pipes[link.server()].lost.as_ref()
    }

    /// The handle of the client connection of `link`.
    pub fn client_handle<C, S>(&self, link: Link<C, S>) -> ConnectionHandle {
        self.net.conns[link.client()].state.handle
    }

    /// The handle of the server connection of `link`.
    pub fn server_handle<C, S>(&self, link: Link<C, S>) -> ConnectionHandle {
        self.net.conns[link.server()].state.handle
    }

    /// Bytes of `link` in flight in `direction` (written, not yet delivered).
    pub fn in_flight<C, S>(&self, link: Link<C, S>, direction: Direction) -> usize {
        match direction {
            Direction::ClientToServer => self.net.pipes[link.client()].in_flight,
            Direction::ServerToClient => self.net.pipes[link.server()].in_flight,
        }
    }

    /// Bytes buffered in the client's and the server's transport (refused by
    /// a full wire).
    pub fn buffered<C, S>(&self, link: Link<C, S>) -> (usize, usize) {
        (
            self.net.conns[link.client()].state.pending_len(),
            self.net.conns[link.server()].state.pending_len(),
        )
    }

    /// Resets `link` now, as a network failure would: both protocols hear
    /// `connection_lost` with [`DisconnectReason::Reset`]; bytes in flight are
    /// lost.
    pub fn reset<C, S>(&mut self, link: Link<C, S>) {
        self.net.reset_pair(&mut self.clock.core, link.index);
        self.clock.ops(&mut self.net);
    }

    /// Resets `link` once `byte` bytes (counted from the start of the
    /// connection) went `direction`: bytes `0..byte` arrive, then both
    /// protocols hear `connection_lost` with [`DisconnectReason::Reset`].
    /// A `byte` already passed resets the link at the next delivery that
    /// way, with nothing more delivered. Replaces the reset point [`Faults`]
    /// chose for this link.
    pub fn reset_at<C, S>(&mut self, link: Link<C, S>, direction: Direction, byte: u64) {
        let (at, other) = match direction {
            Direction::ClientToServer => (link.client(), link.server()),
            Direction::ServerToClient => (link.server(), link.client()),
        };
        self.net.pipes[at].reset_at = Some(byte);
        self.net.pipes[other].reset_at = None;
    }

    /// One round: operations queued from outside, calls due now, then
    /// everything ready each way, for every connection. Returns whether
    /// anything happened (or is only waiting for a delay to pass).
    pub fn step(&mut self) -> bool {
        self.round += 1;
        for p in &mut self.net.pipes {
            p.round = self.round;
        }
        let mut progress = !self.clock.core.ops.is_empty();
        self.clock.ops(&mut self.net);
        progress |= self.clock.run_due(&mut self.net) > 0;
        for i in 0..self.net.pipes.len() {
            progress |= self.net.deliver(&mut self.clock, i);
        }
        progress
            || (0..self.net.pipes.len()).any(|i| self.net.waiting(i))
            || !self.clock.core.ops.is_empty()
            || self.clock.call_due()
            // Local tasks woken (by bytes delivered, or past a turn's budget).
            || self.clock.core.has_local_work()
    }

    /// Runs rounds until nothing happens. Returns the rounds run.
    ///
    /// # Panics
    /// When the connections are still busy after [`PumpConfig::max_rounds`]
    /// rounds (see [`try_flush`](Self::try_flush)); the message has the seed.
    pub fn flush(&mut self) -> u64 {
        match self.try_flush() {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`flush`](Self::flush), returning an error instead of panicking.
    ///
    /// # Errors
    /// [`NeverQuiet`] when rounds keep doing something past the limit.
    pub fn try_flush(&mut self) -> Result<u64, NeverQuiet> {
        let mut rounds = 0;
        while self.step() {
            rounds += 1;
            if rounds >= self.config.max_rounds {
                let state = self
                    .net
                    .pipes
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.segs.is_empty())
                    .map(|(i, p)| format!("pipe {i}: {} bytes in flight", p.in_flight))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(NeverQuiet {
                    rounds,
                    seed: self.seed(),
                    state: format!(
                        "{}; {} calls pending",
                        if state.is_empty() { "no bytes" } else { &state },
                        self.clock.pending_calls()
                    ),
                });
            }
        }
        Ok(rounds)
    }

    /// Moves the clock by `by`, runs what is due against the pumped
    /// connections, then [`flush`](Self::flush)es.
    ///
    /// # Panics
    /// As [`flush`](Self::flush).
    pub fn advance(&mut self, by: Duration) {
        self.clock.advance_with(by, &mut self.net);
        self.flush();
    }

    /// The clock (read-only; move it with [`advance`](Self::advance)).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The shared core, to schedule calls or queue operations from the test;
    /// they are carried out on the next round.
    pub fn core_mut(&mut self) -> &mut Core {
        &mut self.clock.core
    }
}
