//! Property tests: encode then decode gives the frames back; arbitrary bytes
//! never panic, and never make a receiver hold more than its limit.

mod framing_util;

use bytes::BytesMut;
use framing_util::*;
use proptest::prelude::*;
use torsion::protocols::{
    Codec, Framed, LengthPrefixed, LineCodec, LineReceiver, Netstring, PrefixLen,
};
use torsion::testing::RecordingTransport;

fn frames() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20)
}

/// Encodes, then decodes the stream cut at `cuts`.
fn round_trip<C: Codec<Item = [u8], Frame = bytes::Bytes>>(
    mut codec: C,
    frames: &[Vec<u8>],
    cuts: &[usize],
) -> Vec<Vec<u8>> {
    let mut wire = BytesMut::new();
    for f in frames {
        codec.encode(f, &mut wire).unwrap();
    }
    let wire = wire.to_vec();
    let mut buf = BytesMut::new();
    let mut out = vec![];
    let mut start = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.push(wire.len());
    points.sort_unstable();
    for p in points {
        buf.extend_from_slice(&wire[start..p.max(start)]);
        start = p.max(start);
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f.to_vec());
        }
        assert!(buf.len() <= codec.max_buffered());
    }
    assert!(buf.is_empty());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn length_prefixed_round_trips(frames in frames(), cuts in prop::collection::vec(any::<usize>(), 0..10)) {
        for prefix in [PrefixLen::U16, PrefixLen::U32] {
            let codec = LengthPrefixed::new(prefix).max_frame_len(300);
            prop_assert_eq!(&round_trip(codec, &frames, &cuts), &frames);
        }
        let small: Vec<Vec<u8>> = frames.iter().map(|f| f[..f.len().min(255)].to_vec()).collect();
        prop_assert_eq!(&round_trip(LengthPrefixed::new(PrefixLen::U8), &small, &cuts), &small);
    }

    #[test]
    fn netstrings_round_trip(frames in frames(), cuts in prop::collection::vec(any::<usize>(), 0..10)) {
        let codec = Netstring::new().max_frame_len(300);
        prop_assert_eq!(&round_trip(codec, &frames, &cuts), &frames);
    }

    #[test]
    fn lines_round_trip(
        lines in prop::collection::vec("[^\r\n]{0,200}", 0..20),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let frames: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
        let codec = LineCodec::new().max_line_length(1000);
        prop_assert_eq!(&round_trip(codec, &frames, &cuts), &frames);
    }

    /// Arbitrary input never panics a receiver and never makes it hold more
    /// than its codec's bound (plus nothing: reads are fed piecewise).
    #[test]
    fn arbitrary_bytes_stay_bounded(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..2000), 0..12),
    ) {
        let mut lp = RecordingTransport::new(Framed::new(
            LengthPrefixed::new(PrefixLen::U16).max_frame_len(500),
            Collect::default(),
        ));
        let mut ns = RecordingTransport::new(Framed::new(Netstring::new().max_frame_len(500), Collect::default()));
        let mut ln = RecordingTransport::new(
            LineReceiver::new(LineCollect::default()).with_max_line_length(500),
        );
        let mut nl = RecordingTransport::new(
            LineReceiver::new(LineCollect::default()).with_delimiter(&b"\n"[..]).with_max_line_length(500),
        );
        for c in &chunks {
            lp.receive(c);
            ns.receive(c);
            ln.receive(c);
            nl.receive(c);
            prop_assert!(lp.protocol().buffered_len() <= 2 + 500);
            prop_assert!(ns.protocol().buffered_len() <= 3 + 1 + 500 + 1);
            prop_assert!(ln.protocol().buffered_len() <= 500 + 2);
            prop_assert!(nl.protocol().buffered_len() <= 500 + 1);
        }
        for t in [&ln, &nl] {
            for line in &t.protocol().handler().lines {
                prop_assert!(line.len() <= 500);
            }
        }
        let mut core = lp.core_mut().take_panics();
        core.extend(ns.core_mut().take_panics());
        core.extend(ln.core_mut().take_panics());
        prop_assert!(core.is_empty(), "{:?}", core);
    }

    /// The decoders alone: never panic, error or need more, within bounds.
    #[test]
    fn decoders_never_panic(data in prop::collection::vec(any::<u8>(), 0..3000)) {
        fn run<C: Codec>(mut c: C, data: &[u8]) {
            let mut buf = BytesMut::from(data);
            while let Ok(Some(_)) = c.decode(&mut buf) {}
        }
        run(LengthPrefixed::new(PrefixLen::U8), &data);
        run(LengthPrefixed::new(PrefixLen::U32), &data);
        run(Netstring::new(), &data);
        run(LineCodec::new().max_line_length(10), &data);
    }
}
