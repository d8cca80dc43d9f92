//! The in-memory network under the [`Pump`](super::Pump): one pipe per
//! direction and connection, carrying bytes, end of stream and resets in
//! order, with the seeded faults applied as bytes are written.

use std::collections::VecDeque;
use std::io;

use super::conn::MemConn;
use super::faults::Rng;
use super::Clock;
use crate::buf::WriteBuf;
use crate::conn::ops::Connections;
use crate::conn::{Ending, Sink};
use crate::context::{ConnectionHandle, Core};
use crate::error::DisconnectReason;
use crate::protocol::Protocol;
use crate::transport::{flags, Context, HostAddr, WrapFn};

pub(crate) enum Seg {
    Data(Vec<u8>),
    Eof,
    Reset,
}

/// One direction of one connection: what the sender wrote that the receiver
/// has not read yet.
pub(crate) struct Pipe {
    pub(crate) segs: VecDeque<(u64, Seg)>,
    pub(crate) in_flight: usize,
    pub(crate) capacity: usize,
    /// The receiver reset the connection: writes fail.
    pub(crate) peer_reset: bool,
    /// Data bytes the receiver has been handed.
    pub(crate) delivered: u64,
    pub(crate) reset_at: Option<u64>,
    pub(crate) rng: Rng,
    pub(crate) split: bool,
    pub(crate) max_delay: u32,
    pub(crate) round: u64,
    pub(crate) last_ready: u64,
    /// The sender's local address.
    pub(crate) host: std::net::SocketAddr,
    /// How the sender's connection ended, once it did.
    pub(crate) lost: Option<DisconnectReason>,
    /// Whether that end was graceful (the peer saw a clean end of stream).
    pub(crate) lost_gracefully: bool,
}

impl Pipe {
    fn ready_at(&mut self) -> u64 {
        let delay = if self.max_delay > 0 {
            self.rng.below(u64::from(self.max_delay) + 1)
        } else {
            0
        };
        self.last_ready = self.last_ready.max(self.round + delay);
        self.last_ready
    }

    fn push(&mut self, seg: Seg) {
        let at = self.ready_at();
        self.segs.push_back((at, seg));
    }

    pub(crate) fn front_ready(&self) -> Option<bool> {
        self.segs.front().map(|(at, _)| *at <= self.round)
    }
}

impl Sink for Pipe {
    crate::conn::lent_sink_again!();
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.peer_reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        let room = self.capacity.saturating_sub(self.in_flight);
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = room.min(buf.len());
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let len = if !self.split {
                rest.len()
            } else if self.rng.below(8) == 0 {
                1 + self.rng.below(rest.len() as u64) as usize
            } else {
                1 + self.rng.below(rest.len().min(64) as u64) as usize
            };
            let (piece, tail) = rest.split_at(len);
            self.push(Seg::Data(piece.to_vec()));
            rest = tail;
        }
        self.in_flight += n;
        Ok(n)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.push(Seg::Eof);
        Ok(())
    }
    fn close(&mut self, end: &Ending<'_>) -> bool {
        self.lost = Some(end.reason.clone());
        self.lost_gracefully = end.graceful;
        if !end.graceful {
            self.push(Seg::Reset);
        } else if !end.write_shut {
            self.push(Seg::Eof);
        }
        // The receiving side drains what still comes (see `Net::deliver`).
        false
    }
    fn host(&self) -> &dyn HostAddr {
        &self.host
    }
}

/// The connections and their pipes (everything but the clock).
pub(crate) struct Net {
    pub(crate) conns: Vec<MemConn>,
    /// `pipes[i]` carries what `conns[i]` writes to `conns[i ^ 1]`.
    pub(crate) pipes: Vec<Pipe>,
    pub(crate) out: WriteBuf,
}

impl Net {
    pub(crate) fn index(&self, h: ConnectionHandle) -> Option<usize> {
        let i = h.key as usize;
        (i < self.conns.len() && self.conns[i].state.handle == h && !self.conns[i].is_dead())
            .then_some(i)
    }

    pub(crate) fn invoke_at(
        &mut self,
        core: &mut Core,
        i: usize,
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) {
        self.conns[i]
            .engine(core, &mut self.out, &mut self.pipes[i])
            .invoke(f);
    }

    /// Resets connection pair `link` at once: both ends hear `Reset`.
    pub(crate) fn reset_pair(&mut self, core: &mut Core, link: usize) {
        for i in [link * 2, link * 2 + 1] {
            self.pipes[i].segs.clear();
            self.pipes[i].in_flight = 0;
            self.pipes[i].peer_reset = true;
        }
        for i in [link * 2, link * 2 + 1] {
            self.conns[i]
                .engine(core, &mut self.out, &mut self.pipes[i])
                .close(DisconnectReason::Reset);
            self.pipes[i].segs.clear();
        }
    }

