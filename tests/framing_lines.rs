//! LineReceiver: Twisted's `LineReceiverTests`, and more.

mod framing_util;

use std::time::Duration;

use framing_util::*;
use torsion::protocols::{LineError, LineHandler, LineReceiver, Lines};
use torsion::testing::RecordingTransport;
use torsion::DisconnectReason;

fn lines(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn same_lines_for_every_chunking_and_delimiter() {
    for delim in [&b"\r\n"[..], b"\n", b"<END>"] {
        let want = lines(&["first", "", "second line", "third", "x"]);
        let mut stream = vec![];
        for l in &want {
            stream.extend_from_slice(l);
            stream.extend_from_slice(delim);
        }
        stream.extend_from_slice(b"partial");
        every_chunking(
            || LineReceiver::new(LineCollect::default()).with_delimiter(delim.to_vec()),
            &stream,
            |p| (p.handler().lines.clone(), p.buffered_len()),
            &(want.clone(), 7),
            30,
        );
    }
}

#[test]
fn by_default_lines_end_in_lf_or_crlf_and_are_sent_with_crlf() {
    // nc sends \n, telnet \r\n; a lone \r inside a line stays.
    let stream = b"nc\ntelnet\r\n\r\n\na\rb\r\nlast\r".to_vec();
    every_chunking(
        || LineReceiver::new(LineCollect::default()),
        &stream,
        |p| (p.handler().lines.clone(), p.buffered_len()),
        &(lines(&["nc", "telnet", "", "", "a\rb"]), 5),
        40,
    );
    // Exactly the maximum, with either ending, split anywhere: fine; one more
    // byte is too long.
    for ending in [&b"\n"[..], b"\r\n"] {
        let mut stream = vec![b'a'; 10];
        stream.extend_from_slice(ending);
        stream.extend_from_slice(b"b\n");
        every_chunking(
            || LineReceiver::new(LineCollect::default()).with_max_line_length(10),
            &stream,
            |p| (p.handler().lines.clone(), p.handler().lost.clone()),
            &(vec![vec![b'a'; 10], b"b".to_vec()], None),
            10,
        );
    }
    let mut t =
        RecordingTransport::new(LineReceiver::new(LineCollect::default()).with_max_line_length(10));
    t.receive(&[b'a'; 11]);
    assert!(t.lost().is_none(), "10 + \\r could still be a legal line");
    t.receive(b"a");
    assert_eq!(
        t.lost().cloned(),
        Some(DisconnectReason::protocol("line longer than 10 bytes"))
    );
    // Sending: the configured delimiter, and a line with \n in it is refused
    // (it would arrive as two).
    let mut t = RecordingTransport::new(LineReceiver::new(LineCollect::default()));
    t.with_protocol(|p, ctx| {
        p.send_line(ctx, b"hello").unwrap();
        assert_eq!(p.send_line(ctx, b"a\nb"), Err(LineError::ContainsDelimiter));
    });
    assert_eq!(t.written(), b"hello\r\n");
}

#[test]
fn a_set_delimiter_is_exact_in_both_directions() {
    let stream = b"a\nb\r\nc\r\n".to_vec();
    every_chunking(
        || LineReceiver::new(LineCollect::default()).with_delimiter(&b"\r\n"[..]),
        &stream,
        |p| p.handler().lines.clone(),
        &lines(&["a\nb", "c"]),
        20,
    );
    let mut t = RecordingTransport::new(
        LineReceiver::new(LineCollect::default()).with_delimiter(&b"\n"[..]),
    );
    t.with_protocol(|p, ctx| p.send_line(ctx, b"x\ry").unwrap());
    assert_eq!(t.written(), b"x\ry\n");
}

#[test]
fn a_line_of_exactly_the_maximum_passes_even_with_a_split_delimiter() {
    let max = 10;
    let mut stream = vec![b'a'; max];
    stream.extend_from_slice(b"\r\nb\r\n");
    every_chunking(
        || LineReceiver::new(LineCollect::default()).with_max_line_length(max),
        &stream,
        |p| (p.handler().lines.clone(), p.handler().lost.clone()),
        &(vec![vec![b'a'; max], b"b".to_vec()], None),
        10,
    );
}

#[test]
fn an_over_long_line_closes_that_connection_with_a_clear_reason() {
    let reason = Some(DisconnectReason::protocol("line longer than 10 bytes"));
    // Terminated: detected when the delimiter arrives.
    let mut stream = b"ok\r\n".to_vec();
    stream.extend_from_slice(&[b'a'; 11]);
    stream.extend_from_slice(b"\r\nnever\r\n");
    every_chunking(
        || LineReceiver::new(LineCollect::default()).with_max_line_length(10),
        &stream,
        |p| (p.handler().lines.clone(), p.handler().lost.clone()),
        &(lines(&["ok"]), reason.clone()),
        10,
    );
    // Unterminated: detected as soon as it cannot be a legal line any more.
    let mut t =
        RecordingTransport::new(LineReceiver::new(LineCollect::default()).with_max_line_length(10));
    t.receive(&[b'a'; 11]);
    assert!(
        t.lost().is_none(),
        "11 bytes could still be 10 + a split delimiter"
    );
    t.receive(b"a");
    assert_eq!(t.lost().cloned(), reason);
    assert_eq!(t.protocol().buffered_len(), 0);
}

#[test]
fn the_over_long_hook_can_keep_the_connection_and_skips_the_rest_of_the_line() {
    #[derive(Default, Clone, Debug, PartialEq)]
    struct Lenient(Vec<Vec<u8>>, usize);
    impl LineHandler for Lenient {
        fn line_received(&mut self, _: &mut Lines<'_, '_>, line: &[u8]) {
            self.0.push(line.to_vec());
        }
        fn line_length_exceeded(&mut self, lines: &mut Lines<'_, '_>, data: &[u8]) {
            assert!(data.len() <= 4 + 2, "{data:?}");
            self.1 += 1;
            lines.write(b"ERR\r\n");
        }
    }
    let stream = b"toolong\r\nrest\r\nwaytoolongindeed\r\nok\r\n";
    every_chunking(
        || LineReceiver::new(Lenient::default()).with_max_line_length(4),
        stream,
        |p| p.handler().clone(),
        &Lenient(lines(&["rest", "ok"]), 2),
        30,
    );
    let mut t =
        RecordingTransport::new(LineReceiver::new(Lenient::default()).with_max_line_length(4));
    t.receive(stream);
    assert_eq!(t.written(), b"ERR\r\nERR\r\n");
    assert!(t.lost().is_none());
}

/// Switches to raw mode on `RAW n` for n bytes, then back to lines.
#[derive(Default, Debug, PartialEq)]
struct Switcher {
    events: Vec<String>,
    want: usize,
    raw: Vec<u8>,
}

impl LineHandler for Switcher {
    fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]) {
        let line = String::from_utf8(line.to_vec()).unwrap();
        if let Some(n) = line.strip_prefix("RAW ") {
            self.want = n.parse().unwrap();
            lines.set_raw_mode();
        }
        self.events.push(format!("line:{line}"));
    }
    fn raw_data_received(&mut self, lines: &mut Lines<'_, '_>, data: &[u8]) {
        let take = (self.want - self.raw.len()).min(data.len());
        self.raw.extend_from_slice(&data[..take]);
        if self.raw.len() == self.want {
            let raw = std::mem::take(&mut self.raw);
            self.events
                .push(format!("raw:{}", String::from_utf8(raw).unwrap()));
            lines.set_line_mode(&data[take..]);
        }
    }
}

