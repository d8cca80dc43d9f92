//! What to measure: the run's settings, checked before anything connects.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Bytes a bulk connection keeps in flight unless `--depth` says otherwise.
pub const BULK_WINDOW_BYTES: usize = 1024 * 1024;
/// The largest message accepted (the echo must fit the verification buffers).
pub const MAX_SIZE: usize = 64 * 1024 * 1024;
/// The smallest datagram: its number and its send time.
pub const MIN_DATAGRAM: usize = 16;
/// The largest datagram sent (fits an IPv4 UDP payload).
pub const MAX_DATAGRAM: usize = 65_507;
/// Datagrams per second per connection in udp-stream mode without `--rate`.
pub const DEFAULT_STREAM_RATE: f64 = 1000.0;

/// How each connection loads the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One message in flight per connection: send, wait for the echo, repeat.
    PingPong,
    /// `depth` messages in flight per connection; each echo releases the next.
    Pipeline,
    /// Stream messages as fast as the connection takes them (up to `depth` in
    /// flight, refilled in large batches) and read the echo back; with
    /// `reverse` the server streams instead, with `bidir` both do.
    Bulk,
    /// Connect, one request and its response, close, again (HP netperf's
    /// TCP_CRR): transactions per second with the connect in each.
    Crr,
    /// UDP ping-pong (UDP_RR): one datagram in flight per connection; a reply
    /// not back within `timeout` is lost.
    Udp,
    /// A paced UDP stream echoed back: loss, reordering, duplicates and jitter
    /// (as iperf3 reports them, over the round trip).
    UdpStream,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::PingPong => "pingpong",
            Mode::Pipeline => "pipeline",
            Mode::Bulk => "bulk",
            Mode::Crr => "crr",
            Mode::Udp => "udp",
            Mode::UdpStream => "udp-stream",
        }
    }

    /// Whether the mode runs over UDP.
    pub fn is_udp(self) -> bool {
        matches!(self, Mode::Udp | Mode::UdpStream)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The echo server.
    pub addr: SocketAddr,
    /// Connections in all, spread over the threads.
    pub connections: usize,
    /// The load pattern.
    pub mode: Mode,
    /// Messages in flight per connection (pipeline and bulk); `None` picks the
    /// mode's default.
    pub depth: Option<usize>,
    /// Bytes per message.
    pub size: usize,
    /// How long to measure, after the warm-up.
    pub duration: Duration,
    /// How long to load the server before measuring.
    pub warmup: Duration,
    /// Target messages per second over all connections (`None`: as fast as
    /// possible).
    pub rate: Option<f64>,
    /// Reactor threads.
    pub threads: usize,
    /// Each connection stops after this many round trips (warm-up included).
    pub messages: Option<u64>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Bulk: the server streams to the client instead of echoing.
    pub reverse: bool,
    /// Bulk: both ends stream at once (the server sinks what it gets).
    pub bidir: bool,
    /// A connection with something outstanding and no progress for this long
    /// counts one stall (an error). `None`: stalls are not counted.
    pub stall: Option<Duration>,
    /// UDP: a datagram not echoed within this long is lost.
    pub timeout: Duration,
    /// Time between interval reports.
    pub interval: Duration,
}

