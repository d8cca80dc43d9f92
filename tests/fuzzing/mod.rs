//! The checks behind the fuzz targets in `fuzz/`, shared with the stable test
//! `fuzz_corpora` that replays every committed corpus file through them.
//!
//! Each `check_*` function takes the fuzzer's raw bytes and panics when a
//! promise is broken. They use only the public API (the testing pump, its
//! faults and fake clock), so the connection engine can change underneath.
#![allow(dead_code)]

use std::time::Duration;

use torsion::endpoints::{ClientEndpoint, ServerEndpoint};
use torsion::testing::{Direction, Faults, Pump, PumpConfig};
use torsion::{Context, DisconnectReason, Protocol};

// ---------------------------------------------------------------------------
// Endpoint strings.

/// Splits a canonical endpoint string on its separating colons (not those
/// escaped with `\` or inside `[...]`).
pub fn fields(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut depth, mut esc) = (0, 0u32, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' => esc = true,
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// What must hold for one parsed endpoint: it prints as a string that parses
/// back to the same endpoint and prints the same again; repeating any part of
/// that string is refused or changes the result (never silently ignored).
fn endpoint_round_trip<E>(e: &E)
where
    E: std::str::FromStr<Err = torsion::endpoints::EndpointError>
        + std::fmt::Display
        + PartialEq
        + std::fmt::Debug,
{
    let shown = e.to_string();
    let again: E = shown
        .parse()
        .unwrap_or_else(|err| panic!("{e:?} prints as {shown:?}, which fails: {err}"));
    assert_eq!(&again, e, "{shown:?} parses back to something else");
    assert_eq!(again.to_string(), shown, "printing is not stable");
    for f in fields(&shown).into_iter().skip(1) {
        let twice = format!("{shown}:{f}");
        if let Ok(x) = twice.parse::<E>() {
            assert_ne!(&x, e, "{twice:?}: the repeated {f:?} was ignored");
        }
    }
}

/// Endpoint parser: no panic on any string; what parses round-trips.
pub fn check_endpoint(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = s.parse::<ServerEndpoint>() {
        endpoint_round_trip(&e);
    }
    if let Ok(e) = s.parse::<ClientEndpoint>() {
        endpoint_round_trip(&e);
    }
}

// ---------------------------------------------------------------------------
// Small helpers.

/// Reads the fuzzer's bytes as numbers; past the end, zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.byte()) << 8 | u16::from(self.byte())
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The byte at offset `i` of every stream the engine check writes.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8 ^ (i >> 10) as u8
}

// ---------------------------------------------------------------------------
// The connection engine under random operations.

/// One end of the pumped connection: records what the engine does to it and
/// every broken rule (checked after the run, since callbacks' panics are
/// caught by the engine).
#[derive(Default)]
struct End {
    half_close: bool,
    idle: Option<Duration>,
    made: u32,
    lost: Option<DisconnectReason>,
    lost_calls: u32,
    /// Callbacks that came after `connection_lost`, or before `connection_made`.
    out_of_order: Vec<&'static str>,
    /// Bytes received, checked against the pattern as they come.
    got: u64,
    corrupt: Option<u64>,
    /// Bytes received when the peer's EOF came (half-close).
    got_at_eof: Option<u64>,
    /// Bytes the transport accepted from us.
    written: u64,
    /// We called `lose_connection` or `abort_connection` before the end (and
    /// may have stopped reading then).
    closed_early: bool,
}

impl End {
    fn callback(&mut self, name: &'static str) {
        if self.lost.is_some() || self.made == 0 {
            self.out_of_order.push(name);
        }
    }
    fn write(&mut self, ctx: &mut Context<'_>, n: usize) {
        let data: Vec<u8> = (self.written..self.written + n as u64)
            .map(pattern)
            .collect();
        if ctx.try_write(&data).is_ok() {
            self.written += n as u64;
        }
    }
}

