//! The monitor: a ticker per target, the checks (or kept connections) each tick
//! starts, the records they update, and the summary table.
//!
//! Interval mode starts a check every interval, even while the previous one is
//! still waiting for its timeout, so an outage's end is seen within one
//! interval. Persistent mode does the same while a target has no kept
//! connection; the first check that succeeds keeps its connection, which then
//! probes (with `--send`/`--expect`, under a read deadline of `--timeout`) every
//! interval and has TCP keepalive on.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::{ConnectionHandle, Core};

use super::probe::{self, ProbeFactory};
use super::status::{human, Event, Health, Record, Status};
use super::target::{Kind, Spec, Target};

/// The monitor's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to watch, each with its interval and probe.
    pub targets: Vec<Target>,
    /// Keep one connection per target and probe on it.
    pub persistent: bool,
    /// Stop after this many checks per target (intervals, in persistent mode).
    pub count: Option<u64>,
}

/// Where a result comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A check started by a tick (counted against `--count`).
    Check,
    /// A kept connection's probe or its loss.
    Kept,
}

struct Slot {
    target: Target,
    spec: Rc<Spec>,
    record: Record,
    /// Checks started and finished.
    started: u64,
    finished: u64,
    /// Persistent mode: intervals elapsed.
    ticks: u64,
    kept: Option<ConnectionHandle>,
}

type Sink = Box<dyn FnMut(&Event, &Record)>;

struct Shared {
    persistent: bool,
    count: Option<u64>,
    slots: Vec<Slot>,
    sink: Sink,
    started: Option<Instant>,
    stopping: bool,
    on_change: Option<Rc<str>>,
    hooks: Rc<super::hook::Hooks>,
}

/// Watches the targets; cheap to clone (reactor thread only).
#[derive(Clone)]
pub struct Monitor {
    shared: Rc<RefCell<Shared>>,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor that hands every change of state to `sink`.
    pub fn new(config: Config, mut sink: impl FnMut(&Event) + 'static) -> Monitor {
        Monitor::with_sink(config, move |e, _| sink(e))
    }

    /// A monitor whose sink also sees the target's record after the change.
    pub fn with_sink(config: Config, sink: impl FnMut(&Event, &Record) + 'static) -> Monitor {
        let slots = config
            .targets
            .into_iter()
            .map(|t| Slot {
                record: Record::new(t.name.clone()),
                spec: Rc::new(t.spec.clone()),
                target: t,
                started: 0,
                finished: 0,
                ticks: 0,
                kept: None,
            })
            .collect();
        Monitor {
            shared: Rc::new(RefCell::new(Shared {
                persistent: config.persistent,
                count: config.count,
                slots,
                sink: Box::new(sink),
                started: None,
                stopping: false,
                on_change: None,
                hooks: Rc::default(),
            })),
        }
    }

    /// Runs `sh -c cmd` on every change of state, with the change in its
    /// environment (see [`hook`](super::hook)).
    pub fn on_change(&self, cmd: impl Into<String>) {
        self.shared.borrow_mut().on_change = Some(cmd.into().into());
    }

    /// Starts monitoring: every target's ticker, from now. With a count, the
    /// reactor is stopped once it is reached.
    pub fn start(&self, core: &mut Core) {
        let n = {
            let mut s = self.shared.borrow_mut();
            s.started = Some(Instant::now());
            s.slots.len()
        };
        for i in 0..n {
            self.tick(core, i, 0);
        }
    }

    fn tick(&self, core: &mut Core, i: usize, k: u32) {
        let (persistent, count, kept, interval, start) = {
            let mut s = self.shared.borrow_mut();
            if s.stopping {
                return;
            }
            let (persistent, count, start) = (s.persistent, s.count, s.started);
            let slot = &mut s.slots[i];
            if persistent && k > 0 {
                slot.ticks = u64::from(k);
            }
            (
                persistent,
                count,
                slot.kept.is_some(),
                slot.target.interval,
                start.unwrap_or_else(Instant::now),
            )
        };
        let more = count.is_none_or(|c| u64::from(k) < c);
        if more && !(persistent && kept) {
            self.check(core, i, persistent);
        }
        self.check_finished(core);
        if more {
            let wait = (start + interval * (k + 1)).saturating_duration_since(Instant::now());
            let me = self.clone();
            core.call_later(wait, move |core| me.tick(core, i, k + 1));
        }
    }

    /// Starts one check of every target now (tests use this to drive rounds).
    pub fn check_all(&self, core: &mut Core) {
        let n = self.shared.borrow().slots.len();
        for i in 0..n {
            self.check(core, i, false);
        }
    }

