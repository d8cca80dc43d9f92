//! One load-generating connection: sends numbered messages, checks every echoed
//! byte, and records each round trip.
//!
//! The hot path does no allocation: the outgoing message and the expected echo
//! are two buffers made once per connection; a message number is stamped into
//! their first bytes, sending is one copy into the reactor's write buffer,
//! checking is one slice compare, and send times live in a ring sized to the
//! window. The clock is read once per callback, not once per message.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use torsion::Address;
use torsion::{ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reconnect};

use super::config::{Config, Mode};
use super::tally::{connect_failed, first_difference, Tally};
use super::watch::{Watch, WatchRef};

/// Largest latency the histograms hold (longer ones are recorded as this).
pub const MAX_LATENCY: Duration = Duration::from_secs(600);
/// Verification and connection errors kept with their details.
const ERROR_DETAILS: usize = 16;

/// A latency histogram in nanoseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY.as_nanos() as u64, 3)
        .expect("constant histogram bounds are valid")
}

/// The time boundaries of a run, shared by every connection of a thread.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// When the run started (connections open from here).
    pub start: Instant,
    /// Round trips completing from here on are measured.
    pub measure_from: Instant,
    /// Nothing is sent from here on; nothing completing later is measured.
    pub end: Instant,
}

impl Schedule {
    /// Whether a round trip completing at `t` is measured.
    pub fn measures(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }
}

/// What one thread saw. Merged over threads into the final report.
#[derive(Debug)]
pub struct ThreadStats {
    /// Round-trip latency of measured messages.
    pub latency: Histogram<u64>,
    /// Latency since the last progress tick (warm-up included).
    pub interval: Histogram<u64>,
    /// Measured messages.
    pub messages: u64,
    /// Measured echoed bytes.
    pub bytes: u64,
    /// Messages and bytes since the last progress tick.
    pub interval_messages: u64,
    /// See `interval_messages`.
    pub interval_bytes: u64,
    /// Echoes that differed from what was sent.
    pub verify_errors: u64,
    /// Connections that ended before the run did.
    pub lost: u64,
    /// Connection attempts that failed.
    pub connect_failed: u64,
    /// Connections established.
    pub connected: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections finished: failed, lost, or done with their message quota.
    pub finished: u64,
    /// The first errors, described.
    pub details: Vec<String>,
    /// Why connects failed (reason, count).
    pub connect_reasons: Vec<(String, u64)>,
    /// The run is ending: closes from now on are expected.
    pub stopping: bool,
    /// When the thread stopped loading the server.
    pub ended_at: Option<Instant>,
    /// Waits past the stall threshold (each an error).
    pub stalls: u64,
    /// Stalls since the last progress tick.
    pub interval_stalls: u64,
    /// The longest stall.
    pub longest_stall: Duration,
    /// Bytes the client sent in the measurement (bidir).
    pub tx_bytes: u64,
    /// UDP figures.
    pub udp: UdpTotals,
    /// Datagrams lost since the last progress tick.
    pub interval_lost: u64,
}

/// What the UDP modes count.
#[derive(Debug, Default, Clone, Copy)]
pub struct UdpTotals {
    /// Datagrams sent in the measurement.
    pub sent: u64,
    /// Of those, echoed back (each once).
    pub received: u64,
    /// Of those, not echoed back in time.
    pub lost: u64,
    /// Echoes that came after one with a higher number.
    pub reordered: u64,
    /// Echoes of a datagram already echoed.
    pub duplicates: u64,
    /// Echoes that came after their datagram was counted lost (ping-pong).
    pub late: u64,
    /// Sum over flows of each flow's jitter, nanoseconds.
    pub jitter_sum_ns: f64,
    /// Flows with a jitter figure.
    pub jitter_flows: u64,
}

impl UdpTotals {
    /// Adds another thread's figures.
    pub fn add(&mut self, o: &UdpTotals) {
        self.sent += o.sent;
        self.received += o.received;
        self.lost += o.lost;
        self.reordered += o.reordered;
        self.duplicates += o.duplicates;
        self.late += o.late;
        self.jitter_sum_ns += o.jitter_sum_ns;
        self.jitter_flows += o.jitter_flows;
    }

