//! `crr` mode (HP netperf's TCP_CRR): each slot connects, sends one message,
//! checks its echo, closes, and starts again. The latency of a transaction is
//! from the connect's start to the last byte of the echo.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::{
    Address, ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reconnect,
};

use super::client::{pattern, stamp, Schedule, Stats};
use super::config::Config;
use super::watch::WatchRef;

/// Pause before trying again after a failed connect (so a refusing server is
/// not hammered in a tight loop).
const RETRY: Duration = Duration::from_millis(10);

/// One slot: a sequence of transactions, one connection at a time.
#[derive(Debug)]
pub struct Slot {
    id: usize,
    addr: SocketAddr,
    connect_timeout: Duration,
    size: usize,
    limit: Option<u64>,
    schedule: Schedule,
    stats: Stats,
    watch: WatchRef,
    /// Transactions completed.
    done: u64,
    connected_once: bool,
    finished: bool,
}

/// A slot shared by its successive connections.
pub type SlotRef = Rc<RefCell<Slot>>;

/// Starts slot `id`'s first transaction.
pub fn start(core: &mut Core, id: usize, config: &Config, schedule: Schedule, stats: Stats) {
    let watch = stats.borrow_mut().watch(id);
    let slot = Rc::new(RefCell::new(Slot {
        id,
        addr: config.addr,
        connect_timeout: config.connect_timeout,
        size: config.size,
        limit: config.messages,
        schedule,
        stats,
        watch,
        done: 0,
        connected_once: false,
        finished: false,
    }));
    next(core, &slot);
}

fn next(core: &mut Core, slot: &SlotRef) {
    let now = Instant::now();
    let mut s = slot.borrow_mut();
    let over = s.limit.is_some_and(|l| s.done >= l) || now >= s.schedule.end;
    if over || s.stats.borrow().stopping {
        s.watch.borrow_mut().idle();
        if !s.finished {
            s.finished = true;
            s.stats.borrow_mut().finished += 1;
        }
        return;
    }
    s.watch.borrow_mut().busy(now);
    let (addr, timeout) = (s.addr, s.connect_timeout);
    drop(s);
    let f = CrrFactory {
        slot: slot.clone(),
        started: now,
    };
    core.connect_tcp(addr, f, timeout);
}

/// One transaction's connection.
#[derive(Debug)]
pub struct CrrClient {
    slot: SlotRef,
    started: Instant,
    expect: Vec<u8>,
    got: usize,
    complete: bool,
}

impl Protocol for CrrClient {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        let mut slot = self.slot.borrow_mut();
        if !slot.connected_once {
            slot.connected_once = true;
            slot.stats.borrow_mut().connected += 1;
        }
        slot.stats.borrow_mut().open += 1;
        let mut msg: Vec<u8> = (0..slot.size).map(pattern).collect();
        stamp(&mut msg, slot.done);
        ctx.write(&msg);
        self.expect = msg;
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        if self.complete {
            return;
        }
        let want = &self.expect[self.got..];
        let n = want.len().min(data.len());
        let slot = self.slot.borrow();
        if data[..n] != want[..n] || data.len() > want.len() {
            let mut s = slot.stats.borrow_mut();
            s.verify_errors += 1;
            s.detail(format!(
                "connection {}: transaction {}: the echo differs from the request",
                slot.id, slot.done
            ));
            drop(s);
            drop(slot);
            self.complete = true;
            return ctx.abort_connection();
        }
        self.got += n;
        if self.got < self.expect.len() {
            return;
        }
        self.complete = true;
        let now = Instant::now();
        let rtt = now.saturating_duration_since(self.started).as_nanos() as u64;
        let mut s = slot.stats.borrow_mut();
        s.interval.saturating_record(rtt.max(1));
        s.interval_messages += 1;
        s.interval_bytes += self.expect.len() as u64;
        if slot.schedule.measures(now) {
            s.latency.saturating_record(rtt.max(1));
            s.messages += 1;
            s.bytes += self.expect.len() as u64;
        }
        let ended = slot.watch.borrow_mut().progress(now, true);
        s.stall_ended(ended);
        drop(s);
        drop(slot);
        self.slot.borrow_mut().done += 1;
        ctx.lose_connection();
    }

    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let slot = self.slot.borrow();
        let mut s = slot.stats.borrow_mut();
        s.open -= 1;
        if !self.complete && !s.stopping {
            s.lost += 1;
            s.detail(format!(
                "connection {}: transaction {} lost: {reason}",
                slot.id, slot.done
            ));
        }
        drop(s);
        drop(slot);
        next(ctx.core(), &self.slot);
    }
}

/// Builds the transaction's [`CrrClient`]; a failed connect is an error, and
/// the slot tries again (or gives up if it never connected).
#[derive(Debug)]
pub struct CrrFactory {
    slot: SlotRef,
    started: Instant,
}

impl ClientFactory for CrrFactory {
    type Protocol = CrrClient;

    fn build_protocol(&mut self, _peer: &Address) -> Option<CrrClient> {
        Some(CrrClient {
            slot: self.slot.clone(),
            started: self.started,
            expect: Vec::new(),
            got: 0,
            complete: false,
        })
    }

    fn client_connection_failed(
        &mut self,
        core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let mut slot = self.slot.borrow_mut();
        let stopping = slot.stats.borrow().stopping;
        if stopping {
            return Reconnect::Never;
        }
        slot.stats.borrow_mut().connect_failure(reason);
        // connect_failure counts the slot finished; it is only if it never
        // connected (the run then ends with "no connection could be made").
        if slot.connected_once {
            slot.stats.borrow_mut().finished -= 1;
            drop(slot);
            let again = self.slot.clone();
            core.call_later(RETRY, move |core| next(core, &again));
        } else {
            slot.finished = true;
            slot.watch.borrow_mut().idle();
        }
        Reconnect::Never
    }
}
