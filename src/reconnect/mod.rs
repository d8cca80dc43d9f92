//! Reconnecting clients: a [`ClientFactory`] wrapper that connects again after
//! every failed attempt and every lost connection, waiting longer each time
//! (Twisted's `ReconnectingClientFactory`, with its two traps removed: the
//! back-off resets by itself after a successful connection, and a jittered delay
//! never exceeds the maximum).
//!
//! The wrapper is given to the reactor like any client factory; a
//! [`ReconnectHandle`] taken from it beforehand tells the application what the
//! connector is doing and stops it ([`ReconnectHandle::stop_trying`]).
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use torsion::reconnect::{BackoffPolicy, ReconnectingClientFactory};
//! use torsion::{Context, DisconnectReason, Protocol, Reactor};
//!
//! /// Prints what the server says.
//! struct Tail;
//! impl Protocol for Tail {
//!     fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
//!         print!("{}", String::from_utf8_lossy(data));
//!     }
//!     fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
//!         eprintln!("lost: {reason}; reconnecting");
//!     }
//! }
//!
//! let policy = BackoffPolicy::default()
//!     .initial_delay(Duration::from_millis(200))
//!     .max_delay(Duration::from_secs(30));
//! let factory = ReconnectingClientFactory::from_fn(policy, |_peer| Some(Tail))?;
//! let handle = factory.handle();
//!
//! let mut reactor = Reactor::new()?;
//! reactor.connect_tcp("127.0.0.1:7000".parse().unwrap(), factory, Duration::from_secs(5));
//! // Give up after a minute, whatever happens.
//! reactor.call_later(Duration::from_secs(60), move |core| {
//!     handle.stop_trying(core);
//!     core.stop().unwrap();
//! });
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backoff;

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

pub use backoff::{Backoff, BackoffPolicy, PolicyError, MAX_DELAY_LIMIT};

use crate::context::Core;
use crate::error::DisconnectReason;
use crate::protocol::{ClientFactory, Protocol, Reconnect};
use crate::reactor::Connector;

/// What a reconnecting connector is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconnectState {
    /// Not handed to the reactor yet.
    Idle,
    /// An attempt is in progress.
    Connecting,
    /// A connection is established.
    Connected,
    /// Waiting `delay` before the next attempt.
    Waiting {
        /// How long this wait is.
        delay: Duration,
    },
    /// The policy's retries are used up: no more attempts.
    GaveUp,
    /// [`ReconnectHandle::stop_trying`] was called: no more attempts.
    Stopped,
}

impl ReconnectState {
    /// Whether no more attempts will be made.
    pub fn is_finished(&self) -> bool {
        matches!(self, ReconnectState::GaveUp | ReconnectState::Stopped)
    }
}

struct Shared {
    backoff: Backoff,
    trying: bool,
    connector: Option<Connector>,
    state: ReconnectState,
    attempts: u64,
    connections: u64,
    last_reason: Option<DisconnectReason>,
}

/// A [`ClientFactory`] that reconnects with exponential back-off. See the
/// [module docs](self).
///
/// It wraps an inner client factory, which builds the protocols and hears every
/// callback as usual. The inner factory's own [`Reconnect`] answers are ignored:
/// the back-off decides.
///
/// ```
/// use torsion::Address;
/// use std::time::Duration;
/// use torsion::reconnect::{BackoffPolicy, ReconnectState, ReconnectingClientFactory};
/// use torsion::{Context, Protocol};
///
/// struct Client;
/// impl Protocol for Client {
///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
/// }
///
/// let policy = BackoffPolicy::default()
///     .initial_delay(Duration::from_millis(100))
///     .max_delay(Duration::from_secs(30));
/// let factory = ReconnectingClientFactory::from_fn(policy, |_peer: &Address| Some(Client))?;
/// // Keep a handle: the factory itself goes to `reactor.connect_tcp(addr,
/// // factory, timeout)`, which it then keeps connected.
/// let handle = factory.handle();
/// assert_eq!(handle.state(), ReconnectState::Idle);
/// # Ok::<(), torsion::reconnect::PolicyError>(())
/// ```
pub struct ReconnectingClientFactory<F> {
    inner: F,
    shared: Rc<RefCell<Shared>>,
}

impl<F> fmt::Debug for ReconnectingClientFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.borrow();
        f.debug_struct("ReconnectingClientFactory")
            .field("state", &s.state)
            .field("backoff", &s.backoff)
            .finish_non_exhaustive()
    }
}

impl<F: ClientFactory> ReconnectingClientFactory<F> {
    /// Wraps `inner` with the back-off `policy`.
    ///
    /// # Errors
    /// [`PolicyError`] if the policy cannot work (factor below 1, jitter outside
    /// 0..=1, initial delay above the maximum...).
    pub fn new(inner: F, policy: BackoffPolicy) -> Result<Self, PolicyError> {
        Ok(Self::with_backoff(inner, Backoff::new(policy)?))
    }

