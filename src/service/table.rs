//! A [`Snapshot`] as a table for people: what [`Application`](super::Application)
//! prints on SIGUSR1.

use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::introspect::{ConnectionInfo, Snapshot};

/// How many connections the table lists by default (the rest are counted).
pub const DEFAULT_TABLE_ROWS: usize = 20;

/// A [`Snapshot`] as a readable table: a header with the totals, the
/// connections that hold the most bytes buffered for writing (then the
/// oldest) first, at most `rows` of them, then listeners, timers, queues,
/// counters and the callback durations (p50, p99, max). Its `Display` is
/// the text [`Application`](super::Application) prints on SIGUSR1.
///
/// ```
/// use torsion::service::SnapshotTable;
/// use torsion::Reactor;
///
/// let reactor = Reactor::new()?;
/// let snapshot = reactor.snapshot();
/// let text = SnapshotTable::new(&snapshot).to_string();
/// assert!(text.starts_with("torsion reactor snapshot"));
/// assert!(text.contains("connections: 0 open"));
/// # Ok::<(), torsion::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SnapshotTable<'a> {
    snapshot: &'a Snapshot,
    rows: usize,
    name: Option<&'a str>,
}

impl<'a> SnapshotTable<'a> {
    /// A table of `snapshot` listing up to [`DEFAULT_TABLE_ROWS`] connections.
    pub fn new(snapshot: &'a Snapshot) -> SnapshotTable<'a> {
        SnapshotTable {
            snapshot,
            rows: DEFAULT_TABLE_ROWS,
            name: None,
        }
    }

    /// Names the reactor in the header (`torsion reactor snapshot: reactor
    /// 2 (uptime ...)`), for a process with several.
    pub fn named(mut self, name: &'a str) -> SnapshotTable<'a> {
        self.name = Some(name);
        self
    }

    /// Lists up to `rows` connections.
    pub fn rows(mut self, rows: usize) -> SnapshotTable<'a> {
        self.rows = rows;
        self
    }
}

impl fmt::Display for SnapshotTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.snapshot;
        f.write_str("torsion reactor snapshot")?;
        if let Some(name) = self.name {
            write!(f, ": {name}")?;
        }
        writeln!(f, " (uptime {})", human_duration(s.uptime))?;
        let buffered: usize = s.connections.iter().map(|c| c.write_buffered).sum();
        let paused = s.connections.iter().filter(|c| c.paused).count();
        let closing = s.connections.iter().filter(|c| c.closing).count();
        writeln!(
            f,
            "connections: {} open, {} buffered for writing, {paused} paused, {closing} closing",
            s.connections.len(),
            human_bytes(buffered as u64),
        )?;
        let mut conns: Vec<&ConnectionInfo> = s.connections.iter().collect();
        conns.sort_by(|a, b| {
            b.write_buffered
                .cmp(&a.write_buffered)
                .then(b.age.cmp(&a.age))
        });
        if !conns.is_empty() {
            let mut rows = vec![[
                "CONN".to_owned(),
                "KIND".to_owned(),
                "PEER".to_owned(),
                "PROTOCOL".to_owned(),
                "AGE".to_owned(),
                "IN".to_owned(),
                "OUT".to_owned(),
                "BUFFERED".to_owned(),
                "STATE".to_owned(),
            ]];
            for c in conns.iter().take(self.rows) {
                rows.push([
                    format!("#{}", c.handle.key),
                    c.kind.to_string(),
                    c.peer.to_string(),
                    short_type_name(c.protocol),
                    human_duration(c.age),
                    human_bytes(c.bytes_in),
                    human_bytes(c.bytes_out),
                    human_bytes(c.write_buffered as u64),
                    state(c),
                ]);
            }
            write_columns(f, &rows)?;
            if conns.len() > self.rows {
                writeln!(f, "  ... and {} more", conns.len() - self.rows)?;
            }
        }
        for l in &s.listeners {
            writeln!(
                f,
                "listener {}: {} accepted, {} shed",
                l.address, l.accepted, l.shed
            )?;
        }
        match s.timers.next_deadline {
            Some(d) if d.is_zero() => {
                writeln!(f, "timers: {} pending, next overdue", s.timers.pending)?
            }
            Some(d) => writeln!(
                f,
                "timers: {} pending, next in {}",
                s.timers.pending,
                human_duration(d)
            )?,
            None => writeln!(f, "timers: {} pending", s.timers.pending)?,
        }
        let p = &s.thread_pool;
        writeln!(
            f,
            "queues: {} cross-thread calls; thread pool {} queued, {} busy of {} workers (max {})",
            s.cross_thread_queued, p.queued, p.busy, p.workers, p.max_workers
        )?;
        writeln!(
            f,
            "deferreds: {} created, {} pending",
            s.deferreds.created, s.deferreds.pending
        )?;
        let c = &s.counters;
        let mut closed = String::new();
        for (reason, n) in c.closed.iter().filter(|(_, n)| *n > 0) {
            let sep = if closed.is_empty() { "" } else { ", " };
            let _ = write!(closed, "{sep}{reason} {n}");
        }
        writeln!(
            f,
            "counters: {} accepted, {} refused by the factory, {} shed, {} closed{}",
            c.accepted,
            c.refused_by_factory,
            c.shed_fd_exhaustion,
            c.closed.total(),
            if closed.is_empty() {
                String::new()
            } else {
                format!(" ({closed})")
            }
        )?;
        writeln!(
            f,
            "          {} read, {} written, {} panicked, {} slow callbacks",
            human_bytes(c.bytes_read),
            human_bytes(c.bytes_written),
            c.callbacks_panicked,
            c.slow_callbacks
        )?;
        let cb = &s.callbacks;
        writeln!(
            f,
            "callbacks: {} timed, p50 {}, p99 {}, max {}",
            cb.count,
            human_duration(cb.p50),
            human_duration(cb.p99),
            human_duration(cb.max)
        )
    }
}

