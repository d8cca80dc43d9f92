//! The testing tools keep the reactor's promises.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::{Context, DisconnectReason, Protocol};

/// Records every callback.
#[derive(Default)]
struct Rec {
    log: Rc<RefCell<Vec<String>>>,
    got: Vec<u8>,
    reads: Vec<usize>,
    half_close: bool,
}

impl Rec {
    fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }
    fn push(&self, s: impl Into<String>) {
        self.log.borrow_mut().push(s.into());
    }
}

impl Protocol for Rec {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.set_half_close(self.half_close);
        self.push("made");
    }
    fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
        self.reads.push(data.len());
    }
    fn connection_lost(&mut self, _: &mut Context<'_>, reason: &DisconnectReason) {
        assert!(
            !self.log().iter().any(|l| l.starts_with("lost")),
            "lost twice"
        );
        self.push(format!("lost:{reason}"));
    }
    fn read_connection_lost(&mut self, _: &mut Context<'_>) {
        self.push("read_lost");
    }
    fn write_connection_lost(&mut self, _: &mut Context<'_>) {
        self.push("write_lost");
    }
    fn pause_writing(&mut self, _: &mut Context<'_>) {
        self.push("pause_writing");
    }
    fn resume_writing(&mut self, _: &mut Context<'_>) {
        self.push("resume_writing");
    }
}

#[test]
fn writes_are_refused_after_lose_and_the_buffer_flushes_first() {
    let mut t = RecordingTransport::new(Rec::default());
    t.set_stalled(true);
    t.with_protocol(|_, ctx| {
        ctx.write(b"before");
        ctx.lose_connection();
        assert!(ctx.try_write(b"after").is_err());
    });
    assert!(t.is_closing());
    assert!(t.lost().is_none(), "closed before the flush");
    assert_eq!(t.buffered_len(), 6);
    t.set_stalled(false);
    assert_eq!(t.written(), b"before");
    assert_eq!(t.lost(), Some(&DisconnectReason::Done));
    assert!(t.eof_sent() && !t.is_aborted());
    assert_eq!(
        t.protocol().log(),
        ["made", "lost:connection closed cleanly"]
    );
    assert!(t.with_protocol(|_, _| ()).is_none());
}

#[test]
fn abort_drops_buffered_data_and_resets() {
    let mut t = RecordingTransport::new(Rec::default());
    t.set_stalled(true);
    t.with_protocol(|_, ctx| ctx.write(b"lost"));
    t.with_protocol(|_, ctx| {
        ctx.write(b"also lost");
        ctx.abort_connection();
    });
    t.set_stalled(false);
    assert_eq!(t.written(), b"");
    assert!(t.is_aborted());
    assert_eq!(t.lost(), Some(&DisconnectReason::Aborted));
}

#[test]
fn water_marks_and_the_hard_cap() {
    let mut t = RecordingTransport::new(Rec::default());
    t.with_protocol(|_, ctx| {
        ctx.set_write_water_marks(10, 20);
        ctx.set_write_buffer_cap(100);
    });
    t.set_stalled(true);
    t.with_protocol(|_, ctx| ctx.write(&[0; 15]));
    assert!(!t.is_writing_paused());
    t.with_protocol(|_, ctx| ctx.write(&[0; 15]));
    assert!(t.is_writing_paused());
    t.set_stalled(false);
    assert!(!t.is_writing_paused());
    assert_eq!(
        t.protocol().log(),
        ["made", "pause_writing", "resume_writing"]
    );
    t.set_stalled(true);
    t.with_protocol(|_, ctx| ctx.write(&[0; 101]));
    assert_eq!(t.lost(), Some(&DisconnectReason::WriteBufferFull));
}

#[test]
fn input_waits_while_paused_and_eof_follows_it() {
    let mut t = RecordingTransport::new(Rec::default());
    t.with_protocol(|_, ctx| ctx.pause_reading());
    t.receive(b"abc");
    t.receive_eof();
    assert_eq!(t.protocol().got, b"");
    assert!(t.lost().is_none());
    t.with_protocol(|_, ctx| ctx.resume_reading());
    assert_eq!(t.protocol().got, b"abc");
    assert_eq!(t.lost(), Some(&DisconnectReason::Done));
}

