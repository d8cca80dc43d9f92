//! The connection that checks a target (tcp and tls): connect (and handshake),
//! optionally send and check the reply's first bytes, report once. In
//! persistent mode the first successful check's connection is kept: it sends
//! the probe again every interval with a read deadline, has TCP keepalive on,
//! and reports at once when it goes quiet or goes away.

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use torsion::{Address, Keepalive, TcpOptions};
use torsion::{ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reconnect};

use super::monitor::{Monitor, Origin};
use super::status::{Reason, Up};
use super::target::{Kind, Spec};
use super::x509;

/// Bytes of a wrong banner kept to show in the report.
const SHOWN: usize = 40;

/// TCP keepalive that notices an outage within `interval` plus `timeout`:
/// the first probe after one quiet interval, then probes every interval until
/// `timeout` is used up (the kernel counts in whole seconds).
pub fn keepalive_for(interval: Duration, timeout: Duration) -> Keepalive {
    let secs = |d: Duration| Duration::from_secs(d.as_secs_f64().ceil().max(1.0) as u64);
    let step = secs(interval);
    let count = (timeout.as_secs_f64() / step.as_secs_f64()).ceil().max(1.0) as u32;
    Keepalive::new(step).interval(step).count(count)
}

/// From a keepalive's first unanswered probe to the kernel's verdict.
pub fn detection(k: &Keepalive) -> Duration {
    k.interval * k.count
}

/// The socket options of a check's connection: for one that may be kept,
/// keepalive as [`keepalive_for`] says, and `TCP_USER_TIMEOUT` bounding the
/// case keepalive does not cover (a probe unacknowledged).
pub fn options(keep: bool, interval: Duration, timeout: Duration) -> TcpOptions {
    let options = TcpOptions::default();
    if !keep {
        return options;
    }
    let k = keepalive_for(interval, timeout);
    options.keepalive(k).user_timeout(k.idle + detection(&k))
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// A check waiting for the expected reply.
    Banner,
    /// Kept, between probes or waiting for a probe's reply.
    Kept,
    /// Reported; nothing more to say.
    Done,
}

/// One check's connection.
#[derive(Debug)]
pub struct Probe {
    target: usize,
    monitor: Monitor,
    spec: Rc<Spec>,
    interval: Duration,
    started: Instant,
    keep: bool,
    latency: Duration,
    got: Vec<u8>,
    state: State,
    /// Kept: the probe in flight (when it was sent, its number).
    waiting: Option<(Instant, u64)>,
    probes: u64,
    /// The keepalive the connection was made with (a connection that may
    /// be kept has it from the start).
    offered: Option<Keepalive>,
    /// Kept, with keepalive on.
    keepalive: Option<Keepalive>,
    cert: Option<(f64, SystemTime)>,
}

impl Probe {
    fn status_up(&self, latency: Duration) -> Up {
        let mut up = Up::new(latency);
        if let Some((days, at)) = self.cert {
            up.cert_days = Some(days);
            up.cert_expiry = Some(at);
            if let Some(warn) = self.spec.cert_warn_days {
                if days < warn {
                    up.warning = Some(format!(
                        "certificate expires in {days:.1} days, below {warn}"
                    ));
                }
            }
        }
        up
    }

    /// The check succeeded: report, then close, or keep the connection.
    fn up(&mut self, ctx: &mut Context<'_>) {
        let up = self.status_up(self.latency);
        self.monitor
            .report(ctx, self.target, Origin::Check, self.started, Ok(up));
        if self.keep && self.monitor.adopt(self.target, ctx.handle()) {
            self.state = State::Kept;
            self.got.clear();
            self.keepalive = self.offered;
            self.schedule_probe(ctx, self.started + self.interval);
        } else {
            self.state = State::Done;
            ctx.lose_connection();
        }
    }

    fn down(&mut self, ctx: &mut Context<'_>, origin: Origin, started: Instant, reason: Reason) {
        if self.state == State::Kept {
            self.monitor.release(self.target, ctx.handle());
        }
        self.state = State::Done;
        self.monitor
            .report(ctx, self.target, origin, started, Err(reason));
        ctx.abort_connection();
    }

    /// Kept: the next probe at `at` (only when there is something to send; a
    /// kept connection without `--send` relies on keepalive).
    fn schedule_probe(&mut self, ctx: &mut Context<'_>, at: Instant) {
        if self.spec.send.is_none() {
            return;
        }
        let wait = at.saturating_duration_since(Instant::now());
        ctx.call_later_self(wait, |p: &mut Probe, ctx| p.send_probe(ctx));
    }

    fn send_probe(&mut self, ctx: &mut Context<'_>) {
        if self.state != State::Kept || self.monitor.stopping() {
            return;
        }
        let Some(send) = &self.spec.send else { return };
        let now = Instant::now();
        if self.waiting.is_some() {
            // The last probe is still within its deadline (timeout > interval):
            // that deadline stands; a new probe would only move it.
            return self.schedule_probe(ctx, now + self.interval);
        }
        self.probes += 1;
        let n = self.probes;
        self.waiting = Some((now, n));
        self.got.clear();
        ctx.write(send);
        ctx.call_later_self(self.spec.timeout, move |p: &mut Probe, ctx| {
            if p.state == State::Kept && p.waiting.is_some_and(|(_, k)| k == n) {
                let (sent, _) = p.waiting.take().unwrap_or((now, n));
                p.down(ctx, Origin::Kept, sent, Reason::TimedOut);
            }
        });
        self.schedule_probe(ctx, now + self.interval);
    }

