//! The connection that checks a target: connect, optionally send a probe and
//! check the reply's first bytes, report up or down once (or, in persistent
//! mode, stay connected and report the disconnect at once).

use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::Address;
use torsion::{ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reconnect};

use super::monitor::Monitor;
use super::status::Reason;

/// Bytes of a wrong banner kept to show in the report.
const SHOWN: usize = 40;

/// What a check sends and expects.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Sent once connected.
    pub send: Option<Vec<u8>>,
    /// The reply must start with this.
    pub expect: Option<Vec<u8>>,
    /// Connect timeout, and, separately, how long to wait for the reply.
    pub timeout: Duration,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the expected reply.
    Banner,
    /// Reported up; persistent connections stay here.
    Up,
    /// Reported; nothing more to say.
    Done,
}

/// One check's connection.
#[derive(Debug)]
pub struct Probe {
    target: usize,
    round: Option<u64>,
    monitor: Monitor,
    spec: Rc<Spec>,
    started: Instant,
    latency: Duration,
    got: Vec<u8>,
    state: State,
}

impl Probe {
    fn report(&mut self, core: &mut Core, status: Result<Duration, Reason>) {
        self.monitor.report(core, self.target, self.round, status);
    }

    /// Up: a one-shot check closes; a persistent one stays.
    fn up(&mut self, ctx: &mut Context<'_>) {
        let latency = self.latency;
        self.report(ctx, Ok(latency));
        if self.round.is_some() {
            self.state = State::Done;
            ctx.lose_connection();
        } else {
            self.state = State::Up;
        }
    }

    fn down(&mut self, ctx: &mut Context<'_>, reason: Reason) {
        self.state = State::Done;
        self.report(ctx, Err(reason));
        ctx.lose_connection();
    }
}

impl Protocol for Probe {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.latency = self.started.elapsed();
        if let Some(send) = &self.spec.send {
            ctx.write(send);
        }
        if self.spec.expect.is_none() {
            return self.up(ctx);
        }
        self.state = State::Banner;
        ctx.call_later_self(self.spec.timeout, |p: &mut Probe, ctx| {
            if p.state == State::Banner {
                p.state = State::Done;
                p.report(ctx, Err(Reason::TimedOut));
                ctx.abort_connection();
            }
        });
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        if self.state != State::Banner {
            return;
        }
        let expect = self.spec.expect.as_deref().unwrap_or_default();
        let room = SHOWN.max(expect.len()).saturating_sub(self.got.len());
        self.got.extend_from_slice(&data[..data.len().min(room)]);
        let n = self.got.len().min(expect.len());
        if self.got[..n] != expect[..n] {
            let shown = String::from_utf8_lossy(&self.got).into_owned();
            return self.down(ctx, Reason::WrongBanner(shown));
        }
        if n == expect.len() {
            self.up(ctx);
        }
    }

    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        match self.state {
            // Closed before the banner was complete.
            State::Banner => {
                let r = match reason {
                    DisconnectReason::Done => Reason::Closed,
                    other => Reason::from_disconnect(other),
                };
                self.state = State::Done;
                self.report(ctx, Err(r));
            }
            // A persistent connection went down: say so at once.
            State::Up => {
                self.state = State::Done;
                self.report(ctx, Err(Reason::from_disconnect(reason)));
            }
            State::Done => {}
        }
    }
}

/// Builds one [`Probe`] per attempt and reports failed connects. In one-shot
/// mode it serves a single check of round `round`; in persistent mode
/// (`round: None`) it sits inside a reconnecting factory.
#[derive(Debug)]
pub struct ProbeFactory {
    pub(crate) target: usize,
    pub(crate) round: Option<u64>,
    pub(crate) monitor: Monitor,
    pub(crate) spec: Rc<Spec>,
    pub(crate) started: Instant,
}

impl ClientFactory for ProbeFactory {
    type Protocol = Probe;

    fn started_connecting(&mut self, _core: &mut Core, _c: Connector) {
        self.started = Instant::now();
    }

    fn build_protocol(&mut self, _peer: &Address) -> Option<Probe> {
        Some(Probe {
            target: self.target,
            round: self.round,
            monitor: self.monitor.clone(),
            spec: self.spec.clone(),
            started: self.started,
            latency: Duration::ZERO,
            got: Vec::new(),
            state: State::Done,
        })
    }

    fn client_connection_failed(
        &mut self,
        core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        if *reason != DisconnectReason::Cancelled || self.round.is_some() {
            let r = Reason::from_disconnect(reason);
            self.monitor.report(core, self.target, self.round, Err(r));
        }
        Reconnect::Never
    }
}