    /// Lost datagrams in percent of those sent.
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / self.sent as f64
        }
    }

    /// Mean jitter over the flows, milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        if self.jitter_flows == 0 {
            0.0
        } else {
            self.jitter_sum_ns / self.jitter_flows as f64 / 1e6
        }
    }
}

impl ThreadStats {
    /// Empty stats.
    pub fn new() -> ThreadStats {
        ThreadStats {
            latency: new_histogram(),
            interval: new_histogram(),
            messages: 0,
            bytes: 0,
            interval_messages: 0,
            interval_bytes: 0,
            verify_errors: 0,
            lost: 0,
            connect_failed: 0,
            connected: 0,
            open: 0,
            finished: 0,
            details: Vec::new(),
            connect_reasons: Vec::new(),
            stopping: false,
            ended_at: None,
            stalls: 0,
            interval_stalls: 0,
            longest_stall: Duration::ZERO,
            tx_bytes: 0,
            udp: UdpTotals::default(),
            interval_lost: 0,
        }
    }

    /// All errors of every kind.
    pub fn errors(&self) -> u64 {
        self.verify_errors + self.lost + self.connect_failed + self.stalls
    }

    /// A new connection's watch, known to this thread's watchdog.
    pub fn watch(&mut self, id: usize) -> WatchRef {
        let w = Watch::new(id);
        WATCHES.with(|ws| ws.borrow_mut().push(w.clone()));
        w
    }

    /// Forgets this thread's watches (at the start and end of a run).
    pub fn clear_watches() {
        WATCHES.with(|ws| ws.borrow_mut().clear());
    }

    /// A wait that had counted as a stall ended after `d`.
    pub fn stall_ended(&mut self, d: Option<Duration>) {
        if let Some(d) = d {
            self.longest_stall = self.longest_stall.max(d);
        }
    }

    /// Counts the stalls of every connection waiting past `threshold` at `now`.
    pub fn check_stalls(&mut self, now: Instant, threshold: Duration, start: Instant) {
        let mut found = Vec::new();
        WATCHES.with(|ws| {
            for w in ws.borrow().iter() {
                let mut w = w.borrow_mut();
                if let Some(waited) = w.check(now, threshold) {
                    found.push((w.id, waited));
                }
            }
        });
        for (id, waited) in found {
            self.stalls += 1;
            self.interval_stalls += 1;
            self.longest_stall = self.longest_stall.max(waited);
            let at = now.saturating_duration_since(start).saturating_sub(waited);
            self.detail(format!(
                "connection {id}: stalled: no progress for {} ms from {:.3} s into the run",
                waited.as_millis(),
                at.as_secs_f64()
            ));
        }
    }

    /// Stalls still open at `now` count with their length so far.
    pub fn close_stalls(&mut self, now: Instant) {
        let longest = WATCHES.with(|ws| {
            ws.borrow()
                .iter()
                .filter_map(|w| w.borrow().open_stall(now))
                .max()
        });
        self.stall_ended(longest);
    }

    /// Records an error's details (the first few only).
    pub fn detail(&mut self, text: String) {
        if self.details.len() < ERROR_DETAILS {
            self.details.push(text);
        }
    }

    /// Counts a failed connect and its reason.
    pub fn connect_failure(&mut self, reason: &DisconnectReason) {
        self.connect_failed += 1;
        self.finished += 1;
        let text = reason.to_string();
        match self.connect_reasons.iter_mut().find(|(r, _)| *r == text) {
            Some((_, n)) => *n += 1,
            None => self.connect_reasons.push((text, 1)),
        }
    }
}

impl Default for ThreadStats {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    /// The connections of this thread's run, for the stall watchdog (kept out
    /// of [`ThreadStats`], which goes back to the main thread).
    static WATCHES: RefCell<Vec<WatchRef>> = const { RefCell::new(Vec::new()) };
}

/// Stats shared by the connections of one thread.
pub type Stats = Rc<RefCell<ThreadStats>>;

