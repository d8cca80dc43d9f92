//! The scenarios, generic over the transport. Assertions inside callbacks are
//! caught by the reactor; the recorded panics fail the test at the end.

use bytes::Bytes;
use torsion::{Address, DisconnectReason, PanicPolicy, Reactor};

use super::script::{pattern, Hooks, Rec, ScriptFactory};
use super::Transport;
use crate::util::run_until;

struct Pair<T: Transport> {
    reactor: Reactor,
    server: Rec,
    client: Rec,
    addr: T::Addr,
}

/// Listens and connects once; `None` (after saying why) if the transport is
/// not available here.
fn connect<T: Transport>(server: Hooks, client: Hooks) -> Option<Pair<T>> {
    let mut reactor = Reactor::new().unwrap();
    reactor.set_panic_policy(PanicPolicy::Record);
    let (sf, srec) = ScriptFactory::new(server);
    let addr = match T::listen(&mut reactor, sf) {
        Ok(a) => a,
        Err(why) => {
            eprintln!("skipped: {why}");
            return None;
        }
    };
    let (cf, crec) = ScriptFactory::new(client);
    T::connect(&mut reactor, &addr, cf);
    Some(Pair {
        reactor,
        server: srec,
        client: crec,
        addr,
    })
}

impl<T: Transport> Pair<T> {
    /// Runs until both sides lost their connection and the client factory heard
    /// it; fails on any callback panic.
    fn run_to_end(&mut self) {
        let (s, c) = (self.server.clone(), self.client.clone());
        run_until(&mut self.reactor, || {
            s.borrow().lost.is_some()
                && c.borrow().events.last().is_some_and(|e| e == "client_lost")
        });
        self.reactor.assert_no_panics();
    }
}

fn events(rec: &Rec) -> Vec<String> {
    rec.borrow().events.clone()
}

fn lost(rec: &Rec) -> DisconnectReason {
    rec.borrow()
        .lost
        .clone()
        .expect("connection_lost was called")
}

pub fn lifecycle<T: Transport>() {
    let server = Hooks::default().on_data(|ctx, data, _| ctx.write(data));
    let client = Hooks::default()
        .on_made(|ctx, _| ctx.write(b"hello"))
        .on_data(|ctx, _, rec| {
            if rec.borrow().received.len() >= 5 {
                ctx.lose_connection();
            }
        });
    let Some(mut p) = connect::<T>(server, client) else {
        return;
    };
    p.run_to_end();
    assert_eq!(
        events(&p.client),
        ["started", "made", "data", "lost:Done", "client_lost"]
    );
    assert_eq!(events(&p.server), ["made", "data", "lost:Done"]);
    assert_eq!(p.client.borrow().received, b"hello");
    assert_eq!(p.server.borrow().received, b"hello");

    // Addresses: the client's peer and the server's host are the listener.
    let listener = T::address(&p.addr);
    assert_eq!(p.client.borrow().peer.as_ref(), Some(&listener));
    assert_eq!(p.server.borrow().host.as_ref(), Some(&listener));
    let server_peer = p.server.borrow().peer.clone().unwrap();
    assert_eq!(
        matches!(server_peer, Address::Inet(_)),
        T::INET,
        "{server_peer}"
    );
    assert_eq!(p.reactor.connection_count(), 0);
}

pub fn echo<T: Transport>() {
    const SIZES: [usize; 8] = [1, 2, 100, 1000, 4096, 65_536, 65_537, 300_000];
    let total: usize = SIZES.iter().sum();
    let data = pattern(total);
    let sent = data.clone();
    let server = Hooks::default().on_data(|ctx, data, _| ctx.write(data));
    let client = Hooks::default()
        .on_made(move |ctx, _| {
            let mut at = 0;
            for n in SIZES {
                ctx.write(&sent[at..at + n]);
                at += n;
            }
        })
        .on_data(move |ctx, _, rec| {
            if rec.borrow().received.len() >= total {
                ctx.lose_connection();
            }
        });
    let Some(mut p) = connect::<T>(server, client) else {
        return;
    };
    p.run_to_end();
    assert!(p.client.borrow().received == data, "echo differs");
    assert_eq!(lost(&p.client), DisconnectReason::Done);
}

pub fn large_transfer<T: Transport>() {
    const LEN: usize = 10 * 1024 * 1024 + 17;
    let data = Bytes::from(pattern(LEN));
    let sent = data.clone();
    // The server echoes and stops reading while its peer is not reading.
    let server = Hooks::default()
        .on_data(|ctx, data, _| ctx.write(data))
        .on_pause(|ctx, _| ctx.pause_reading())
        .on_resume(|ctx, _| ctx.resume_reading());
    let client = Hooks::default()
        .on_made(move |ctx, _| ctx.write_bytes(sent.clone()))
        .on_data(|ctx, _, rec| {
            if rec.borrow().received.len() >= LEN {
                ctx.lose_connection();
            }
        });
    let Some(mut p) = connect::<T>(server, client) else {
        return;
    };
    p.run_to_end();
    let c = p.client.borrow();
    assert_eq!(c.received.len(), LEN);
    assert!(c.received[..] == data[..], "10 MiB echo differs");
    assert_eq!(c.lost, Some(DisconnectReason::Done));
}

