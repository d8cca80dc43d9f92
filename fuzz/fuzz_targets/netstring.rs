//! Netstring on arbitrary bytes: no panic, bounded buffering, same frames
//! however the input is cut; encode then decode round-trips.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use torsion::protocols::{Codec, FrameHandler, Framed, Framing, Netstring};
use torsion::testing::RecordingTransport;

#[derive(Default)]
struct Collect(Vec<Bytes>);

impl FrameHandler<Netstring> for Collect {
    fn frame_received(&mut self, _: &mut Framing<'_, '_, Netstring>, frame: Bytes) {
        self.0.push(frame);
    }
}

fn run(data: &[u8], chunk: usize) -> (Vec<Bytes>, bool) {
    let c = Netstring::new().max_frame_len(1000);
    let bound = c.max_buffered();
    let mut t = RecordingTransport::new(Framed::new(c, Collect::default()));
    for piece in data.chunks(chunk.max(1)) {
        t.receive(piece);
        assert!(t.protocol().buffered_len() <= bound);
    }
    let closed = t.lost().is_some();
    (std::mem::take(&mut t.protocol_mut().handler_mut().0), closed)
}

fuzz_target!(|input: (u8, Vec<u8>)| {
    let (chunk, data) = input;
    assert_eq!(run(&data, chunk as usize), run(&data, data.len()));
    let mut c = Netstring::new().max_frame_len(1000);
    let mut wire = BytesMut::new();
    if c.encode(&data, &mut wire).is_ok() {
        assert_eq!(c.decode(&mut wire).unwrap().as_deref(), Some(&data[..]));
        assert!(wire.is_empty());
    }
});