    /// Starts a check of target `i`; `keep`: keep its connection if it succeeds.
    fn check(&self, core: &mut Core, i: usize, keep: bool) {
        let (addr, spec, interval) = {
            let mut s = self.shared.borrow_mut();
            let slot = &mut s.slots[i];
            slot.started += 1;
            (slot.target.addr, slot.spec.clone(), slot.target.interval)
        };
        let started = Instant::now();
        let keep = keep && matches!(spec.kind, Kind::Tcp | Kind::Tls);
        let options = probe::options(keep, interval, spec.timeout);
        let factory = ProbeFactory {
            target: i,
            monitor: self.clone(),
            spec: spec.clone(),
            interval,
            started,
            keep,
            keepalive: options.keepalive,
        };
        match (spec.kind, &spec.tls) {
            (Kind::Tcp, _) | (Kind::Tls, None) => {
                core.connect_tcp_with(addr, factory, spec.timeout, options);
            }
            (Kind::Tls, Some(tls)) => {
                core.connect_tls_with(
                    addr,
                    tls.server_name.clone(),
                    tls.config.clone(),
                    factory,
                    spec.timeout,
                    options,
                );
            }
            (Kind::Udp, _) => super::udp::start(core, i, addr, self.clone(), spec),
            (Kind::Http, _) => super::http::start(core, i, self.clone(), spec),
        }
    }

    /// A check or a kept connection says `status` for target `i`, from a check
    /// (or probe) that started at `started`.
    pub(crate) fn report(
        &self,
        core: &mut Core,
        i: usize,
        origin: Origin,
        started: Instant,
        status: Status,
    ) {
        let mut s = self.shared.borrow_mut();
        let Shared { slots, sink, .. } = &mut *s;
        let slot = &mut slots[i];
        if origin == Origin::Check {
            slot.finished += 1;
        }
        let event = slot.record.observe(started, Instant::now(), status);
        if let Some(e) = &event {
            sink(e, &slot.record);
        }
        let cmd = s.on_change.clone();
        let hooks = s.hooks.clone();
        drop(s);
        if let (Some(cmd), Some(e)) = (cmd, &event) {
            super::hook::run(core, &cmd, e, hooks);
        }
        self.check_finished(core);
    }

    /// Persistent mode: keeps `h` as target `i`'s connection unless it has one.
    pub(crate) fn adopt(&self, i: usize, h: ConnectionHandle) -> bool {
        let mut s = self.shared.borrow_mut();
        let ok = s.persistent && !s.stopping && s.slots[i].kept.is_none();
        if ok {
            s.slots[i].kept = Some(h);
        }
        ok
    }

    /// Target `i`'s kept connection `h` is gone.
    pub(crate) fn release(&self, i: usize, h: ConnectionHandle) {
        let mut s = self.shared.borrow_mut();
        if s.slots[i].kept == Some(h) {
            s.slots[i].kept = None;
        }
    }

    /// Whether the monitor is stopping (closes are expected).
    pub fn stopping(&self) -> bool {
        self.shared.borrow().stopping
    }

    fn check_finished(&self, core: &mut Core) {
        if self.finished() && core.is_running() {
            let _ = core.stop();
        }
    }

    /// Checks finished on every target (persistent mode: intervals elapsed),
    /// the smallest over the targets.
    pub fn rounds_done(&self) -> u64 {
        let s = self.shared.borrow();
        s.slots
            .iter()
            .map(|x| if s.persistent { x.ticks } else { x.finished })
            .min()
            .unwrap_or(0)
    }

    /// Whether the count is reached (and every check it started is back).
    pub fn finished(&self) -> bool {
        let s = self.shared.borrow();
        let Some(c) = s.count else { return false };
        s.slots.iter().all(|x| {
            if s.persistent {
                x.ticks >= c
            } else {
                x.finished >= c && x.finished >= x.started
            }
        })
    }

    /// Whether every target is up (warning included) now.
    pub fn all_up(&self) -> bool {
        self.shared.borrow().slots.iter().all(|x| x.record.is_up())
    }

    /// The worst state over the targets (a target never checked is down).
    pub fn worst(&self) -> Health {
        self.shared
            .borrow()
            .slots
            .iter()
            .map(|x| x.record.health.unwrap_or(Health::Down))
            .max()
            .unwrap_or(Health::Up)
    }

    /// Stops checking and closes kept connections.
    pub fn stop(&self, core: &mut Core) {
        let kept: Vec<ConnectionHandle> = {
            let mut s = self.shared.borrow_mut();
            s.stopping = true;
            s.slots.iter_mut().filter_map(|x| x.kept.take()).collect()
        };
        for h in kept {
            core.connection(h).lose_connection();
        }
    }

    /// `--on-change` commands started and not ended yet.
    pub fn hooks_running(&self) -> usize {
        self.shared.borrow().hooks.running.get()
    }

    /// From now on, the end of the last running `--on-change` command stops
    /// the reactor (for a wait for them on exit).
    pub fn wait_for_hooks(&self) {
        self.shared.borrow().hooks.waiting.set(true);
    }

