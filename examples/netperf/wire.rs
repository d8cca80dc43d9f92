//! What goes over the wire between netperf and `netperf --server`: the header
//! that picks a data connection's role, the control connection's lines, the
//! byte pattern of streams, and the layout of datagrams.
//!
//! A data connection that starts with `NETPERF/1 <role>\n` (`echo`, `sink`,
//! `source`, `bidir`) gets that role; any other first bytes get the server's
//! default role (`--serve`, echo unless told), so plain echo clients work
//! unchanged. A control connection starts with `NETPERF/1 control\n`; the server
//! answers `NETPERF/1 ok\n`, and to each `stats\n` it answers one line of
//! `key=value` pairs: its CPU use and the bytes it received and sent since the
//! control connection opened. A plain echo server sends the hello back as it
//! came, which tells the client there is no netperf server to ask.

use std::time::Duration;

/// Starts every header and the control hello.
pub const MAGIC: &[u8] = b"NETPERF/1 ";
/// The control hello.
pub const CONTROL_HELLO: &[u8] = b"NETPERF/1 control\n";
/// The server's answer to the hello.
pub const CONTROL_OK: &[u8] = b"NETPERF/1 ok\n";
/// Asks for the server's figures.
pub const STATS_REQUEST: &[u8] = b"stats\n";
/// Longest header or control line accepted.
pub const MAX_LINE: usize = 512;

/// What the server does with a data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends back what it gets.
    Echo,
    /// Reads and discards, counting.
    Sink,
    /// Streams [`stream_chunk`] forever, ignoring what it gets.
    Source,
    /// Sink and source at once.
    Bidir,
}

impl Role {
    /// The name in headers and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Echo => "echo",
            Role::Sink => "sink",
            Role::Source => "source",
            Role::Bidir => "bidir",
        }
    }

    /// The role a header names.
    pub fn from_name(name: &str) -> Option<Role> {
        [Role::Echo, Role::Sink, Role::Source, Role::Bidir]
            .into_iter()
            .find(|r| r.name() == name)
    }

    /// The header that asks for this role.
    pub fn header(self) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(self.name().as_bytes());
        h.push(b'\n');
        h
    }
}

/// The period of the stream pattern (a prime, so no message size lines up with it).
const PERIOD: usize = 251;

/// One chunk of the stream pattern: byte `i` of a stream is `chunk[i % len]`,
/// and the length is a multiple of the period, so writing the chunk again and
/// again continues the pattern.
pub fn stream_chunk() -> Vec<u8> {
    (0..PERIOD * 256)
        .map(|i| ((i % PERIOD) as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

/// The server's figures, as sent on the control connection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerStats {
    /// CPU seconds in user mode since the control connection opened.
    pub cpu_user_s: f64,
    /// CPU seconds in the kernel.
    pub cpu_system_s: f64,
    /// Wall seconds since the control connection opened.
    pub wall_s: f64,
    /// Bytes received by sink connections (and bidir ones).
    pub rx_bytes: u64,
    /// Bytes sent by source connections (and bidir ones).
    pub tx_bytes: u64,
}

impl ServerStats {
    /// The stats line (newline included).
    pub fn line(&self) -> String {
        format!(
            "stats cpu_user_s={:.6} cpu_system_s={:.6} wall_s={:.6} rx_bytes={} tx_bytes={}\n",
            self.cpu_user_s, self.cpu_system_s, self.wall_s, self.rx_bytes, self.tx_bytes
        )
    }

    /// Parses a stats line.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(line: &str) -> Result<ServerStats, String> {
        let rest = line
            .trim_end()
            .strip_prefix("stats ")
            .ok_or_else(|| format!("not a stats line: {line:?}"))?;
        let mut s = ServerStats::default();
        for pair in rest.split_whitespace() {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("not key=value: {pair:?}"))?;
            let f = || {
                v.parse::<f64>()
                    .map_err(|_| format!("bad number in {pair:?}"))
            };
            let u = || {
                v.parse::<u64>()
                    .map_err(|_| format!("bad number in {pair:?}"))
            };
            match k {
                "cpu_user_s" => s.cpu_user_s = f()?,
                "cpu_system_s" => s.cpu_system_s = f()?,
                "wall_s" => s.wall_s = f()?,
                "rx_bytes" => s.rx_bytes = u()?,
                "tx_bytes" => s.tx_bytes = u()?,
                _ => {} // newer servers may say more
            }
        }
        Ok(s)
    }

    /// CPU use over the wall time, percent of one core.
    pub fn cpu_percent(&self) -> f64 {
        if self.wall_s > 0.0 {
            (self.cpu_user_s + self.cpu_system_s) * 100.0 / self.wall_s
        } else {
            0.0
        }
    }
}

/// A datagram's header: its number and when it was sent (nanoseconds since the
/// run's start, by the sender's clock). The rest is the pattern of
/// [`datagram_fill`].
pub fn stamp_datagram(buf: &mut [u8], seq: u64, sent: Duration) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].copy_from_slice(&(sent.as_nanos() as u64).to_le_bytes());
}

/// Reads a datagram's number and send time; `None` if it is too short.
pub fn read_datagram(buf: &[u8]) -> Option<(u64, Duration)> {
    let seq = u64::from_le_bytes(buf.get(..8)?.try_into().ok()?);
    let ns = u64::from_le_bytes(buf.get(8..16)?.try_into().ok()?);
    Some((seq, Duration::from_nanos(ns)))
}

/// The byte at `offset` (16 and up) of every datagram.
pub fn datagram_fill(offset: usize) -> u8 {
    (offset as u8).wrapping_mul(13).wrapping_add(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines_round_trip() {
        let s = ServerStats {
            cpu_user_s: 1.5,
            cpu_system_s: 0.25,
            wall_s: 10.0,
            rx_bytes: 12345,
            tx_bytes: 7,
        };
        assert_eq!(ServerStats::parse(&s.line()).unwrap(), s);
        assert!((s.cpu_percent() - 17.5).abs() < 1e-9);
        assert!(ServerStats::parse("stats rx_bytes=x").is_err());
        assert!(ServerStats::parse("hello").is_err());
    }

    #[test]
    fn the_chunk_continues_its_pattern() {
        let c = stream_chunk();
        assert_eq!(c.len() % PERIOD, 0);
        assert_eq!(c[0], c[PERIOD]);
        assert_eq!(Role::from_name("bidir"), Some(Role::Bidir));
        assert_eq!(Role::Source.header(), b"NETPERF/1 source\n");
    }
}
