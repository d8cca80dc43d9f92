//! Helpers shared by the framing tests.
#![allow(dead_code)]

use bytes::Bytes;
use torsion::protocols::{Codec, FrameHandler, Framing, LineHandler, Lines};
use torsion::testing::{Faults, Pump, RecordingTransport};
use torsion::{Context, DisconnectReason, Protocol};

/// Records every frame.
#[derive(Debug, Default)]
pub struct Collect {
    pub frames: Vec<Vec<u8>>,
    pub lost: Option<DisconnectReason>,
}

impl<C: Codec<Frame = Bytes>> FrameHandler<C> for Collect {
    fn frame_received(&mut self, _: &mut Framing<'_, '_, C>, frame: Bytes) {
        self.frames.push(frame.to_vec());
    }
    fn connection_lost(&mut self, _: &mut Context<'_>, reason: &DisconnectReason) {
        assert!(self.lost.is_none(), "connection_lost twice");
        self.lost = Some(reason.clone());
    }
}

/// Records every line.
#[derive(Debug, Default)]
pub struct LineCollect {
    pub lines: Vec<Vec<u8>>,
    pub lost: Option<DisconnectReason>,
}

impl LineHandler for LineCollect {
    fn line_received(&mut self, _: &mut Lines<'_, '_>, line: &[u8]) {
        self.lines.push(line.to_vec());
    }
    fn connection_lost(&mut self, _: &mut Context<'_>, reason: &DisconnectReason) {
        assert!(self.lost.is_none(), "connection_lost twice");
        self.lost = Some(reason.clone());
    }
}

/// A peer that only writes what the test tells it to.
#[derive(Debug, Default)]
pub struct Raw {
    pub got: Vec<u8>,
}

impl Protocol for Raw {
    fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
    }
}

/// Feeds `stream` to a fresh protocol in every chunk size from one byte up,
/// over the recording transport, then over the pump (one write per chunk),
/// then over the pump with split and delayed delivery for `seeds` seeds, and
/// checks that `observe` gives `expected` every time.
pub fn every_chunking<P: Protocol, T: PartialEq + std::fmt::Debug>(
    make: impl Fn() -> P,
    stream: &[u8],
    observe: impl Fn(&P) -> T,
    expected: &T,
    seeds: u64,
) {
    for size in 1..=stream.len().max(1) {
        let mut t = RecordingTransport::new(make());
        for chunk in stream.chunks(size) {
            t.receive(chunk);
        }
        assert_eq!(
            &observe(t.protocol()),
            expected,
            "transport, chunks of {size}"
        );
    }
    for size in 1..=stream.len().max(1) {
        let mut pump = Pump::new();
        let link = pump.connect(Raw::default(), make());
        for chunk in stream.chunks(size) {
            pump.with_client(link, |_, ctx| ctx.write(chunk));
        }
        pump.flush();
        assert_eq!(
            &observe(pump.server(link)),
            expected,
            "pump, chunks of {size}"
        );
    }
    for seed in 0..seeds {
        let mut pump = Pump::with_faults(Faults::from_env(seed).split_writes().delay_delivery(3));
        let link = pump.connect(Raw::default(), make());
        pump.with_client(link, |_, ctx| ctx.write(stream));
        pump.flush();
        assert_eq!(&observe(pump.server(link)), expected, "pump, seed {seed}");
    }
}
