//! Stream connections: the read, write and close logic every stream transport
//! shares.

use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use mio::net::TcpStream;

use super::{Entry, InternalTimer, Net, READ_BUDGET};
use crate::context::{flags, ConnState, Context, Core, HostAddr};
use crate::error::DisconnectReason;
use crate::protocol::Protocol;

/// How long a gracefully closed socket keeps draining input, waiting for the
/// peer's EOF, before it is closed anyway.
pub(crate) const LINGER_TIMEOUT: Duration = Duration::from_secs(5);

/// One established stream connection.
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) state: ConnState,
    pub(crate) protocol: Box<dyn Protocol>,
    /// The connector that made it (client side), or 0.
    pub(crate) connector: u64,
}

/// A socket whose write side is shut, read until EOF before closing, so the
/// peer does not see a reset with our last bytes unread.
pub(crate) struct Lingering {
    pub(crate) stream: TcpStream,
    pub(crate) gen: u32,
    pub(crate) timer: crate::reactor::timers::TimerId,
}

impl HostAddr for TcpStream {
    fn host_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.local_addr()
    }

    fn write_now(&self, data: &[u8]) -> Option<io::Result<usize>> {
        Some(io::Write::write(&mut &*self, data))
    }
}

impl Net {
    /// Runs `f` on the protocol of connection `key` under `catch_unwind`, then
    /// settles what it did: flushes its writes, applies close requests.
    pub(crate) fn invoke(
        &mut self,
        core: &mut Core,
        key: usize,
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        call(core, c, &mut self.out, f);
        self.settle(core, key);
    }

    /// After a callback: move gathered writes to the socket, apply close,
    /// abort and back-pressure.
    pub(crate) fn settle(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        if c.state.has(flags::ABORT) {
            self.out.clear();
            let reason = c
                .state
                .close_reason
                .take()
                .map_or(DisconnectReason::Aborted, |r| *r);
            return self.close(core, key, reason);
        }
        if !self.out.is_empty() {
            match &mut c.state.pending {
                Some(p) => p.append(&mut self.out),
                None => match self.out.write_to(&mut c.stream) {
                    Ok(_) => {
                        if !self.out.is_empty() {
                            let mut p = Box::new(crate::buf::WriteBuf::new());
                            p.append(&mut self.out);
                            c.state.pending = Some(p);
                        }
                    }
                    Err(e) => {
                        self.out.clear();
                        return self.close(core, key, DisconnectReason::from_io(&e));
                    }
                },
            }
            self.out.clear();
        }
        self.check_buffer(core, key);
    }

    /// Water marks, hard cap, and the closes that wait for an empty buffer.
    fn check_buffer(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        // Fast path, after every callback that wrote everything it had.
        if c.state.pending.is_none()
            && !c
                .state
                .has(flags::CLOSING | flags::WRITE_CLOSING | flags::PRODUCER_PAUSED)
        {
            return;
        }
        let buffered = c.state.pending_len();
        let limits = c.state.limits();
        if buffered > limits.cap {
            tracing::warn!(peer = %c.state.peer, buffered, "write buffer over its cap: aborting");
            return self.close(core, key, DisconnectReason::WriteBufferFull);
        }
        if buffered > limits.high && !c.state.has(flags::PRODUCER_PAUSED) {
            c.state.set(flags::PRODUCER_PAUSED);
            return self.invoke(core, key, |p, ctx| p.pause_writing(ctx));
        }
        if buffered <= limits.low && c.state.has(flags::PRODUCER_PAUSED) {
            c.state.clear(flags::PRODUCER_PAUSED);
            return self.invoke(core, key, |p, ctx| p.resume_writing(ctx));
        }
        if buffered > 0 {
            return;
        }
        c.state.pending = None;
        if c.state.has(flags::CLOSING) {
            let reason = c
                .state
                .close_reason
                .take()
                .map_or(DisconnectReason::Done, |r| *r);
            return self.close(core, key, reason);
        }
        if c.state.has(flags::WRITE_CLOSING) && !c.state.has(flags::WRITE_SHUT) {
            c.state.set(flags::WRITE_SHUT);
            if let Err(e) = c.stream.shutdown(std::net::Shutdown::Write) {
                return self.close(core, key, DisconnectReason::from_io(&e));
            }
            if c.state.has(flags::READ_EOF) {
                return self.close(core, key, DisconnectReason::Done);
            }
            self.invoke(core, key, |p, ctx| p.write_connection_lost(ctx));
        }
    }

    pub(crate) fn on_writable(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        let Some(p) = &mut c.state.pending else {
            return;
        };
        if let Err(e) = p.write_to(&mut c.stream) {
            return self.close(core, key, DisconnectReason::from_io(&e));
        }
        self.check_buffer(core, key);
    }