    /// Wraps `inner` with a prepared [`Backoff`] (for example one made with
    /// [`Backoff::with_seed`] for reproducible delays).
    pub fn with_backoff(inner: F, backoff: Backoff) -> Self {
        ReconnectingClientFactory {
            inner,
            shared: Rc::new(RefCell::new(Shared {
                backoff,
                trying: true,
                connector: None,
                state: ReconnectState::Idle,
                attempts: 0,
                connections: 0,
                last_reason: None,
            })),
        }
    }

    /// A handle to watch and stop this factory once the reactor owns it.
    pub fn handle(&self) -> ReconnectHandle {
        ReconnectHandle {
            shared: self.shared.clone(),
        }
    }

    /// The inner factory.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The inner factory, mutably.
    pub fn inner_mut(&mut self) -> &mut F {
        &mut self.inner
    }

    fn after_end(&mut self, reason: &DisconnectReason) -> Reconnect {
        let mut s = self.shared.borrow_mut();
        s.last_reason = Some(reason.clone());
        if !s.trying {
            s.state = ReconnectState::Stopped;
            return Reconnect::Never;
        }
        match s.backoff.next_delay() {
            Some(delay) => {
                tracing::debug!(%reason, ?delay, retry = s.backoff.retries(), "reconnecting after a delay");
                s.state = ReconnectState::Waiting { delay };
                Reconnect::After(delay)
            }
            None => {
                tracing::warn!(%reason, retries = s.backoff.retries(), "giving up reconnecting: retries used up");
                s.state = ReconnectState::GaveUp;
                Reconnect::Never
            }
        }
    }
}

impl<P, B> ReconnectingClientFactory<FromFn<B>>
where
    P: Protocol,
    B: FnMut(&crate::Address) -> Option<P> + 'static,
{
    /// A reconnecting factory whose protocols come from `build` (no inner factory
    /// to write).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_fn(policy: BackoffPolicy, build: B) -> Result<Self, PolicyError> {
        Self::new(FromFn(build), policy)
    }
}

impl<F: ClientFactory> ClientFactory for ReconnectingClientFactory<F> {
    type Protocol = F::Protocol;

    fn started_connecting(&mut self, core: &mut Core, connector: Connector) {
        let trying = {
            let mut s = self.shared.borrow_mut();
            s.connector = Some(connector);
            s.attempts += 1;
            if s.trying {
                s.state = ReconnectState::Connecting;
            }
            s.trying
        };
        if !trying {
            // stop_trying came before the reactor had started this connector.
            connector.stop_connecting(core);
        }
        self.inner.started_connecting(core, connector);
    }

    fn build_protocol(&mut self, peer: &crate::Address) -> Option<F::Protocol> {
        let p = self.inner.build_protocol(peer)?;
        let mut s = self.shared.borrow_mut();
        s.backoff.reset();
        s.connections += 1;
        s.state = ReconnectState::Connected;
        Some(p)
    }

    fn client_connection_made(
        &mut self,
        core: &mut Core,
        connector: Connector,
        conn: crate::ConnectionHandle,
    ) {
        self.inner.client_connection_made(core, connector, conn);
    }

    fn client_connection_failed(
        &mut self,
        core: &mut Core,
        connector: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let _ = self.inner.client_connection_failed(core, connector, reason);
        self.after_end(reason)
    }

    fn client_connection_lost(
        &mut self,
        core: &mut Core,
        connector: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let _ = self.inner.client_connection_lost(core, connector, reason);
        self.after_end(reason)
    }
}

/// Watches and stops a [`ReconnectingClientFactory`] after the reactor took it.
/// Cheap to clone; reactor thread only.
#[derive(Clone)]
pub struct ReconnectHandle {
    shared: Rc<RefCell<Shared>>,
}

impl fmt::Debug for ReconnectHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectHandle")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl ReconnectHandle {
    /// Stops reconnecting (Twisted's `stopTrying`): a pending retry is cancelled, an
    /// attempt in progress is abandoned (the inner factory hears
    /// `client_connection_failed` with [`DisconnectReason::Cancelled`]), and an
    /// established connection stays up but is not replaced when it ends. Calling
    /// it again does nothing.
    pub fn stop_trying(&self, core: &mut Core) {
        let connector = {
            let mut s = self.shared.borrow_mut();
            if !s.trying {
                return;
            }
            s.trying = false;
            if matches!(
                s.state,
                ReconnectState::Waiting { .. } | ReconnectState::Idle
            ) {
                s.state = ReconnectState::Stopped;
            }
            s.connector
        };
        if let Some(c) = connector {
            c.stop_connecting(core);
        }
    }

    /// Whether [`stop_trying`](Self::stop_trying) has not been called.
    pub fn is_trying(&self) -> bool {
        self.shared.borrow().trying
    }

    /// What the connector is doing.
    pub fn state(&self) -> ReconnectState {
        self.shared.borrow().state
    }

    /// Retries since the last successful connection.
    pub fn retries(&self) -> u32 {
        self.shared.borrow().backoff.retries()
    }

    /// Connection attempts started, in all.
    pub fn attempts(&self) -> u64 {
        self.shared.borrow().attempts
    }

    /// Connections established, in all.
    pub fn connections(&self) -> u64 {
        self.shared.borrow().connections
    }

    /// Why the last attempt failed or the last connection ended.
    pub fn last_reason(&self) -> Option<DisconnectReason> {
        self.shared.borrow().last_reason.clone()
    }

    /// The reactor's connector, once the first attempt has started.
    pub fn connector(&self) -> Option<Connector> {
        self.shared.borrow().connector
    }

    /// Starts the back-off again from the initial delay (Twisted's
    /// `resetDelay`); rarely needed, since a successful connection does it.
    pub fn reset_delay(&self) {
        self.shared.borrow_mut().backoff.reset();
    }
}

