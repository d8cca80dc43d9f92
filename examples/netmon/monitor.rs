//! The monitor: targets, rounds of checks (or persistent connections), the
//! records they update, and the summary table.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::reconnect::{BackoffPolicy, ReconnectHandle};
use torsion::{Core, ReconnectingClientFactory};

use super::probe::{ProbeFactory, Spec};
use super::status::{human, Event, Reason, Record};

/// One `host:port` to watch.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// As given (shown in reports).
    pub name: String,
    /// Where it resolved to.
    pub addr: SocketAddr,
}

impl Target {
    /// Resolves `name` (`host:port`, `[v6]:port`).
    ///
    /// # Errors
    /// A message when the name does not resolve.
    pub fn resolve(name: &str) -> Result<Target, String> {
        let name = name.trim();
        let addr = name
            .to_socket_addrs()
            .map_err(|e| format!("{name}: {e}"))?
            .next()
            .ok_or_else(|| format!("{name}: resolves to no address"))?;
        Ok(Target {
            name: name.to_string(),
            addr,
        })
    }
}

/// Reads targets from a file's text: one per line; blank lines and `#` comments
/// are skipped.
pub fn parse_targets(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The monitor's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to watch.
    pub targets: Vec<Target>,
    /// Time between rounds (persistent mode: between summaries of the count).
    pub interval: Duration,
    /// What each check sends and expects, and its timeout.
    pub spec: Spec,
    /// Keep one connection per target and report disconnects at once.
    pub persistent: bool,
    /// Stop after this many rounds (intervals, in persistent mode).
    pub count: Option<u64>,
}

struct Shared {
    config: Config,
    records: Vec<Record>,
    sink: Box<dyn FnMut(&Event)>,
    /// Checks still running, per round started.
    remaining: Vec<usize>,
    rounds_started: u64,
    rounds_done: u64,
    started: Option<Instant>,
    handles: Vec<ReconnectHandle>,
}

/// Watches the targets; cheap to clone (reactor thread only).
#[derive(Clone)]
pub struct Monitor {
    shared: Rc<RefCell<Shared>>,
    spec: Rc<Spec>,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor that hands every status change to `sink`.
    pub fn new(config: Config, sink: impl FnMut(&Event) + 'static) -> Monitor {
        let records = config
            .targets
            .iter()
            .map(|t| Record::new(t.name.clone()))
            .collect();
        let spec = Rc::new(config.spec.clone());
        Monitor {
            shared: Rc::new(RefCell::new(Shared {
                config,
                records,
                sink: Box::new(sink),
                remaining: Vec::new(),
                rounds_started: 0,
                rounds_done: 0,
                started: None,
                handles: Vec::new(),
            })),
            spec,
        }
    }

    /// Starts monitoring: rounds every interval from now, or persistent
    /// connections plus an interval ticker. With a count, the reactor is stopped
    /// once it is reached.
    pub fn start(&self, core: &mut Core) {
        let persistent = {
            let mut s = self.shared.borrow_mut();
            s.started = Some(Instant::now());
            s.config.persistent
        };
        if persistent {
            self.connect_persistent(core);
        } else {
            self.start_round(core);
        }
        self.schedule_tick(core, 1);
    }

    fn schedule_tick(&self, core: &mut Core, k: u32) {
        let (start, interval) = {
            let s = self.shared.borrow();
            (s.started.unwrap_or_else(Instant::now), s.config.interval)
        };
        let wait = (start + interval * k).saturating_duration_since(Instant::now());
        let me = self.clone();
        core.call_later(wait, move |core| {
            let (persistent, more) = {
                let s = me.shared.borrow();
                let more = s.config.count.is_none_or(|c| u64::from(k) < c);
                (s.config.persistent, more)
            };
            if persistent {
                me.shared.borrow_mut().rounds_done += 1;
                me.check_finished(core);
            } else if more {
                me.start_round(core);
            }
            if more {
                me.schedule_tick(core, k + 1);
            }
        });
    }

    /// Starts one round: a check of every target that has none running. Returns
    /// how many checks started.
    pub fn start_round(&self, core: &mut Core) -> usize {
        let (round, targets) = {
            let mut s = self.shared.borrow_mut();
            let round = s.rounds_started;
            s.rounds_started += 1;
            let mut targets = Vec::new();
            for (i, r) in s.records.iter_mut().enumerate() {
                if !r.busy {
                    r.busy = true;
                    targets.push(i);
                }
            }
            s.remaining.push(targets.len());
            let addrs: Vec<_> = targets
                .iter()
                .map(|&i| (i, s.config.targets[i].addr))
                .collect();
            (round, addrs)
        };
        let n = targets.len();
        for (i, addr) in targets {
            let f = ProbeFactory {
                target: i,
                round: Some(round),
                monitor: self.clone(),
                spec: self.spec.clone(),
                started: Instant::now(),
            };
            core.connect_tcp(addr, f, self.spec.timeout);
        }
        if n == 0 {
            self.round_finished(core);
        }
        n
    }