    /// Reads until `WouldBlock`, a short read, or the budget runs out.
    pub(crate) fn on_readable(&mut self, core: &mut Core, key: usize, read_closed: bool) {
        for _ in 0..READ_BUDGET {
            let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
                return;
            };
            if c.state.has(flags::READ_PAUSED) {
                c.state.set(flags::READ_PENDING);
                return;
            }
            if c.state.has(flags::READ_EOF) {
                return;
            }
            match c.stream.read(&mut self.read_buf) {
                Ok(0) => return self.on_eof(core, key),
                Ok(n) => {
                    let short = n < self.read_buf.len();
                    if !c.state.has(flags::CLOSING) {
                        let data = &self.read_buf[..n];
                        call(core, c, &mut self.out, |p, ctx| p.data_received(ctx, data));
                        self.settle(core, key);
                    }
                    // On epoll a short read proves the socket is drained, unless
                    // the peer's FIN is waiting behind the data.
                    if short
                        && !read_closed
                        && cfg!(any(target_os = "linux", target_os = "android"))
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.close(core, key, DisconnectReason::from_io(&e)),
            }
        }
        // Budget spent with data possibly left: come back after the others.
        if let Some(gen) = self.gen_of(key) {
            self.ready.push((key, gen));
        }
    }

    fn on_eof(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        c.state.set(flags::READ_EOF);
        if c.state.has(flags::WRITE_SHUT) {
            return self.close(core, key, DisconnectReason::Done);
        }
        if c.state.has(flags::HALF_CLOSE) && !c.state.has(flags::CLOSING) {
            return self.invoke(core, key, |p, ctx| p.read_connection_lost(ctx));
        }
        // Not half-closeable: flush what was written, then close cleanly.
        c.state.set(flags::CLOSING);
        self.check_buffer(core, key);
    }

    /// Ends connection `key`: the socket is reset (abort, errors) or its write side
    /// shut and left to linger (clean close), and the protocol hears
    /// `connection_lost` exactly once, then the client factory, if any, hears
    /// `client_connection_lost`.
    pub(crate) fn close(&mut self, core: &mut Core, key: usize, reason: DisconnectReason) {
        let Entry::Conn(c) = self.vacate(key) else {
            return;
        };
        let Connection {
            mut stream,
            mut state,
            mut protocol,
            connector,
        } = c;
        self.live_conns -= 1;
        let _ = self.registry.deregister(&mut stream);
        state.set(flags::DEAD);
        state.pending = None;
        tracing::debug!(peer = %state.peer, %reason, "connection lost");
        let host = stream.local_addr().unwrap_or(state.peer);
        if !reason.is_clean() {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
        } else if !state.has(flags::READ_EOF) && stream.shutdown(std::net::Shutdown::Write).is_ok()
        {
            // Lingering close: FIN now, drain input until the peer's EOF.
            self.linger(core, stream);
        } else {
            drop(stream);
        }
        if state.has(flags::MADE) {
            let mut ctx = Context::new(core, &mut state, &mut self.out, &host);
            let proto = &mut *protocol;
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| {
                proto.connection_lost(&mut ctx, &reason)
            })) {
                core.caught_panic(p, "connection_lost");
            }
            self.out.clear();
        }
        drop(protocol);
        if connector != 0 {
            self.connector_lost(core, connector, reason);
        }
    }

    fn linger(&mut self, core: &mut Core, mut stream: TcpStream) {
        let gen = self.next_gen();
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        if self
            .registry
            .register(&mut stream, mio::Token(key), mio::Interest::READABLE)
            .is_err()
        {
            return;
        }
        let timer =
            core.schedule_internal(LINGER_TIMEOUT, InternalTimer::LingerTimeout { key, gen });
        entry.insert(Entry::Lingering(Box::new(Lingering { stream, gen, timer })));
        // Data may already be waiting; an edge may not come again.
        self.on_linger_readable(core, key);
    }

    pub(crate) fn on_linger_readable(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Lingering(l)) = self.entries.get_mut(key) else {
            return;
        };
        loop {
            match l.stream.read(&mut self.read_buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let timer = l.timer;
        let _ = core.timers.cancel(timer);
        if let Entry::Lingering(mut l) = self.vacate(key) {
            let _ = self.registry.deregister(&mut l.stream);
        }
    }
}

/// Calls `f` on the connection's protocol with a fresh context, catching panics.
pub(crate) fn call(
    core: &mut Core,
    c: &mut Connection,
    out: &mut crate::buf::WriteBuf,
    f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
) {
    let _span =
        tracing::trace_span!("conn", key = c.state.handle.key, peer = %c.state.peer).entered();
    let mut ctx = Context::new(core, &mut c.state, out, &c.stream);
    let proto = &mut *c.protocol;
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(proto, &mut ctx))) {
        let msg = core.caught_panic(p, "protocol callback");
        c.state.set(flags::ABORT);
        c.state.close_reason = Some(Box::new(DisconnectReason::Panicked(msg)));
    }
}
