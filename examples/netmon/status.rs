//! What netmon knows about each target: up, warning or down and why, latency,
//! failure counts, time up and down; and how it is written down.
//!
//! # The downtime rule
//!
//! A down period starts when the first failed check (or unanswered probe) was
//! *sent*, and ends when the first successful one *got its answer*. Results are
//! applied in the order their checks started: a result from a check older than
//! one already applied is counted but does not change the state. So an outage
//! of length D watched every interval I is reported as lasting between D - I and
//! D + I (plus a round trip): the start is seen late by less than one interval,
//! and so is the end.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use torsion::DisconnectReason;

/// Why a target is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The connection was refused (or, for udp, the port is unreachable).
    Refused,
    /// No answer (connect, handshake or reply) within the timeout.
    TimedOut,
    /// The host or network could not be reached.
    Unreachable,
    /// The reply did not start with the expected prefix; what came instead.
    WrongBanner(String),
    /// The peer closed the connection (before the reply, or in persistent mode).
    Closed,
    /// The peer reset the connection.
    Reset,
    /// The TLS handshake failed.
    Tls(String),
    /// An HTTP check got the wrong status or body.
    Http(String),
    /// Any other error.
    Error(String),
}

impl Reason {
    /// Classifies why a connection failed or ended.
    pub fn from_disconnect(r: &DisconnectReason) -> Reason {
        match r {
            DisconnectReason::Refused => Reason::Refused,
            DisconnectReason::TimedOut => Reason::TimedOut,
            DisconnectReason::Unreachable => Reason::Unreachable,
            DisconnectReason::Done => Reason::Closed,
            DisconnectReason::Reset => Reason::Reset,
            DisconnectReason::Tls(e) => Reason::Tls(e.to_string()),
            other => Reason::Error(other.to_string()),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Refused => f.write_str("refused"),
            Reason::TimedOut => f.write_str("timed out"),
            Reason::Unreachable => f.write_str("unreachable"),
            Reason::WrongBanner(got) => write!(f, "wrong banner: got {got:?}"),
            Reason::Closed => f.write_str("closed by peer"),
            Reason::Reset => f.write_str("reset by peer"),
            Reason::Tls(e) => write!(f, "tls: {e}"),
            Reason::Http(e) => write!(f, "http: {e}"),
            Reason::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// A successful check.
#[derive(Debug, Clone, PartialEq)]
pub struct Up {
    /// Connect time (tls: connect and handshake; udp and persistent probes: the
    /// round trip).
    pub latency: Duration,
    /// Days until the earliest certificate of the chain expires (tls).
    pub cert_days: Option<f64>,
    /// Unix time of that expiry (tls), for `probe_ssl_earliest_cert_expiry`.
    pub cert_expiry: Option<SystemTime>,
    /// Why the target is up but in warning (a certificate near its end).
    pub warning: Option<String>,
    /// http: how long each phase of the exchange took.
    pub phases: Option<Phases>,
}

impl Up {
    /// Up with this latency, nothing else to say.
    pub fn new(latency: Duration) -> Up {
        Up {
            latency,
            cert_days: None,
            cert_expiry: None,
            warning: None,
            phases: None,
        }
    }
}

/// The phases of an http check, as blackbox_exporter names them
/// (`probe_http_duration_seconds{phase=...}`), from the client's
/// [`Timings`](torsion::http::Timings): `resolve` (the host name), `connect`
/// (TCP), `tls` (the handshake; zero for `http://`), `processing` (from the
/// ready connection to the response's first byte: the request and the
/// server's work), `transfer` (from the first byte to the body's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Phases {
    /// Resolving the name.
    pub resolve: Duration,
    /// Connecting TCP.
    pub connect: Duration,
    /// The TLS handshake (`None`: no TLS).
    pub tls: Option<Duration>,
    /// Request sent to first byte.
    pub processing: Duration,
    /// First byte to the end of the body.
    pub transfer: Duration,
}

impl Phases {
    /// From the client's timings of a complete response.
    pub fn of(t: &torsion::http::Timings) -> Phases {
        Phases {
            resolve: t.resolve(),
            connect: t.connect(),
            tls: t.tls(),
            processing: t.processing(),
            transfer: t.transfer().unwrap_or_default(),
        }
    }

    /// The phases with blackbox_exporter's names, in order (`tls` is zero
    /// without TLS, as there).
    pub fn named(&self) -> [(&'static str, Duration); 5] {
        [
            ("resolve", self.resolve),
            ("connect", self.connect),
            ("tls", self.tls.unwrap_or_default()),
            ("processing", self.processing),
            ("transfer", self.transfer),
        ]
    }
}

/// A check's outcome.
pub type Status = Result<Up, Reason>;

/// The three states, in Nagios' order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Answering as expected.
    Up,
    /// Answering, with a warning.
    Warning,
    /// Not answering as expected.
    Down,
}

impl Health {
    /// Of a status.
    pub fn of(s: &Status) -> Health {
        match s {
            Ok(u) if u.warning.is_some() => Health::Warning,
            Ok(_) => Health::Up,
            Err(_) => Health::Down,
        }
    }

    /// The word used in event lines and the summary.
    pub fn word(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Warning => "warning",
            Health::Down => "down",
        }
    }
}

/// A change of a target's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Wall-clock time the change was seen.
    pub at: SystemTime,
    /// Wall-clock time the new state began, by the downtime rule.
    pub since: SystemTime,
    /// The target as given.
    pub target: String,
    /// Up (with the latency) or down (with the reason).
    pub status: Status,
    /// Failures in a row, this one included (0 when up).
    pub failures: u32,
    /// How long the previous up-or-down period lasted, when there was one (a
    /// change between up and warning does not end a period: `None`).
    pub after: Option<Duration>,
    /// The state before this change (`None` on the first result).
    pub previous: Option<Health>,
}

