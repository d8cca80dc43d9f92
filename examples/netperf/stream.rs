//! Bulk `--reverse` and `--bidir`: the server streams a known pattern (and, in
//! bidir, sinks the client's); the client checks every byte it receives and
//! counts what it sent. Needs `netperf --server`.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use torsion::{
    Address, ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reconnect,
};

use super::client::{Schedule, Stats};
use super::tally::{connect_failed, first_difference, Tally};
use super::wire::Role;

/// One streaming connection.
#[derive(Debug)]
pub struct StreamClient {
    tally: Tally,
    role: Role,
    schedule: Schedule,
    chunk: Rc<Vec<u8>>,
    /// Bytes of the server's stream received so far.
    rx_off: u64,
}

impl StreamClient {
    /// Bidir: streams the pattern until the run's end, counting what the
    /// socket took in the measurement.
    fn produce(&mut self, ctx: &mut Context<'_>) {
        if self.role != Role::Bidir {
            return;
        }
        let chunk = Bytes::from(self.chunk.to_vec());
        let (stats, schedule) = (self.tally.stats.clone(), self.schedule);
        ctx.stream_from(std::iter::from_fn(move || {
            let now = Instant::now();
            if now >= schedule.end {
                return None;
            }
            if schedule.measures(now) {
                stats.borrow_mut().tx_bytes += chunk.len() as u64;
            }
            Some(Ok(chunk.clone()))
        }));
    }
}

impl Protocol for StreamClient {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.tally.connected();
        ctx.write(&self.role.header());
        self.tally.watch.borrow_mut().busy(Instant::now());
        self.produce(ctx);
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        if self.tally.done {
            return;
        }
        if data.starts_with(b"error ") && self.rx_off == 0 {
            let text = String::from_utf8_lossy(data).trim_end().to_owned();
            let text = format!("connection {}: the server said {text:?}", self.tally.id);
            return self.tally.fail(ctx, text);
        }
        let len = self.chunk.len();
        let mut off = (self.rx_off % len as u64) as usize;
        let mut rest = data;
        while !rest.is_empty() {
            let n = (len - off).min(rest.len());
            if let Some(i) = first_difference(&rest[..n], &self.chunk[off..off + n]) {
                let at = self.rx_off + (data.len() - rest.len() + i) as u64;
                let text = format!(
                    "connection {}: stream byte {at}: expected 0x{:02x}, got 0x{:02x}",
                    self.tally.id,
                    self.chunk[off + i],
                    rest[i]
                );
                return self.tally.fail(ctx, text);
            }
            rest = &rest[n..];
            off = (off + n) % len;
        }
        self.rx_off += data.len() as u64;
        let now = Instant::now();
        let mut s = self.tally.stats.borrow_mut();
        s.interval_bytes += data.len() as u64;
        if self.schedule.measures(now) {
            s.bytes += data.len() as u64;
        }
        let ended = self
            .tally
            .watch
            .borrow_mut()
            .progress(now, now < self.schedule.end);
        s.stall_ended(ended);
    }

    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let progress = format!("{} bytes", self.rx_off);
        self.tally.lost(reason, progress);
    }
}

/// Makes one [`StreamClient`] and records a failed connect.
#[derive(Debug)]
pub struct StreamFactory {
    /// Which connection.
    pub id: usize,
    /// `Source` (reverse) or `Bidir`.
    pub role: Role,
    /// The thread's stats.
    pub stats: Stats,
    /// The run's times.
    pub schedule: Schedule,
    /// The pattern.
    pub chunk: Rc<Vec<u8>>,
}

impl ClientFactory for StreamFactory {
    type Protocol = StreamClient;

    fn build_protocol(&mut self, _peer: &Address) -> Option<StreamClient> {
        Some(StreamClient {
            tally: Tally::new(self.id, self.stats.clone()),
            role: self.role,
            schedule: self.schedule,
            chunk: self.chunk.clone(),
            rx_off: 0,
        })
    }

    fn client_connection_failed(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        connect_failed(&self.stats, reason)
    }
}
