//! What each measuring TCP connection of the client (the load client and the
//! stream client) does with its thread's stats: counts itself open, finished
//! and lost, reports a byte that is not what was sent and aborts, and counts a
//! failed connect.

use std::fmt::Display;

use torsion::{Context, DisconnectReason, Reconnect};

use super::client::Stats;
use super::watch::WatchRef;

/// One connection's part in its thread's stats.
#[derive(Debug)]
pub struct Tally {
    /// Which connection (the messages name it).
    pub id: usize,
    /// The thread's stats.
    pub stats: Stats,
    /// The connection's stall watch.
    pub watch: WatchRef,
    /// Whether it has finished (it counts once).
    pub done: bool,
}

impl Tally {
    /// The part of connection `id`, with a stall watch of its own.
    pub fn new(id: usize, stats: Stats) -> Tally {
        let watch = stats.borrow_mut().watch(id);
        Tally {
            id,
            stats,
            watch,
            done: false,
        }
    }

    /// From `connection_made`: one more connected and open.
    pub fn connected(&self) {
        let mut s = self.stats.borrow_mut();
        s.connected += 1;
        s.open += 1;
    }

    /// The connection is done measuring: idle, and counted as finished once.
    pub fn finish(&mut self) {
        self.watch.borrow_mut().idle();
        if !self.done {
            self.done = true;
            self.stats.borrow_mut().finished += 1;
        }
    }

    /// A verify error (`text` says where): counted with its detail, then the
    /// connection finishes and is aborted.
    pub fn fail(&mut self, ctx: &mut Context<'_>, text: String) {
        let mut s = self.stats.borrow_mut();
        s.verify_errors += 1;
        s.detail(text);
        drop(s);
        self.finish();
        ctx.abort_connection();
    }

    /// From `connection_lost`: one fewer open, and one lost unless it had
    /// finished or the run is stopping; `progress` says how far it got
    /// (`12 messages`).
    pub fn lost(&mut self, reason: &DisconnectReason, progress: impl Display) {
        self.watch.borrow_mut().idle();
        let mut s = self.stats.borrow_mut();
        s.open -= 1;
        if !self.done && !s.stopping {
            s.lost += 1;
            s.detail(format!(
                "connection {}: lost after {progress}: {reason}",
                self.id
            ));
            drop(s);
            self.finish();
        }
    }
}

/// Where `got` first differs from `want` (as long), if it does: the check of
/// every received byte against what was sent.
pub fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    if got == want {
        return None;
    }
    got.iter().zip(want).position(|(a, b)| a != b)
}

/// From `client_connection_failed`: counts the failed connect and its reason
/// (unless the run is stopping); a measuring connection is never retried.
pub fn connect_failed(stats: &Stats, reason: &DisconnectReason) -> Reconnect {
    let mut s = stats.borrow_mut();
    if !s.stopping {
        s.connect_failure(reason);
    }
    Reconnect::Never
}