impl Protocol for End {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        if self.made > 0 || self.lost.is_some() {
            self.out_of_order.push("connection_made");
        }
        self.made += 1;
        ctx.set_half_close(self.half_close);
        if self.idle.is_some() {
            ctx.set_idle_timeout(self.idle);
        }
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
        self.callback("data_received");
        for &b in data {
            if self.corrupt.is_none() && b != pattern(self.got) {
                self.corrupt = Some(self.got);
            }
            self.got += 1;
        }
    }
    fn read_connection_lost(&mut self, _ctx: &mut Context<'_>) {
        self.callback("read_connection_lost");
        if self.got_at_eof.is_some() {
            self.out_of_order.push("read_connection_lost twice");
        }
        self.got_at_eof = Some(self.got);
    }
    fn write_connection_lost(&mut self, _ctx: &mut Context<'_>) {
        self.callback("write_connection_lost");
    }
    fn pause_writing(&mut self, _ctx: &mut Context<'_>) {
        self.callback("pause_writing");
    }
    fn resume_writing(&mut self, _ctx: &mut Context<'_>) {
        self.callback("resume_writing");
    }
    fn idle_timeout(&mut self, ctx: &mut Context<'_>) {
        self.callback("idle_timeout");
        ctx.lose_connection_with(DisconnectReason::TimedOut);
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        if self.made == 0 {
            self.out_of_order
                .push("connection_lost before connection_made");
        }
        self.lost_calls += 1;
        if self.lost.is_none() {
            self.lost = Some(reason.clone());
        }
    }
}

/// Which end an operation applies to.
#[derive(Clone, Copy, Debug)]
enum Who {
    Client,
    Server,
}

