//! Large and small writes, gathered in one callback, zero-copy `Bytes`, and
//! writes made while earlier ones are still buffered must all arrive intact and
//! in order.

mod util;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use util::*;

use torsion::Address;
use torsion::{factory, Context, DisconnectReason, Factory, Protocol, Reactor};

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ seed as u8)
        .collect()
}

/// What the server writes, in order: a large write first (the kernel refusing
/// part of it since the client is not reading yet),
/// then a small and a large one in the same callback, then another large one in
/// a later callback while the first ones are still buffered.
fn pieces() -> Vec<Vec<u8>> {
    vec![
        pattern(1, 8 << 20),
        pattern(2, 10),
        pattern(3, 1 << 20),
        pattern(4, 64 << 10),
    ]
}

struct Writer {
    lost: Rc<Cell<Option<bool>>>,
}

impl Protocol for Writer {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        let p = pieces();
        ctx.write(&p[0]);
        ctx.write(&p[1]);
        ctx.write(&p[2]);
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, _data: &[u8]) {
        assert!(
            ctx.buffered_len() > 0,
            "the first writes should still be buffered"
        );
        ctx.write(&pieces()[3]);
        ctx.lose_connection();
    }

    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.lost.set(Some(reason.is_clean()));
    }
}

struct WriterFactory {
    lost: Rc<Cell<Option<bool>>>,
}

impl Factory for WriterFactory {
    type Protocol = Writer;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Writer> {
        Some(Writer {
            lost: self.lost.clone(),
        })
    }
}

#[test]
fn large_writes_mixed_with_gathered_and_buffered_ones_keep_their_order() {
    let mut reactor = Reactor::new().unwrap();
    let lost = Rc::new(Cell::new(None));
    let port = reactor
        .listen_tcp(localhost(), WriterFactory { lost: lost.clone() })
        .unwrap();
    let addr = port.local_addr();

    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    // Let connection_made run and the kernel refuse part of the 8 MiB.
    let accepted = reactor
        .run_until(DEADLINE, |r| r.connection_count() == 1)
        .unwrap();
    assert!(accepted);
    for _ in 0..3 {
        reactor
            .run_once(Some(std::time::Duration::from_millis(1)))
            .unwrap();
    }
    client.write_all(b"go").unwrap();

    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        got
    });
    run_until(&mut reactor, || lost.get().is_some());
    assert_eq!(lost.get(), Some(true), "the close should be clean");
    let got = reader.join().unwrap();
    let want = pieces().concat();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "bytes arrived out of order or damaged");
}

/// Writes parts of its input back out of order, so the first write is gathered
/// by reference to the read buffer and later ones force a copy of it first.
struct Shuffler;
impl Protocol for Shuffler {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        let half = data.len() / 2;
        ctx.write(&data[half..]);
        ctx.write(b"|");
        ctx.write(&data[..half]);
        ctx.write(b"\n");
    }
}

#[test]
fn writes_of_the_input_keep_their_order_with_other_writes() {
    let mut r = Reactor::new().unwrap();
    let port = r
        .listen_tcp(localhost(), factory(|_peer| Shuffler))
        .unwrap();
    let mut c = TcpStream::connect(port.local_addr()).unwrap();
    // Letters only, so '|' and '\n' mark the shuffle unambiguously.
    let msg: Vec<u8> = (0..5000u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
    c.write_all(&msg).unwrap();
    c.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    run_until(&mut r, || {
        let mut buf = [0u8; 65536];
        if let Ok(n) = c.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        got.len() >= msg.len() + 2 && got.ends_with(b"\n")
    });
    // However the 5000 bytes were split into reads, each read's halves are
    // swapped around a '|': check by undoing it.
    let mut rebuilt = Vec::new();
    for rec in got.split(|&b| b == b'\n').filter(|r| !r.is_empty()) {
        let bar = rec.iter().position(|&b| b == b'|').unwrap();
        let (second, first) = (&rec[..bar], &rec[bar + 1..]);
        rebuilt.extend_from_slice(first);
        rebuilt.extend_from_slice(second);
    }
    assert_eq!(rebuilt, msg);
}