pub fn lose_connection_delivers_everything<T: Transport>() {
    const LEN: usize = 4 * 1024 * 1024;
    let data = pattern(LEN);
    let sent = data.clone();
    let server = Hooks::default().on_made(move |ctx, _| {
        for chunk in sent.chunks(64 * 1024) {
            ctx.write(chunk);
        }
        ctx.lose_connection();
        assert!(
            ctx.try_write(b"late").is_err(),
            "write after lose_connection"
        );
    });
    let Some(mut p) = connect::<T>(server, Hooks::default()) else {
        return;
    };
    p.run_to_end();
    assert!(
        p.client.borrow().received == data,
        "lost or reordered bytes"
    );
    assert_eq!(lost(&p.client), DisconnectReason::Done);
    assert_eq!(lost(&p.server), DisconnectReason::Done);
}

pub fn abort_drops<T: Transport>() {
    let server = Hooks::default().on_data(|ctx, _, _| {
        ctx.write(&vec![7u8; 1024 * 1024]);
        ctx.abort_connection();
        assert!(ctx.try_write(b"late").is_err(), "write after abort");
    });
    let client = Hooks::default().on_made(|ctx, _| ctx.write(b"go"));
    let Some(mut p) = connect::<T>(server, client) else {
        return;
    };
    p.run_to_end();
    assert_eq!(lost(&p.server), DisconnectReason::Aborted);
    assert!(
        p.client.borrow().received.is_empty(),
        "bytes written before the abort reached the peer"
    );
    let reason = lost(&p.client);
    if T::ABORT_RESETS {
        assert_eq!(reason, DisconnectReason::Reset);
    } else {
        assert!(
            matches!(reason, DisconnectReason::Reset | DisconnectReason::Done)
                || (T::TLS && matches!(reason, DisconnectReason::Tls(_))),
            "{reason:?}"
        );
    }
}

pub fn half_close<T: Transport>() {
    let server = Hooks::default()
        .on_made(|ctx, _| ctx.set_half_close(true))
        .on_read_lost(|ctx, rec| {
            assert_eq!(rec.borrow().received, b"request");
            ctx.write(b"response");
            ctx.lose_connection();
        });
    let client = Hooks::default().on_made(|ctx, _| {
        ctx.set_half_close(true);
        ctx.write(b"request");
        ctx.lose_write_connection();
    });
    let Some(mut p) = connect::<T>(server, client) else {
        return;
    };
    p.run_to_end();
    assert_eq!(
        events(&p.server),
        ["made", "data", "read_lost", "lost:Done"]
    );
    assert_eq!(
        events(&p.client),
        [
            "started",
            "made",
            "write_lost",
            "data",
            "lost:Done",
            "client_lost"
        ]
    );
    assert_eq!(p.client.borrow().received, b"response");
}

pub fn back_pressure<T: Transport>() {
    // More than the kernel buffers of both sides hold, so most of it waits in
    // the server's write buffer while the client does not read.
    const LEN: usize = 16 * 1024 * 1024;
    let data = pattern(LEN);
    let sent = data.clone();
    let server = Hooks::default()
        .on_made(move |ctx, _| ctx.write(&sent))
        .on_resume(|ctx, _| ctx.lose_connection());
    let client = Hooks::default().on_made(|ctx, _| ctx.pause_reading());
    let Some(mut p) = connect::<T>(server, client) else {
        return;
    };
    let (s, c) = (p.server.clone(), p.client.clone());
    // (Over TLS the server may pause before the client's handshake is done,
    // so wait for the client's connection too.)
    run_until(&mut p.reactor, || {
        s.borrow().events.iter().any(|e| e == "pause_writing") && c.borrow().handle.is_some()
    });
    assert!(
        p.client.borrow().received.is_empty(),
        "a paused reader got data"
    );
    let handle = p.client.borrow().handle.unwrap();
    p.reactor.connection(handle).resume_reading();
    p.run_to_end();
    assert_eq!(
        events(&p.server),
        ["made", "pause_writing", "resume_writing", "lost:Done"]
    );
    assert!(
        p.client.borrow().received == data,
        "bytes lost under back-pressure"
    );
    assert_eq!(lost(&p.client), DisconnectReason::Done);
}
