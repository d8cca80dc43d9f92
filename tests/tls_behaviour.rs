//! The stream behaviours every transport promises (lifecycle, echo, large
//! transfer, close semantics, back-pressure), over TLS on TCP. The helpers
//! `listen` / `connect` in `tls_util` are the TLS plug-in for the
//! cross-transport behaviour suite.
#![cfg(feature = "tls")]

mod tls_util;
mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::Address;
use torsion::{ClientFactory, Context, DisconnectReason, Error, Factory, Protocol, Reactor};
use util::*;

type Events = Rc<RefCell<Vec<String>>>;

/// A scripted peer: what it does on connect, and a log of what it saw.
struct Scripted {
    log: Events,
    on_made: fn(&mut Context<'_>),
    on_data: fn(&mut Context<'_>),
    received: Rc<RefCell<Vec<u8>>>,
}

impl Protocol for Scripted {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.log.borrow_mut().push("made".into());
        (self.on_made)(ctx);
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        self.received.borrow_mut().extend_from_slice(data);
        (self.on_data)(ctx);
    }
    fn pause_writing(&mut self, _ctx: &mut Context<'_>) {
        self.log.borrow_mut().push("pause_writing".into());
    }
    fn resume_writing(&mut self, _ctx: &mut Context<'_>) {
        self.log.borrow_mut().push("resume_writing".into());
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.log.borrow_mut().push(format!("lost:{reason}"));
    }
}

#[derive(Clone)]
struct Script {
    log: Events,
    on_made: fn(&mut Context<'_>),
    on_data: fn(&mut Context<'_>),
    received: Rc<RefCell<Vec<u8>>>,
}

impl Script {
    fn new(on_made: fn(&mut Context<'_>)) -> Script {
        Script {
            log: Events::default(),
            on_made,
            on_data: |_| {},
            received: Rc::default(),
        }
    }
    fn on_data(mut self, f: fn(&mut Context<'_>)) -> Script {
        self.on_data = f;
        self
    }
    fn protocol(&self) -> Scripted {
        Scripted {
            log: self.log.clone(),
            on_made: self.on_made,
            on_data: self.on_data,
            received: self.received.clone(),
        }
    }
    /// Events but the back-pressure ones.
    fn lifecycle(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| !e.ends_with("_writing"))
            .collect()
    }
    fn lost(&self) -> bool {
        self.log.borrow().iter().any(|e| e.starts_with("lost:"))
    }
    fn events(&self) -> Vec<String> {
        self.log.borrow().clone()
    }
}

impl Factory for Script {
    type Protocol = Scripted;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Scripted> {
        Some(self.protocol())
    }
}

impl ClientFactory for Script {
    type Protocol = Scripted;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Scripted> {
        Some(self.protocol())
    }
}

fn pair(server: &Script, client: &Script) -> Reactor {
    let mut reactor = Reactor::new().unwrap();
    let addr = tls_util::listen(&mut reactor, server.clone());
    tls_util::connect(&mut reactor, addr, client.clone());
    reactor
}

#[test]
fn lifecycle_made_once_lost_once_in_order() {
    // The client writes and closes; the server echoes nothing and sees the end.
    let server = Script::new(|_| {});
    let client = Script::new(|ctx| {
        ctx.write(b"hello");
        ctx.lose_connection();
    });
    let mut reactor = pair(&server, &client);
    run_until(&mut reactor, || client.lost() && server.lost());
    assert_eq!(server.received.borrow().as_slice(), b"hello");
    assert_eq!(client.events(), ["made", "lost:connection closed cleanly"]);
    assert_eq!(server.events(), ["made", "lost:connection closed cleanly"]);
    assert!(reactor
        .run_until(DEADLINE, |r| r.connection_count() == 0)
        .unwrap());
}

#[test]
fn data_written_before_lose_connection_all_arrives_then_a_clean_end() {
    let server = Script::new(|ctx| {
        ctx.write(&vec![7u8; 300_000]);
        ctx.lose_connection();
        assert!(matches!(
            ctx.try_write(b"late"),
            Err(Error::ConnectionClosed)
        ));
    });
    let client = Script::new(|_| {});
    let mut reactor = pair(&server, &client);
    run_until(&mut reactor, || client.lost() && server.lost());
    assert_eq!(client.received.borrow().len(), 300_000);
    assert_eq!(
        client.lifecycle(),
        ["made", "lost:connection closed cleanly"]
    );
    assert_eq!(
        server.lifecycle(),
        ["made", "lost:connection closed cleanly"]
    );
}

#[test]
fn abort_drops_what_is_buffered_and_the_peer_sees_an_unclean_end() {
    // After the handshake: the client says go, the server writes a lot and aborts.
    let server = Script::new(|_| {}).on_data(|ctx| {
        ctx.write(&vec![1u8; 8 << 20]);
        ctx.abort_connection();
    });
    let client = Script::new(|ctx| ctx.write(b"go"));
    let mut reactor = pair(&server, &client);
    run_until(&mut reactor, || client.lost() && server.lost());
    assert_eq!(server.lifecycle(), ["made", "lost:connection aborted"]);
    let last = client.events().pop().unwrap();
    assert!(last != "lost:connection closed cleanly", "{last}");
    assert!(client.received.borrow().len() < 8 << 20);
}

#[test]
fn a_peer_that_does_not_read_pauses_the_writer_until_it_reads_again() {
    // The client stops reading for a while; the server writes 4 MiB.
    let client = Script::new(|ctx| {
        ctx.pause_reading();
        ctx.call_later_self::<Scripted>(Duration::from_millis(300), |_, ctx| ctx.resume_reading());
    });
    let server = Script::new(|ctx| {
        ctx.write(&vec![3u8; 4 << 20]);
        ctx.lose_connection();
    });
    let mut reactor = pair(&server, &client);
    run_until(&mut reactor, || client.lost());
    assert_eq!(client.received.borrow().len(), 4 << 20);
    let ev = server.events();
    let pause = ev
        .iter()
        .position(|e| e == "pause_writing")
        .expect("paused");
    let resume = ev
        .iter()
        .position(|e| e == "resume_writing")
        .expect("resumed");
    assert!(pause < resume, "{ev:?}");
}

#[test]
fn large_transfer_echoes_intact() {
    let mut reactor = Reactor::new().unwrap();
    let addr = tls_util::listen(&mut reactor, EchoFactory);
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let seen = Shared::default();
    tls_util::connect(
        &mut reactor,
        addr,
        ClientF {
            seen: seen.clone(),
            payload: payload.clone(),
            expect: payload.len(),
        },
    );
    run_until(&mut reactor, || seen.borrow().lost.is_some());
    assert!(seen.borrow().received == payload);
    assert_eq!(seen.borrow().lost, Some(DisconnectReason::Done));
}
