//! Soak: 2,000 clients with random sizes, graceful closes, aborts, half-closes
//! and slow readers, against an echo server and a streaming server. Every byte
//! of every graceful connection is checked; afterwards descriptors and live
//! connections are back to their baseline.
mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use torsion::Address;
use torsion::{ClientFactory, Context, DisconnectReason, Factory, Protocol, Reactor};
use util::*;

const CLIENTS: usize = 2000;
const CONCURRENT: usize = 250;

#[derive(Clone)]
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn byte_at(seed: u64, off: u64) -> u8 {
    ((off ^ seed).wrapping_mul(0x9E37_79B9) >> 11) as u8
}

/// Streams the number of bytes the client asks for ("N\n"), then closes.
struct Streamer {
    req: Vec<u8>,
}
impl Protocol for Streamer {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        if self.req.ends_with(b"\n") {
            return;
        }
        self.req.extend_from_slice(data);
        if let Some(end) = self.req.iter().position(|&b| b == b'\n') {
            let text = std::str::from_utf8(&self.req[..end]).unwrap();
            let mut it = text.split(' ');
            let n: u64 = it.next().unwrap().parse().unwrap();
            let seed: u64 = it.next().unwrap().parse().unwrap();
            let chunk = 16 * 1024u64;
            ctx.stream_from((0..n.div_ceil(chunk)).map(move |i| {
                let start = i * chunk;
                let end = (start + chunk).min(n);
                Ok(Bytes::from(
                    (start..end).map(|o| byte_at(seed, o)).collect::<Vec<u8>>(),
                ))
            }));
        }
    }
    fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
        result.unwrap();
        ctx.lose_connection();
    }
}
struct StreamerF;
impl Factory for StreamerF {
    type Protocol = Streamer;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Streamer> {
        Some(Streamer { req: Vec::new() })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Echo, then half-close and read the rest of the echo.
    EchoHalfClose,
    /// Echo, wait for all of it, then close.
    EchoClose,
    /// Echo a part, then abort.
    EchoAbort,
    /// Ask the streaming server for data, read it slowly.
    SlowStream,
    /// Ask for a stream and abort in the middle.
    StreamAbort,
}

#[derive(Default)]
struct Totals {
    done: usize,
    verified_bytes: u64,
    graceful: usize,
    aborted: usize,
    failures: Vec<String>,
    /// What each unfinished client did last, for the failure message.
    live: std::collections::HashMap<u64, String>,
}

struct Client {
    kind: Kind,
    seed: u64,
    rng: Rng,
    to_send: u64,
    sent: u64,
    expect: u64,
    got: u64,
    abort_at: u64,
    totals: Rc<RefCell<Totals>>,
}

impl Client {
    /// Sends the whole message through the transport's streaming helper, in
    /// random chunk sizes, at the pace the peer reads.
    fn send_all(&mut self, ctx: &mut Context<'_>) {
        let (seed, total) = (self.seed, self.to_send);
        let mut rng = self.rng.clone();
        let mut off = 0u64;
        ctx.stream_from(std::iter::from_fn(move || {
            if off == total {
                return None;
            }
            let n = (1 + rng.below(9000)).min(total - off);
            let chunk: Vec<u8> = (off..off + n).map(|o| byte_at(seed, o)).collect();
            off += n;
            Some(Ok(Bytes::from(chunk)))
        }));
        self.sent = total;
    }
}

impl Protocol for Client {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        let state = format!("{:?}: made, expects {}", self.kind, self.expect);
        self.totals.borrow_mut().live.insert(self.seed, state);
        match self.kind {
            Kind::SlowStream | Kind::StreamAbort => {
                ctx.write(format!("{} {}\n", self.expect, self.seed).as_bytes());
            }
            _ => self.send_all(ctx),
        }
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        let state = format!(
            "{:?}: got {}/{} sent {} paused {}",
            self.kind,
            self.got + data.len() as u64,
            self.expect,
            self.to_send,
            ctx.is_reading_paused()
        );
        self.totals.borrow_mut().live.insert(self.seed, state);
        for &b in data {
            if b != byte_at(self.seed, self.got) {
                self.totals
                    .borrow_mut()
                    .failures
                    .push(format!("{:?} byte {} wrong", self.kind, self.got));
                ctx.abort_connection();
                return;
            }
            self.got += 1;
        }
        if self.got >= self.abort_at {
            ctx.abort_connection();
            return;
        }
        match self.kind {
            Kind::EchoClose if self.got == self.expect => ctx.lose_connection(),
            Kind::SlowStream if self.rng.below(4) == 0 => {
                ctx.pause_reading();
                let d = Duration::from_millis(self.rng.below(5));
                ctx.call_later_self::<Client>(d, |_, ctx| ctx.resume_reading());
            }
            _ => {}
        }
    }
    fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
        result.unwrap();
        if self.kind == Kind::EchoHalfClose {
            ctx.lose_write_connection();
        }
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let mut t = self.totals.borrow_mut();
        t.live.remove(&self.seed);
        t.done += 1;
        match (self.kind, reason) {
            (Kind::EchoAbort | Kind::StreamAbort, DisconnectReason::Aborted) => t.aborted += 1,
            (Kind::EchoAbort | Kind::StreamAbort, _) if self.got < self.abort_at => {
                t.failures.push(format!(
                    "{:?} ended early with {reason} after {} bytes",
                    self.kind, self.got
                ))
            }
            (_, DisconnectReason::Done) if self.got == self.expect => {
                t.graceful += 1;
                t.verified_bytes += self.got;
            }
            _ => t.failures.push(format!(
                "{:?}: {reason} with {}/{} bytes",
                self.kind, self.got, self.expect
            )),
        }
    }
}

