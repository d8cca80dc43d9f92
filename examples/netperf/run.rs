//! Runs a measurement: one reactor per thread, connections spread over them, a
//! progress report once a second, and the threads' results merged at the end.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use torsion::{Core, Reactor};

use super::client::{new_histogram, LoadFactory, Schedule, Stats, ThreadStats, UdpTotals};
use super::config::{Config, Mode};
use super::control::Remote;
use super::cpu::{CpuSample, CpuUse};
use super::wire::{self, Role, ServerStats};

/// How long the end of a run waits for connections to close gracefully.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Shortest period of the stall watchdog.
const MIN_WATCH: Duration = Duration::from_millis(10);

/// One second of one thread, sent to the main thread.
#[derive(Debug)]
struct Tick {
    index: u64,
    messages: u64,
    bytes: u64,
    errors: u64,
    open: u64,
    lost: u64,
    stalls: u64,
    latency: Histogram<u64>,
}

enum Msg {
    Tick(Tick),
    Done(Box<ThreadStats>),
    Failed(String),
}

/// The whole run's progress during one interval.
#[derive(Debug)]
pub struct Progress {
    /// Which interval (1 for the first).
    pub second: u64,
    /// When it ended, since the start.
    pub at: Duration,
    /// Its length.
    pub length: Duration,
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
    /// Datagrams lost in this interval (udp modes; udp-stream counts at the end).
    pub lost: u64,
    /// Stalls that began in this interval.
    pub stalls: u64,
    /// This process's CPU use in this interval, percent of one core.
    pub cpu_percent: f64,
    /// Latency of this interval's round trips.
    pub latency: Histogram<u64>,
}

/// One interval, as kept for the JSON report.
#[derive(Debug, Clone)]
pub struct Interval {
    /// End of the interval since the start, seconds.
    pub end_s: f64,
    /// Length, seconds.
    pub seconds: f64,
    /// In the warm-up.
    pub warmup: bool,
    /// Round trips (or transactions, or datagrams echoed).
    pub messages: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Errors so far.
    pub errors: u64,
    /// Stalls begun.
    pub stalls: u64,
    /// Datagrams lost.
    pub lost: u64,
    /// Latency p50, microseconds.
    pub p50_us: f64,
    /// Latency p99, microseconds.
    pub p99_us: f64,
    /// Client CPU, percent.
    pub cpu_percent: f64,
}

impl Interval {
    fn of(p: &Progress) -> Interval {
        let q = |x| {
            if p.latency.is_empty() {
                0.0
            } else {
                p.latency.value_at_percentile(x) as f64 / 1000.0
            }
        };
        Interval {
            end_s: p.at.as_secs_f64(),
            seconds: p.length.as_secs_f64(),
            warmup: p.warmup,
            messages: p.messages,
            bytes: p.bytes,
            errors: p.errors,
            stalls: p.stalls,
            lost: p.lost,
            p50_us: q(50.0),
            p99_us: q(99.0),
            cpu_percent: p.cpu_percent,
        }
    }
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
    /// Stalls: waits past the threshold with something outstanding.
    pub stalls: u64,
    /// The longest stall.
    pub longest_stall: Duration,
    /// Bytes the client sent in the measurement (bidir).
    pub tx_bytes: u64,
    /// UDP loss, reordering, duplicates, jitter.
    pub udp: UdpTotals,
    /// This process's CPU use over the run.
    pub cpu: CpuUse,
    /// What answered the control hello.
    pub remote_kind: String,
    /// The netperf server's figures, when there is one.
    pub remote: Option<ServerStats>,
    /// Every interval report.
    pub intervals: Vec<Interval>,
}

impl Report {
    /// Every error: verification, lost connections, failed connects, stalls.
    pub fn errors(&self) -> u64 {
        self.verify_errors + self.lost + self.connect_failed + self.stalls
    }

