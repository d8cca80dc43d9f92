//! Writing to a reset peer is an error for that connection, never a SIGPIPE,
//! even with SIGPIPE at its default action (as in a C host or a `sig_dfl` binary).
//! One test in its own binary: it changes the process's signal disposition.
mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use torsion::Address;
use torsion::{Context, DisconnectReason, Factory, Protocol, Reactor};
use util::*;

/// Keeps writing (small copies and large zero-copy chunks, so both `send` and
/// `sendmsg` paths run) until the connection breaks.
struct Firehose {
    lost: Rc<RefCell<Option<DisconnectReason>>>,
    eof: Rc<RefCell<bool>>,
}
impl Protocol for Firehose {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        // Half-close keeps us writing after the peer's FIN: the socket then sits
        // in CLOSE_WAIT, where a later RST makes the next write fail with EPIPE,
        // the case that raises SIGPIPE without MSG_NOSIGNAL.
        ctx.set_half_close(true);
        self.tick(ctx);
    }
    fn read_connection_lost(&mut self, _ctx: &mut Context<'_>) {
        *self.eof.borrow_mut() = true;
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        *self.lost.borrow_mut() = Some(reason.clone());
    }
}
impl Firehose {
    fn tick(&mut self, ctx: &mut Context<'_>) {
        ctx.write(b"small");
        ctx.write_bytes(Bytes::from(vec![7u8; 100_000]));
        ctx.call_later_self::<Firehose>(Duration::from_millis(1), |p, ctx| p.tick(ctx));
    }
}
struct FirehoseF(Rc<RefCell<Option<DisconnectReason>>>, Rc<RefCell<bool>>);
impl Factory for FirehoseF {
    type Protocol = Firehose;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Firehose> {
        Some(Firehose {
            lost: self.0.clone(),
            eof: self.1.clone(),
        })
    }
}

#[test]
fn write_to_reset_peer_is_an_error_not_sigpipe() {
    // SAFETY: restoring the default disposition of SIGPIPE, before any thread of
    // this test binary writes to a socket.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let mut r = Reactor::new().unwrap();
    let lost = Rc::new(RefCell::new(None));
    let eof = Rc::new(RefCell::new(false));
    let port = r
        .listen_tcp(localhost(), FirehoseF(lost.clone(), eof.clone()))
        .unwrap();
    let c = std::net::TcpStream::connect(port.local_addr()).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    run_until(&mut r, || *eof.borrow());
    // Now reset: SO_LINGER 0 then close sends RST.
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    run_until(&mut r, || lost.borrow().is_some());
    // We are still alive (a SIGPIPE would have killed the process).
    assert_eq!(*lost.borrow(), Some(DisconnectReason::Reset));
}
