//! LengthPrefixed on arbitrary bytes: no panic, bounded buffering, same frames
//! however the input is cut; encode then decode round-trips.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use torsion::protocols::{Codec, FrameHandler, Framed, Framing, LengthPrefixed, PrefixLen};
use torsion::testing::RecordingTransport;

#[derive(Default)]
struct Collect(Vec<Bytes>);

impl FrameHandler<LengthPrefixed> for Collect {
    fn frame_received(&mut self, _: &mut Framing<'_, '_, LengthPrefixed>, frame: Bytes) {
        self.0.push(frame);
    }
}

fn codec(which: u8) -> LengthPrefixed {
    match which % 3 {
        0 => LengthPrefixed::new(PrefixLen::U8),
        1 => LengthPrefixed::new(PrefixLen::U16).max_frame_len(1000),
        _ => LengthPrefixed::new(PrefixLen::U32).max_frame_len(1000),
    }
}

fn run(which: u8, data: &[u8], chunk: usize) -> Vec<Bytes> {
    let c = codec(which);
    let bound = c.max_buffered();
    let mut t = RecordingTransport::new(Framed::new(c, Collect::default()));
    for piece in data.chunks(chunk.max(1)) {
        t.receive(piece);
        assert!(t.protocol().buffered_len() <= bound);
    }
    std::mem::take(&mut t.protocol_mut().handler_mut().0)
}

fuzz_target!(|input: (u8, u8, Vec<u8>)| {
    let (which, chunk, data) = input;
    assert_eq!(run(which, &data, chunk as usize), run(which, &data, data.len()));
    // Round trip of the input as one frame, when it fits.
    let mut c = codec(which);
    let mut wire = BytesMut::new();
    if c.encode(&data, &mut wire).is_ok() {
        assert_eq!(c.decode(&mut wire).unwrap().as_deref(), Some(&data[..]));
        assert!(wire.is_empty());
    }
});