    /// Bytes sent per second (bidir), MiB.
    pub fn tx_mib_per_sec(&self) -> f64 {
        per_sec(self.tx_bytes as f64 / (1024.0 * 1024.0), self.measured)
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
    /// `--reverse`/`--bidir` need `netperf --server` at the other end.
    NeedsServer(String),
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
            RunError::NeedsServer(what) => write!(
                f,
                "--reverse and --bidir need netperf --server at the other end, found: {what}"
            ),
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
    // The UDP modes need no control connection: their figures are the client's.
    let mut remote = if config.mode.is_udp() {
        Remote::Unknown("udp mode".into())
    } else {
        Remote::open(config.addr, config.connect_timeout)
    };
    if (config.reverse || config.bidir) && !remote.is_netperf() {
        return Err(RunError::NeedsServer(remote.describe()));
    }
    let cpu_start = CpuSample::now();
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
    let mut intervals = Vec::new();
    let mut cpu_mark = cpu_start;
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
            let mut p = merge_ticks(index, v, &schedule, config.interval);
            let now = CpuSample::now();
            p.cpu_percent = cpu_mark.until(&now).percent();
            cpu_mark = now;
            intervals.push(Interval::of(&p));
            progress(&p);
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
    let cpu = cpu_start.until(&CpuSample::now());
    if merged.connected == 0 {
        return Err(RunError::NoConnection {
            reasons: merged.connect_reasons,
            attempts: config.connections,
        });
    }
    let remote_stats = remote.stats().ok();
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
        stalls: merged.stalls,
        longest_stall: merged.longest_stall,
        tx_bytes: merged.tx_bytes,
        udp: merged.udp,
        cpu,
        remote_kind: remote.describe(),
        remote: remote_stats,
        intervals,
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

fn merge_ticks(index: u64, ticks: Vec<Tick>, schedule: &Schedule, tick: Duration) -> Progress {
    let mut p = Progress {
        second: index,
        at: tick * index as u32,
        length: tick,
        warmup: schedule.start + tick * index as u32 <= schedule.measure_from,
        messages: 0,
        bytes: 0,
        errors: 0,
        open: 0,
        lost: 0,
        stalls: 0,
        cpu_percent: 0.0,
        latency: new_histogram(),
    };
    for t in ticks {
        p.messages += t.messages;
        p.bytes += t.bytes;
        p.errors += t.errors;
        p.open += t.open;
        p.lost += t.lost;
        p.stalls += t.stalls;
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
    into.stalls += s.stalls;
    into.longest_stall = into.longest_stall.max(s.longest_stall);
    into.tx_bytes += s.tx_bytes;
    into.udp.add(&s.udp);
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
    ThreadStats::clear_watches();
    let stats: Stats = Rc::new(RefCell::new(ThreadStats::new()));
    let chunk = Rc::new(wire::stream_chunk());
    for &id in ids {
        match config.mode {
            Mode::Crr => super::crr::start(&mut reactor, id, config, schedule, stats.clone()),
            Mode::Udp | Mode::UdpStream => {
                let flow = super::udp::UdpClient::new(id, config, schedule, stats.clone());
                stats.borrow_mut().open += 1;
                if let Err(e) = flow.open(&mut reactor) {
                    let mut s = stats.borrow_mut();
                    s.open -= 1;
                    s.finished += 1;
                    s.connect_failed += 1;
                    s.detail(format!("flow {id}: cannot open a UDP socket: {e}"));
                }
            }
            Mode::Bulk if config.reverse || config.bidir => {
                let f = super::stream::StreamFactory {
                    id,
                    role: if config.reverse {
                        Role::Source
                    } else {
                        Role::Bidir
                    },
                    stats: stats.clone(),
                    schedule,
                    chunk: chunk.clone(),
                };
                reactor.connect_tcp(config.addr, f, config.connect_timeout);
            }
            _ => {
                let f = LoadFactory::new(id, config, schedule, stats.clone());
                reactor.connect_tcp(config.addr, f, config.connect_timeout);
            }
        }
    }
    if let Some(stall) = config.stall {
        schedule_watchdog(&mut reactor, stall, schedule.start, stats.clone());
    }
    schedule_tick(
        &mut reactor,
        1,
        schedule,
        config.interval,
        stats.clone(),
        tx.clone(),
    );
    let end_stats = stats.clone();
    let wait = schedule.end.saturating_duration_since(Instant::now());
    let udp = config.mode.is_udp();
    reactor.call_later(wait, move |core| end_run(core, &end_stats, udp));
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
            end_run(&mut reactor, &watch, udp);
        }
    }
    drop(reactor);
    let mut s = std::mem::take(&mut *stats.borrow_mut());
    s.close_stalls(Instant::now());
    ThreadStats::clear_watches();
    Ok(s)
}

/// Checks every connection for a stall a few times per threshold.
fn schedule_watchdog(core: &mut Core, stall: Duration, start: Instant, stats: Stats) {
    let period = (stall / 4).max(MIN_WATCH);
    core.call_later(period, move |core| {
        let mut s = stats.borrow_mut();
        if s.stopping {
            return;
        }
        s.check_stalls(Instant::now(), stall, start);
        drop(s);
        schedule_watchdog(core, stall, start, stats);
    });
}

/// The run is over: close every connection gracefully.
/// UDP flows end by themselves (after their stragglers' time), so they are not
/// shut down.
fn end_run(core: &mut Core, stats: &Stats, udp: bool) {
    let mut s = stats.borrow_mut();
    if s.stopping {
        return;
    }
    s.stopping = true;
    let now = Instant::now();
    s.ended_at = Some(now);
    // A stall still open counts to the end of the run: closing the
    // connections makes their watches idle, and it would count only as long
    // as it was when the watchdog first saw it.
    s.close_stalls(now);
    drop(s);
    if !udp {
        core.shutdown(CLOSE_GRACE);
    }
}

fn schedule_tick(
    core: &mut Core,
    index: u64,
    schedule: Schedule,
    tick: Duration,
    stats: Stats,
    tx: mpsc::Sender<Msg>,
) {
    let due = schedule.start + tick * index as u32;
    let wait = due.saturating_duration_since(Instant::now());
    core.call_later(wait, move |core| {
        let mut s = stats.borrow_mut();
        if s.stopping {
            return;
        }
        let latency = std::mem::replace(&mut s.interval, new_histogram());
        let t = Tick {
            index,
            messages: std::mem::take(&mut s.interval_messages),
            bytes: std::mem::take(&mut s.interval_bytes),
            errors: s.errors(),
            open: s.open,
            lost: std::mem::take(&mut s.interval_lost),
            stalls: std::mem::take(&mut s.interval_stalls),
            latency,
        };
        drop(s);
        if tx.send(Msg::Tick(t)).is_ok() {
            schedule_tick(core, index + 1, schedule, tick, stats, tx);
        }
    });
}
