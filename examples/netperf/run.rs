//! Runs a measurement: one reactor per thread, connections spread over them, a
//! progress report once a second, and the threads' results merged at the end.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use torsion::{Core, Reactor};

use super::client::{new_histogram, LoadFactory, Schedule, Stats, ThreadStats};
use super::config::Config;

/// How long the end of a run waits for connections to close gracefully.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How often progress is reported.
pub const TICK: Duration = Duration::from_secs(1);

/// One second of one thread, sent to the main thread.
#[derive(Debug)]
struct Tick {
    index: u64,
    messages: u64,
    bytes: u64,
    errors: u64,
    open: u64,
    latency: Histogram<u64>,
}

enum Msg {
    Tick(Tick),
    Done(Box<ThreadStats>),
    Failed(String),
}

/// The whole run's progress during one second.
#[derive(Debug)]
pub struct Progress {
    /// Seconds since the start.
    pub second: u64,
    /// Whether this second was in the warm-up.
    pub warmup: bool,
    /// Round trips completed in this second.
    pub messages: u64,
    /// Echoed bytes in this second.
    pub bytes: u64,
    /// Errors so far.
    pub errors: u64,
    /// Connections open.
    pub open: u64,
    /// Latency of this second's round trips.
    pub latency: Histogram<u64>,
}

/// The final result.
#[derive(Debug)]
pub struct Report {
    /// The settings measured with.
    pub config: Config,
    /// Threads used.
    pub threads: usize,
    /// Time measured (the duration, or less if every connection finished early).
    pub measured: Duration,
    /// Measured round trips.
    pub messages: u64,
    /// Measured echoed bytes.
    pub bytes: u64,
    /// Round-trip latency, nanoseconds.
    pub latency: Histogram<u64>,
    /// Echoes that differed from what was sent.
    pub verify_errors: u64,
    /// Connections lost before the end.
    pub lost: u64,
    /// Connects that failed.
    pub connect_failed: u64,
    /// Connections established.
    pub connected: u64,
    /// The first errors, described.
    pub details: Vec<String>,
    /// Why connects failed, with counts.
    pub connect_reasons: Vec<(String, u64)>,
}

impl Report {
    /// Every error: verification, lost connections, failed connects.
    pub fn errors(&self) -> u64 {
        self.verify_errors + self.lost + self.connect_failed
    }

    /// Round trips per second.
    pub fn msgs_per_sec(&self) -> f64 {
        per_sec(self.messages as f64, self.measured)
    }

    /// Echoed MiB per second.
    pub fn mib_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64 / (1024.0 * 1024.0), self.measured)
    }

    /// Latency at `percentile` (0..=100), microseconds.
    pub fn latency_us(&self, percentile: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_percentile(percentile) as f64 / 1000.0
    }

    /// Largest latency, microseconds.
    pub fn max_us(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }
}

fn per_sec(x: f64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        x / d.as_secs_f64()
    }
}