#[test]
fn raw_mode_switches_inside_callbacks_without_losing_bytes() {
    let stream = b"a\r\nRAW 5\r\nhe\r\nlRAW 2\r\nxyRAW 0\r\nb\r\nc\r\n";
    let want = vec![
        "line:a",
        "line:RAW 5",
        "raw:he\r\nl",
        "line:RAW 2",
        "raw:xy",
        "line:RAW 0",
        "raw:",
        "line:b",
        "line:c",
    ];
    // "RAW 0" takes no byte: the next raw delivery switches straight back,
    // keeping every byte.
    every_chunking(
        || LineReceiver::new(Switcher::default()),
        stream,
        |p| p.handler().events.clone(),
        &want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        30,
    );
}

#[test]
fn many_mode_switches_on_one_buffer_do_not_recurse() {
    let mut stream = vec![];
    for _ in 0..20_000 {
        stream.extend_from_slice(b"RAW 1\r\nz");
    }
    let mut t = RecordingTransport::new(LineReceiver::new(Switcher::default()));
    t.receive(&stream);
    assert_eq!(t.protocol().handler().events.len(), 40_000);
}

/// Pauses on `PAUSE` for a second.
#[derive(Default)]
struct Pauser(Vec<Vec<u8>>);

impl LineHandler for Pauser {
    fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]) {
        self.0.push(line.to_vec());
        if line == b"PAUSE" {
            lines.pause_reading();
            lines.call_later_self(
                Duration::from_secs(1),
                |p: &mut LineReceiver<Pauser>, ctx| p.resume_reading(ctx),
            );
        }
    }
}

