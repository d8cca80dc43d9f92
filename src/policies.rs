//! Connection policies (Twisted's `twisted.protocols.policies`, tested): limits
//! on how many connections a listener serves, in total and per peer address;
//! read and write bandwidth limits; idle timeouts.
//!
//! [`Policed`] wraps any [`Factory`]; its protocols wrap the inner ones and
//! forward every callback, so the inner protocol does not change.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use torsion::policies::Policed;
//! use torsion::{factory, Context, Factory, Protocol, Reactor};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         ctx.write(data);
//!     }
//! }
//!
//! let factory = Policed::new(factory(|_peer| Echo))
//!     .max_connections(10_000)
//!     .max_per_peer(100)
//!     .idle_timeout(Duration::from_secs(300))
//!     .write_rate(1 << 20); // 1 MiB/s per connection
//! let stats = factory.stats();
//! let mut reactor = Reactor::new()?;
//! reactor.listen_tcp("127.0.0.1:8000".parse().unwrap(), factory)?;
//! reactor.run()?;
//! println!("refused {} connections", stats.refused());
//! # Ok::<(), torsion::Error>(())
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::address::Address;
use crate::context::Core;
use crate::error::DisconnectReason;
use crate::protocol::Wrapper;
use crate::protocol::{Factory, Protocol};
use crate::transport::Context;

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    per_peer: HashMap<IpAddr, usize>,
    refused: u64,
}

/// Live figures of a [`Policed`] factory; cheap to clone, readable any time.
#[derive(Debug, Clone, Default)]
pub struct PolicyStats {
    counts: Rc<RefCell<Counts>>,
}

impl PolicyStats {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.borrow().open
    }

    /// Connections open now from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.counts.borrow().per_peer.get(&ip).copied().unwrap_or(0)
    }

    /// Connections refused so far because a limit was reached.
    pub fn refused(&self) -> u64 {
        self.counts.borrow().refused
    }
}

/// A factory wrapper that applies connection policies. See the [module docs](self).
///
/// ```
/// use torsion::Address;
/// use std::time::Duration;
/// use torsion::policies::Policed;
/// use torsion::{Context, Factory, Protocol};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         ctx.write(data);
///     }
/// }
/// struct EchoFactory;
/// impl Factory for EchoFactory {
///     type Protocol = Echo;
///     fn build_protocol(&mut self, _peer: &Address) -> Option<Echo> {
///         Some(Echo)
///     }
/// }
///
/// // Given to `listen_tcp` in place of the factory it wraps.
/// let factory = Policed::new(EchoFactory)
///     .max_connections(1000)
///     .max_per_peer(10)
///     .idle_timeout(Duration::from_secs(300));
/// let stats = factory.stats();
/// assert_eq!(stats.refused(), 0);
/// ```
#[derive(Debug)]
pub struct Policed<F> {
    inner: F,
    max_total: Option<usize>,
    max_per_peer: Option<usize>,
    read_rate: Option<u64>,
    write_rate: Option<u64>,
    idle_timeout: Option<Duration>,
    stats: PolicyStats,
}

impl<F: Factory> Policed<F> {
    /// Wraps `inner` with no policy yet.
    pub fn new(inner: F) -> Self {
        Policed {
            inner,
            max_total: None,
            max_per_peer: None,
            read_rate: None,
            write_rate: None,
            idle_timeout: None,
            stats: PolicyStats::default(),
        }
    }

    /// Refuses connections beyond `n` open at once (they are closed at once).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_total = Some(n);
        self
    }

    /// Refuses connections beyond `n` open at once from one IP address.
    pub fn max_per_peer(mut self, n: usize) -> Self {
        self.max_per_peer = Some(n);
        self
    }

    /// Limits each connection's reading to `bytes_per_sec`.
    pub fn read_rate(mut self, bytes_per_sec: u64) -> Self {
        self.read_rate = Some(bytes_per_sec);
        self
    }

    /// Limits each connection's writing to `bytes_per_sec`.
    pub fn write_rate(mut self, bytes_per_sec: u64) -> Self {
        self.write_rate = Some(bytes_per_sec);
        self
    }

    /// Closes connections idle for `timeout` (see [`Context::set_idle_timeout`]).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// A handle on the live figures.
    pub fn stats(&self) -> PolicyStats {
        self.stats.clone()
    }

    /// The wrapped factory.
    pub fn inner(&mut self) -> &mut F {
        &mut self.inner
    }
}

