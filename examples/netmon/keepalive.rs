//! TCP keepalive on a kept connection, so a peer that vanishes silently (a
//! pulled cable, a blackhole) is noticed without any traffic of ours.
//!
//! The reactor does not offer keepalive options yet (TcpOptions has none), so
//! this finds the connection's socket among the process's descriptors by its
//! two addresses and sets the options with socket2. Once TcpOptions grows
//! keepalive settings this file goes away.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// When the kernel's keepalive gives up on a silent peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keepalive {
    /// Quiet time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub retries: u32,
}

impl Keepalive {
    /// Settings that notice an outage within `interval` plus `timeout`: the
    /// first probe after one quiet interval, then probes every interval until
    /// `timeout` is used up. The kernel counts in whole seconds.
    pub fn for_monitor(interval: Duration, timeout: Duration) -> Keepalive {
        let secs = |d: Duration| Duration::from_secs(d.as_secs_f64().ceil().max(1.0) as u64);
        let step = secs(interval);
        let retries = (timeout.as_secs_f64() / step.as_secs_f64()).ceil().max(1.0) as u32;
        Keepalive {
            idle: step,
            interval: step,
            retries,
        }
    }

    /// From the first unanswered probe to the kernel's verdict.
    pub fn detection(&self) -> Duration {
        self.interval * self.retries
    }
}

fn find_socket(local: SocketAddr, peer: SocketAddr) -> Option<RawFd> {
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is open (listed just now) and only borrowed
        // for the two address queries below, on this thread, which owns every
        // socket the reactor made.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let s = SockRef::from(&b);
        let same = |a: std::io::Result<socket2::SockAddr>, want: SocketAddr| {
            a.ok().and_then(|a| a.as_socket()) == Some(want)
        };
        if same(s.local_addr(), local) && same(s.peer_addr(), peer) {
            return Some(fd);
        }
    }
    None
}

/// Turns keepalive on for the TCP connection from `local` to `peer`.
///
/// # Errors
/// A message when the socket is not found or the options are refused.
pub fn enable(local: SocketAddr, peer: SocketAddr, k: Keepalive) -> Result<(), String> {
    let fd = find_socket(local, peer).ok_or("socket not found")?;
    // SAFETY: as in find_socket; the reactor keeps the socket open meanwhile.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    let ka = TcpKeepalive::new()
        .with_time(k.idle)
        .with_interval(k.interval)
        .with_retries(k.retries);
    let s = SockRef::from(&b);
    s.set_tcp_keepalive(&ka).map_err(|e| e.to_string())?;
    // Unacknowledged data stops keepalive probes; this bounds that case too.
    s.set_tcp_user_timeout(Some(k.idle + k.detection()))
        .map_err(|e| e.to_string())
}
