//! What netmon knows about each target: up or down and why, connect latency,
//! failure counts, uptime; and how it is written down.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use torsion::DisconnectReason;

/// Why a target is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The connection was refused.
    Refused,
    /// No answer (connect or banner) within the timeout.
    TimedOut,
    /// The host or network could not be reached.
    Unreachable,
    /// The reply did not start with the expected prefix; what came instead.
    WrongBanner(String),
    /// The peer closed the connection (before the banner, or in persistent mode).
    Closed,
    /// The peer reset the connection.
    Reset,
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
            Reason::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// A change of a target's status.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Wall-clock time of the change.
    pub at: SystemTime,
    /// The target as given.
    pub target: String,
    /// Up (with the connect latency) or down (with the reason).
    pub status: Result<Duration, Reason>,
    /// Failures in a row, this one included (0 when up).
    pub failures: u32,
    /// How long the previous status lasted, when there was one.
    pub after: Option<Duration>,
}

impl Event {
    /// Whether the target is up.
    pub fn is_up(&self) -> bool {
        self.status.is_ok()
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", timestamp(self.at), self.target)?;
        match &self.status {
            Ok(latency) => write!(f, "up (connect {:.2} ms)", ms(*latency))?,
            Err(reason) => write!(f, "down ({reason})")?,
        }
        if let Some(d) = self.after {
            let was = if self.is_up() { "down" } else { "up" };
            write!(f, " after {} {was}", human(d))?;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
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
    /// Current status: `None` before the first result.
    pub up: Option<bool>,
    /// Checks (or connection attempts, in persistent mode) finished.
    pub checks: u64,
    /// Checks that found the target up.
    pub ups: u64,
    /// Failures in a row now.
    pub failures: u32,
    /// Failures in all.
    pub total_failures: u64,
    /// The last reason the target was down.
    pub last_reason: Option<Reason>,
    /// Connect latency of successful checks, microseconds.
    pub latency: Histogram<u64>,
    /// Since when the current status holds.
    pub since: Option<Instant>,
    /// Time spent up and down so far (closed periods only).
    pub up_time: Duration,
    /// See `up_time`.
    pub down_time: Duration,
    /// A check is in progress.
    pub busy: bool,
}

impl Record {
    /// A target with nothing known yet.
    pub fn new(name: String) -> Record {
        Record {
            name,
            up: None,
            checks: 0,
            ups: 0,
            failures: 0,
            total_failures: 0,
            last_reason: None,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
            since: None,
            up_time: Duration::ZERO,
            down_time: Duration::ZERO,
            busy: false,
        }
    }

    /// Records one result at `now`; returns the event when the status changed (or
    /// is known for the first time).
    pub fn observe(&mut self, now: Instant, status: Result<Duration, Reason>) -> Option<Event> {
        self.checks += 1;
        let up = status.is_ok();
        match &status {
            Ok(latency) => {
                self.ups += 1;
                self.failures = 0;
                self.latency
                    .saturating_record((latency.as_micros() as u64).max(1));
            }
            Err(reason) => {
                self.failures = self.failures.saturating_add(1);
                self.total_failures += 1;
                self.last_reason = Some(reason.clone());
            }
        }
        if self.up == Some(up) {
            return None;
        }
        let after = self.close_period(now);
        self.up = Some(up);
        self.since = Some(now);
        Some(Event {
            at: SystemTime::now(),
            target: self.name.clone(),
            status,
            failures: self.failures,
            after,
        })
    }

    /// Adds the current period to the up or down time; returns its length.
    fn close_period(&mut self, now: Instant) -> Option<Duration> {
        let (since, up) = (self.since?, self.up?);
        let d = now.saturating_duration_since(since);
        if up {
            self.up_time += d;
        } else {
            self.down_time += d;
        }
        self.since = Some(now);
        Some(d)
    }

    /// Share of time up, in percent, counting the current period up to `now`.
    pub fn time_uptime(&self, now: Instant) -> Option<f64> {
        let (mut up, mut down) = (self.up_time, self.down_time);
        if let (Some(since), Some(is_up)) = (self.since, self.up) {
            let d = now.saturating_duration_since(since);
            if is_up {
                up += d;
            } else {
                down += d;
            }
        }
        let total = (up + down).as_secs_f64();
        (total > 0.0).then(|| up.as_secs_f64() * 100.0 / total)
    }

    /// Share of checks that found the target up, in percent.
    pub fn check_uptime(&self) -> Option<f64> {
        (self.checks > 0).then(|| self.ups as f64 * 100.0 / self.checks as f64)
    }

    /// Connect latency at `percentile`, milliseconds.
    pub fn latency_ms(&self, percentile: f64) -> Option<f64> {
        (!self.latency.is_empty())
            .then(|| self.latency.value_at_percentile(percentile) as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let t0 = Instant::now();
        let e = r.observe(t0, Ok(Duration::from_millis(1))).unwrap();
        assert!(e.is_up() && e.after.is_none());
        assert!(r.observe(t0, Ok(Duration::from_millis(1))).is_none());
        let t1 = t0 + Duration::from_secs(10);
        let e = r.observe(t1, Err(Reason::Refused)).unwrap();
        assert_eq!((e.failures, e.after), (1, Some(Duration::from_secs(10))));
        assert!(e.to_string().contains("x:1 down (refused) after 10.0 s up"));
        assert!(r.observe(t1, Err(Reason::TimedOut)).is_none());
        assert_eq!(r.failures, 2);
        let t2 = t1 + Duration::from_secs(30);
        assert!(r.observe(t2, Ok(Duration::from_millis(2))).is_some());
        assert_eq!(r.failures, 0);
        assert_eq!(r.check_uptime(), Some(60.0));
        assert_eq!(r.time_uptime(t2), Some(25.0));
    }
}
