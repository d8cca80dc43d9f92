//! Happy Eyeballs (RFC 8305): connect to several addresses of one host,
//! families interleaved, a new attempt every 250 ms (or at once when one
//! fails), the first connection wins and the other attempts are cancelled.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::context::{ConnectionHandle, Core, DelayedCall};
use crate::defer::{Deferred, Trigger};
use crate::error::DisconnectReason;
use crate::protocol::{ClientFactory, Protocol, Reconnect};
use crate::reactor::Connector;

/// RFC 8305's "Connection Attempt Delay" (its recommended default).
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Orders addresses as RFC 8305 §4 asks: alternate families, starting with
/// the family of the first (the resolver's preference), keeping each family's
/// own order.
pub fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (mut a, mut b): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|x| x.is_ipv6() == first.is_ipv6());
    a.reverse();
    b.reverse();
    let mut out = Vec::with_capacity(addrs.len());
    loop {
        match (a.pop(), b.pop()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// Builds the winner's protocol from the address it connected to.
pub(crate) type Maker<Q> = Box<dyn FnOnce(&crate::Address) -> Option<Q>>;

/// One race between the attempts to one host.
pub(crate) struct Race<Q> {
    addrs: Vec<SocketAddr>,
    next: usize,
    timeout: Duration,
    live: Vec<(usize, Connector)>,
    winner: Option<usize>,
    maker: Option<Maker<Q>>,
    /// Fire the Deferred when the winner's `client_connection_made` runs
    /// (plain TCP); otherwise the protocol layer fires it (TLS, after the
    /// handshake) through [`ready`].
    fire_on_made: bool,
    trigger: Option<Trigger<ConnectionHandle, DisconnectReason>>,
    timer: Option<DelayedCall>,
    last_error: Option<DisconnectReason>,
    cancelled: bool,
    /// The winner's connection, once made (aborted if cancelled before ready).
    conn: Option<ConnectionHandle>,
}

/// A shared race.
pub(crate) type RaceRef<Q> = Rc<RefCell<Race<Q>>>;

/// Starts a race; the Deferred fires with the winner's handle, or fails with
/// the last attempt's reason when every attempt failed. Cancelling it stops
/// every attempt.
pub(crate) fn race<Q: Protocol>(
    core: &mut Core,
    addrs: Vec<SocketAddr>,
    timeout: Duration,
    fire_on_made: bool,
    maker: Maker<Q>,
) -> (Deferred<ConnectionHandle, DisconnectReason>, RaceRef<Q>) {
    let (d, trigger) = Deferred::new();
    let r = Rc::new(RefCell::new(Race {
        addrs: interleave(&addrs),
        next: 0,
        timeout,
        live: Vec::new(),
        winner: None,
        maker: Some(maker),
        fire_on_made,
        trigger: Some(trigger),
        timer: None,
        last_error: None,
        cancelled: false,
        conn: None,
    }));
    start_next(&r, core);
    (d, r)
}

/// Fires the race's Deferred (once).
pub(crate) fn ready<Q>(r: &RaceRef<Q>, result: Result<ConnectionHandle, DisconnectReason>) {
    let t = r.borrow_mut().trigger.take();
    if let Some(t) = t {
        let _ = t.fire(result);
    }
}

/// Stops the race: pending attempts are cancelled, no new one starts.
pub(crate) fn cancel<Q>(r: &RaceRef<Q>, core: &mut Core) {
    let (live, timer, conn) = {
        let mut race = r.borrow_mut();
        race.cancelled = true;
        // Connected but not ready yet (a TLS handshake under way): abort it.
        let conn = race.conn.filter(|_| race.trigger.is_some());
        (std::mem::take(&mut race.live), race.timer.take(), conn)
    };
    if let Some(t) = timer {
        let _ = t.cancel(core);
    }
    if let Some(h) = conn {
        core.connection(h).abort_connection();
    }
    for (_, c) in live {
        c.stop_connecting(core);
    }
}

fn start_next<Q: Protocol>(r: &RaceRef<Q>, core: &mut Core) {
    let (addr, index, timeout, more) = {
        let mut race = r.borrow_mut();
        if race.cancelled || race.winner.is_some() || race.next >= race.addrs.len() {
            return;
        }
        if let Some(t) = race.timer.take() {
            let _ = t.cancel(core);
        }
        let i = race.next;
        race.next += 1;
        (race.addrs[i], i, race.timeout, race.next < race.addrs.len())
    };
    tracing::debug!(%addr, attempt = index, "happy eyeballs: connecting");
    let attempt = Attempt {
        race: r.clone(),
        index,
    };
    let c = core.connect_tcp(addr, attempt, timeout);
    let mut race = r.borrow_mut();
    race.live.push((index, c));
    if more {
        // The timer holds the race too: no cycle (the race keeps only the
        // timer's id), and the next attempt starts even if this one's factory
        // is gone by then.
        let r2 = r.clone();
        race.timer = Some(core.call_later(CONNECTION_ATTEMPT_DELAY, move |core| {
            r2.borrow_mut().timer = None;
            start_next(&r2, core);
        }));
    }
}

/// The client factory of one attempt.
struct Attempt<Q> {
    race: RaceRef<Q>,
    index: usize,
}

impl<Q: Protocol> ClientFactory for Attempt<Q> {
    type Protocol = Q;

    fn build_protocol(&mut self, peer: &crate::Address) -> Option<Q> {
        let maker = {
            let mut race = self.race.borrow_mut();
            if race.winner.is_some() || race.cancelled {
                return None; // lost the race: closed at once
            }
            race.winner = Some(self.index);
            race.maker.take()
        };
        tracing::debug!(%peer, attempt = self.index, "happy eyeballs: won");
        maker.and_then(|m| m(peer))
    }

    fn client_connection_made(&mut self, core: &mut Core, _c: Connector, conn: ConnectionHandle) {
        let (others, timer, fire) = {
            let mut race = self.race.borrow_mut();
            let index = self.index;
            let others: Vec<Connector> = race
                .live
                .iter()
                .filter(|(i, _)| *i != index)
                .map(|(_, c)| *c)
                .collect();
            race.live.retain(|(i, _)| *i == index);
            race.conn = Some(conn);
            (others, race.timer.take(), race.fire_on_made)
        };
        if let Some(t) = timer {
            let _ = t.cancel(core);
        }
        for c in others {
            c.stop_connecting(core);
        }
        if fire {
            ready(&self.race, Ok(conn));
        }
    }

    fn client_connection_failed(
        &mut self,
        core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let (won_elsewhere, exhausted) = {
            let mut race = self.race.borrow_mut();
            let index = self.index;
            race.live.retain(|(i, _)| *i != index);
            if race.winner == Some(index) {
                // Built (or refused by the maker) and then failed.
                drop(race);
                ready(&self.race, Err(reason.clone()));
                return Reconnect::Never;
            }
            if *reason != DisconnectReason::Cancelled || race.last_error.is_none() {
                race.last_error = Some(reason.clone());
            }
            (
                race.winner.is_some() || race.cancelled,
                race.live.is_empty() && race.next >= race.addrs.len(),
            )
        };
        if won_elsewhere {
            return Reconnect::Never;
        }
        tracing::debug!(%reason, attempt = self.index, "happy eyeballs: attempt failed");
        if exhausted {
            let reason = self
                .race
                .borrow_mut()
                .last_error
                .take()
                .unwrap_or_else(|| reason.clone());
            ready(&self.race, Err(reason));
        } else {
            // RFC 8305: a failure starts the next attempt without waiting.
            start_next(&self.race, core);
        }
        Reconnect::Never
    }

    fn client_connection_lost(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        // Lost before it was ready (a failed TLS handshake, or inside
        // connection_made): the connect failed.
        ready(&self.race, Err(reason.clone()));
        Reconnect::Never
    }
}

impl Core {
    /// Connects `protocol` to the first of `addrs` that answers, the Happy
    /// Eyeballs way (RFC 8305): attempts start one after another, address
    /// families interleaved, every 250 ms or as soon as the previous attempt
    /// failed; the first connection wins and the attempts still pending are
    /// cancelled. The Deferred fires with the winner's handle once its
    /// `connection_made` has run. Each attempt times out after `timeout`.
    ///
    /// Client endpoints with a host name resolve it on the thread pool and
    /// connect this way ([`ClientEndpoint`](crate::endpoints::ClientEndpoint)).
    ///
    /// # Errors
    /// The Deferred fails with the last failed attempt's reason when all
    /// failed, or with [`DisconnectReason::Cancelled`] when cancelled (which
    /// stops every attempt; the protocol is never built).
    #[track_caller]
    pub fn connect_happy_eyeballs<P: Protocol>(
        &mut self,
        addrs: &[SocketAddr],
        protocol: P,
        timeout: Duration,
    ) -> Deferred<ConnectionHandle, DisconnectReason> {
        if addrs.is_empty() {
            let (d, t) = Deferred::new();
            let _ = t.errback(DisconnectReason::Io {
                kind: std::io::ErrorKind::InvalidInput,
                message: "no address to connect to".into(),
            });
            return d;
        }
        let mut slot = Some(protocol);
        let (inner, r) = race(
            self,
            addrs.to_vec(),
            timeout,
            true,
            Box::new(move |_peer| slot.take()),
        );
        cancellable(self, inner, r)
    }
}

/// Wraps a race's Deferred so that cancelling it stops the race.
pub(crate) fn cancellable<Q: 'static>(
    core: &mut Core,
    inner: Deferred<ConnectionHandle, DisconnectReason>,
    r: RaceRef<Q>,
) -> Deferred<ConnectionHandle, DisconnectReason> {
    let local = core.local();
    let weak = Rc::downgrade(&r);
    let (d, t) = Deferred::with_canceller(move |_| {
        if let Some(r) = weak.upgrade() {
            local.call(move |core| cancel(&r, core));
        }
    });
    drop(inner.add_both(move |res| {
        let _ = t.fire(res);
        Ok::<(), DisconnectReason>(())
    }));
    d
}

/// Happy Eyeballs to a TLS server: the race is decided by TCP, the handshake
/// runs on the winner, and `protocol` is built (and the Deferred fires) once
/// it is done; a failed handshake fails the Deferred.
#[cfg(feature = "tls")]
pub(crate) fn connect_tls<P: Protocol>(
    core: &mut Core,
    addrs: &[SocketAddr],
    server_name: crate::tls::ServerName<'static>,
    config: std::sync::Arc<crate::tls::ClientConfig>,
    protocol: P,
    timeout: Duration,
) -> Deferred<ConnectionHandle, DisconnectReason> {
    use crate::tls::{ClientHooks, TlsProtocol};

    type Done = Rc<RefCell<Option<Trigger<ConnectionHandle, DisconnectReason>>>>;
    struct Hooks<P> {
        slot: Option<P>,
        done: Done,
    }
    impl<P: Protocol> ClientHooks for Hooks<P> {
        fn build(&mut self, _peer: &crate::Address) -> Option<Box<dyn Protocol>> {
            self.slot.take().map(|p| Box::new(p) as Box<dyn Protocol>)
        }
        fn made(&mut self, _core: &mut Core, conn: ConnectionHandle) {
            if let Some(t) = self.done.borrow_mut().take() {
                let _ = t.callback(conn);
            }
        }
    }

    let (d, t) = Deferred::new();
    let done: Done = Rc::new(RefCell::new(Some(t)));
    let hooks = Hooks {
        slot: Some(protocol),
        done: done.clone(),
    };
    let maker: Maker<TlsProtocol> =
        Box::new(move |peer| {
            match TlsProtocol::client_after_handshake(config, server_name, Box::new(hooks)) {
                Ok(p) => Some(p.with_handshake_timeout(timeout)),
                Err(e) => {
                    tracing::error!(error = %e, %peer, "cannot start a TLS client connection");
                    None
                }
            }
        });
    let (failed, r) = race(core, addrs.to_vec(), timeout, false, maker);
    drop(failed.add_both(move |res| {
        if let Err(e) = res {
            if let Some(t) = done.borrow_mut().take() {
                let _ = t.errback(e);
            }
        }
        Ok::<(), DisconnectReason>(())
    }));
    cancellable(core, d, r)
}