fn with_end(
    pump: &mut Pump,
    link: torsion::testing::Link<End, End>,
    who: Who,
    f: impl FnOnce(&mut End, &mut Context<'_>),
) {
    let _ = match who {
        Who::Client => pump.with_client(link, f),
        Who::Server => pump.with_server(link, f),
    };
}

/// The connection engine, driven through the pump by the operations the
/// bytes spell (writes, pauses, resumes, half-closes, closes, aborts,
/// resets, water marks and caps, steps and clock advances), under seeded
/// faults. After every operation: buffers within their caps, bytes in flight
/// within the wire's capacity. At the end: `connection_made` and
/// `connection_lost` exactly once per end, no callback after
/// `connection_lost`, every byte received in order and intact, and on a
/// graceful close everything the peer wrote arrived.
pub fn check_engine(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    let seed = u64::from(input.u16());
    let mut faults = Faults::new(seed);
    if mode & 1 != 0 {
        faults = faults.split_writes();
    }
    if mode & 2 != 0 {
        faults = faults.delay_delivery(u32::from(mode >> 5) + 1);
    }
    if mode & 4 != 0 {
        faults = faults.reset_randomly(u64::from(input.u16()) + 1);
    }
    let wire_capacity = 64 + usize::from(input.byte()) * 256;
    let mut pump = Pump::with_config(PumpConfig {
        faults,
        wire_capacity,
        max_rounds: 200_000,
    });
    let idle = (mode & 8 != 0).then(|| Duration::from_millis(100 + u64::from(input.byte()) * 20));
    let client = End {
        half_close: mode & 16 != 0,
        ..End::default()
    };
    let server = End {
        half_close: mode & 16 == 0,
        idle,
        ..End::default()
    };
    let link = pump.connect(client, server);
    // The hard caps each end was given (default 64 MiB, never reached here).
    let mut caps = [64usize << 20; 2];
    let mut ops = 0;
    while !input.is_empty() && ops < 400 {
        ops += 1;
        let op = input.byte();
        let who = if op & 0x80 == 0 {
            Who::Client
        } else {
            Who::Server
        };
        let arg = input.byte();
        match op & 0x0f {
            0..=3 => {
                let n = 1 + usize::from(arg) * 16;
                with_end(&mut pump, link, who, |p, ctx| p.write(ctx, n));
            }
            4 => with_end(&mut pump, link, who, |_, ctx| ctx.pause_reading()),
            5 => with_end(&mut pump, link, who, |_, ctx| ctx.resume_reading()),
            6 => with_end(&mut pump, link, who, |_, ctx| ctx.lose_write_connection()),
            7 => with_end(&mut pump, link, who, |p, ctx| {
                p.closed_early = true;
                ctx.lose_connection();
            }),
            8 => with_end(&mut pump, link, who, |p, ctx| {
                p.closed_early = true;
                ctx.abort_connection();
            }),
            9 => {
                let (low, high) = (usize::from(arg) * 8, usize::from(arg) * 32 + 1);
                let cap = high + usize::from(input.byte()) * 64 + 1;
                caps[who as usize] = cap;
                with_end(&mut pump, link, who, |_, ctx| {
                    ctx.set_write_water_marks(low, high);
                    ctx.set_write_buffer_cap(cap);
                });
            }
            10 => {
                for _ in 0..=arg % 8 {
                    pump.step();
                }
            }
            11 => {
                pump.flush();
            }
            12 => pump.advance(Duration::from_millis(u64::from(arg) * 10)),
            13 if arg < 32 => pump.reset(link),
            13 => {
                // A reset once `arg` more bytes went one way (counted from
                // what the receiver got; bytes in flight may cross it).
                let (dir, base) = if arg & 1 == 0 {
                    (Direction::ClientToServer, pump.server(link).got)
                } else {
                    (Direction::ServerToClient, pump.client(link).got)
                };
                pump.reset_at(link, dir, base + u64::from(arg));
            }
            14 => with_end(&mut pump, link, who, |_, ctx| ctx.reset_idle_timeout()),
            _ => {
                pump.step();
            }
        }
        let (cb, sb) = pump.buffered(link);
        assert!(
            cb <= caps[0],
            "client buffers {cb} bytes over its cap {}",
            caps[0]
        );
        assert!(
            sb <= caps[1],
            "server buffers {sb} bytes over its cap {}",
            caps[1]
        );
        for d in [Direction::ClientToServer, Direction::ServerToClient] {
            let f = pump.in_flight(link, d);
            assert!(
                f <= wire_capacity,
                "{f} bytes in flight {d:?}, capacity {wire_capacity}"
            );
        }
    }
    // The end: let both read, close both gracefully, let every timer run.
    for who in [Who::Client, Who::Server] {
        with_end(&mut pump, link, who, |_, ctx| ctx.resume_reading());
    }
    pump.flush();
    for who in [Who::Client, Who::Server] {
        with_end(&mut pump, link, who, |_, ctx| ctx.lose_connection());
    }
    pump.flush();
    pump.advance(Duration::from_secs(3600));
    let panics = pump.core_mut().take_panics();
    assert!(panics.is_empty(), "callbacks panicked: {panics:?}");
    let (c, s) = (pump.client(link), pump.server(link));
    for (name, end, peer) in [("client", c, s), ("server", s, c)] {
        assert_eq!(end.made, 1, "{name}: connection_made {} times", end.made);
        assert_eq!(
            end.lost_calls, 1,
            "{name}: connection_lost {} times",
            end.lost_calls
        );
        assert!(
            end.out_of_order.is_empty(),
            "{name}: out of order: {:?}",
            end.out_of_order
        );
        assert_eq!(end.corrupt, None, "{name}: stream corrupt at byte");
        assert!(end.got <= peer.written, "{name}: got more than was written");
        // The peer's EOF came in order: nothing it wrote was still missing.
        if let Some(at_eof) = end.got_at_eof {
            assert_eq!(
                at_eof, peer.written,
                "{name}: EOF before all the peer's bytes"
            );
        }
        // A graceful close (the peer's may carry another reason, such as
        // its idle timeout): everything the peer wrote arrived, unless this
        // end closed first and so stopped reading.
        let peer_graceful = matches!(
            peer.lost,
            Some(DisconnectReason::Done | DisconnectReason::TimedOut)
        );
        if end.lost == Some(DisconnectReason::Done) && peer_graceful && !end.closed_early {
            assert_eq!(
                end.got, peer.written,
                "{name}: lost bytes on a graceful close"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// TLS fed arbitrary bytes by its peer.

/// Bytes the wrapped protocol writes before any handshake: they must never
/// reach the (unverified) peer in the clear.
const SECRET: &[u8] = b"plaintext-that-must-never-leave-unencrypted";

#[derive(Default)]
struct Inner {
    made: u32,
    lost_calls: u32,
    data: usize,
}

impl Protocol for Inner {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.made += 1;
        ctx.write(SECRET);
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
        self.data += data.len();
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, _reason: &DisconnectReason) {
        self.lost_calls += 1;
    }
}

/// The raw peer: sends what it is told, records what comes back.
#[derive(Default)]
struct Raw {
    got: Vec<u8>,
    lost: Option<DisconnectReason>,
}

impl Protocol for Raw {
    fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.lost = Some(reason.clone());
    }
}

#[cfg(feature = "tls")]
pub fn tls_configs() -> &'static (
    std::sync::Arc<torsion::tls::ServerConfig>,
    std::sync::Arc<torsion::tls::ClientConfig>,
) {
    use std::sync::{Arc, OnceLock};
    static CONFIGS: OnceLock<(
        Arc<torsion::tls::ServerConfig>,
        Arc<torsion::tls::ClientConfig>,
    )> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .expect("a self-signed certificate");
        let server = torsion::tls::server_config_from_pem(
            cert.cert.pem().as_bytes(),
            cert.signing_key.serialize_pem().as_bytes(),
        )
        .expect("a server config");
        let client = torsion::tls::client_config_with_ca(cert.cert.pem().as_bytes())
            .expect("a client config");
        (Arc::new(server), Arc::new(client))
    })
}