impl Event {
    /// Whether the target is up (warning included).
    pub fn is_up(&self) -> bool {
        self.status.is_ok()
    }

    /// Up, warning or down.
    pub fn health(&self) -> Health {
        Health::of(&self.status)
    }
}

/// `(connect 1.20 ms, certificate expires in 80.1 days)` and the like.
pub fn describe(status: &Status) -> String {
    match status {
        Ok(u) => {
            let mut s = format!("latency {:.2} ms", ms(u.latency));
            if let Some(p) = &u.phases {
                s += &format!(
                    ": resolve {:.2}, connect {:.2}, tls {}, processing {:.2}, transfer {:.2} ms",
                    ms(p.resolve),
                    ms(p.connect),
                    p.tls.map_or("-".into(), |t| format!("{:.2}", ms(t))),
                    ms(p.processing),
                    ms(p.transfer)
                );
            }
            if let Some(d) = u.cert_days {
                s += &format!(", certificate expires in {d:.1} days");
            }
            if let Some(w) = &u.warning {
                s += &format!(", {w}");
            }
            s
        }
        Err(r) => r.to_string(),
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} ({})",
            timestamp(self.at),
            self.target,
            self.health().word(),
            describe(&self.status)
        )?;
        if let Some(d) = self.after {
            let was = if self.is_up() { "down" } else { "up" };
            write!(f, " after {} {was}", human(d))?;
        }
        if !self.is_up() {
            write!(f, "; down since {}", timestamp(self.since))?;
        }
        Ok(())
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A duration for people: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if s < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