/// Why a run could not measure anything.
#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// The settings are wrong.
    Config(String),
    /// Not one connection could be made.
    NoConnection {
        /// The reasons, with how many connects failed for each.
        reasons: Vec<(String, u64)>,
        /// Connects attempted.
        attempts: usize,
    },
    /// A reactor thread failed.
    Thread(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) => f.write_str(e),
            RunError::NoConnection { reasons, attempts } => {
                let s = if *attempts == 1 { "" } else { "s" };
                write!(
                    f,
                    "no connection could be made ({attempts} attempt{s} failed: "
                )?;
                for (i, (r, n)) in reasons.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{r} x{n}")?;
                }
                f.write_str(")")
            }
            RunError::Thread(e) => write!(f, "a reactor thread failed: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Measures `config.addr`, calling `progress` once a second, and returns the
/// merged result. Blocks for the warm-up plus the duration (less if every
/// connection finishes its `messages` early or fails).
///
/// # Errors
/// [`RunError`] when the settings are wrong, no connection could be made, or a
/// reactor thread failed. Verification errors are not a `RunError`: they are in
/// the [`Report`], with the measurement.
pub fn run(config: &Config, mut progress: impl FnMut(&Progress)) -> Result<Report, RunError> {
    config
        .validate()
        .map_err(|e| RunError::Config(e.to_string()))?;
    let threads = config.threads_used();
    let start = Instant::now();
    let schedule = Schedule {
        start,
        measure_from: start + config.warmup,
        end: start + config.warmup + config.duration_or_max(),
    };
    let (tx, rx) = mpsc::channel();
    let mut joins = Vec::new();
    for t in 0..threads {
        let ids: Vec<usize> = (t..config.connections).step_by(threads).collect();
        let (config, tx) = (config.clone(), tx.clone());
        let join = std::thread::Builder::new()
            .name(format!("netperf-{t}"))
            .spawn(move || {
                let msg = match run_thread(&config, schedule, &ids, &tx) {
                    Ok(stats) => Msg::Done(Box::new(stats)),
                    Err(e) => Msg::Failed(e.to_string()),
                };
                let _ = tx.send(msg);
            })
            .map_err(|e| RunError::Thread(e.to_string()))?;
        joins.push(join);
    }
    drop(tx);

    let mut merged = ThreadStats::new();
    let mut failure = None;
    let mut live = threads;
    let mut ticks: Vec<(u64, Vec<Tick>)> = Vec::new();
    let mut ended_at: Option<Instant> = None;
    while live > 0 {
        let Ok(msg) = rx.recv() else { break };
        match msg {
            Msg::Tick(t) => match ticks.iter_mut().find(|(i, _)| *i == t.index) {
                Some((_, v)) => v.push(t),
                None => ticks.push((t.index, vec![t])),
            },
            Msg::Done(stats) => {
                live -= 1;
                if let Some(t) = stats.ended_at {
                    ended_at = Some(ended_at.map_or(t, |e| e.max(t)));
                }
                merge_stats(&mut merged, *stats);
            }
            Msg::Failed(e) => {
                live -= 1;
                failure = Some(e);
            }
        }
        // Report each second, in order, once every live thread has reported it.
        ticks.sort_by_key(|(i, _)| *i);
        while ticks.first().is_some_and(|(_, v)| v.len() >= live.max(1)) {
            let (index, v) = ticks.remove(0);
            progress(&merge_ticks(index, v, &schedule));
        }
    }
    for j in joins {
        if j.join().is_err() {
            failure.get_or_insert_with(|| "a reactor thread panicked".into());
        }
    }
    if let Some(e) = failure {
        return Err(RunError::Thread(e));
    }
    if merged.connected == 0 {
        return Err(RunError::NoConnection {
            reasons: merged.connect_reasons,
            attempts: config.connections,
        });
    }
    let end = ended_at.unwrap_or(schedule.end).min(schedule.end);
    Ok(Report {
        config: config.clone(),
        threads,
        measured: end.saturating_duration_since(schedule.measure_from),
        messages: merged.messages,
        bytes: merged.bytes,
        latency: merged.latency,
        verify_errors: merged.verify_errors,
        lost: merged.lost,
        connect_failed: merged.connect_failed,
        connected: merged.connected,
        details: merged.details,
        connect_reasons: merged.connect_reasons,
    })
}

impl Config {
    /// The duration, or (with a message limit and no duration) effectively forever.
    fn duration_or_max(&self) -> Duration {
        if self.duration.is_zero() {
            Duration::from_secs(365 * 24 * 3600)
        } else {
            self.duration
        }
    }
}

fn merge_ticks(index: u64, ticks: Vec<Tick>, schedule: &Schedule) -> Progress {
    let mut p = Progress {
        second: index,
        warmup: schedule.start + TICK * index as u32 <= schedule.measure_from,
        messages: 0,
        bytes: 0,
        errors: 0,
        open: 0,
        latency: new_histogram(),
    };
    for t in ticks {
        p.messages += t.messages;
        p.bytes += t.bytes;
        p.errors += t.errors;
        p.open += t.open;
        let _ = p.latency.add(&t.latency);
    }
    p
}

fn merge_stats(into: &mut ThreadStats, s: ThreadStats) {
    let _ = into.latency.add(&s.latency);
    into.messages += s.messages;
    into.bytes += s.bytes;
    into.verify_errors += s.verify_errors;
    into.lost += s.lost;
    into.connect_failed += s.connect_failed;
    into.connected += s.connected;
    for d in s.details {
        if into.details.len() < 16 {
            into.details.push(d);
        }
    }
    for (r, n) in s.connect_reasons {
        match into.connect_reasons.iter_mut().find(|(x, _)| *x == r) {
            Some((_, m)) => *m += n,
            None => into.connect_reasons.push((r, n)),
        }
    }
}

/// One thread: its reactor, its connections, its ticks.
fn run_thread(
    config: &Config,
    schedule: Schedule,
    ids: &[usize],
    tx: &mpsc::Sender<Msg>,
) -> Result<ThreadStats, torsion::Error> {
    let mut reactor = Reactor::new()?;
    let stats: Stats = Rc::new(RefCell::new(ThreadStats::new()));
    for &id in ids {
        let f = LoadFactory::new(id, config, schedule, stats.clone());
        reactor.connect_tcp(config.addr, f, config.connect_timeout);
    }
    schedule_tick(&mut reactor, 1, schedule, stats.clone(), tx.clone());
    let end_stats = stats.clone();
    let wait = schedule.end.saturating_duration_since(Instant::now());
    reactor.call_later(wait, move |core| end_run(core, &end_stats));
    // Stop early once every connection has failed or finished its quota.
    let total = ids.len() as u64;
    let watch = stats.clone();
    loop {
        reactor.run_once(None)?;
        let s = watch.borrow();
        if s.stopping && s.open == 0 {
            break;
        }
        if !s.stopping && s.finished >= total {
            drop(s);
            end_run(&mut reactor, &watch);
        }
    }
    drop(reactor);
    let s = std::mem::take(&mut *stats.borrow_mut());
    Ok(s)
}

/// The run is over: close every connection gracefully.
fn end_run(core: &mut Core, stats: &Stats) {
    let mut s = stats.borrow_mut();
    if s.stopping {
        return;
    }
    s.stopping = true;
    s.ended_at = Some(Instant::now());
    drop(s);
    core.shutdown(CLOSE_GRACE);
}

fn schedule_tick(
    core: &mut Core,
    index: u64,
    schedule: Schedule,
    stats: Stats,
    tx: mpsc::Sender<Msg>,
) {
    let due = schedule.start + TICK * index as u32;
    let wait = due.saturating_duration_since(Instant::now());
    core.call_later(wait, move |core| {
        let mut s = stats.borrow_mut();
        if s.stopping {
            return;
        }
        let latency = std::mem::replace(&mut s.interval, new_histogram());
        let tick = Tick {
            index,
            messages: std::mem::take(&mut s.interval_messages),
            bytes: std::mem::take(&mut s.interval_bytes),
            errors: s.errors(),
            open: s.open,
            latency,
        };
        drop(s);
        if tx.send(Msg::Tick(tick)).is_ok() {
            schedule_tick(core, index + 1, schedule, stats, tx);
        }
    });
}
