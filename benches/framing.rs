//! Framing throughput: lines per second (36-byte lines fed in 36 KiB reads)
//! and 32-byte length-prefixed messages per second, through the public
//! protocol path (a `RecordingTransport` stands in for the socket).
//! Baseline: a hand-written delimiter scan over the same bytes, in the same run.
//!
//! `cargo bench --bench framing`. Twisted on this kind of machine: 1.78 M
//! lines/s, 2.53 M Int32 messages/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use torsion::protocols::{
    FrameHandler, Framed, Framing, LengthPrefixed, LineHandler, LineReceiver, Lines, PrefixLen,
};
use torsion::testing::RecordingTransport;

struct CountLines(u64);
impl LineHandler for CountLines {
    fn line_received(&mut self, _: &mut Lines<'_, '_>, line: &[u8]) {
        self.0 += black_box(line).len() as u64 & 1 | 1;
    }
}

struct CountFrames(u64);
impl FrameHandler<LengthPrefixed> for CountFrames {
    fn frame_received(&mut self, _: &mut Framing<'_, '_, LengthPrefixed>, frame: Bytes) {
        self.0 += black_box(frame).len() as u64 & 1 | 1;
    }
}

/// Runs `f` (which handles `per_call` messages) for about a second; returns
/// messages per second.
fn rate(per_call: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..50 {
            f();
        }
        n += 50 * per_call;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // 36-byte lines (34 + "\r\n"), 1024 of them per 36 KiB read.
    let line = b"abcdefghijklmnopqrstuvwxyz01234567\r\n";
    let chunk: Vec<u8> = line.iter().copied().cycle().take(36 * 1024).collect();
    let mut t = RecordingTransport::new(LineReceiver::new(CountLines(0)));
    let lines = rate(1024, || t.receive(&chunk));
    assert_eq!(t.protocol().handler().0 % 1024, 0);
    let baseline = rate(1024, || {
        let mut n = 0u64;
        let mut rest = &chunk[..];
        while let Some(p) = rest.iter().position(|&b| b == b'\n') {
            n += 1;
            rest = &rest[p + 1..];
        }
        black_box(n);
    });

    // 32-byte messages behind a 4-byte prefix, 1024 per read (36 KiB).
    let mut msg = 32u32.to_be_bytes().to_vec();
    msg.extend_from_slice(&[7; 32]);
    let chunk: Vec<u8> = msg.iter().copied().cycle().take(36 * 1024).collect();
    let mut t = RecordingTransport::new(Framed::new(
        LengthPrefixed::new(PrefixLen::U32),
        CountFrames(0),
    ));
    let frames = rate(1024, || t.receive(&chunk));
    assert!(t.lost().is_none());

    // Sending: 32-byte messages, 1024 per callback.
    let mut t = RecordingTransport::new(Framed::new(
        LengthPrefixed::new(PrefixLen::U32),
        CountFrames(0),
    ));
    let payload = [7u8; 32];
    let sends = rate(1024, || {
        t.with_protocol(|p, ctx| {
            for _ in 0..1024 {
                p.send(ctx, &payload).unwrap();
            }
        });
        t.take_written();
    });

    println!("LineReceiver, 36 B lines in 36 KiB reads: {:>6.2} M lines/s  (Twisted 1.78 M: {:.1}x; bare newline scan {:.2} M/s)",
        lines / 1e6, lines / 1.78e6, baseline / 1e6);
    println!(
        "LengthPrefixed u32, 32 B messages received: {:>6.2} M msgs/s   (Twisted 2.53 M: {:.1}x)",
        frames / 1e6,
        frames / 2.53e6
    );
    println!(
        "LengthPrefixed u32, 32 B messages sent:     {:>6.2} M msgs/s",
        sends / 1e6
    );
}