#[test]
fn half_close_both_ways() {
    let mut t = RecordingTransport::new(Rec {
        half_close: true,
        ..Rec::default()
    });
    t.receive_eof();
    assert_eq!(t.protocol().log(), ["made", "read_lost"]);
    t.with_protocol(|_, ctx| ctx.write(b"still writing"));
    t.with_protocol(|_, ctx| ctx.lose_write_connection());
    assert_eq!(t.written(), b"still writing");
    assert!(t.eof_sent());
    assert_eq!(t.lost(), Some(&DisconnectReason::Done));

    // Without half-close, the peer's EOF closes after the flush.
    let mut t = RecordingTransport::new(Rec::default());
    t.receive_eof();
    assert_eq!(t.lost(), Some(&DisconnectReason::Done));
}

#[test]
fn a_panic_aborts_only_that_connection_and_is_recorded() {
    struct Boom;
    impl Protocol for Boom {
        fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {
            panic!("bad input");
        }
    }
    let mut pump = Pump::new();
    let a = pump.connect(Rec::default(), Boom);
    let b = pump.connect(Rec::default(), Rec::default());
    pump.with_client(a, |_, ctx| ctx.write(b"x"));
    pump.with_client(b, |_, ctx| ctx.write(b"y"));
    pump.flush();
    assert_eq!(
        pump.server_lost(a),
        Some(&DisconnectReason::Panicked("bad input".into()))
    );
    assert_eq!(pump.client_lost(a), Some(&DisconnectReason::Reset));
    assert_eq!(pump.server(b).got, b"y");
    assert!(pump.server_lost(b).is_none());
    assert_eq!(pump.core_mut().take_panics(), ["bad input"]);
    assert_no_panics(pump.core_mut());
}

#[test]
fn the_pump_applies_back_pressure_through_a_paused_reader() {
    let mut pump = Pump::with_config(PumpConfig {
        wire_capacity: 1000,
        ..PumpConfig::default()
    });
    let link = pump.connect(Rec::default(), Rec::default());
    pump.with_server(link, |_, ctx| ctx.pause_reading());
    pump.with_client(link, |_, ctx| {
        ctx.set_write_water_marks(100, 500);
        ctx.write(&[1; 2000]);
    });
    pump.flush();
    assert_eq!(pump.in_flight(link, Direction::ClientToServer), 1000);
    assert_eq!(pump.buffered(link).0, 1000);
    assert_eq!(pump.client(link).log(), ["made", "pause_writing"]);
    pump.with_server(link, |_, ctx| ctx.resume_reading());
    pump.flush();
    assert_eq!(pump.server(link).got.len(), 2000);
    assert_eq!(
        pump.client(link).log(),
        ["made", "pause_writing", "resume_writing"]
    );
}

#[test]
fn closes_travel_like_tcp() {
    // Clean close: the peer sees EOF after the data and closes in turn.
    let mut pump = Pump::new();
    let link = pump.connect(Rec::default(), Rec::default());
    pump.with_client(link, |_, ctx| {
        ctx.write(b"bye");
        ctx.lose_connection();
    });
    pump.flush();
    assert_eq!(pump.server(link).got, b"bye");
    assert_eq!(pump.client_lost(link), Some(&DisconnectReason::Done));
    assert_eq!(pump.server_lost(link), Some(&DisconnectReason::Done));

    // Abort: the peer gets what was already in flight, then a reset.
    let mut pump = Pump::new();
    let link = pump.connect(Rec::default(), Rec::default());
    pump.with_client(link, |_, ctx| ctx.write(b"sent"));
    pump.with_client(link, |_, ctx| {
        ctx.write(b"dropped");
        ctx.abort_connection();
    });
    pump.flush();
    assert_eq!(pump.server(link).got, b"sent");
    assert_eq!(pump.client_lost(link), Some(&DisconnectReason::Aborted));
    assert_eq!(pump.server_lost(link), Some(&DisconnectReason::Reset));

    // Half-close: the server hears the EOF, answers, then shuts its side.
    let mut pump = Pump::new();
    let server = Rec {
        half_close: true,
        ..Rec::default()
    };
    let link = pump.connect(Rec::default(), server);
    pump.with_client(link, |_, ctx| {
        ctx.set_half_close(true);
        ctx.write(b"question");
        ctx.lose_write_connection();
    });
    pump.flush();
    assert_eq!(pump.server(link).log(), ["made", "read_lost"]);
    assert_eq!(pump.client(link).log(), ["made", "write_lost"]);
    pump.with_server(link, |_, ctx| {
        ctx.write(b"answer");
        ctx.lose_write_connection();
    });
    pump.flush();
    assert_eq!(pump.client(link).got, b"answer");
    assert_eq!(pump.client_lost(link), Some(&DisconnectReason::Done));
    assert_eq!(pump.server_lost(link), Some(&DisconnectReason::Done));
}

