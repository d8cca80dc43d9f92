//! Stream connections in the reactor: the socket as the engine's sink, the
//! read loop, and reaping (slab removal, lingering closes). Everything else
//! a connection does is the one engine's ([`crate::conn`]).

use std::io;
use std::time::Duration;

use super::stream::Stream;
use super::{Entry, InternalTimer, Net, READ_BUDGET, READ_BUF};
use crate::conn::{Ending, Engine, Sink};
use crate::context::{ConnectionHandle, Core};
use crate::error::DisconnectReason;
use crate::protocol::Protocol;
use crate::transport::{flags, ConnState, Context, HostAddr};

/// How long a gracefully closed socket keeps draining input, waiting for the
/// peer's EOF, before it is closed anyway.
pub(crate) const LINGER_TIMEOUT: Duration = Duration::from_secs(5);

/// One established stream connection.
pub(crate) struct Connection {
    pub(crate) stream: Stream,
    pub(crate) state: ConnState,
    pub(crate) protocol: Box<dyn Protocol>,
}

/// A socket whose write side is shut, read until EOF before closing, so the
/// peer does not see a reset with our last bytes unread.
pub(crate) struct Lingering {
    pub(crate) stream: Stream,
    pub(crate) gen: u32,
    pub(crate) timer: crate::reactor::timers::TimerId,
}

/// Writes with `MSG_NOSIGNAL`, so a write to a reset peer is an `EPIPE` error
/// for that connection and never a `SIGPIPE` for the process, whatever the
/// process's signal disposition (std's `write_vectored` uses `writev`, which has no
/// such flag).
pub(crate) struct NoSigPipe<'a>(pub(crate) &'a Stream);

impl io::Write for NoSigPipe<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut err = None;
        let n = self.0.send_raw(buf, &mut err);
        super::stream::raw_result(n, err)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // Pipes have no MSG_NOSIGNAL: their write blocks SIGPIPE instead.
        if let Stream::Pipe(p) = self.0 {
            return p.write_vectored(bufs);
        }
        socket2::SockRef::from(self.0).send_vectored_with_flags(bufs, super::sys::NO_SIGPIPE)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The socket as the engine's sink, with the reactor's ready list (for stream
/// sources that continue after the other events) and the place the reason of
/// the connection's end is kept until it is reaped (a connector's connection
/// hands it to `client_connection_lost`).
pub(crate) struct SocketSink<'a> {
    stream: &'a Stream,
    ready: &'a mut Vec<(usize, u32)>,
    reason: &'a mut Option<DisconnectReason>,
}

impl Sink for SocketSink<'_> {
    type Again<'b>
        = SocketSink<'b>
    where
        Self: 'b;
    #[inline(always)]
    fn again(&mut self) -> SocketSink<'_> {
        SocketSink {
            stream: self.stream,
            ready: &mut *self.ready,
            reason: &mut *self.reason,
        }
    }
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut NoSigPipe(self.stream), buf)
    }
    #[inline]
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        io::Write::write_vectored(&mut NoSigPipe(self.stream), bufs)
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(std::net::Shutdown::Write)
    }
    fn close(&mut self, end: &Ending<'_>) -> bool {
        *self.reason = Some(end.reason.clone());
        if !end.graceful {
            // SO_LINGER 0: closing the socket resets the connection.
            let _ = socket2::SockRef::from(self.stream).set_linger(Some(Duration::ZERO));
            return false;
        }
        // FIN now, then drain input until the peer's EOF (a lingering close).
        !end.peer_done && self.stream.shutdown(std::net::Shutdown::Write).is_ok()
    }
    #[inline]
    fn host(&self) -> &dyn HostAddr {
        // The socket stays open during callbacks, so `host_addr` is looked up
        // only if the protocol asks (no system call per connection otherwise).
        self.stream
    }
    #[inline]
    fn produce_later(&mut self, h: ConnectionHandle) -> bool {
        self.ready.push((h.key as usize, h.gen));
        true
    }
}

/// The engine for connection `c` of `net`, borrowing only the fields it needs
/// (so `net.read_buf` stays free for the input).
macro_rules! engine {
    ($net:expr, $core:expr, $c:expr, $e:ident) => {
        let mut $e = Engine {
            core: $core,
            state: &mut $c.state,
            protocol: &mut $c.protocol,
            out: &mut $net.out,
            sink: SocketSink {
                stream: &$c.stream,
                ready: &mut $net.ready,
                reason: &mut $net.lost_reason,
            },
        };
    };
}

