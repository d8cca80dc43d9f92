//! The UDP modes. `udp`: one datagram in flight per flow; the next goes when its
//! echo is back or after `timeout` (then it is lost). `udp-stream`: datagrams at
//! a fixed rate, echoes counted as they come: loss (sent minus echoed, once the
//! stragglers' time is up), reordering (an echo after one with a higher number),
//! duplicates, and jitter as RFC 3550 and iperf3 define it (the smoothed
//! difference of successive transit times), here over the round trip.
//!
//! Each datagram carries its number and send time (see
//! [`super::wire::stamp_datagram`]); the rest is a pattern checked on return.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use torsion::{Address, Core, DatagramContext, DatagramPort, DatagramProtocol};

use super::client::{Schedule, Stats};
use super::config::{Config, Mode};
use super::watch::WatchRef;
use super::wire::{datagram_fill, read_datagram, stamp_datagram};

/// Most datagrams sent in one wake-up of a late pacer.
const BURST: u32 = 64;
/// Longest wait for the stream's stragglers after the last send.
const MAX_GRACE: Duration = Duration::from_secs(1);

/// One flow.
#[derive(Debug)]
pub struct UdpClient {
    id: usize,
    mode: Mode,
    target: SocketAddr,
    stats: Stats,
    schedule: Schedule,
    limit: Option<u64>,
    timeout: Duration,
    interval: Option<Duration>,
    buf: Vec<u8>,
    watch: WatchRef,
    /// Next number to send.
    seq: u64,
    /// Ping-pong: the number waited for, and a counter that tells a current
    /// timeout from a stale one.
    waiting: Option<u64>,
    generation: u64,
    /// Stream: when the next datagram is due.
    next_send: Instant,
    /// Echoes seen, by number (duplicates).
    seen: Vec<u64>,
    highest: Option<u64>,
    /// Sent in the measurement window, by number range.
    measured: Vec<bool>,
    prev_transit: Option<Duration>,
    jitter_ns: f64,
    jitter_samples: u64,
    finished: bool,
}

impl UdpClient {
    /// A flow of `config`'s mode to its address.
    pub fn new(id: usize, config: &Config, schedule: Schedule, stats: Stats) -> UdpClient {
        let mut buf: Vec<u8> = (0..config.size).map(datagram_fill).collect();
        stamp_datagram(&mut buf, 0, Duration::ZERO);
        let interval = config.send_interval();
        let offset = interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(id as f64 / config.connections as f64)
        });
        let watch = stats.borrow_mut().watch(id);
        UdpClient {
            id,
            mode: config.mode,
            target: config.addr,
            stats,
            schedule,
            limit: config.messages,
            timeout: config.timeout,
            interval: if config.mode == Mode::UdpStream {
                interval
            } else {
                None
            },
            buf,
            watch,
            seq: 0,
            waiting: None,
            generation: 0,
            next_send: schedule.start + offset,
            seen: Vec::new(),
            highest: None,
            measured: Vec::new(),
            prev_transit: None,
            jitter_ns: 0.0,
            jitter_samples: 0,
            finished: false,
        }
    }

    /// Opens the flow's socket (bound to any address of the target's family).
    ///
    /// # Errors
    /// The operating system's, when the socket cannot be made.
    pub fn open(self, core: &mut Core) -> torsion::Result<DatagramPort> {
        let any: SocketAddr = if self.target.is_ipv4() {
            "0.0.0.0:0".parse().expect("constant address")
        } else {
            "[::]:0".parse().expect("constant address")
        };
        core.listen_udp(any, self)
    }

    fn more(&self, now: Instant) -> bool {
        !self.finished && now < self.schedule.end && self.limit.is_none_or(|l| self.seq < l)
    }

    fn send(&mut self, ctx: &mut DatagramContext<'_>, now: Instant) {
        let seq = self.seq;
        self.seq += 1;
        stamp_datagram(
            &mut self.buf,
            seq,
            now.saturating_duration_since(self.schedule.start),
        );
        let measured = self.schedule.measures(now);
        self.measured.push(measured);
        if measured {
            self.stats.borrow_mut().udp.sent += 1;
        }
        self.watch.borrow_mut().busy(now);
        if let Err(e) = ctx.write(&self.buf) {
            // Counted as lost when its time is up, like a datagram the network ate.
            tracing::debug!(flow = self.id, error = %e, "datagram not sent");
        }
    }

    /// Ping-pong: the next datagram, with its timeout.
    fn ping(&mut self, ctx: &mut DatagramContext<'_>) {
        let now = Instant::now();
        if !self.more(now) {
            return self.finish(ctx);
        }
        let seq = self.seq;
        self.send(ctx, now);
        self.waiting = Some(seq);
        self.generation += 1;
        let generation = self.generation;
        let port = ctx.port();
        ctx.call_later(self.timeout, move |core| {
            port.with_protocol(core, move |c: &mut UdpClient, ctx| {
                if c.generation == generation && c.waiting == Some(seq) {
                    c.waiting = None;
                    c.lost_one(seq);
                    c.ping(ctx);
                }
            });
        });
    }

    fn lost_one(&mut self, seq: u64) {
        if self.measured.get(seq as usize) == Some(&true) {
            let mut s = self.stats.borrow_mut();
            s.udp.lost += 1;
            s.interval_lost += 1;
        }
    }

    /// Stream: sends what is due and sleeps until the next one.
    fn pace(&mut self, ctx: &mut DatagramContext<'_>) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        let mut sent = 0;
        while self.next_send <= now && sent < BURST && self.more(now) {
            self.send(ctx, now);
            self.next_send += interval;
            sent += 1;
        }
        if !self.more(now) {
            return self.drain(ctx);
        }
        if self.next_send + interval * BURST < now {
            // Far behind (the machine is loaded): do not burst to catch up.
            self.next_send = now;
        }
        let port = ctx.port();
        let wait = self.next_send.saturating_duration_since(now);
        ctx.call_later(wait, move |core| {
            port.with_protocol(core, |c: &mut UdpClient, ctx| c.pace(ctx));
        });
    }

    /// Stream: the last datagram went; wait for the stragglers, then count.
    fn drain(&mut self, ctx: &mut DatagramContext<'_>) {
        let port = ctx.port();
        ctx.call_later(self.timeout.min(MAX_GRACE), move |core| {
            port.with_protocol(core, |c: &mut UdpClient, ctx| c.finish(ctx));
        });
    }

    fn finish(&mut self, ctx: &mut DatagramContext<'_>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.watch.borrow_mut().idle();
        let mut s = self.stats.borrow_mut();
        if self.mode == Mode::UdpStream {
            let lost = (0..self.seq)
                .filter(|&q| self.measured[q as usize] && !self.was_seen(q))
                .count() as u64;
            s.udp.lost += lost;
            s.interval_lost += lost;
        }
        if self.jitter_samples > 0 {
            s.udp.jitter_sum_ns += self.jitter_ns;
            s.udp.jitter_flows += 1;
        }
        s.finished += 1;
        s.open -= 1;
        drop(s);
        ctx.stop_listening();
    }

    fn was_seen(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    fn mark_seen(&mut self, seq: u64) {
        let word = (seq / 64) as usize;
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        self.seen[word] |= 1 << (seq % 64);
    }
}