    fn connect_persistent(&self, core: &mut Core) {
        let (targets, interval) = {
            let s = self.shared.borrow();
            (s.config.targets.clone(), s.config.interval)
        };
        let max = interval.max(Duration::from_millis(1));
        let policy = BackoffPolicy::default()
            .initial_delay(Duration::from_millis(500).min(max))
            .factor(2.0)
            .jitter(0.1)
            .max_delay(max);
        for (i, t) in targets.iter().enumerate() {
            let inner = ProbeFactory {
                target: i,
                round: None,
                monitor: self.clone(),
                spec: self.spec.clone(),
                started: Instant::now(),
            };
            let f = ReconnectingClientFactory::new(inner, policy)
                .expect("a policy built from a valid interval is valid");
            self.shared.borrow_mut().handles.push(f.handle());
            core.connect_tcp(t.addr, f, self.spec.timeout);
        }
    }

    /// A check (or a persistent connection) says `status` for `target`.
    pub(crate) fn report(
        &self,
        core: &mut Core,
        target: usize,
        round: Option<u64>,
        status: Result<Duration, Reason>,
    ) {
        let mut s = self.shared.borrow_mut();
        let event = s.records[target].observe(Instant::now(), status);
        if let Some(e) = &event {
            (s.sink)(e);
        }
        let Some(round) = round else { return };
        s.records[target].busy = false;
        let left = &mut s.remaining[round as usize];
        *left -= 1;
        if *left == 0 {
            drop(s);
            self.round_finished(core);
        }
    }

    fn round_finished(&self, core: &mut Core) {
        self.shared.borrow_mut().rounds_done += 1;
        self.check_finished(core);
    }

    fn check_finished(&self, core: &mut Core) {
        if self.finished() && core.is_running() {
            let _ = core.stop();
        }
    }

    /// Rounds (persistent mode: intervals) completed.
    pub fn rounds_done(&self) -> u64 {
        self.shared.borrow().rounds_done
    }

    /// Whether the count of rounds is reached.
    pub fn finished(&self) -> bool {
        let s = self.shared.borrow();
        s.config.count.is_some_and(|c| s.rounds_done >= c)
    }

    /// Whether every target is up now.
    pub fn all_up(&self) -> bool {
        self.shared
            .borrow()
            .records
            .iter()
            .all(|r| r.up == Some(true))
    }

    /// Stops persistent connections from reconnecting.
    pub fn stop(&self, core: &mut Core) {
        for h in &self.shared.borrow().handles {
            h.stop_trying(core);
        }
    }

    /// Runs `f` on a target's record (for tests and reports).
    pub fn with_record<T>(&self, target: usize, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.shared.borrow().records[target])
    }

    /// The summary table, as of now.
    pub fn summary(&self) -> String {
        let s = self.shared.borrow();
        let now = Instant::now();
        let persistent = s.config.persistent;
        let width = s
            .records
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut out = String::new();
        let ran = s.started.map(|t| human(now - t)).unwrap_or_default();
        let _ = writeln!(
            out,
            "netmon summary after {ran}: {} target{}, {}",
            s.records.len(),
            if s.records.len() == 1 { "" } else { "s" },
            if persistent {
                "persistent connections (uptime = share of time connected)"
            } else {
                "checks every interval (uptime = share of checks up)"
            }
        );
        let _ = writeln!(
            out,
            "{:<width$}  {:<6} {:>6} {:>8} {:>10} {:>10} {:>9}  last failure",
            "target", "status", "checks", "uptime", "p50 ms", "p99 ms", "failures"
        );
        for r in &s.records {
            let status = match r.up {
                Some(true) => "up",
                Some(false) => "down",
                None => "-",
            };
            let uptime = if persistent {
                r.time_uptime(now)
            } else {
                r.check_uptime()
            };
            let pct = uptime.map_or("-".into(), |u| format!("{u:.1}%"));
            let lat = |p| r.latency_ms(p).map_or("-".into(), |v| format!("{v:.3}"));
            let fails = format!("{}/{}", r.failures, r.total_failures);
            let last = r.last_reason.as_ref().map_or("-".into(), |x| x.to_string());
            let _ = writeln!(
                out,
                "{:<width$}  {status:<6} {:>6} {pct:>8} {:>10} {:>10} {fails:>9}  {last}",
                r.name,
                r.checks,
                lat(50.0),
                lat(99.0),
            );
        }
        out
    }
}