/// Bytes the wrapper may send back and buffer, at most, whatever the peer
/// sends: a handshake flight and an alert, far below this.
#[cfg(feature = "tls")]
const TLS_BOUND: usize = 64 * 1024;

/// The TLS wrapper (server or client side, chosen by the first byte) fed
/// arbitrary bytes by a raw peer through the pump, in the chunks the input
/// spells, then an EOF, a reset or silence until the handshake times out.
/// No panic; what it buffers and sends stays bounded; the connection ends
/// with a TLS error (or the handshake timeout), exactly once for the wrapped
/// protocol; its plaintext never reaches the peer.
#[cfg(feature = "tls")]
pub fn check_tls_peer(data: &[u8]) {
    use torsion::tls::{self, TlsProtocol, DEFAULT_HANDSHAKE_TIMEOUT};
    let mut input = Input(data);
    let mode = input.byte();
    let (server, client) = tls_configs();
    let mut pump = if mode & 4 != 0 {
        Pump::with_faults(Faults::chaos(u64::from(mode)))
    } else {
        Pump::new()
    };
    let wrapper = if mode & 1 == 0 {
        TlsProtocol::server(server.clone(), Inner::default())
    } else {
        let name = tls::server_name("localhost").expect("a valid name");
        TlsProtocol::client(client.clone(), name, Inner::default())
    }
    .expect("a TLS connection")
    .with_handshake_timeout(DEFAULT_HANDSHAKE_TIMEOUT);
    let link = pump.connect(Raw::default(), wrapper);
    let mut chunks = 0;
    while !input.is_empty() && chunks < 256 {
        chunks += 1;
        let n = usize::from(input.byte()) * 4 + 1;
        let chunk = input.take(n).to_vec();
        let _ = pump.with_client(link, |_, ctx| ctx.write(&chunk));
        pump.flush();
        let (_, buffered) = pump.buffered(link);
        assert!(
            buffered <= TLS_BOUND,
            "the wrapper buffers {buffered} bytes"
        );
        assert!(
            pump.client(link).got.len() <= TLS_BOUND,
            "the wrapper sent too much"
        );
    }
    // Bit 1: stay silent until the handshake times out; else close.
    if mode & 2 == 0 {
        let _ = pump.with_client(link, |_, ctx| ctx.lose_connection());
    }
    pump.flush();
    pump.advance(DEFAULT_HANDSHAKE_TIMEOUT + Duration::from_secs(1));
    let panics = pump.core_mut().take_panics();
    assert!(panics.is_empty(), "callbacks panicked: {panics:?}");
    let reason = pump.server_lost(link).cloned();
    assert!(
        matches!(
            reason,
            Some(DisconnectReason::Tls(_) | DisconnectReason::TimedOut)
        ),
        "the TLS side ended with {reason:?}, not a TLS error"
    );
    let raw = pump.client(link);
    assert!(raw.lost.is_some(), "the raw peer never heard the end");
    assert!(
        !raw.got.windows(SECRET.len()).any(|w| w == SECRET),
        "plaintext reached an unverified peer"
    );
    let inner = pump
        .server(link)
        .inner::<Inner>()
        .expect("the wrapped protocol");
    assert!(inner.made <= 1, "connection_made {} times", inner.made);
    assert_eq!(
        inner.lost_calls, inner.made,
        "connection_lost {} times",
        inner.lost_calls
    );
    assert_eq!(
        inner.data, 0,
        "plaintext from a peer that never shook hands"
    );
}