    /// Delivers what is ready on `pipes[i]` to `conns[i ^ 1]`. Returns whether
    /// anything happened.
    pub(crate) fn deliver(&mut self, clock: &mut Clock, i: usize) -> bool {
        let rx = i ^ 1;
        let mut progress = false;
        while self.pipes[i].front_ready() == Some(true) {
            if self.conns[rx].is_dead() {
                // Gone: a clean close drains input (lingering), a reset drops it.
                if let Some((_, Seg::Data(d))) = self.pipes[i].segs.pop_front() {
                    self.pipes[i].in_flight -= d.len();
                }
                progress = true;
                continue;
            }
            if !self.conns[rx].state.wants_input() {
                break;
            }
            let Some((_, seg)) = self.pipes[i].segs.pop_front() else {
                break;
            };
            progress = true;
            let core = &mut clock.core;
            match seg {
                Seg::Data(mut d) => {
                    self.pipes[i].in_flight -= d.len();
                    let pipe = &mut self.pipes[i];
                    let cut = pipe
                        .reset_at
                        .filter(|at| pipe.delivered + d.len() as u64 > *at)
                        // A point already passed (set by `Pump::reset_at`
                        // after more had gone by) resets at this delivery.
                        .map(|at| at.saturating_sub(pipe.delivered) as usize);
                    if let Some(keep) = cut {
                        d.truncate(keep);
                    }
                    pipe.delivered += d.len() as u64;
                    if !d.is_empty() {
                        self.conns[rx]
                            .engine(core, &mut self.out, &mut self.pipes[rx])
                            .data(&d);
                        clock.ops(self);
                    }
                    if cut.is_some() {
                        self.reset_pair(&mut clock.core, i / 2);
                        clock.ops(self);
                        return true;
                    }
                }
                Seg::Eof => {
                    self.conns[rx]
                        .engine(core, &mut self.out, &mut self.pipes[rx])
                        .eof();
                    clock.ops(self);
                }
                Seg::Reset => {
                    self.pipes[rx].peer_reset = true;
                    self.conns[rx]
                        .engine(core, &mut self.out, &mut self.pipes[rx])
                        .close(DisconnectReason::Reset);
                    clock.ops(self);
                }
            }
        }
        // An unclean end of the receiver fails the sender's next write (a
        // graceful close with another reason, e.g. an idle timeout, does not).
        if self.pipes[rx].lost.is_some() && !self.pipes[rx].lost_gracefully {
            self.pipes[i].peer_reset = true;
        }
        // Room again: the sender flushes what its buffer holds.
        if self.conns[i].state.has_pending() && self.pipes[i].in_flight < self.pipes[i].capacity {
            let before = self.conns[i].state.pending_len();
            self.conns[i]
                .engine(&mut clock.core, &mut self.out, &mut self.pipes[i])
                .writable();
            clock.ops(self);
            progress |= self.conns[i].state.pending_len() != before || self.conns[i].is_dead();
        }
        progress
    }

    /// Whether pipe `i` holds something that is only waiting for its delay.
    pub(crate) fn waiting(&self, i: usize) -> bool {
        let rx = &self.conns[i ^ 1];
        self.pipes[i].front_ready() == Some(false)
            && (rx.is_dead() || !rx.state.has(flags::READ_PAUSED | flags::READ_EOF))
    }
}

impl Connections for Net {
    fn invoke(
        &mut self,
        core: &mut Core,
        h: ConnectionHandle,
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) {
        if let Some(i) = self.index(h) {
            self.invoke_at(core, i, f);
        }
    }
    fn produce(&mut self, core: &mut Core, h: ConnectionHandle) {
        if let Some(i) = self.index(h) {
            self.conns[i]
                .engine(core, &mut self.out, &mut self.pipes[i])
                .produce();
        }
    }
    fn resume_reading(&mut self, _core: &mut Core, h: ConnectionHandle) {
        // `Context::resume_reading` cleared the pause; delivery goes on in
        // the next round, as the reactor reads resumed connections after the
        // current event.
        if let Some(i) = self.index(h) {
            if !self.conns[i].state.has(flags::READ_PAUSED) {
                self.conns[i].state.clear(flags::READ_PENDING);
            }
        }
    }
    fn throttle_expired(&mut self, core: &mut Core, h: ConnectionHandle) {
        if let Some(i) = self.index(h) {
            self.conns[i]
                .engine(core, &mut self.out, &mut self.pipes[i])
                .throttle_expired();
        }
    }
    fn live(&self) -> Vec<ConnectionHandle> {
        self.conns
            .iter()
            .filter(|c| !c.is_dead())
            .map(|c| c.state.handle)
            .collect()
    }
    fn wrap(&mut self, core: &mut Core, h: ConnectionHandle, wrap: WrapFn) {
        if let Some(i) = self.index(h) {
            self.conns[i].wrap(core, &mut self.out, &mut self.pipes[i], wrap);
        }
    }
}