#[test]
fn timers_and_operations_by_handle_reach_pumped_protocols() {
    let mut pump = Pump::new();
    let a = pump.connect(Rec::default(), Rec::default());
    let b = pump.connect(Rec::default(), Rec::default());
    let hb = pump.server_handle(b);
    pump.with_server(a, move |_, ctx| {
        ctx.call_later_self(Duration::from_secs(5), move |_: &mut Rec, ctx| {
            ctx.connection(hb).write(b"relayed");
            ctx.lose_connection();
        });
    });
    pump.flush();
    assert_eq!(pump.clock().pending_calls(), 1);
    pump.advance(Duration::from_secs(4));
    assert!(pump.server_lost(a).is_none());
    pump.advance(Duration::from_secs(1));
    assert_eq!(pump.client(b).got, b"relayed");
    assert_eq!(pump.client_lost(a), Some(&DisconnectReason::Done));
    assert!(pump.client_lost(b).is_none());
}

#[test]
fn flush_fails_loudly_when_never_quiet() {
    struct PingPong;
    impl Protocol for PingPong {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            ctx.write(b".");
        }
        fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
            ctx.write(data);
        }
    }
    let mut pump = Pump::with_config(PumpConfig {
        max_rounds: 50,
        faults: Faults::new(9),
        ..PumpConfig::default()
    });
    pump.connect(PingPong, PingPong);
    let err = pump.try_flush().unwrap_err();
    assert_eq!(err.rounds, 50);
    assert_eq!(err.seed, 9);
    assert!(err.to_string().contains("never got quiet"), "{err}");
}

#[test]
fn reactor_requests_are_recorded() {
    struct Dialer;
    impl Protocol for Dialer {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            let port = ctx
                .listen_tcp("127.0.0.1:0".parse().unwrap(), NoFactory)
                .unwrap();
            port.stop_listening(ctx);
            ctx.connect_tcp(
                "192.0.2.1:80".parse().unwrap(),
                NoClient,
                Duration::from_secs(3),
            );
        }
        fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    }
    struct NoFactory;
    impl crate::Factory for NoFactory {
        type Protocol = Dialer;
        fn build_protocol(&mut self, _: &crate::Address) -> Option<Dialer> {
            None
        }
    }
    struct NoClient;
    impl crate::ClientFactory for NoClient {
        type Protocol = Dialer;
        fn build_protocol(&mut self, _: &crate::Address) -> Option<Dialer> {
            None
        }
    }
    let t = RecordingTransport::new(Dialer);
    let reqs = t.clock().requests();
    assert!(matches!(reqs[0], Request::Listen { addr: Some(_) }));
    assert_eq!(reqs[1], Request::StopListening);
    assert_eq!(
        reqs[2],
        Request::Connect {
            addr: "192.0.2.1:80".parse().unwrap(),
            timeout: Duration::from_secs(3)
        }
    );
}

#[test]
fn split_writes_really_split_and_the_seed_replays() {
    let run = |seed| {
        let mut pump = Pump::with_faults(Faults::chaos(seed));
        let link = pump.connect(Rec::default(), Rec::default());
        pump.with_client(link, |_, ctx| ctx.write(&[7; 300]));
        pump.flush();
        assert_eq!(pump.server(link).got, [7; 300]);
        pump.server(link).reads.clone()
    };
    let a = run(5);
    assert!(a.len() > 10 && a.contains(&1), "{a:?}");
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
}
