//! CPU use of this process (user plus system time over wall time), as iperf3's
//! `cpu_utilization_percent` and HP netperf's `-c`.

use std::time::{Duration, Instant};

/// CPU time used by this process so far, and when it was read.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    user: Duration,
    system: Duration,
}

/// CPU used between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUse {
    /// Seconds of user time.
    pub user_s: f64,
    /// Seconds of system time.
    pub system_s: f64,
    /// Seconds of wall time.
    pub wall_s: f64,
}

impl CpuUse {
    /// User plus system time over wall time, in percent of one core (above 100
    /// with several threads busy).
    pub fn percent(&self) -> f64 {
        if self.wall_s > 0.0 {
            (self.user_s + self.system_s) * 100.0 / self.wall_s
        } else {
            0.0
        }
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

impl CpuSample {
    /// Reads the process's CPU times now.
    pub fn now() -> CpuSample {
        // SAFETY: getrusage writes a plain struct we own; RUSAGE_SELF is valid.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0;
        let (user, system) = if ok {
            (timeval(ru.ru_utime), timeval(ru.ru_stime))
        } else {
            (Duration::ZERO, Duration::ZERO)
        };
        CpuSample {
            at: Instant::now(),
            user,
            system,
        }
    }

    /// CPU used from `self` to `later`.
    pub fn until(&self, later: &CpuSample) -> CpuUse {
        CpuUse {
            user_s: later.user.saturating_sub(self.user).as_secs_f64(),
            system_s: later.system.saturating_sub(self.system).as_secs_f64(),
            wall_s: later.at.saturating_duration_since(self.at).as_secs_f64(),
        }
    }
}
