//! Writing to a reset peer, or to a child whose stdin reader is gone, is an
//! error for that connection, and a signal handler's send to a reactor that
//! is gone fails quietly: never a SIGPIPE, even with SIGPIPE at its default
//! action (as in a C host or a `sig_dfl` binary). In their own binary: they
//! change the process's signal disposition.
mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use torsion::process::{ProcessContext, ProcessProtocol, ProcessSpec, ProcessStatus};
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

/// Writes 1 MiB to the child's stdin as soon as it starts.
struct Pusher {
    lost: Rc<RefCell<Vec<(i32, DisconnectReason)>>>,
    ended: Rc<RefCell<Option<ProcessStatus>>>,
}
impl ProcessProtocol for Pusher {
    fn connection_made(&mut self, ctx: &mut ProcessContext<'_, '_>) {
        ctx.write_bytes(Bytes::from(vec![1u8; 1 << 20]));
    }
    fn child_connection_lost(
        &mut self,
        _ctx: &mut ProcessContext<'_, '_>,
        fd: i32,
        reason: &DisconnectReason,
    ) {
        self.lost.borrow_mut().push((fd, reason.clone()));
    }
    fn process_ended(&mut self, _ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
        *self.ended.borrow_mut() = Some(status);
    }
}

/// Whether `pid` is a zombie (exited, not yet reaped).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn write_to_a_child_that_exited_is_an_error_not_sigpipe() {
    // SAFETY: resetting a disposition to its default; no handler involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let mut r = Reactor::new().unwrap();
    let lost = Rc::new(RefCell::new(Vec::new()));
    let ended = Rc::new(RefCell::new(None));
    let p = r
        .spawn_process(
            ProcessSpec::new("true"),
            Pusher {
                lost: lost.clone(),
                ended: ended.clone(),
            },
        )
        .unwrap();
    // Let the child exit before the reactor registers its pipes, so that the
    // first write of `connection_made` meets a pipe without a reader (EPIPE).
    let deadline = std::time::Instant::now() + DEADLINE;
    while !is_zombie(p.pid()) {
        assert!(std::time::Instant::now() < deadline, "child never exited");
        std::thread::yield_now();
    }
    run_until(&mut r, || ended.borrow().is_some());
    // Still alive: a SIGPIPE would have killed the test binary.
    assert_eq!(*ended.borrow(), Some(ProcessStatus::Exited(0)));
    assert!(lost
        .borrow()
        .iter()
        .any(|(fd, reason)| *fd == 0 && *reason == DisconnectReason::Reset));
}

#[test]
fn a_signal_after_its_reactor_is_gone_is_not_a_sigpipe() {
    // SAFETY: resetting a disposition to its default; no handler involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let mut r = Reactor::new().unwrap();
    let watch = r.watch_signals(&[libc::SIGUSR2], |_, _| {}).unwrap();
    r.run_once(Some(Duration::ZERO)).unwrap();
    // The reactor, and with it the read end of the handler's socket pair, is
    // gone; the handler is not: its send fails, without a SIGPIPE.
    drop(r);
    // SAFETY: raise(3) with an integer; SIGUSR2 has the handler above.
    assert_eq!(unsafe { libc::raise(libc::SIGUSR2) }, 0);
    drop(watch);
}