// ---------------------------------------------------------------------------
// HTTP codec.

/// What a decoder made of a byte stream, normalised so that the way the input
/// was split does not show: heads and ends as their debug form, the body bytes
/// between them joined, and a refusal as its status code.
fn http_events<H: std::fmt::Debug>(
    data: &[u8],
    chunk: usize,
    mut decode: impl FnMut(
        &mut bytes::BytesMut,
    )
        -> Result<Option<torsion::http::codec::Event<H>>, torsion::http::HttpError>,
) -> Vec<String> {
    use torsion::http::codec::Event;
    let mut out: Vec<String> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut buf = bytes::BytesMut::new();
    let mut fed = 0;
    let flush_body = |out: &mut Vec<String>, body: &mut Vec<u8>| {
        if !body.is_empty() {
            out.push(format!("data {:?}", String::from_utf8_lossy(body)));
            body.clear();
        }
    };
    // Bounded: every round either takes an event or feeds more input.
    for _ in 0..(data.len() * 4 + 64) {
        match decode(&mut buf) {
            Ok(Some(Event::Head(h))) => {
                flush_body(&mut out, &mut body);
                out.push(format!("head {h:?}"));
            }
            Ok(Some(Event::Data(d))) => {
                assert!(!d.is_empty(), "an empty Data event");
                body.extend_from_slice(&d);
            }
            Ok(Some(Event::End)) => {
                flush_body(&mut out, &mut body);
                out.push("end".into());
            }
            Ok(None) => {
                if fed == data.len() {
                    break;
                }
                let next = (fed + chunk).min(data.len());
                buf.extend_from_slice(&data[fed..next]);
                fed = next;
            }
            Err(e) => {
                // How much of a refused body came out first depends on how
                // the input was split (an over-limit body read at once is
                // refused before any of it is handed on): only the refusal
                // is compared.
                body.clear();
                out.push(format!("refused {}", e.status()));
                break;
            }
        }
    }
    flush_body(&mut out, &mut body);
    out
}

/// The HTTP request and response decoders: no panic on any input, and the same
/// messages (heads, the body bytes of every message that ends, ends, and
/// refusals with their status) whether the bytes arrive at once or split into
/// pieces of any size (the first byte picks the size).
pub fn check_http(data: &[u8]) {
    use torsion::http::codec::{RequestDecoder, ResponseDecoder};
    use torsion::http::Limits;
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    // Small limits, so that every limit is within the fuzzer's reach.
    let limits = Limits {
        max_head_size: 512,
        max_headers: 8,
        max_body_size: 1024,
    };
    let chunk = usize::from(first % 17) + 1;
    let mut whole = RequestDecoder::new(limits);
    let mut split = RequestDecoder::new(limits);
    let a = http_events(input, input.len().max(1), |b| whole.decode(b));
    let b = http_events(input, chunk, |b| split.decode(b));
    assert_eq!(a, b, "requests split in pieces of {chunk} differ");
    let mut whole = ResponseDecoder::new(limits);
    let mut split = ResponseDecoder::new(limits);
    let a = http_events(input, input.len().max(1), |b| whole.decode(b));
    let b = http_events(input, chunk, |b| split.decode(b));
    assert_eq!(a, b, "responses split in pieces of {chunk} differ");
}