/// `paused`, `half-closed`, `closing`, `idle in 4m 59s`, joined; `-` for none.
fn state(c: &ConnectionInfo) -> String {
    let mut parts = Vec::new();
    if c.paused {
        parts.push("paused".to_owned());
    }
    if c.half_closed {
        parts.push("half-closed".to_owned());
    }
    if c.closing {
        parts.push("closing".to_owned());
    }
    if let Some(d) = c.idle_deadline {
        parts.push(format!("idle in {}", human_duration(d)));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Left-aligned columns, two spaces apart, indented by two.
fn write_columns<const N: usize>(f: &mut fmt::Formatter<'_>, rows: &[[String; N]]) -> fmt::Result {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::from(" ");
        for (i, (w, cell)) in widths.iter().zip(row).enumerate() {
            line.push(' ');
            line.push_str(cell);
            if i + 1 < N {
                let pad = w - cell.chars().count() + 1;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(f, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A type name without its module paths: `my_app::proto::Framed<my_app::Chat>`
/// becomes `Framed<Chat>`.
pub(crate) fn short_type_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut word = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            out.push(c);
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or(&word));
    out
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `0`, `850ns`, `12us`, `3.4ms`, `1.20s`, `2m 05s`, `3h 02m`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        "0".to_owned()
    } else if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}us", ns / 1_000)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else if d.as_secs() < 60 {
        format!("{:.2}s", d.as_secs_f64())
    } else if d.as_secs() < 3600 {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{}h {:02}m", d.as_secs() / 3600, d.as_secs() / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::introspect::TransportKind;
    use crate::{Address, ConnectionHandle, Reactor};

    fn conn(key: u32, buffered: usize, age_s: u64, paused: bool) -> ConnectionInfo {
        ConnectionInfo {
            handle: ConnectionHandle { key, gen: 0 },
            kind: TransportKind::Tcp,
            peer: Address::Inet(format!("127.0.0.1:{}", 40000 + key).parse().unwrap()),
            host: None,
            protocol: "app::proto::Chat",
            age: Duration::from_secs(age_s),
            bytes_in: 2048,
            bytes_out: 10,
            write_buffered: buffered,
            paused,
            half_closed: false,
            closing: key == 3,
            idle_deadline: None,
        }
    }

    #[test]
    fn connections_by_buffered_bytes_then_age_and_the_rest_counted() {
        let mut snapshot = Reactor::new().unwrap().snapshot();
        snapshot.connections = vec![
            conn(1, 0, 5, false),
            conn(2, 5000, 1, true),
            conn(3, 0, 50, false),
            conn(4, 0, 1, false),
        ];
        snapshot.counters.closed.done = 2;
        snapshot.counters.closed.reset = 1;
        let text = SnapshotTable::new(&snapshot)
            .rows(3)
            .named("reactor 1")
            .to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("torsion reactor snapshot: reactor 1 (uptime "),
            "{text}"
        );
        assert_eq!(
            lines[1],
            "connections: 4 open, 4.9 KiB buffered for writing, 1 paused, 1 closing"
        );
        assert!(
            lines[2].trim_start().starts_with("CONN  KIND  PEER"),
            "{text}"
        );
        // The most buffered first, then the oldest; the fourth is counted.
        assert!(lines[3].trim_start().starts_with("#2 "), "{text}");
        assert!(lines[3].ends_with("4.9 KiB   paused"), "{text}");
        assert!(lines[4].trim_start().starts_with("#3 "), "{text}");
        assert!(lines[4].ends_with("closing"), "{text}");
        assert!(lines[5].trim_start().starts_with("#1 "), "{text}");
        assert!(lines[5].contains(" Chat "), "{text}");
        assert!(lines[5].contains(" 2.0 KiB "), "{text}");
        assert_eq!(lines[6], "  ... and 1 more");
        assert!(text.contains("3 closed (done 2, reset 1)"), "{text}");
        assert!(lines.last().unwrap().starts_with("callbacks: "), "{text}");
        // The columns line up: each row's PEER starts where the header's does.
        let col = lines[2].find("PEER").unwrap();
        for row in &lines[3..6] {
            assert_eq!(row.find("127.0.0.1"), Some(col), "{text}");
        }
    }

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(short_type_name("a::b::Echo"), "Echo");
        assert_eq!(
            short_type_name("torsion::protocols::Framed<app::Chat, x::Codec>"),
            "Framed<Chat, Codec>"
        );
        assert_eq!(short_type_name("Plain"), "Plain");
        assert_eq!(short_type_name("&dyn a::T"), "&dyn T");
    }

    #[test]
    fn sizes_and_durations_for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16777216.0 TiB");
        assert_eq!(human_duration(Duration::ZERO), "0");
        assert_eq!(human_duration(Duration::from_nanos(850)), "850ns");
        assert_eq!(human_duration(Duration::from_micros(12)), "12us");
        assert_eq!(human_duration(Duration::from_micros(3_400)), "3.4ms");
        assert_eq!(human_duration(Duration::from_millis(1_200)), "1.20s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m 05s");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 3600 + 125)),
            "3h 02m"
        );
        assert_eq!(human_duration(Duration::MAX).chars().last(), Some('m'));
    }
}
