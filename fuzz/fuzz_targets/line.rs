//! LineReceiver and LineCodec on arbitrary bytes, cut at arbitrary points:
//! no panic, bounded buffering, same lines however the input is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torsion::protocols::{LineHandler, LineReceiver, Lines};
use torsion::testing::RecordingTransport;

const MAX: usize = 64;

#[derive(Default)]
struct Collect(Vec<Vec<u8>>);

impl LineHandler for Collect {
    fn line_received(&mut self, _: &mut Lines<'_, '_>, line: &[u8]) {
        assert!(line.len() <= MAX);
        self.0.push(line.to_vec());
    }
    fn line_length_exceeded(&mut self, _: &mut Lines<'_, '_>, _: &[u8]) {
        // Keep going, to exercise the skip-to-delimiter path.
    }
}

fn run(data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut t = RecordingTransport::new(LineReceiver::new(Collect::default()).with_max_line_length(MAX));
    for c in data.chunks(chunk.max(1)) {
        t.receive(c);
        assert!(t.protocol().buffered_len() <= MAX + 2);
    }
    assert!(t.core_mut().take_panics().is_empty());
    std::mem::take(&mut t.protocol_mut().handler_mut().0)
}

fuzz_target!(|input: (u8, Vec<u8>)| {
    let (chunk, data) = input;
    let whole = run(&data, data.len());
    assert_eq!(run(&data, chunk as usize), whole);
});
