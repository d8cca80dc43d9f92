//! Framing codecs and adapters: same frames however the input is cut, limits,
//! malformed input.

mod framing_util;

use bytes::BytesMut;
use framing_util::*;
use torsion::protocols::{
    Codec, Framed, LengthPrefixed, LengthPrefixedError, Netstring, PrefixLen,
};
use torsion::testing::{Pump, RecordingTransport};
use torsion::DisconnectReason;

fn encode_all<C: Codec<Item = [u8]>>(codec: &mut C, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for f in frames {
        codec.encode(f, &mut out).unwrap();
    }
    out.to_vec()
}

fn sample_frames(max: usize) -> Vec<Vec<u8>> {
    vec![
        b"hello".to_vec(),
        vec![],
        b"with : and , and \r\n inside".to_vec(),
        (0..max as u32).map(|i| (i * 7) as u8).collect(),
        b"x".to_vec(),
    ]
}

#[test]
fn length_prefixed_frames_survive_every_chunking() {
    for (prefix, max) in [
        (PrefixLen::U8, 40),
        (PrefixLen::U16, 60),
        (PrefixLen::U32, 60),
    ] {
        let codec = LengthPrefixed::new(prefix).max_frame_len(max);
        let frames = sample_frames(max);
        let stream = encode_all(&mut codec.clone(), &frames);
        every_chunking(
            || Framed::new(codec.clone(), Collect::default()),
            &stream,
            |p| p.handler().frames.clone(),
            &frames,
            30,
        );
    }
}

#[test]
fn netstrings_survive_every_chunking() {
    let codec = Netstring::new().max_frame_len(100);
    let frames = sample_frames(100);
    let stream = encode_all(&mut codec.clone(), &frames);
    every_chunking(
        || Framed::new(codec.clone(), Collect::default()),
        &stream,
        |p| p.handler().frames.clone(),
        &frames,
        30,
    );
}

#[test]
fn malformed_netstrings_close_that_connection_with_a_clear_reason() {
    let cases: [(&[u8], &str); 4] = [
        (b"3:abc,x:", "protocol error: malformed netstring length: expected decimal digits and ':', got byte 0x78 at offset 0"),
        (b"3:abcd", "protocol error: malformed netstring: expected ',' after 3 bytes of data, got byte 0x64"),
        (b"0012:", "protocol error: malformed netstring length: expected decimal digits and ':', got byte 0x30 at offset 1"),
        (b"99999999", "protocol error: netstring of 9999999 bytes or more, the limit is 1048576"),
    ];
    for (input, reason) in cases {
        let mut pump = Pump::new();
        let bad = pump.connect(
            Raw::default(),
            Framed::new(Netstring::new(), Collect::default()),
        );
        let good = pump.connect(
            Raw::default(),
            Framed::new(Netstring::new(), Collect::default()),
        );
        pump.with_client(bad, |_, ctx| ctx.write(input));
        pump.with_client(good, |_, ctx| ctx.write(b"2:ok,"));
        pump.flush();
        let lost = pump.server_lost(bad).expect("bad peer disconnected");
        assert_eq!(lost.to_string(), reason);
        assert!(matches!(lost, DisconnectReason::Protocol(_)));
        assert!(pump.client_lost(bad).is_some());
        // Nothing more is decoded after the error, and the other peer is fine.
        assert!(pump.server(bad).handler().frames.len() <= 1);
        assert_eq!(pump.server(good).handler().frames, [b"ok".to_vec()]);
        assert!(pump.server_lost(good).is_none());
    }
}

#[test]
fn length_prefix_over_the_limit_closes_before_the_body_arrives() {
    let codec = LengthPrefixed::new(PrefixLen::U32).max_frame_len(1000);
    let mut t = RecordingTransport::new(Framed::new(codec, Collect::default()));
    t.receive(&[0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0x03]);
    assert!(t.lost().is_none());
    t.receive(&[0xe9]);
    assert_eq!(
        t.lost().unwrap().to_string(),
        "protocol error: frame of 1001 bytes announced, the limit is 1000"
    );
    assert_eq!(t.protocol().handler().frames, [b"abc".to_vec()]);
    assert_eq!(t.protocol().buffered_len(), 0);
}

#[test]
fn sending_a_frame_too_long_for_its_prefix_is_an_error_value() {
    let mut t = RecordingTransport::new(Framed::new(
        LengthPrefixed::new(PrefixLen::U8),
        Collect::default(),
    ));
    let err = t
        .with_protocol(|p, ctx| p.send(ctx, &[0; 256]))
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        LengthPrefixedError::TooLongForPrefix {
            len: 256,
            prefix: 1
        }
    );
    assert_eq!(t.written(), b"");
    assert!(t.lost().is_none());
    t.with_protocol(|p, ctx| p.send(ctx, &[9; 255]).unwrap());
    assert_eq!(t.written().len(), 256);
}

#[test]
fn pausing_inside_frame_received_holds_buffered_frames_until_resumed() {
    use std::time::Duration;
    use torsion::protocols::{FrameHandler, Framing};

    #[derive(Default)]
    struct Slow(Vec<Vec<u8>>);
    impl FrameHandler<Netstring> for Slow {
        fn frame_received(&mut self, ctx: &mut Framing<'_, '_, Netstring>, frame: bytes::Bytes) {
            self.0.push(frame.to_vec());
            ctx.pause_reading();
            ctx.call_later_self(
                Duration::from_secs(1),
                |p: &mut Framed<Netstring, Slow>, ctx| p.resume_reading(ctx),
            );
        }
    }
    let stream = b"1:a,1:b,1:c,";
    let mut t = RecordingTransport::new(Framed::new(Netstring::new(), Slow::default()));
    t.receive(stream);
    assert_eq!(t.protocol().handler().0, [b"a".to_vec()]);
    t.advance(Duration::from_millis(999));
    assert_eq!(t.protocol().handler().0.len(), 1);
    t.advance(Duration::from_millis(1));
    assert_eq!(t.protocol().handler().0.len(), 2);
    t.advance(Duration::from_secs(1));
    assert_eq!(
        t.protocol().handler().0,
        [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );

    // The same through the pump, however the bytes arrive.
    for seed in 0..30 {
        let mut pump = Pump::with_faults(torsion::testing::Faults::chaos(seed));
        let link = pump.connect(
            Raw::default(),
            Framed::new(Netstring::new(), Slow::default()),
        );
        pump.with_client(link, |_, ctx| ctx.write(stream));
        pump.flush();
        assert_eq!(pump.server(link).handler().0.len(), 1, "seed {seed}");
        pump.advance(Duration::from_secs(1));
        assert_eq!(pump.server(link).handler().0.len(), 2, "seed {seed}");
        pump.advance(Duration::from_secs(1));
        assert_eq!(pump.server(link).handler().0.len(), 3, "seed {seed}");
    }
}
