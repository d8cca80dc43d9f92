//! Faults through the pump: every framing protocol keeps its frames whole and
//! in order under seeded splits and delays, and under resets loses only a
//! suffix, with both ends told.

mod framing_util;

use bytes::Bytes;
use torsion::protocols::{
    Codec, FrameHandler, Framed, Framing, LengthPrefixed, LineHandler, LineReceiver, Lines,
    Netstring, PrefixLen,
};
use torsion::testing::{assert_no_panics, Faults, Pump};
use torsion::{Context, DisconnectReason};

/// Echoes every frame.
struct EchoFrames;

impl<C: Codec<Frame = Bytes, Item = [u8]>> FrameHandler<C> for EchoFrames {
    fn frame_received(&mut self, ctx: &mut Framing<'_, '_, C>, frame: Bytes) {
        ctx.send(&frame).unwrap();
    }
}

/// Sends its frames on connect, closes once all came back.
#[derive(Default)]
struct Sender {
    send: Vec<Vec<u8>>,
    got: Vec<Vec<u8>>,
    lost: Option<DisconnectReason>,
}

impl<C: Codec<Frame = Bytes, Item = [u8]>> FrameHandler<C> for Sender {
    fn connection_made(&mut self, ctx: &mut Framing<'_, '_, C>) {
        for f in &self.send {
            ctx.send(f).unwrap();
        }
    }
    fn frame_received(&mut self, ctx: &mut Framing<'_, '_, C>, frame: Bytes) {
        self.got.push(frame.to_vec());
        if self.got.len() == self.send.len() {
            ctx.lose_connection();
        }
    }
    fn connection_lost(&mut self, _: &mut Context<'_>, reason: &DisconnectReason) {
        self.lost = Some(reason.clone());
    }
}

fn payloads(seed: u64, max: usize) -> Vec<Vec<u8>> {
    (0..20u64)
        .map(|i| {
            let len = ((seed.wrapping_mul(31) + i * 17) % max as u64) as usize;
            (0..len).map(|j| (j as u64 ^ i ^ seed) as u8).collect()
        })
        .collect()
}

/// Runs one echo conversation for `codec`; returns (sent, received, client
/// end, server end).
fn echo<C: Codec<Frame = Bytes, Item = [u8]> + Clone>(
    codec: C,
    faults: Faults,
    send: Vec<Vec<u8>>,
) -> (
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
    DisconnectReason,
    DisconnectReason,
) {
    let mut pump = Pump::with_faults(faults);
    let client = Framed::new(
        codec.clone(),
        Sender {
            send: send.clone(),
            ..Sender::default()
        },
    );
    let link = pump.connect(client, Framed::new(codec, EchoFrames));
    pump.flush();
    assert_no_panics(pump.core_mut());
    let c = pump.client(link).handler();
    (
        send,
        c.got.clone(),
        c.lost.clone().expect("client ended"),
        pump.server_lost(link).cloned().expect("server ended"),
    )
}

fn check_codec<C: Codec<Frame = Bytes, Item = [u8]> + Clone>(codec: C, max: usize) {
    for seed in 0..100 {
        let faults = Faults::from_env(seed).split_writes().delay_delivery(4);
        let (sent, got, c, s) = echo(codec.clone(), faults, payloads(faults.seed(), max));
        assert_eq!(got, sent, "seed {}", faults.seed());
        assert_eq!((c, s), (DisconnectReason::Done, DisconnectReason::Done));
    }
    for seed in 0..100 {
        let faults = Faults::from_env(seed)
            .split_writes()
            .delay_delivery(2)
            .reset_randomly(600);
        let (sent, got, c, s) = echo(codec.clone(), faults, payloads(faults.seed(), max));
        assert!(
            sent.starts_with(&got),
            "seed {}: a frame was corrupted",
            faults.seed()
        );
        if got.len() < sent.len() {
            assert_eq!(c, DisconnectReason::Reset, "seed {}", faults.seed());
            assert_eq!(s, DisconnectReason::Reset, "seed {}", faults.seed());
        }
    }
}

#[test]
fn length_prefixed_under_faults() {
    check_codec(LengthPrefixed::new(PrefixLen::U8), 255);
    check_codec(LengthPrefixed::new(PrefixLen::U16), 300);
    check_codec(LengthPrefixed::new(PrefixLen::U32), 300);
}

#[test]
fn netstrings_under_faults() {
    check_codec(Netstring::new(), 300);
}

#[test]
fn line_receiver_under_faults() {
    struct EchoLines;
    impl LineHandler for EchoLines {
        fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]) {
            lines.send_line(line).unwrap();
        }
    }
    #[derive(Default)]
    struct Talker {
        send: Vec<Vec<u8>>,
        got: Vec<Vec<u8>>,
        lost: Option<DisconnectReason>,
    }
    impl LineHandler for Talker {
        fn connection_made(&mut self, lines: &mut Lines<'_, '_>) {
            for l in &self.send {
                lines.send_line(l).unwrap();
            }
        }
        fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]) {
            self.got.push(line.to_vec());
            if self.got.len() == self.send.len() {
                lines.lose_connection();
            }
        }
        fn connection_lost(&mut self, _: &mut Context<'_>, reason: &DisconnectReason) {
            self.lost = Some(reason.clone());
        }
    }
    for seed in 0..200 {
        let faults = if seed % 2 == 0 {
            Faults::from_env(seed).split_writes().delay_delivery(4)
        } else {
            Faults::from_env(seed).split_writes().reset_randomly(400)
        };
        let send: Vec<Vec<u8>> = payloads(faults.seed(), 40)
            .into_iter()
            .map(|p| p.into_iter().map(|b| b'a' + b % 26).collect())
            .collect();
        let mut pump = Pump::with_faults(faults);
        let talker = Talker {
            send: send.clone(),
            ..Talker::default()
        };
        let link = pump.connect(
            LineReceiver::new(talker).with_delimiter(&b"\r\n"[..]),
            LineReceiver::new(EchoLines),
        );
        pump.flush();
        assert_no_panics(pump.core_mut());
        let t = pump.client(link).handler();
        assert!(send.starts_with(&t.got), "seed {}", faults.seed());
        match seed % 2 {
            0 => {
                assert_eq!(t.got, send, "seed {}", faults.seed());
                assert_eq!(t.lost, Some(DisconnectReason::Done));
            }
            _ if t.got.len() < send.len() => {
                assert_eq!(
                    t.lost,
                    Some(DisconnectReason::Reset),
                    "seed {}",
                    faults.seed()
                );
                assert_eq!(pump.server_lost(link), Some(&DisconnectReason::Reset));
            }
            _ => {}
        }
    }
}
