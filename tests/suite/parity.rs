//! One engine, one behaviour: the same scripted conversation over a TCP
//! socket, the in-memory pump, TLS over the pump and TLS over TCP must give
//! each side the same callbacks in the same order, the same bytes and the
//! same reasons. (The transports differ only in their sinks; a difference
//! here is engine code that one of them does not share.)
//!
//! `pause_writing`/`resume_writing` are left out of the comparison: when they
//! come depends on how much each transport's buffers hold (a kernel's socket
//! buffers, the pump's wire capacity), not on the engine.

use torsion::testing::{assert_no_panics, Pump};
use torsion::tls::{self, TlsProtocol};
use torsion::{DisconnectReason, PanicPolicy, Reactor};

use super::script::{pattern, Hooks, Rec, ScriptFactory};
use super::tls::TlsTcp;
use super::tls_util::shared_certs;
use super::{TcpV4, Transport};
use crate::util::run_until;

/// What one side saw.
#[derive(Debug, PartialEq)]
pub struct Side {
    pub events: Vec<String>,
    pub received: Vec<u8>,
}

fn side(rec: &Rec) -> Side {
    let r = rec.borrow();
    Side {
        events: r
            .events
            .iter()
            .filter(|e| {
                !matches!(
                    e.as_str(),
                    // The client factory's (the pump has none) and the
                    // buffer-size dependent ones.
                    "started" | "client_lost" | "pause_writing" | "resume_writing"
                )
            })
            .cloned()
            .collect(),
        received: r.received.clone(),
    }
}

/// A scenario: the server's script and the client's.
pub type Scenario = fn() -> (Hooks, Hooks);

/// Runs `scenario` over a reactor transport; `None` if it is not available.
fn over_socket<T: Transport>(scenario: Scenario) -> Option<(Side, Side)> {
    let (server, client) = scenario();
    let mut reactor = Reactor::new().unwrap();
    reactor.set_panic_policy(PanicPolicy::Record);
    let (sf, srec) = ScriptFactory::new(server);
    let addr = T::listen(&mut reactor, sf).ok()?;
    let (cf, crec) = ScriptFactory::new(client);
    T::connect(&mut reactor, &addr, cf);
    let (s, c) = (srec.clone(), crec.clone());
    run_until(&mut reactor, || {
        s.borrow().lost.is_some() && c.borrow().events.last().is_some_and(|e| e == "client_lost")
    });
    reactor.assert_no_panics();
    Some((side(&srec), side(&crec)))
}

/// Runs `scenario` over the pump, plain or with TLS on both ends.
fn over_pump(scenario: Scenario, with_tls: bool) -> (Side, Side) {
    let (server, client) = scenario();
    let mut pump = Pump::new();
    let (mut sf, srec) = ScriptFactory::new(server);
    let (mut cf, crec) = ScriptFactory::new(client);
    if with_tls {
        let certs = shared_certs();
        let name = tls::server_name("localhost").unwrap();
        pump.connect(
            TlsProtocol::client(certs.client(), name, cf.script()).unwrap(),
            TlsProtocol::server(certs.server(), sf.script()).unwrap(),
        );
    } else {
        pump.connect(cf.script(), sf.script());
    }
    pump.flush();
    assert_no_panics(pump.core_mut());
    assert!(
        srec.borrow().lost.is_some(),
        "the server never lost its connection"
    );
    assert!(
        crec.borrow().lost.is_some(),
        "the client never lost its connection"
    );
    (side(&srec), side(&crec))
}

/// Runs `scenario` everywhere and checks every run against the TCP one.
pub fn same_everywhere(scenario: Scenario, expect_server: &[&str], expect_client: &[&str]) {
    let tcp = over_socket::<TcpV4>(scenario).expect("TCP over 127.0.0.1");
    assert_eq!(tcp.0.events, expect_server, "server over TCP");
    assert_eq!(tcp.1.events, expect_client, "client over TCP");
    let runs = [
        ("the pump", Some(over_pump(scenario, false))),
        ("TLS over the pump", Some(over_pump(scenario, true))),
        ("TLS over TCP", over_socket::<TlsTcp>(scenario)),
    ];
    for (name, run) in runs {
        let (server, client) = run.unwrap_or_else(|| panic!("{name} is not available"));
        assert_eq!(server, tcp.0, "server over {name} differs from TCP");
        assert_eq!(client, tcp.1, "client over {name} differs from TCP");
    }
}

const SIZE: usize = 200_000;

/// The client sends a pattern, the server echoes it, the client closes once
/// it has everything.
pub fn echo() -> (Hooks, Hooks) {
    let server = Hooks::default().on_data(|ctx, data, _| ctx.write(data));
    let client = Hooks::default()
        .on_made(|ctx, _| ctx.write(&pattern(SIZE)))
        .on_data(|ctx, _, rec| {
            if rec.borrow().received.len() == SIZE {
                ctx.lose_connection();
            }
        });
    (server, client)
}

/// The server writes a large greeting and closes at once: everything
/// arrives, then a clean end.
pub fn greet_and_close() -> (Hooks, Hooks) {
    let server = Hooks::default().on_made(|ctx, _| {
        ctx.write(&pattern(SIZE));
        ctx.lose_connection();
    });
    (server, Hooks::default())
}

/// Half-close: the client asks and shuts its write side; the server answers
/// after the client's end of stream, then closes.
pub fn half_close() -> (Hooks, Hooks) {
    let server = Hooks::default()
        .on_made(|ctx, _| ctx.set_half_close(true))
        .on_read_lost(|ctx, _| {
            ctx.write(b"answer");
            ctx.lose_connection();
        });
    let client = Hooks::default().on_made(|ctx, _| {
        ctx.write(b"question");
        ctx.lose_write_connection();
    });
    (server, client)
}

/// The client aborts once the server's greeting arrived: the server hears a
/// reset, the client `Aborted`.
pub fn abort_after_greeting() -> (Hooks, Hooks) {
    let server = Hooks::default().on_made(|ctx, _| ctx.write(b"hello"));
    let client = Hooks::default().on_data(|ctx, _, rec| {
        if rec.borrow().received.len() == 5 {
            ctx.abort_connection();
        }
    });
    (server, client)
}

/// A stream source feeds the client; the server closes when it ends.
pub fn stream_then_close() -> (Hooks, Hooks) {
    let server = Hooks::default()
        .on_made(|ctx, _| {
            let data = pattern(SIZE);
            let chunks: Vec<bytes::Bytes> = data
                .chunks(4096)
                .map(bytes::Bytes::copy_from_slice)
                .collect();
            ctx.stream_from(chunks.into_iter().map(Ok));
        })
        .on_streamed(|ctx, _| ctx.lose_connection());
    (server, Hooks::default())
}

/// The server closes gracefully with a reason of its own after bad input:
/// it hears that reason, the client a clean end.
pub fn close_with_a_reason() -> (Hooks, Hooks) {
    let server = Hooks::default().on_data(|ctx, _, _| {
        ctx.lose_connection_with(DisconnectReason::protocol("expected a greeting"));
    });
    let client = Hooks::default().on_made(|ctx, _| ctx.write(b"nonsense"));
    (server, client)
}