struct ClientF(Option<Client>);
impl ClientFactory for ClientF {
    type Protocol = Client;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Client> {
        self.0.take()
    }
    fn client_connection_failed(
        &mut self,
        _core: &mut torsion::Core,
        _c: torsion::Connector,
        reason: &DisconnectReason,
    ) -> torsion::Reconnect {
        if let Some(c) = &self.0 {
            let mut t = c.totals.borrow_mut();
            t.done += 1;
            t.failures.push(format!("connect failed: {reason}"));
        }
        torsion::Reconnect::Never
    }
}

#[test]
fn soak_two_thousand_clients_lose_no_byte_and_leak_nothing() {
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(torsion::PanicPolicy::Record);
    let echo = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let stream = r.listen_tcp(localhost(), StreamerF).unwrap();
    r.run_once(Some(Duration::ZERO)).unwrap();
    let fds = fd_count();
    let totals = Rc::new(RefCell::new(Totals::default()));
    let mut rng = Rng(0x5eed_1234_abcd);
    let mut started = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while totals.borrow().done < CLIENTS {
        assert!(
            std::time::Instant::now() < deadline,
            "soak did not finish: {} of {started} started done, {} connections open, failures {:?}, some unfinished: {:?}",
            totals.borrow().done,
            r.connection_count(),
            totals.borrow().failures,
            totals.borrow().live.values().take(6).collect::<Vec<_>>()
        );
        while started < CLIENTS && started - totals.borrow().done < CONCURRENT {
            let kind = [
                Kind::EchoHalfClose,
                Kind::EchoClose,
                Kind::EchoAbort,
                Kind::SlowStream,
                Kind::StreamAbort,
            ][rng.below(5) as usize];
            let size = match rng.below(10) {
                0 => 0,
                1..=6 => 1 + rng.below(4096),
                _ => 1 + rng.below(512 * 1024),
            };
            let echo_kind = matches!(
                kind,
                Kind::EchoHalfClose | Kind::EchoClose | Kind::EchoAbort
            );
            let abort_at = match kind {
                Kind::EchoAbort | Kind::StreamAbort => rng.below(size.max(1)),
                _ => u64::MAX,
            };
            let size = if kind == Kind::EchoClose {
                size.max(1)
            } else {
                size
            };
            let client = Client {
                kind,
                seed: rng.next(),
                rng: Rng(rng.next() | 1),
                to_send: if echo_kind { size } else { 0 },
                sent: 0,
                expect: size,
                got: 0,
                abort_at,
                totals: totals.clone(),
            };
            let addr = if echo_kind {
                echo.local_addr()
            } else {
                stream.local_addr()
            };
            if kind == Kind::EchoAbort && abort_at == 0 {
                // Nothing would ever arrive to trigger the abort: abort at once.
                let mut c = client;
                c.abort_at = 0;
                c.to_send = 1;
                c.expect = 1;
                r.connect_tcp(addr, ClientF(Some(c)), DEADLINE);
            } else {
                r.connect_tcp(addr, ClientF(Some(client)), DEADLINE);
            }
            started += 1;
        }
        r.run_once(Some(Duration::from_millis(50))).unwrap();
    }
    let t = totals.borrow();
    assert!(
        t.failures.is_empty(),
        "{} failures, first: {:?}",
        t.failures.len(),
        &t.failures[..t.failures.len().min(5)]
    );
    assert_eq!(t.graceful + t.aborted, CLIENTS);
    assert!(
        t.graceful > CLIENTS / 2 && t.aborted > CLIENTS / 10,
        "mix: {} graceful, {} aborted",
        t.graceful,
        t.aborted
    );
    eprintln!(
        "soak: {} graceful ({} bytes verified), {} aborted",
        t.graceful, t.verified_bytes, t.aborted
    );
    drop(t);
    // Server-side connections finish (lingering closes end when peers close).
    assert!(r
        .run_until(DEADLINE, |r| r.connection_count() == 0
            && r.source_count() == 2)
        .unwrap());
    assert_eq!(fd_count(), fds, "descriptors leaked");
    r.assert_no_panics();
}
