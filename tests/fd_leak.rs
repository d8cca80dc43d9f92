//! No descriptor leaks after many connect/accept/close/abort/refused cycles.
mod util;

use std::net::SocketAddr;
use std::time::Duration;

use torsion::{factory, Context, DisconnectReason, Protocol, Reactor};
use util::*;

/// Server protocol: the first byte says what to do.
struct Mixed;
impl Protocol for Mixed {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        match data[0] {
            b'a' => ctx.abort_connection(),
            b'c' => {
                ctx.write(data);
                ctx.lose_connection();
            }
            _ => ctx.write(data),
        }
    }
}

#[test]
fn descriptor_count_unchanged_after_a_thousand_cycles() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), factory(|_peer| Mixed)).unwrap();
    let refused: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // Warm up once so lazily opened descriptors (none expected) are counted.
    let before = fd_count();
    for batch in 0..10 {
        let mut seens = Vec::new();
        for i in 0..100 {
            // Cycle through: server closes, server aborts, client closes (echo),
            // client aborts (expect nothing), refused connect.
            let (addr, payload, expect): (SocketAddr, &[u8], usize) = match (batch * 100 + i) % 4 {
                0 => (port.local_addr(), b"close", 5),
                1 => (port.local_addr(), b"abort", 1),
                2 => (port.local_addr(), b"echo", 4),
                _ => (refused, b"", 0),
            };
            let seen = Shared::default();
            r.connect_tcp(
                addr,
                ClientF {
                    seen: seen.clone(),
                    payload: payload.to_vec(),
                    expect,
                },
                DEADLINE,
            );
            seens.push(seen);
        }
        run_until(&mut r, || {
            seens.iter().all(|s| {
                s.borrow()
                    .events
                    .iter()
                    .any(|e| e.starts_with("client_lost") || e.starts_with("failed"))
            })
        });
        for s in &seens {
            let s = s.borrow();
            if let Some(f) = &s.failed {
                assert_eq!(*f, DisconnectReason::Refused);
            }
        }
    }
    // Lingering closes finish once peers send EOF; then only the listener remains.
    assert!(
        r.run_until(DEADLINE, |r| r.source_count() == 1).unwrap(),
        "sources left: {}",
        r.source_count()
    );
    assert_eq!(r.connection_count(), 0);
    assert_eq!(fd_count(), before, "descriptors leaked");
    port.stop_listening(&mut r);
    r.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(r.source_count(), 0);
    assert_eq!(
        fd_count(),
        before - 1,
        "the listener's descriptor was not closed"
    );
}