impl Net {
    /// Runs `f` with the engine of connection `key`, then reaps the
    /// connection if it ended. `None` if `key` is no live connection.
    #[inline]
    pub(crate) fn with_engine<R>(
        &mut self,
        core: &mut Core,
        key: usize,
        f: impl FnOnce(&mut Engine<'_, SocketSink<'_>>) -> R,
    ) -> Option<R> {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return None;
        };
        engine!(self, core, c, e);
        let r = f(&mut e);
        if c.state.has(flags::DEAD) {
            self.reap(core, key);
        }
        Some(r)
    }

    /// Runs `f` on the protocol of connection `key` under `catch_unwind`, then
    /// settles what it did: flushes its writes, applies close requests.
    #[inline]
    pub(crate) fn invoke(
        &mut self,
        core: &mut Core,
        key: usize,
        f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
    ) {
        self.with_engine(core, key, |e| e.invoke(f));
    }

    /// Ends connection `key` (see [`Engine::close`]).
    pub(crate) fn close(&mut self, core: &mut Core, key: usize, reason: DisconnectReason) {
        self.with_engine(core, key, |e| e.close(reason));
    }

    pub(crate) fn produce(&mut self, core: &mut Core, key: usize) {
        self.with_engine(core, key, |e| e.produce());
    }

    pub(crate) fn on_writable(&mut self, core: &mut Core, key: usize) {
        self.with_engine(core, key, |e| e.writable());
    }

    /// Reads until `WouldBlock`, a short read, or the budget runs out.
    pub(crate) fn on_readable(&mut self, core: &mut Core, key: usize) {
        self.on_conn_event(core, super::poller::Event::readable(key));
    }

    /// One readiness event: flushes the connection's buffered output if
    /// writable, then reads if a read is due (see [`Net::on_readable`]),
    /// with one look-up of the connection on the common path. An event of
    /// anything else than a connection goes to `on_other_event`.
    #[inline]
    pub(super) fn on_conn_event(&mut self, core: &mut Core, ev: super::poller::Event) {
        let key = ev.token();
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return self.on_other_event(core, key);
        };
        let mut c = c;
        // Writable edges come after most sends; only buffered bytes care.
        if ev.is_writable() && c.state.has_pending() {
            self.on_writable(core, key);
            // (Flushing may have ended it.)
            match self.entries.get_mut(key) {
                Some(Entry::Conn(again)) => c = again,
                _ => return,
            }
        }
        if !ev.wants_read() {
            return;
        }
        if ev.is_read_closed() {
            c.state.set(flags::PEER_FIN);
        }
        for _ in 0..READ_BUDGET {
            // (`read_buf` is an array of `READ_BUF`: a constant, not a load.)
            let mut cap = READ_BUF;
            let mut rate = None;
            // The common state (see `ConnState::is_hot`) takes input and has
            // no read rate; otherwise look.
            if !c.state.is_hot() {
                c.state.recheck_slow();
                if !c.state.wants_input() {
                    return;
                }
                rate = c.state.extra.as_mut().and_then(|x| x.read_rate.as_mut());
            }
            if let Some(rate) = &mut rate {
                let allowed = rate.allowance(core.fresh_turn_time());
                if allowed == 0 {
                    let at = rate.window_end();
                    c.state.set(flags::READ_THROTTLED | flags::READ_PENDING);
                    return self.arm_throttle(core, key, at);
                }
                cap = cap.min(allowed);
            }
            let mut pipe_err = None;
            match c.stream.read_raw(&mut self.read_buf[..cap], &mut pipe_err) {
                0 => {
                    self.with_engine(core, key, |e| e.eof());
                    return;
                }
                n if n > 0 => {
                    let n = n as usize;
                    if let Some(rate) = rate {
                        rate.used += n;
                    }
                    {
                        engine!(self, core, c, e);
                        e.data(&self.read_buf[..n]);
                    }
                    if c.state.has(flags::DEAD) {
                        return self.reap(core, key);
                    }
                    // On epoll a short read proves the socket is drained, unless
                    // the peer's FIN is waiting behind the data.
                    // (The hint is kept in PEER_FIN: its edge does not come again.)
                    if n < cap
                        && cap == READ_BUF
                        && cfg!(any(target_os = "linux", target_os = "android"))
                        && !c.state.has(flags::PEER_FIN)
                    {
                        return;
                    }
                }
                n => {
                    let e = super::stream::raw_error(n, pipe_err);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return,
                        io::ErrorKind::Interrupted => {}
                        _ => return self.close(core, key, DisconnectReason::from_io(&e)),
                    }
                }
            }
        }
        // Budget spent with data possibly left: come back after the others.
        c.state.set(flags::READ_AGAIN);
        self.ready.push((key, c.state.handle.gen));
    }

    /// Removes connection `key`, which the engine ended: the socket is closed
    /// or left to linger, then the connector, if any, hears
    /// `client_connection_lost`.
    fn reap(&mut self, core: &mut Core, key: usize) {
        let Entry::Conn(c) = self.vacate(key) else {
            return;
        };
        let Connection {
            mut stream,
            state,
            protocol,
        } = c;
        let connector = if state.has(flags::CLIENT) {
            self.clients.remove(&key).unwrap_or(0)
        } else {
            0
        };
        self.live_conns -= 1;
        let _ = self.registry.deregister(&mut stream);
        if state.has(flags::LINGER) {
            self.linger(core, stream);
        } else {
            drop(stream);
        }
        drop(protocol);
        let reason = self.lost_reason.take();
        if connector != 0 {
            let reason = reason.unwrap_or(DisconnectReason::Done);
            self.connector_lost(core, connector, reason);
        }
    }

    fn linger(&mut self, core: &mut Core, mut stream: Stream) {
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
            match l.stream.read(&mut self.read_buf[..]) {
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