/// Settings that cannot work.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// Zero connections.
    NoConnections,
    /// Zero threads.
    NoThreads,
    /// Size zero or above [`MAX_SIZE`].
    Size(usize),
    /// Depth zero, or given for ping-pong (which has exactly one in flight).
    Depth(usize),
    /// A rate that is not a positive finite number.
    Rate(f64),
    /// Nothing to measure: zero duration and no message limit.
    NoDuration,
    /// `--reverse`/`--bidir` outside bulk mode, or both at once.
    Direction,
    /// A datagram too small to carry its number and send time, or too large.
    DatagramSize(usize),
    /// A zero interval or UDP timeout.
    Zero(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoConnections => f.write_str("--connections must be at least 1"),
            ConfigError::NoThreads => f.write_str("--threads must be at least 1"),
            ConfigError::Size(s) => {
                write!(f, "--size must be between 1 and {MAX_SIZE} bytes, got {s}")
            }
            ConfigError::Depth(d) => write!(
                f,
                "--depth must be at least 1 and only applies to pipeline and bulk modes, got {d}"
            ),
            ConfigError::Rate(r) => write!(f, "--rate must be a positive number, got {r}"),
            ConfigError::NoDuration => {
                f.write_str("--duration must be above zero (or give --messages)")
            }
            ConfigError::Direction => f.write_str(
                "--reverse and --bidir apply only to bulk mode, and only one of them at a time",
            ),
            ConfigError::DatagramSize(s) => write!(
                f,
                "--size must be between {MIN_DATAGRAM} and {MAX_DATAGRAM} bytes in the udp modes, got {s}"
            ),
            ConfigError::Zero(name) => write!(f, "--{name} must be above zero"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Settings with the defaults of the command line, against `addr`.
    pub fn new(addr: SocketAddr) -> Config {
        Config {
            addr,
            connections: 1,
            mode: Mode::PingPong,
            depth: None,
            size: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            rate: None,
            threads: 1,
            messages: None,
            connect_timeout: Duration::from_secs(5),
            reverse: false,
            bidir: false,
            stall: Some(Duration::from_secs(2)),
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.connections == 0 {
            return Err(ConfigError::NoConnections);
        }
        if self.threads == 0 {
            return Err(ConfigError::NoThreads);
        }
        if self.size == 0 || self.size > MAX_SIZE {
            return Err(ConfigError::Size(self.size));
        }
        match (self.mode, self.depth) {
            (_, Some(0)) => return Err(ConfigError::Depth(0)),
            (Mode::PingPong | Mode::Crr | Mode::Udp | Mode::UdpStream, Some(d)) if d != 1 => {
                return Err(ConfigError::Depth(d))
            }
            _ => {}
        }
        if let Some(r) = self.rate {
            if !r.is_finite() || r <= 0.0 {
                return Err(ConfigError::Rate(r));
            }
        }
        if self.duration.is_zero() && self.messages.is_none() {
            return Err(ConfigError::NoDuration);
        }
        if (self.reverse || self.bidir) && (self.mode != Mode::Bulk || (self.reverse && self.bidir))
        {
            return Err(ConfigError::Direction);
        }
        if self.mode.is_udp() && !(MIN_DATAGRAM..=MAX_DATAGRAM).contains(&self.size) {
            return Err(ConfigError::DatagramSize(self.size));
        }
        if self.interval.is_zero() {
            return Err(ConfigError::Zero("interval"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::Zero("timeout"));
        }
        if self.stall.is_some_and(|s| s.is_zero()) {
            return Err(ConfigError::Zero("stall"));
        }
        Ok(())
    }

    /// Messages in flight per connection.
    pub fn window(&self) -> usize {
        match self.mode {
            Mode::PingPong | Mode::Crr | Mode::Udp | Mode::UdpStream => 1,
            Mode::Pipeline => self.depth.unwrap_or(16),
            Mode::Bulk => self
                .depth
                .unwrap_or_else(|| (BULK_WINDOW_BYTES / self.size).max(2)),
        }
    }

    /// Threads actually used: never more than connections.
    pub fn threads_used(&self) -> usize {
        self.threads.min(self.connections).max(1)
    }

    /// Time between two sends of one connection under `--rate`.
    pub fn send_interval(&self) -> Option<Duration> {
        let rate = match (self.rate, self.mode) {
            (None, Mode::UdpStream) => Some(DEFAULT_STREAM_RATE * self.connections as f64),
            (r, _) => r,
        };
        rate.map(|r| Duration::from_secs_f64(self.connections as f64 / r))
    }

    /// The direction of a bulk run, for reports: `echo`, `reverse` or `bidir`.
    pub fn direction(&self) -> &'static str {
        if self.reverse {
            "reverse"
        } else if self.bidir {
            "bidir"
        } else {
            "echo"
        }
    }
}