/// `2024-05-01T12:00:00.123Z` (UTC, milliseconds).
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The wall-clock time of `t`, by the clocks' difference now.
pub fn wall(t: Instant) -> SystemTime {
    let now = Instant::now();
    let sys = SystemTime::now();
    if t <= now {
        sys.checked_sub(now - t).unwrap_or(sys)
    } else {
        sys + (t - now)
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Everything known about one target.
#[derive(Debug)]
pub struct Record {
    /// The target as given.
    pub name: String,
    /// Current state: `None` before the first result.
    pub health: Option<Health>,
    /// Checks (probes, connection attempts) finished.
    pub checks: u64,
    /// Checks that found the target up.
    pub ups: u64,
    /// Failures in a row now.
    pub failures: u32,
    /// Failures in all.
    pub total_failures: u64,
    /// The last reason a check failed (it may change during an outage).
    pub last_reason: Option<Reason>,
    /// The reason given when the target last went down: the words of the
    /// event line, which the summary repeats.
    pub down_reason: Option<Reason>,
    /// Outages (down events).
    pub outages: u64,
    /// Latency of successful checks, microseconds.
    pub latency: Histogram<u64>,
    /// The last successful check.
    pub last_up: Option<Up>,
    /// How long the last check took (success or failure).
    pub last_duration: Option<Duration>,
    /// Since when the current up-or-down period holds.
    pub since: Option<Instant>,
    /// Time spent up (warning included) and down so far (closed periods only).
    pub up_time: Duration,
    /// See `up_time`.
    pub down_time: Duration,
    /// The start of the newest check applied (older results are stale).
    pub applied: Option<Instant>,
}

impl Record {
    /// A target with nothing known yet.
    pub fn new(name: String) -> Record {
        Record {
            name,
            health: None,
            checks: 0,
            ups: 0,
            failures: 0,
            total_failures: 0,
            last_reason: None,
            down_reason: None,
            outages: 0,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
            last_up: None,
            last_duration: None,
            since: None,
            up_time: Duration::ZERO,
            down_time: Duration::ZERO,
            applied: None,
        }
    }

    /// Whether the target is up (warning included) now.
    pub fn is_up(&self) -> bool {
        matches!(self.health, Some(Health::Up | Health::Warning))
    }

    /// Records the result of a check that started at `started` and ended at
    /// `now`; returns the event when the state changed (or is known for the
    /// first time). See the module's downtime rule.
    pub fn observe(&mut self, started: Instant, now: Instant, status: Status) -> Option<Event> {
        self.checks += 1;
        self.last_duration = Some(now.saturating_duration_since(started));
        match &status {
            Ok(up) => {
                self.ups += 1;
                self.latency
                    .saturating_record((up.latency.as_micros() as u64).max(1));
            }
            Err(reason) => {
                self.total_failures += 1;
                self.last_reason = Some(reason.clone());
            }
        }
        if self.applied.is_some_and(|a| started < a) {
            return None; // stale: a newer check has spoken
        }
        self.applied = Some(started);
        let health = Health::of(&status);
        match &status {
            Ok(up) => {
                self.failures = 0;
                self.last_up = Some(up.clone());
            }
            Err(_) => self.failures = self.failures.saturating_add(1),
        }
        if self.health == Some(health) {
            return None;
        }
        let was_up = self.is_up();
        let previous = self.health;
        let known = previous.is_some();
        self.health = Some(health);
        let now_up = self.is_up();
        let mut after = None;
        let mut since = self.since.unwrap_or(now);
        if !known || was_up != now_up {
            // A new period: down from the failed check's start, up from the
            // answer's arrival.
            let boundary = if now_up { now } else { started };
            let boundary = self.since.map_or(boundary, |s| boundary.max(s));
            after = self.close_period(boundary);
            self.since = Some(boundary);
            since = boundary;
            if !now_up {
                self.outages += 1;
            }
        }
        if let Err(r) = &status {
            self.down_reason = Some(r.clone());
        }
        Some(Event {
            at: SystemTime::now(),
            since: wall(since),
            target: self.name.clone(),
            status,
            failures: self.failures,
            after,
            previous,
        })
    }

    /// Adds the current period, up to `end`, to the up or down time; returns
    /// its length.
    fn close_period(&mut self, end: Instant) -> Option<Duration> {
        let since = self.since?;
        let d = end.saturating_duration_since(since);
        if self.up_period() {
            self.up_time += d;
        } else {
            self.down_time += d;
        }
        Some(d)
    }

    /// Whether the open period is an up one. Called before `health` changes, it
    /// tells the closing period's kind from the time counters' point of view.
    fn up_period(&self) -> bool {
        // The period closing is the opposite of the state just set.
        !self.is_up()
    }

    /// Time up and down, counting the open period up to `now`.
    pub fn times(&self, now: Instant) -> (Duration, Duration) {
        let (mut up, mut down) = (self.up_time, self.down_time);
        if let Some(since) = self.since {
            let d = now.saturating_duration_since(since);
            if self.is_up() {
                up += d;
            } else {
                down += d;
            }
        }
        (up, down)
    }

    /// Share of time up, in percent, counting the current period up to `now`.
    pub fn time_uptime(&self, now: Instant) -> Option<f64> {
        let (up, down) = self.times(now);
        let total = (up + down).as_secs_f64();
        (total > 0.0).then(|| up.as_secs_f64() * 100.0 / total)
    }

    /// Share of checks that found the target up, in percent.
    pub fn check_uptime(&self) -> Option<f64> {
        (self.checks > 0).then(|| self.ups as f64 * 100.0 / self.checks as f64)
    }

    /// Latency at `percentile`, milliseconds.
    pub fn latency_ms(&self, percentile: f64) -> Option<f64> {
        (!self.latency.is_empty())
            .then(|| self.latency.value_at_percentile(percentile) as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Status {
        Ok(Up::new(Duration::from_millis(1)))
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
        assert_eq!(timestamp(t), "2000-02-29T00:00:00.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn only_changes_make_events() {
        let mut r = Record::new("x:1".into());
        let s = Duration::from_secs;
        let t0 = Instant::now();
        let e = r.observe(t0, t0, up()).unwrap();
        assert!(e.is_up() && e.after.is_none());
        assert!(r.observe(t0, t0, up()).is_none());
        let t1 = t0 + s(10);
        let e = r.observe(t1, t1, Err(Reason::Refused)).unwrap();
        assert_eq!((e.failures, e.after), (1, Some(s(10))));
        assert!(e.to_string().contains("x:1 down (refused) after 10.0 s up"));
        assert!(r.observe(t1, t1, Err(Reason::TimedOut)).is_none());
        assert_eq!(r.failures, 2);
        assert_eq!(r.down_reason, Some(Reason::Refused), "the event's words");
        let t2 = t1 + s(30);
        assert!(r.observe(t2, t2, up()).is_some());
        assert_eq!(r.failures, 0);
        assert_eq!(r.check_uptime(), Some(60.0));
        assert_eq!(r.time_uptime(t2), Some(25.0));
    }

    #[test]
    fn downtime_runs_from_the_first_failed_send_to_the_first_answer() {
        // Checks every second, 2 s timeout; the path is cut from 10.5 to 15.5.
        let s = |x: f64| Duration::from_secs_f64(x);
        let t0 = Instant::now();
        let mut r = Record::new("x:1".into());
        r.observe(t0, t0, up());
        r.observe(t0 + s(10.0), t0 + s(10.001), up());
        // The check sent at 11 times out at 13: down since 11.
        let e = r
            .observe(t0 + s(11.0), t0 + s(13.0), Err(Reason::TimedOut))
            .unwrap();
        assert_eq!(e.after, Some(s(11.0)));
        // The check sent at 16 is answered at once; the one sent at 15
        // (its SYN retransmitted at 16) answers at 16.0 as well; the one sent
        // at 14 times out at 16 after them: stale, no flap.
        let e = r.observe(t0 + s(16.0), t0 + s(16.001), up()).unwrap();
        assert_eq!(e.after, Some(s(5.001)), "a 5 s outage within one interval");
        assert!(r.observe(t0 + s(15.0), t0 + s(16.0), up()).is_none());
        assert!(r
            .observe(t0 + s(14.0), t0 + s(16.0), Err(Reason::TimedOut))
            .is_none());
        assert!(r.is_up());
        assert_eq!(r.times(t0 + s(16.001)).1, s(5.001));
    }

    #[test]
    fn a_warning_is_up_time_with_its_own_event() {
        let t0 = Instant::now();
        let mut r = Record::new("x:1".into());
        r.observe(t0, t0, up());
        let mut w = Up::new(Duration::from_millis(1));
        w.warning = Some("certificate expires in 3.0 days (below 14)".into());
        let e = r.observe(t0, t0 + Duration::from_secs(1), Ok(w)).unwrap();
        assert_eq!(e.health(), Health::Warning);
        assert_eq!(e.after, None);
        assert!(e.to_string().contains("warning ("), "{e}");
        assert_eq!(r.time_uptime(t0 + Duration::from_secs(2)), Some(100.0));
    }
}