/// A [`ClientFactory`] made from a closure that builds protocols; it never asks to
/// reconnect by itself. See [`ReconnectingClientFactory::from_fn`].
///
/// ```
/// use torsion::reconnect::FromFn;
/// use torsion::{Address, ClientFactory, Context, Protocol};
///
/// struct Client;
/// impl Protocol for Client {
///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
/// }
///
/// // A closure that builds the protocol, as the factory the back-off wraps.
/// let mut factory = FromFn(|_peer: &Address| Some(Client));
/// let peer = Address::from("127.0.0.1:1".parse::<std::net::SocketAddr>().unwrap());
/// assert!(factory.build_protocol(&peer).is_some());
/// ```
pub struct FromFn<B>(pub B);

impl<B> fmt::Debug for FromFn<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

impl<P, B> ClientFactory for FromFn<B>
where
    P: Protocol,
    B: FnMut(&crate::Address) -> Option<P> + 'static,
{
    type Protocol = P;

    fn build_protocol(&mut self, peer: &crate::Address) -> Option<P> {
        (self.0)(peer)
    }
}

/// The factory's decisions, driven by hand on the fake clock's core (the retry
/// timers themselves are the reactor's connector machinery, tested over real
/// sockets in `tests/reconnect.rs`).
#[cfg(test)]
mod clock_tests {
    use super::*;
    use crate::testing::Clock;
    use crate::Context;

    struct Nop;
    impl Protocol for Nop {
        fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn factory(
        max_retries: Option<u32>,
    ) -> ReconnectingClientFactory<FromFn<impl FnMut(&crate::Address) -> Option<Nop>>> {
        let policy = BackoffPolicy::default()
            .initial_delay(secs(1))
            .factor(2.0)
            .jitter(0.0)
            .max_delay(secs(8))
            .max_retries(max_retries);
        ReconnectingClientFactory::with_backoff(
            FromFn(|_peer: &crate::Address| Some(Nop)),
            Backoff::with_seed(policy, 7).unwrap(),
        )
    }

    #[test]
    fn delays_grow_to_the_maximum_reset_after_a_connection_and_stop_on_request() {
        let mut clock = Clock::new();
        let mut f = factory(None);
        let h = f.handle();
        let c = Connector::from_id(1);
        let refused = DisconnectReason::Refused;
        let mut delays = vec![];
        for _ in 0..6 {
            f.started_connecting(&mut clock, c);
            assert_eq!(h.state(), ReconnectState::Connecting);
            match f.client_connection_failed(&mut clock, c, &refused) {
                Reconnect::After(d) => delays.push(d),
                Reconnect::Never => panic!("gave up"),
            }
            clock.advance(*delays.last().unwrap());
        }
        assert_eq!(delays, [1, 2, 4, 8, 8, 8].map(secs));
        assert_eq!(h.retries(), 6);
        // A connection resets the back-off: the next loss waits the initial delay.
        f.started_connecting(&mut clock, c);
        assert!(f
            .build_protocol(&crate::Address::Inet("127.0.0.1:1".parse().unwrap()))
            .is_some());
        assert_eq!(h.state(), ReconnectState::Connected);
        let lost = f.client_connection_lost(&mut clock, c, &DisconnectReason::Reset);
        assert_eq!(lost, Reconnect::After(secs(1)));
        assert_eq!(h.last_reason(), Some(DisconnectReason::Reset));
        // stop_trying while waiting: no further attempt is asked for.
        h.stop_trying(&mut clock);
        assert_eq!(h.state(), ReconnectState::Stopped);
        assert_eq!(
            f.client_connection_failed(&mut clock, c, &refused),
            Reconnect::Never
        );
        assert!(!h.is_trying());
    }

    #[test]
    fn max_retries_gives_up_with_the_last_reason() {
        let mut clock = Clock::new();
        let mut f = factory(Some(2));
        let h = f.handle();
        let c = Connector::from_id(1);
        let t = DisconnectReason::TimedOut;
        assert_eq!(
            f.client_connection_failed(&mut clock, c, &t),
            Reconnect::After(secs(1))
        );
        assert_eq!(
            f.client_connection_failed(&mut clock, c, &t),
            Reconnect::After(secs(2))
        );
        assert_eq!(
            f.client_connection_failed(&mut clock, c, &t),
            Reconnect::Never
        );
        assert_eq!(h.state(), ReconnectState::GaveUp);
        assert_eq!(h.last_reason(), Some(t));
    }
}
