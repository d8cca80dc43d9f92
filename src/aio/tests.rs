//! Async connections over the in-memory pump, on the fake clock.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::defer::{Deferred, Failure, TimedOut};
use crate::testing::{Direction, Faults, Pump, PumpConfig};
use crate::transport::DEFAULT_HIGH_WATER;
use crate::{Context, DisconnectReason, Protocol};

/// Echoes; stops reading while its echo is not read.
struct Echo;
impl Protocol for Echo {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        ctx.write(data);
    }
    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        ctx.pause_reading();
    }
    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        ctx.resume_reading();
    }
}

/// Records what it receives; sends `greeting` and closes if asked.
#[derive(Default)]
struct Peer {
    got: Vec<u8>,
    greeting: Vec<u8>,
    close_after_greeting: bool,
    paused: bool,
    half_close: bool,
    eof: bool,
}
impl Protocol for Peer {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.write(&self.greeting);
        if self.close_after_greeting {
            ctx.lose_connection();
        }
        if self.paused {
            ctx.pause_reading();
        }
        ctx.set_half_close(self.half_close);
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
    }
    fn read_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.eof = true;
        ctx.write(format!("got {}\n", self.got.len()).as_bytes());
        ctx.lose_connection();
    }
}

fn spawn<T: 'static>(
    pump: &mut Pump,
    f: impl std::future::Future<Output = Result<T, StreamError>> + 'static,
) -> Deferred<T, StreamError> {
    pump.core_mut().spawn_local(f)
}

fn done<T: 'static>(d: &mut Deferred<T, StreamError>) -> Result<T, StreamError> {
    d.take_result().expect("the task has finished")
}

/// Three lines, each echo awaited, then a clean close: the same result for
/// any way the bytes are split and delayed, and the same run for a seed.
#[test]
fn lines_over_a_faulty_pump_are_deterministic() {
    for seed in 0..30 {
        let run = || {
            let mut pump = Pump::with_faults(Faults::chaos(seed));
            let (protocol, connecting) = protocol();
            let link = pump.connect(protocol, Echo);
            let trace = Rc::new(RefCell::new(Vec::new()));
            let t = trace.clone();
            let mut task = spawn(&mut pump, async move {
                let mut conn = connecting.await?;
                for line in ["one", "two", "three"] {
                    conn.write_all(format!("{line}\n").as_bytes()).await?;
                    let echo = conn.read_line(100).await?;
                    t.borrow_mut().push(echo);
                }
                conn.close().await
            });
            let rounds = pump.flush();
            done(&mut task).unwrap();
            assert_eq!(pump.server_lost(link), Some(&DisconnectReason::Done));
            let trace = trace.borrow().clone();
            (trace, rounds)
        };
        let (trace, rounds) = run();
        assert_eq!(trace, ["one\n", "two\n", "three\n"], "seed {seed}");
        assert_eq!(run(), (trace, rounds), "seed {seed} replays the same");
    }
}

/// A reset in the middle reaches the async code as a typed error, never a
/// panic or a hang, for every reset point.
#[test]
fn resets_are_typed_errors() {
    for byte in [0u64, 1, 5, 9, 13] {
        let mut pump = Pump::with_faults(Faults::new(byte).split_writes());
        let (protocol, connecting) = protocol();
        let link = pump.connect(protocol, Echo);
        pump.reset_at(link, Direction::ServerToClient, byte);
        let mut task = spawn(&mut pump, async move {
            let mut conn = connecting.await?;
            let mut got = Vec::new();
            for line in ["one", "two", "three"] {
                conn.write_all(format!("{line}\n").as_bytes()).await?;
                got.push(conn.read_line(100).await?);
            }
            Ok(got)
        });
        pump.flush();
        match done(&mut task) {
            Err(StreamError::Reset) => {}
            other => panic!("reset at {byte}: {other:?}"),
        }
    }
}

#[test]
fn read_line_limits_and_end_of_stream() {
    let mut pump = Pump::new();
    let (protocol, connecting) = protocol_with(StreamOptions {
        input_buffer: 16,
        ..StreamOptions::default()
    });
    let mut greeting = vec![b'x'; 40];
    greeting.extend_from_slice(b"\nshort\r\nlast");
    pump.connect(
        protocol,
        Peer {
            greeting,
            close_after_greeting: true,
            ..Peer::default()
        },
    );
    let mut task = spawn(&mut pump, async move {
        let mut conn = connecting.await?;
        // Longer than the input buffer: the limit rises while the line waits.
        let err = conn.read_line(30).await.unwrap_err();
        assert!(matches!(err, StreamError::LineTooLong { max: 30 }), "{err}");
        assert_eq!(err.to_string(), "line longer than 30 bytes");
        let long = conn.read_line(40).await?;
        assert_eq!(long.len(), 41);
        assert_eq!(conn.read_line(40).await?, "short\r\n");
        assert_eq!(conn.read_line(40).await?, "last");
        assert_eq!(conn.read_line(40).await?, "");
        let mut buf = [0; 4];
        assert_eq!(conn.read(&mut buf).await?, 0);
        Ok(())
    });
    pump.flush();
    done(&mut task).unwrap();
}