    /// Runs `f` on a target's record (for tests and reports).
    pub fn with_record<T>(&self, target: usize, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.shared.borrow().slots[target].record)
    }

    /// Runs `f` on every target and its record.
    pub fn each<T>(&self, mut f: impl FnMut(&Target, &Record) -> T) -> Vec<T> {
        let s = self.shared.borrow();
        s.slots.iter().map(|x| f(&x.target, &x.record)).collect()
    }

    /// The summary table, as of now. Its words are the event lines' words: the
    /// state, and the reason the last outage was reported with.
    pub fn summary(&self) -> String {
        let s = self.shared.borrow();
        let now = Instant::now();
        let persistent = s.persistent;
        let width = s
            .slots
            .iter()
            .map(|x| x.record.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut out = String::new();
        let ran = s.started.map(|t| human(now - t)).unwrap_or_default();
        let _ = writeln!(
            out,
            "netmon summary after {ran}: {} target{}, {} (uptime = share of time up; downtime from the first failed check's send to the first answer)",
            s.slots.len(),
            if s.slots.len() == 1 { "" } else { "s" },
            if persistent {
                "persistent connections"
            } else {
                "a check every interval"
            }
        );
        let _ = writeln!(
            out,
            "{:<width$}  {:<5} {:<7} {:>6} {:>8} {:>9} {:>7} {:>9} {:>9} {:>9}  last outage",
            "target",
            "probe",
            "status",
            "checks",
            "uptime",
            "downtime",
            "outages",
            "p50 ms",
            "p99 ms",
            "failures"
        );
        for x in &s.slots {
            let r = &x.record;
            let status = r.health.map_or("-", Health::word);
            let pct = r
                .time_uptime(now)
                .map_or("-".into(), |u| format!("{u:.1}%"));
            let down = human(r.times(now).1);
            let lat = |p| r.latency_ms(p).map_or("-".into(), |v| format!("{v:.3}"));
            let fails = format!("{}/{}", r.failures, r.total_failures);
            let mut last = r.down_reason.as_ref().map_or("-".into(), |x| x.to_string());
            if let Some(days) = r.last_up.as_ref().and_then(|u| u.cert_days) {
                last += &format!("; certificate expires in {days:.1} days");
            }
            let _ = writeln!(
                out,
                "{:<width$}  {:<5} {status:<7} {:>6} {pct:>8} {down:>9} {:>7} {:>9} {:>9} {fails:>9}  {last}",
                r.name,
                x.spec.kind.name(),
                r.checks,
                r.outages,
                lat(50.0),
                lat(99.0),
            );
        }
        out
    }

    /// The targets' figures in Prometheus' text format, with blackbox_exporter's
    /// names: `probe_success`, `probe_duration_seconds` (the last check's),
    /// `probe_http_duration_seconds` with a `phase` label (resolve, connect,
    /// tls, processing, transfer: the last successful http check's),
    /// `probe_ssl_earliest_cert_expiry` (Unix seconds, tls), each with a
    /// `target` label.
    pub fn metrics(&self) -> String {
        let s = self.shared.borrow();
        let label = |n: &str| n.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP probe_success Whether the target's last check succeeded."
        );
        let _ = writeln!(out, "# TYPE probe_success gauge");
        for x in &s.slots {
            let ok = u8::from(x.record.is_up());
            let _ = writeln!(
                out,
                "probe_success{{target=\"{}\"}} {ok}",
                label(&x.record.name)
            );
        }
        let _ = writeln!(
            out,
            "# HELP probe_duration_seconds How long the last check took."
        );
        let _ = writeln!(out, "# TYPE probe_duration_seconds gauge");
        for x in &s.slots {
            if let Some(d) = x.record.last_duration {
                let _ = writeln!(
                    out,
                    "probe_duration_seconds{{target=\"{}\"}} {:.6}",
                    label(&x.record.name),
                    d.as_secs_f64()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP probe_http_duration_seconds How long each phase of the last successful http check took."
        );
        let _ = writeln!(out, "# TYPE probe_http_duration_seconds gauge");
        for x in &s.slots {
            let Some(p) = x.record.last_up.as_ref().and_then(|u| u.phases) else {
                continue;
            };
            for (phase, d) in p.named() {
                let _ = writeln!(
                    out,
                    "probe_http_duration_seconds{{target=\"{}\",phase=\"{phase}\"}} {:.6}",
                    label(&x.record.name),
                    d.as_secs_f64()
                );
            }
        }
        let _ = writeln!(out, "# HELP probe_ssl_earliest_cert_expiry Unix time the earliest certificate of the chain expires.");
        let _ = writeln!(out, "# TYPE probe_ssl_earliest_cert_expiry gauge");
        for x in &s.slots {
            let at = x.record.last_up.as_ref().and_then(|u| u.cert_expiry);
            if let Some(t) = at.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()) {
                let _ = writeln!(
                    out,
                    "probe_ssl_earliest_cert_expiry{{target=\"{}\"}} {}",
                    label(&x.record.name),
                    t.as_secs()
                );
            }
        }
        out
    }

    /// The interval of target `i`.
    pub fn interval(&self, i: usize) -> Duration {
        self.shared.borrow().slots[i].target.interval
    }
}