impl DatagramProtocol for UdpClient {
    fn start_protocol(&mut self, ctx: &mut DatagramContext<'_>) {
        if let Err(e) = ctx.connect(self.target) {
            let mut s = self.stats.borrow_mut();
            s.connect_failed += 1;
            s.detail(format!("flow {}: cannot connect the socket: {e}", self.id));
            drop(s);
            self.finished = true;
            self.stats.borrow_mut().finished += 1;
            self.stats.borrow_mut().open -= 1;
            ctx.stop_listening();
            return;
        }
        self.stats.borrow_mut().connected += 1;
        match self.mode {
            Mode::Udp => self.ping(ctx),
            _ => self.pace(ctx),
        }
    }

    fn datagram_received(&mut self, ctx: &mut DatagramContext<'_>, data: &[u8], _from: &Address) {
        let now = Instant::now();
        let Some((seq, sent)) = read_datagram(data) else {
            return self.bad(format!("flow {}: a {}-byte datagram", self.id, data.len()));
        };
        if seq >= self.seq || data.len() != self.buf.len() {
            return self.bad(format!(
                "flow {}: an echo of datagram {seq} ({} bytes) that was never sent",
                self.id,
                data.len()
            ));
        }
        if let Some(i) = (16..data.len()).find(|&i| data[i] != datagram_fill(i)) {
            return self.bad(format!("flow {}: datagram {seq} byte {i} differs", self.id));
        }
        if self.was_seen(seq) {
            self.stats.borrow_mut().udp.duplicates += 1;
            return;
        }
        self.mark_seen(seq);
        let transit = (now.saturating_duration_since(self.schedule.start)).saturating_sub(sent);
        let measured = self.measured[seq as usize];
        let late = self.mode == Mode::Udp && self.waiting != Some(seq);
        let mut s = self.stats.borrow_mut();
        if late {
            // Its timeout had passed: counted lost already.
            s.udp.late += 1;
            return;
        }
        if self.highest.is_some_and(|h| seq < h) {
            s.udp.reordered += 1;
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        if let Some(prev) = self.prev_transit {
            let d = transit.as_nanos() as f64 - prev.as_nanos() as f64;
            self.jitter_ns += (d.abs() - self.jitter_ns) / 16.0;
            self.jitter_samples += 1;
        }
        self.prev_transit = Some(transit);
        let rtt = (transit.as_nanos() as u64).max(1);
        s.interval.saturating_record(rtt);
        s.interval_messages += 1;
        s.interval_bytes += data.len() as u64;
        if measured {
            s.udp.received += 1;
            s.latency.saturating_record(rtt);
            s.messages += 1;
            s.bytes += data.len() as u64;
        }
        let ended = self.watch.borrow_mut().progress(now, self.more(now));
        s.stall_ended(ended);
        drop(s);
        if self.mode == Mode::Udp {
            self.waiting = None;
            self.ping(ctx);
        }
    }

    fn stop_protocol(&mut self, ctx: &mut DatagramContext<'_>) {
        // Stopped from outside (the reactor went away): count what is known.
        self.finish(ctx);
    }

    fn connection_refused(&mut self, _ctx: &mut DatagramContext<'_>) {
        // Nothing listens there: the datagram is lost, as the timeout will say;
        // say why once.
        let mut s = self.stats.borrow_mut();
        if !s.details.iter().any(|d| d.contains("port unreachable")) {
            s.detail(format!(
                "flow {}: {} answered port unreachable (no UDP echo there)",
                self.id, self.target
            ));
        }
    }
}

impl UdpClient {
    fn bad(&mut self, text: String) {
        let mut s = self.stats.borrow_mut();
        s.verify_errors += 1;
        s.detail(text);
    }
}