    /// Checks the reply so far against `--expect`: `Some(Ok)` complete,
    /// `Some(Err)` wrong, `None` wait for more.
    fn match_reply(&mut self, data: &[u8]) -> Option<Result<(), Reason>> {
        let Some(expect) = self.spec.expect.as_deref() else {
            return Some(Ok(())); // any answer will do
        };
        let room = SHOWN.max(expect.len()).saturating_sub(self.got.len());
        self.got.extend_from_slice(&data[..data.len().min(room)]);
        let n = self.got.len().min(expect.len());
        if self.got[..n] != expect[..n] {
            let shown = String::from_utf8_lossy(&self.got).into_owned();
            return Some(Err(Reason::WrongBanner(shown)));
        }
        (n == expect.len()).then_some(Ok(()))
    }
}

impl Protocol for Probe {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.latency = self.started.elapsed();
        if self.spec.kind == Kind::Tls {
            let now = SystemTime::now();
            self.cert = ctx.tls_info().and_then(|info| {
                info.peer_certificates()
                    .iter()
                    .filter_map(|c| x509::not_after(c))
                    .min()
                    .map(|t| (x509::days_left(t, now), t))
            });
        }
        if let Some(send) = &self.spec.send {
            ctx.write(send);
        }
        if self.spec.expect.is_none() {
            return self.up(ctx);
        }
        self.state = State::Banner;
        ctx.call_later_self(self.spec.timeout, |p: &mut Probe, ctx| {
            if p.state == State::Banner {
                let started = p.started;
                p.down(ctx, Origin::Check, started, Reason::TimedOut);
            }
        });
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        match self.state {
            State::Banner => match self.match_reply(data) {
                Some(Ok(())) => self.up(ctx),
                Some(Err(r)) => {
                    let started = self.started;
                    self.down(ctx, Origin::Check, started, r)
                }
                None => {}
            },
            State::Kept => {
                let Some((sent, _)) = self.waiting else {
                    return; // the tail of an earlier reply, or chatter
                };
                match self.match_reply(data) {
                    Some(Ok(())) => {
                        self.waiting = None;
                        let up = self.status_up(sent.elapsed());
                        self.monitor
                            .report(ctx, self.target, Origin::Kept, sent, Ok(up));
                    }
                    Some(Err(r)) => self.down(ctx, Origin::Kept, sent, r),
                    None => {}
                }
            }
            State::Done => {}
        }
    }

    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let now = Instant::now();
        match self.state {
            // Closed before the reply was complete.
            State::Banner => {
                let r = match reason {
                    DisconnectReason::Done => Reason::Closed,
                    other => Reason::from_disconnect(other),
                };
                self.state = State::Done;
                self.monitor
                    .report(ctx, self.target, Origin::Check, self.started, Err(r));
            }
            // A kept connection went down: say so at once. The outage began
            // when the unanswered probe went out, or, when keepalive gave up,
            // when its first unanswered probe did.
            State::Kept => {
                self.state = State::Done;
                self.monitor.release(self.target, ctx.handle());
                if self.monitor.stopping() {
                    return;
                }
                let r = Reason::from_disconnect(reason);
                let started = match (self.waiting, &r, self.keepalive) {
                    (Some((sent, _)), _, _) => sent,
                    (None, Reason::TimedOut, Some(k)) => {
                        now.checked_sub(detection(&k)).unwrap_or(now)
                    }
                    _ => now,
                };
                self.monitor
                    .report(ctx, self.target, Origin::Kept, started, Err(r));
            }
            State::Done => {}
        }
    }
}

/// Builds the [`Probe`] of one check and reports a failed connect.
#[derive(Debug)]
pub struct ProbeFactory {
    pub(crate) target: usize,
    pub(crate) monitor: Monitor,
    pub(crate) spec: Rc<Spec>,
    pub(crate) interval: Duration,
    pub(crate) started: Instant,
    /// Persistent mode: keep the connection if the target has none kept.
    pub(crate) keep: bool,
    /// The keepalive its connection is made with (see [`options`]).
    pub(crate) keepalive: Option<Keepalive>,
}

impl ClientFactory for ProbeFactory {
    type Protocol = Probe;

    fn build_protocol(&mut self, _peer: &Address) -> Option<Probe> {
        Some(Probe {
            target: self.target,
            monitor: self.monitor.clone(),
            spec: self.spec.clone(),
            interval: self.interval,
            started: self.started,
            keep: self.keep,
            latency: Duration::ZERO,
            got: Vec::new(),
            state: State::Done,
            waiting: None,
            probes: 0,
            offered: self.keepalive,
            keepalive: None,
            cert: None,
        })
    }

    fn client_connection_failed(
        &mut self,
        core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let r = Reason::from_disconnect(reason);
        self.monitor
            .report(core, self.target, Origin::Check, self.started, Err(r));
        Reconnect::Never
    }
}