#[test]
fn read_exact_and_bad_utf8() {
    let mut pump = Pump::new();
    let (protocol, connecting) = protocol();
    pump.connect(
        protocol,
        Peer {
            greeting: b"\xff\xfe\nabc".to_vec(),
            close_after_greeting: true,
            ..Peer::default()
        },
    );
    let mut task = spawn(&mut pump, async move {
        let mut conn = connecting.await?;
        assert!(matches!(
            conn.read_line(10).await,
            Err(StreamError::InvalidUtf8)
        ));
        let mut buf = [0; 5];
        let err = conn.read_exact(&mut buf).await.unwrap_err();
        assert!(matches!(err, StreamError::UnexpectedEof { missing: 2 }));
        assert_eq!(&buf[..3], b"abc");
        Ok(())
    });
    pump.flush();
    done(&mut task).unwrap();
}

/// A reader that does not read stops the transport reading: the input
/// buffer stays at its bound, the rest waits on the wire and in the peer's
/// buffer; reading drains it all.
#[test]
fn a_full_input_buffer_pauses_the_transport() {
    const TOTAL: usize = 4 << 20;
    const BOUND: usize = 64 * 1024;
    let mut pump = Pump::with_config(PumpConfig {
        wire_capacity: 16 * 1024,
        ..PumpConfig::default()
    });
    let (protocol, connecting) = protocol_with(StreamOptions {
        input_buffer: BOUND,
        ..StreamOptions::default()
    });
    let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let link = pump.connect(
        protocol,
        Peer {
            greeting: data.clone(),
            close_after_greeting: true,
            ..Peer::default()
        },
    );
    let (go, start) = Deferred::<(), Failure>::new();
    let conn_slot = Rc::new(RefCell::new(None));
    let slot = conn_slot.clone();
    let mut task = spawn(&mut pump, async move {
        let conn = connecting.await?;
        *slot.borrow_mut() = Some(conn);
        go.await.ok();
        let mut conn = slot.borrow_mut().take().unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0; 10_000];
        let mut peak = 0;
        loop {
            peak = peak.max(conn.input_buffered());
            match conn.read(&mut buf).await? {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        Ok((got, peak))
    });
    pump.flush();
    {
        let c = conn_slot.borrow();
        let conn = c.as_ref().unwrap();
        let buffered = conn.input_buffered();
        assert!(buffered >= BOUND, "filled up to the bound: {buffered}");
        assert!(
            buffered <= BOUND + 16 * 1024,
            "one read past it at most: {buffered}"
        );
    }
    let (_client, server) = pump.buffered(link);
    assert!(server > TOTAL / 2, "the rest waits at the sender: {server}");
    start.callback(()).unwrap();
    pump.flush();
    let (got, peak) = done(&mut task).unwrap();
    assert!(got == data, "all {} bytes arrive, in order", TOTAL);
    assert!(peak <= BOUND + 16 * 1024, "peak {peak}");
}

/// `write_all` waits while the transport is above its high water mark: a
/// peer that does not read holds the writer, with bounded buffers.
#[test]
fn write_all_waits_for_a_peer_that_does_not_read() {
    const TOTAL: usize = 8 << 20;
    let mut pump = Pump::with_config(PumpConfig {
        wire_capacity: 32 * 1024,
        ..PumpConfig::default()
    });
    let (protocol, connecting) = protocol();
    let link = pump.connect(
        protocol,
        Peer {
            paused: true,
            ..Peer::default()
        },
    );
    let mut task = spawn(&mut pump, async move {
        let mut conn = connecting.await?;
        let data = vec![7u8; TOTAL];
        conn.write_all(&data).await?;
        conn.flush().await?;
        Ok(())
    });
    pump.flush();
    assert!(!task.has_result(), "the writer waits");
    let (client, _) = pump.buffered(link);
    assert!(
        client > DEFAULT_HIGH_WATER,
        "the transport is over its mark: {client}"
    );
    assert!(client <= 2 * DEFAULT_HIGH_WATER, "but bounded: {client}");
    pump.with_server(link, |_p: &mut Peer, ctx| ctx.resume_reading());
    pump.flush();
    done(&mut task).unwrap();
    assert_eq!(pump.server(link).got.len(), TOTAL);
    assert_eq!(
        pump.buffered(link),
        (0, 0),
        "flush waited for the last byte"
    );
}

#[test]
fn flush_waits_until_the_transport_is_empty() {
    let mut pump = Pump::with_config(PumpConfig {
        wire_capacity: 1024,
        ..PumpConfig::default()
    });
    let (protocol, connecting) = protocol();
    let link = pump.connect(
        protocol,
        Peer {
            paused: true,
            ..Peer::default()
        },
    );
    let mut task = spawn(&mut pump, async move {
        let mut conn = connecting.await?;
        conn.write_all(&[1; 10_000]).await?;
        conn.flush().await?;
        assert_eq!(conn.write_buffered(), 0);
        Ok(conn)
    });
    pump.flush();
    assert!(!task.has_result());
    assert!(pump.buffered(link).0 > 0);
    pump.with_server(link, |_p: &mut Peer, ctx| ctx.resume_reading());
    pump.flush();
    let conn = done(&mut task).unwrap();
    assert_eq!(pump.buffered(link).0, 0);
    assert_eq!(pump.server(link).got.len(), 10_000);
    // The water marks are back: writes after a flush are not held.
    assert_eq!(conn.options().write_high_water, DEFAULT_HIGH_WATER);
}

/// Half-close: after `shutdown_write` the peer sees the end of stream and
/// can still answer.
#[test]
fn shutdown_write_half_closes() {
    let mut pump = Pump::with_faults(Faults::chaos(3));
    let (protocol, connecting) = protocol();
    let link = pump.connect(
        protocol,
        Peer {
            half_close: true,
            ..Peer::default()
        },
    );
    let mut task = spawn(&mut pump, async move {
        let mut conn = connecting.await?;
        conn.write_all(b"abcdef").await?;
        conn.shutdown_write().await?;
        assert!(matches!(
            conn.write_all(b"more").await,
            Err(StreamError::Closed)
        ));
        let answer = conn.read_line(100).await?;
        assert_eq!(conn.read_line(100).await?, "");
        Ok(answer)
    });
    pump.flush();
    assert_eq!(done(&mut task).unwrap(), "got 6\n");
    assert!(pump.server(link).eof);
    assert_eq!(pump.client_lost(link), Some(&DisconnectReason::Done));
}

#[test]
fn dropping_a_connection_closes_it_after_its_writes() {
    let mut pump = Pump::new();
    let (protocol, connecting) = protocol();
    let link = pump.connect(protocol, Peer::default());
    let mut task = spawn(&mut pump, async move {
        let mut conn = connecting.await?;
        conn.write_all(b"last words").await?;
        Ok(())
    });
    pump.flush();
    done(&mut task).unwrap();
    assert_eq!(pump.server(link).got, b"last words");
    assert_eq!(pump.server_lost(link), Some(&DisconnectReason::Done));
}

#[test]
fn abort_resets_the_peer() {
    let mut pump = Pump::new();
    let (protocol, connecting) = protocol();
    let link = pump.connect(protocol, Peer::default());
    let mut task = spawn(&mut pump, async move {
        connecting.await?.abort();
        Ok(())
    });
    pump.flush();
    done(&mut task).unwrap();
    assert_eq!(pump.client_lost(link), Some(&DisconnectReason::Aborted));
    assert_eq!(pump.server_lost(link), Some(&DisconnectReason::Reset));
}

/// `sleep` and `timeout` run on the fake clock: nothing happens until the
/// test moves it, and a dropped sleep cancels its timer.
#[test]
fn sleep_and_timeout_follow_the_fake_clock() {
    let mut pump = Pump::new();
    let local = pump.core_mut().local();
    let mut task = spawn(&mut pump, async move {
        sleep(&local, Duration::from_secs(10)).await;
        let r = timeout(
            &local,
            Duration::from_secs(5),
            sleep(&local, Duration::from_secs(60)),
        )
        .await;
        assert_eq!(r, Err(TimedOut));
        let quick = timeout(&local, Duration::from_secs(5), async { 42 }).await;
        assert_eq!(quick, Ok(42));
        // A delay past the clock's range never ends (and does not panic).
        let never = timeout(&local, Duration::from_secs(1), sleep(&local, Duration::MAX)).await;
        assert_eq!(never, Err(TimedOut));
        Ok(())
    });
    pump.flush();
    pump.advance(Duration::from_secs(9));
    assert!(!task.has_result());
    pump.advance(Duration::from_secs(1));
    assert!(!task.has_result());
    pump.advance(Duration::from_secs(5));
    assert!(!task.has_result());
    pump.advance(Duration::from_secs(1));
    done(&mut task).unwrap();
    assert_eq!(
        pump.clock().pending_calls(),
        0,
        "the dropped sleeps' timers are cancelled"
    );
}

/// An async server (accept queue) and a protocol-style client in one pump.
#[test]
fn an_async_server_serves_a_protocol_client() {
    let mut pump = Pump::with_faults(Faults::chaos(11));
    let (mut factory, mut listener) = accept_queue();
    let local = pump.core_mut().local();
    let mut server = spawn(&mut pump, async move {
        let mut served = 0;
        while served < 2 {
            let mut conn = listener.accept().await?;
            served += 1;
            local.spawn_local(async move {
                let line = conn.read_line(100).await?;
                conn.write_all(line.to_uppercase().as_bytes()).await?;
                conn.close().await
            });
        }
        Ok(served)
    });
    let a = pump
        .connect_factory(
            Peer {
                greeting: b"hello\n".to_vec(),
                ..Peer::default()
            },
            &mut factory,
        )
        .unwrap();
    let b = pump
        .connect_factory(
            Peer {
                greeting: b"world\n".to_vec(),
                ..Peer::default()
            },
            &mut factory,
        )
        .unwrap();
    pump.flush();
    assert_eq!(done(&mut server).unwrap(), 2);
    assert_eq!(pump.client(a).got, b"HELLO\n");
    assert_eq!(pump.client(b).got, b"WORLD\n");
    assert_eq!(pump.client_lost(a), Some(&DisconnectReason::Done));
    assert_eq!(pump.client_lost(b), Some(&DisconnectReason::Done));
}

/// The `futures_io` traits, polled by hand as an adapter would.
#[test]
fn futures_io_traits() {
    use futures_io::{AsyncRead, AsyncWrite};
    let mut pump = Pump::with_faults(Faults::chaos(5));
    let (protocol, connecting) = protocol();
    pump.connect(protocol, Echo);
    let mut task = spawn(&mut pump, async move {
        let mut conn = connecting.await?;
        let mut sent = 0;
        let data = b"through the traits";
        while sent < data.len() {
            sent += poll_fn(|cx| Pin::new(&mut conn).poll_write(cx, &data[sent..]))
                .await
                .unwrap();
        }
        poll_fn(|cx| Pin::new(&mut conn).poll_flush(cx))
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 7];
        while got.len() < data.len() {
            let n = poll_fn(|cx| Pin::new(&mut conn).poll_read(cx, &mut buf))
                .await
                .unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        poll_fn(|cx| Pin::new(&mut conn).poll_close(cx))
            .await
            .unwrap();
        let e = poll_fn(|cx| Pin::new(&mut conn).poll_write(cx, b"x"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
        Ok(got)
    });
    pump.flush();
    assert_eq!(done(&mut task).unwrap(), b"through the traits");
}

#[test]
fn a_protocol_dropped_unconnected_fails_its_connecting() {
    let mut pump = Pump::new();
    let (protocol, connecting) = protocol();
    let mut task = spawn(&mut pump, async move { connecting.await.map(drop) });
    pump.flush();
    assert!(!task.has_result());
    drop(protocol); // as a refused connect drops the protocol it never built on
    pump.flush();
    assert!(matches!(
        done(&mut task),
        Err(StreamError::Lost(DisconnectReason::Cancelled))
    ));
}

/// Past the backlog, connections are refused; dropping the listener closes
/// those not accepted and refuses new ones.
#[test]
fn the_accept_backlog_is_bounded() {
    let mut pump = Pump::new();
    let (mut factory, mut listener) = accept_queue();
    listener.set_backlog(2);
    let a = pump.connect_factory(Peer::default(), &mut factory).unwrap();
    let b = pump.connect_factory(Peer::default(), &mut factory).unwrap();
    assert!(pump
        .connect_factory(Peer::default(), &mut factory)
        .is_none());
    pump.flush();
    assert_eq!(listener.waiting(), 2);
    assert_eq!(listener.address(), None);
    drop(listener);
    pump.flush();
    assert_eq!(pump.client_lost(a), Some(&DisconnectReason::Done));
    assert_eq!(pump.client_lost(b), Some(&DisconnectReason::Done));
    assert!(pump
        .connect_factory(Peer::default(), &mut factory)
        .is_none());
}

/// Futures made with the handle of a reactor that is gone fail with
/// `ReactorGone` instead of waiting forever.
#[test]
fn a_gone_reactor_is_a_typed_error() {
    let local = crate::Reactor::new().unwrap().local(); // the reactor is dropped
    let exec = crate::defer::LocalExecutor::new();
    let addr = "127.0.0.1:9".parse().unwrap();
    let mut connect = exec.spawn(connect_tcp(&local, addr));
    let l = local.clone();
    let mut listen = exec.spawn(async move { listen_tcp(&l, addr).await.map(drop) });
    exec.run_ready();
    assert!(matches!(
        connect.take_result(),
        Some(Err(StreamError::ReactorGone))
    ));
    assert!(matches!(
        listen.take_result(),
        Some(Err(StreamError::ReactorGone))
    ));
}