/// The byte at `offset` of every message (before the message number is stamped).
pub fn pattern(offset: usize) -> u8 {
    (offset as u8).wrapping_mul(31).wrapping_add(7)
}

/// Writes message number `seq` into the first bytes of `msg`.
pub fn stamp(msg: &mut [u8], seq: u64) {
    let n = msg.len().min(8);
    msg[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// Paces sends at a fixed rate.
///
/// When a message could not go out at its intended time because the window was
/// full (the server had not answered yet), its latency is measured from the
/// intended time, so a server that stalls cannot hide the stall by holding the
/// client back (coordinated omission). When the window had room and only the
/// client's own timer woke up late, latency is measured from the real send: the
/// timer's lateness is the tool's, not the server's.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    next: Instant,
    timer: bool,
    /// Completion time of the last `window` messages, by number modulo window:
    /// message `k` had room once message `k - window` was done.
    done_at: Vec<Instant>,
}

/// One connection's protocol.
#[derive(Debug)]
pub struct LoadClient {
    tally: Tally,
    schedule: Schedule,
    size: usize,
    window: usize,
    /// Bulk: refill only when at most this many are in flight.
    refill_at: usize,
    limit: Option<u64>,
    tx: Vec<u8>,
    tx_seq: u64,
    expect: Vec<u8>,
    rx_off: usize,
    rx_seq: u64,
    /// Send time (intended, under a pacer) of each message in flight.
    in_flight: VecDeque<Instant>,
    pacer: Option<Pacer>,
    paused: bool,
}

impl LoadClient {
    fn new(id: usize, config: &Config, schedule: Schedule, stats: Stats) -> LoadClient {
        let size = config.size;
        let tx: Vec<u8> = (0..size).map(pattern).collect();
        let mut expect = tx.clone();
        stamp(&mut expect, 0);
        let window = config.window();
        let refill_at = match config.mode {
            Mode::Bulk => window / 2,
            _ => window - 1,
        };
        let pacer = config.send_interval().map(|interval| Pacer {
            interval,
            // Spread the connections' first sends over one interval.
            next: schedule.start + interval.mul_f64(id as f64 / config.connections as f64),
            timer: false,
            done_at: vec![schedule.start; window],
        });
        // Under a pacer, refill as soon as there is room: the rate sets the pace.
        let refill_at = if pacer.is_some() {
            window - 1
        } else {
            refill_at
        };
        LoadClient {
            tally: Tally::new(id, stats),
            schedule,
            size,
            window,
            refill_at,
            limit: config.messages,
            tx,
            tx_seq: 0,
            expect,
            rx_off: 0,
            rx_seq: 0,
            in_flight: VecDeque::with_capacity(window),
            pacer,
            paused: false,
        }
    }

    /// Sends what the window, the pacer and the message limit allow.
    fn pump(&mut self, ctx: &mut Context<'_>, now: Instant) {
        if self.tally.done || self.paused || now >= self.schedule.end {
            return;
        }
        if self.in_flight.len() > self.refill_at {
            return;
        }
        while self.in_flight.len() < self.window && self.limit.is_none_or(|l| self.tx_seq < l) {
            let sent_at = match &mut self.pacer {
                None => now,
                Some(p) if p.next <= now => {
                    let intended = p.next;
                    p.next += p.interval;
                    let room_at = p.done_at[(self.tx_seq % self.window as u64) as usize];
                    let blocked = self.tx_seq >= self.window as u64 && room_at > intended;
                    if blocked {
                        intended
                    } else {
                        now
                    }
                }
                Some(_) => break,
            };
            stamp(&mut self.tx, self.tx_seq);
            ctx.write(&self.tx);
            self.tx_seq += 1;
            self.in_flight.push_back(sent_at);
        }
        if !self.in_flight.is_empty() {
            self.tally.watch.borrow_mut().busy(now);
        }
        self.arm_pacer(ctx, now);
    }

    /// Under a pacer with room in the window, wakes up when the next send is due.
    fn arm_pacer(&mut self, ctx: &mut Context<'_>, now: Instant) {
        let room = self.in_flight.len() < self.window && self.limit.is_none_or(|l| self.tx_seq < l);
        let Some(p) = &mut self.pacer else { return };
        if p.timer || !room || p.next >= self.schedule.end {
            return;
        }
        p.timer = true;
        let wait = p.next.saturating_duration_since(now);
        ctx.call_later_self(wait, |c: &mut LoadClient, ctx| {
            if let Some(p) = &mut c.pacer {
                p.timer = false;
            }
            c.pump(ctx, Instant::now());
        });
    }

    /// The echo differs from what was sent at `index` of this chunk.
    fn mismatch(&mut self, ctx: &mut Context<'_>, data: &[u8], index: usize) {
        let offset = self.rx_off + index;
        let text = format!(
            "connection {}: message {} byte {}: expected 0x{:02x}, got 0x{:02x}",
            self.tally.id, self.rx_seq, offset, self.expect[offset], data[index]
        );
        self.tally.fail(ctx, text);
    }
}

impl Protocol for LoadClient {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.tally.connected();
        self.pump(ctx, Instant::now());
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, mut data: &[u8]) {
        if self.tally.done {
            return;
        }
        let now = Instant::now();
        let measured = self.schedule.measures(now);
        let (mut msgs, mut bytes) = (0u64, 0u64);
        let mut stats = self.tally.stats.borrow_mut();
        while !data.is_empty() {
            let n = (self.size - self.rx_off).min(data.len());
            let want = &self.expect[self.rx_off..self.rx_off + n];
            if let Some(index) = first_difference(&data[..n], want) {
                drop(stats);
                return self.mismatch(ctx, data, index);
            }
            self.rx_off += n;
            data = &data[n..];
            if self.rx_off < self.size {
                break;
            }
            self.rx_off = 0;
            let Some(sent_at) = self.in_flight.pop_front() else {
                drop(stats);
                let text = format!(
                    "connection {}: the server sent more than it was sent (message {})",
                    self.tally.id, self.rx_seq
                );
                return self.tally.fail(ctx, text);
            };
            if let Some(p) = &mut self.pacer {
                p.done_at[(self.rx_seq % self.window as u64) as usize] = now;
            }
            self.rx_seq += 1;
            stamp(&mut self.expect, self.rx_seq);
            let rtt = now.saturating_duration_since(sent_at).as_nanos() as u64;
            stats.interval.saturating_record(rtt.max(1));
            stats.interval_messages += 1;
            stats.interval_bytes += self.size as u64;
            if measured {
                stats.latency.saturating_record(rtt.max(1));
                msgs += 1;
                bytes += self.size as u64;
            }
        }
        stats.messages += msgs;
        stats.bytes += bytes;
        let more = !self.in_flight.is_empty() || self.rx_off > 0;
        let ended = self.tally.watch.borrow_mut().progress(now, more);
        stats.stall_ended(ended);
        drop(stats);
        if self.limit.is_some_and(|l| self.rx_seq >= l) {
            self.tally.finish();
            return ctx.lose_connection();
        }
        self.pump(ctx, now);
    }

    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let progress = format!("{} messages", self.rx_seq);
        self.tally.lost(reason, progress);
    }

    fn pause_writing(&mut self, _ctx: &mut Context<'_>) {
        self.paused = true;
    }

    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        self.paused = false;
        self.pump(ctx, Instant::now());
    }
}

/// Makes one [`LoadClient`] and records a failed connect.
#[derive(Debug)]
pub struct LoadFactory {
    id: usize,
    config: Config,
    schedule: Schedule,
    stats: Stats,
}

impl LoadFactory {
    /// The factory of connection `id`.
    pub fn new(id: usize, config: &Config, schedule: Schedule, stats: Stats) -> LoadFactory {
        LoadFactory {
            id,
            config: config.clone(),
            schedule,
            stats,
        }
    }
}

impl ClientFactory for LoadFactory {
    type Protocol = LoadClient;

    fn build_protocol(&mut self, _peer: &Address) -> Option<LoadClient> {
        Some(LoadClient::new(
            self.id,
            &self.config,
            self.schedule,
            self.stats.clone(),
        ))
    }

    fn client_connection_failed(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        connect_failed(&self.stats, reason)
    }
}