#[test]
fn pausing_inside_line_received_stops_delivery_until_resumed() {
    let stream = b"a\r\nPAUSE\r\nb\r\nPAUSE\r\nc\r\n";
    let mut t = RecordingTransport::new(LineReceiver::new(Pauser::default()));
    t.receive(stream);
    assert_eq!(t.protocol().handler().0, lines(&["a", "PAUSE"]));
    t.receive(b"d\r\n");
    assert_eq!(t.protocol().handler().0.len(), 2, "delivered while paused");
    t.advance(Duration::from_secs(1));
    assert_eq!(
        t.protocol().handler().0,
        lines(&["a", "PAUSE", "b", "PAUSE"])
    );
    t.advance(Duration::from_secs(1));
    assert_eq!(
        t.protocol().handler().0,
        lines(&["a", "PAUSE", "b", "PAUSE", "c", "d"])
    );
    // Same through the pump under faults, whatever the cut.
    for seed in 0..30 {
        let mut pump = torsion::testing::Pump::with_faults(torsion::testing::Faults::chaos(seed));
        let link = pump.connect(Raw::default(), LineReceiver::new(Pauser::default()));
        pump.with_client(link, |_, ctx| ctx.write(stream));
        pump.flush();
        assert_eq!(
            pump.server(link).handler().0,
            lines(&["a", "PAUSE"]),
            "seed {seed}"
        );
        pump.advance(Duration::from_secs(1));
        pump.advance(Duration::from_secs(1));
        assert_eq!(pump.server(link).handler().0.len(), 5, "seed {seed}");
    }
}

#[test]
fn lines_stop_once_closing_and_clear_line_buffer_drops_the_rest() {
    struct Quitter(Vec<Vec<u8>>);
    impl LineHandler for Quitter {
        fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]) {
            self.0.push(line.to_vec());
            match line {
                b"QUIT" => lines.lose_connection(),
                b"CLEAR" => lines.clear_line_buffer(),
                _ => {}
            }
        }
    }
    let mut t = RecordingTransport::new(LineReceiver::new(Quitter(vec![])));
    t.receive(b"a\r\nCLEAR\r\nb\r\n");
    t.receive(b"c\r\nQUIT\r\nd\r\n");
    assert_eq!(
        t.protocol().handler().0,
        lines(&["a", "CLEAR", "c", "QUIT"])
    );
    assert_eq!(t.lost(), Some(&DisconnectReason::Done));
}

#[test]
fn send_line_refuses_what_the_peer_could_not_read_back() {
    let mut t =
        RecordingTransport::new(LineReceiver::new(LineCollect::default()).with_max_line_length(8));
    let r = t.with_protocol(|p, ctx| {
        (
            p.send_line(ctx, b"a\r\nb"),
            p.send_line(ctx, b"far too long"),
            p.send_line(ctx, b"fine"),
        )
    });
    assert_eq!(
        r,
        Some((
            Err(LineError::ContainsDelimiter),
            Err(LineError::LineTooLong { max: 8 }),
            Ok(())
        ))
    );
    assert_eq!(t.written(), b"fine\r\n");
}