impl<F: Factory> Factory for Policed<F> {
    type Protocol = PolicedProtocol<F::Protocol>;

    /// Unix-domain peers have no IP: they all count as one peer, `0.0.0.0`,
    /// for `max_per_peer`.
    fn build_protocol(&mut self, address: &Address) -> Option<Self::Protocol> {
        let ip = address
            .inet()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| a.ip());
        {
            let mut c = self.stats.counts.borrow_mut();
            let from_peer = c.per_peer.get(&ip).copied().unwrap_or(0);
            let over_total = self.max_total.is_some_and(|m| c.open >= m);
            let over_peer = self.max_per_peer.is_some_and(|m| from_peer >= m);
            if over_total || over_peer {
                c.refused += 1;
                tracing::warn!(
                    peer = %address,
                    open = c.open,
                    from_peer,
                    refused = c.refused,
                    "connection refused: {} limit reached",
                    if over_total { "total" } else { "per-peer" }
                );
                return None;
            }
        }
        let inner = self.inner.build_protocol(address)?;
        let mut c = self.stats.counts.borrow_mut();
        c.open += 1;
        *c.per_peer.entry(ip).or_insert(0) += 1;
        Some(PolicedProtocol {
            inner,
            ip,
            counts: self.stats.counts.clone(),
            read_rate: self.read_rate,
            write_rate: self.write_rate,
            idle_timeout: self.idle_timeout,
        })
    }

    fn start_factory(&mut self, core: &mut Core) {
        self.inner.start_factory(core)
    }

    fn stop_factory(&mut self, core: &mut Core) {
        self.inner.stop_factory(core)
    }
}

/// The protocol of a [`Policed`] factory: applies the policy, forwards every
/// callback to the inner protocol, and releases its slot when dropped.
#[derive(Debug)]
pub struct PolicedProtocol<P> {
    inner: P,
    ip: IpAddr,
    counts: Rc<RefCell<Counts>>,
    read_rate: Option<u64>,
    write_rate: Option<u64>,
    idle_timeout: Option<Duration>,
}

impl<P> PolicedProtocol<P> {
    /// The wrapped protocol.
    pub fn inner(&mut self) -> &mut P {
        &mut self.inner
    }
}

impl<P> Drop for PolicedProtocol<P> {
    fn drop(&mut self) {
        let mut c = self.counts.borrow_mut();
        c.open -= 1;
        if let Some(n) = c.per_peer.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_peer.remove(&self.ip);
            }
        }
    }
}

impl<P: Protocol> Protocol for PolicedProtocol<P> {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        if self.read_rate.is_some() {
            ctx.set_read_rate(self.read_rate);
        }
        if self.write_rate.is_some() {
            ctx.set_write_rate(self.write_rate);
        }
        if self.idle_timeout.is_some() {
            ctx.set_idle_timeout(self.idle_timeout);
        }
        self.inner.connection_made(ctx)
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        self.inner.data_received(ctx, data)
    }
    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.inner.connection_lost(ctx, reason)
    }
    fn read_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.inner.read_connection_lost(ctx)
    }
    fn write_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.inner.write_connection_lost(ctx)
    }
    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        self.inner.pause_writing(ctx)
    }
    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        self.inner.resume_writing(ctx)
    }
    fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
        self.inner.streaming_finished(ctx, result)
    }
    fn idle_timeout(&mut self, ctx: &mut Context<'_>) {
        self.inner.idle_timeout(ctx)
    }
    fn as_wrapper(&mut self) -> Option<&mut dyn Wrapper> {
        Some(self)
    }
    fn as_wrapper_ref(&self) -> Option<&dyn Wrapper> {
        Some(self)
    }
}

/// `with_protocol` and `call_later_self` reach the policed protocol inside.
impl<P: Protocol> Wrapper for PolicedProtocol<P> {
    fn inner(&self) -> &dyn Protocol {
        &self.inner
    }
    fn inner_mut(&mut self) -> &mut dyn Protocol {
        &mut self.inner
    }
}
