//! The reactor: one value, one thread, a `mio::Poll` loop that dispatches
//! readiness to transports, runs timers and runs calls queued from other threads.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use torsion::{factory, Context, Protocol, Reactor};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         ctx.write(data);
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_tcp("127.0.0.1:8000".parse().unwrap(), factory(|_peer| Echo))?;
//! println!("listening on {}", port.local_addr());
//! reactor.run()?;
//! # Ok::<(), torsion::Error>(())
//! ```

pub use crate::core::timers;

mod complete;
mod conn;
mod connect;
mod flow;
mod ops;
mod pipe;
mod poller;
mod signals;
mod snapshot;
mod stream;
pub(crate) mod sys;
mod tcp;
mod udp;
mod unix;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use mio::{Poll, Registry, Token, Waker};
use slab::Slab;

use crate::buf::WriteBuf;
use crate::context::{Core, Op};
use crate::error::{Error, Result};
use crate::protocol::{ClientFactory, Factory};

pub(crate) use conn::Connection;
pub(crate) use pipe::{ExitWatch, PipeEndFd, PipeRequest, StdioFlags, StdoutMode};
pub use signals::SignalWatch;
pub(crate) use signals::Signals;
pub use tcp::{Connector, Keepalive, ListeningPort, TcpOptions};
pub use udp::UdpOptions;
pub use unix::{UnixListeningPort, UnixOptions};

const WAKER: Token = Token(usize::MAX);
/// [`FAR_DEADLINE`](crate::core::turn_clock::FAR_DEADLINE) in milliseconds.
const FAR_DEADLINE_MS: i32 = crate::core::turn_clock::FAR_DEADLINE.as_millis() as i32;
pub(crate) use crate::conn::READ_BUF;
/// Reads (or accepts) per readiness event before yielding to other sources.
pub(crate) const READ_BUDGET: usize = 16;
/// Slots the slab reserves at the start: enough address space (a few
/// hundred KiB, touched only as connections arrive) that the allocator maps
/// it on its own (above glibc's 128 KiB mmap threshold). Then the slab
/// grows in place (`mremap`) instead of copying into ever larger heap
/// blocks, which leaves the smaller old copies resident: about 20 bytes per
/// connection at 10,000 connections otherwise.
const SLAB_RESERVE: usize = 4096;

pub(crate) use crate::core::ops::InternalTimer;

/// What a turn of `run` left for the next one (which follows at once: the
/// previous turn's time is recent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// Settled, and a quiet turn (see `core::turn_clock`) no timer was
    /// scheduled in: the poll waits `FAR_DEADLINE`. (Listed first: the
    /// common case is the value a zero test tells.)
    Quiet,
    /// Nothing besides events: no local work (asked at the turn's end,
    /// nothing ran after), no operation queued (carried out after every
    /// callback), no stop request (`run` would have returned).
    Settled,
    /// No turn came before (the first of `run`, or `run_once`'s): ask
    /// about everything.
    First,
    /// Callbacks ran after the events (timers, local work): there may be
    /// local work left, or a stop request.
    Work,
}

/// The poll's waker, for other threads (`ReactorHandle`).
struct PollWaker(Waker);

impl crate::core::Wake for PollWaker {
    fn wake(&self) -> io::Result<()> {
        self.0.wake()
    }
}

/// One registered source.
pub(crate) enum Entry {
    Listener(Box<tcp::Listener>),
    Connecting(Box<connect::Connecting>),
    Conn(Connection),
    /// Write side shut after a graceful close; draining input until EOF.
    Lingering(Box<conn::Lingering>),
    /// Another `mio` source with its own readiness handler (signals).
    Source(Box<dyn ExtraSource>),
    /// A UDP or Unix datagram port.
    Datagram(Box<udp::DatagramEntry>),
    /// Closed this batch; the slot is freed after the batch so stale events in it
    /// cannot reach a new source.
    Vacant,
}

/// A `mio` source of the reactor's own (signals, a child's exit) and its
/// handler, registered with [`Net::add_source`].
pub(crate) trait ExtraSource {
    fn source(&mut self) -> &mut dyn mio::event::Source;
    fn ready(&mut self, core: &mut Core);
    /// Whether the source has nothing more to say: it is then deregistered
    /// and dropped after its handler returns (a reaped child's exit watcher).
    fn done(&self) -> bool {
        false
    }
}

/// The event loop. See the [module docs](self).
///
/// `Reactor` dereferences to [`Core`], which holds what callbacks can reach too
/// (timers, stop, connections by handle).
///
/// ```
/// use std::time::Duration;
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// reactor.call_later(Duration::from_millis(1), |core| {
///     println!("one millisecond later");
///     core.stop().unwrap();
/// });
/// // Listen and connect here too (`listen_tcp`, `connect_tcp`, ...), then:
/// reactor.run()?;
/// # Ok::<(), torsion::Error>(())
/// ```
pub struct Reactor {
    core: Core,
    poll: Poll,
    events: poller::Events,
    net: Net,
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("core", &self.core)
            .field("sources", &self.net.entries.len())
            .finish_non_exhaustive()
    }
}

/// Everything the loop owns besides `Core`, split out so callbacks can borrow
/// `Core` while the loop borrows a connection.
pub(crate) struct Net {
    pub(crate) registry: Registry,
    pub(crate) entries: Slab<Entry>,
    pub(crate) out: WriteBuf,
    /// The input buffer, of a length the compiler knows (no bounds check
    /// loads a length on the read path).
    pub(crate) read_buf: Box<[u8; READ_BUF]>,
    /// Sources that still had work when their budget ran out, or were resumed.
    pub(crate) ready: Vec<(usize, u32)>,
    pub(crate) dead: Vec<usize>,
    pub(crate) listeners: HashMap<u64, usize>,
    pub(crate) connectors: HashMap<u64, connect::ConnectorEntry>,
    /// The connector of each client connection, by slab key (kept here,
    /// not in every connection's record).
    pub(crate) clients: HashMap<usize, u64>,
    next_gen: u32,
    /// A descriptor kept in reserve to shed connections when out of descriptors.
    pub(crate) spare_fd: Option<std::fs::File>,
    pub(crate) live_conns: usize,
    pub(crate) shutting_down: Option<timers::TimerId>,
    /// Why the connection being reaped ended (for its connector).
    pub(crate) lost_reason: Option<crate::DisconnectReason>,
}

impl Reactor {
    /// A new reactor.
    ///
    /// # Errors
    /// The operating system's error if the poll or waker cannot be created (for
    /// example when out of descriptors).
    pub fn new() -> Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let registry = poll.registry().try_clone()?;
        let mut core = Core::new(Instant::now(), Some(Box::new(PollWaker(waker))));
        if let Some(clock) = sys::tsc_clock() {
            core.timing.set_clock(clock);
        }
        Ok(Reactor {
            core,
            poll,
            events: poller::Events::new(),
            net: Net {
                registry,
                entries: Slab::with_capacity(SLAB_RESERVE),
                out: WriteBuf::new(),
                read_buf: read_buf(),
                ready: Vec::new(),
                dead: Vec::new(),
                listeners: HashMap::new(),
                connectors: HashMap::new(),
                clients: HashMap::new(),
                next_gen: 0,
                spare_fd: std::fs::File::open("/dev/null").ok(),
                live_conns: 0,
                shutting_down: None,
                lost_reason: None,
            },
        })
    }

    /// Starts listening on `addr` with `factory`, default options. Port 0 picks a
    /// free port: read it back with [`ListeningPort::local_addr`].
    ///
    /// # Errors
    /// The operating system's error if the address cannot be bound.
    pub fn listen_tcp<F: Factory>(
        &mut self,
        addr: SocketAddr,
        factory: F,
    ) -> Result<ListeningPort> {
        self.core.listen_tcp(addr, factory)
    }

    /// Connects to `addr`; see [`Core::connect_tcp`].
    pub fn connect_tcp<F: ClientFactory>(
        &mut self,
        addr: SocketAddr,
        factory: F,
        timeout: Duration,
    ) -> Connector {
        self.core.connect_tcp(addr, factory, timeout)
    }

    /// Runs the loop until [`Core::stop`] is called (from a callback, a timer, or
    /// another thread through [`ReactorHandle`](crate::ReactorHandle)). A stopped
    /// reactor can be run again.
    ///
    /// # Errors
    /// [`Error::Panicked`] when a callback panicked under
    /// [`PanicPolicy::StopReactor`](crate::PanicPolicy::StopReactor); an
    /// operating-system error if polling fails.
    pub fn run(&mut self) -> Result<()> {
        self.enter();
        let mut left = Left::First;
        let res = loop {
            match self.turn(None, left) {
                Ok(l) => left = l,
                Err(e) => break Err(e),
            }
            if self.core.stop_requested {
                break Ok(());
            }
        };
        self.leave();
        res.and_then(|()| self.panic_result())
    }

    /// Runs one turn: waits at most `max_wait` (`None`: until something happens)
    /// for readiness or a timer, then handles what is due. For embedding the
    /// reactor in another loop and for tests that drive it until a condition holds.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_once(&mut self, max_wait: Option<Duration>) -> Result<()> {
        self.enter();
        let res = self.turn(max_wait, Left::First).map(|_| ());
        self.leave();
        res.and_then(|()| self.panic_result())
    }

    /// Runs turns until `done` returns true or `timeout` passes
    /// (`Duration::MAX`: no limit). Returns whether `done` held.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&mut Reactor) -> bool,
    ) -> Result<bool> {
        let deadline = crate::context::later(Instant::now(), timeout);
        loop {
            if done(self) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            self.run_once(Some((deadline - now).min(Duration::from_millis(100))))?;
        }
    }

    fn enter(&mut self) {
        self.core.running = true;
        self.core.stop_requested = false;
        self.core
            .shared
            .running
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn leave(&mut self) {
        self.core.running = false;
        self.core.stop_requested = false;
        self.core
            .shared
            .running
            .store(false, std::sync::atomic::Ordering::Release);
    }

    fn panic_result(&mut self) -> Result<()> {
        if self.core.panic_policy == crate::PanicPolicy::StopReactor && !self.core.panics.is_empty()
        {
            return Err(Error::Panicked(self.core.panics.remove(0)));
        }
        Ok(())
    }

    /// Number of open connections (accepted or connected, not yet lost).
    pub fn connection_count(&self) -> usize {
        self.net.live_conns
    }

    /// Bytes buffered for a connection: written but not yet taken by the kernel.
    /// `None` if the handle names no open connection.
    pub fn buffered_len(&self, conn: crate::ConnectionHandle) -> Option<usize> {
        let key = self.net.conn_key(conn)?;
        match &self.net.entries[key] {
            Entry::Conn(c) => Some(c.state.pending_len()),
            _ => None,
        }
    }

    /// Number of registered sources of any kind (listeners, connections, pending
    /// connects, lingering closes, datagram ports, signal watches, child-exit
    /// watchers).
    pub fn source_count(&self) -> usize {
        self.net.entries.len()
    }

    /// One turn; `left`: what the turn just before it (inside `run`) left
    /// for it, which it returns for the next. Inlined into `run`'s loop (no
    /// call, register saves and restores per turn).
    #[inline(always)]
    fn turn(&mut self, max_wait: Option<Duration>, left: Left) -> Result<Left> {
        let core = &mut self.core;
        let net = &mut self.net;
        // Work queued outside the loop (calls made before `run`, or by another
        // thread) runs at the last turn's time. (See `core::turn_clock` for
        // when the clock is read; callback timing reads its own tick counter
        // after the poll and after each callback, and before this work.)
        // (Between turns of `run` nothing runs: after a settled turn only
        // other threads can have queued work, and their calls and wakeups of
        // local tasks wake the poll too. So after a settled turn the calls
        // of other threads are not looked for here: every call wakes the
        // poll, and the waker's event runs them, in this turn's batch. Nor
        // is a graceful shutdown's end: the settled turn asked after its
        // batch, and what ran after that, resumed sources, asked after each.)
        let mut left = left;
        if matches!(left, Left::First | Left::Work)
            && (!core.ops.is_empty()
                || net.shutting_down.is_some()
                || core
                    .shared
                    .queued
                    .load(std::sync::atomic::Ordering::Relaxed))
        {
            net.before_poll(core);
            left = Left::Work;
        }

        // The poll's wait in milliseconds, the common ones as constants (no
        // wait, a quiet turn's). (`before_poll` leaves no operation queued,
        // and only its calls can have asked to stop: `run` and `run_once`
        // begin a turn with the request cleared.)
        let ms = if !net.ready.is_empty() {
            0
        } else if left == Left::Quiet {
            FAR_DEADLINE_MS
        } else if left != Left::Settled && (core.stop_requested || core.has_local_work()) {
            0
        } else {
            let next_turn = left != Left::First;
            let until = core.timer_wait(next_turn);
            poller::millis(match (max_wait, until) {
                (Some(t), Some(u)) => Some(t.min(u)),
                (t, u) => t.or(u),
            })
        };
        if let Err(e) = poller::wait(&mut self.poll, &mut self.events, ms) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e.into());
            }
        }
        core.new_turn();

        // What each callback queued is carried out before the next event;
        // whether a graceful shutdown has seen its last connection go is
        // asked once, after the batch (before anything else runs: only the
        // batch's own events come between).
        for ev in self.events.iter() {
            net.on_event(core, &ev);
            if !core.ops.is_empty() {
                net.process_ops_now(core);
            }
        }
        if net.shutting_down.is_some() {
            net.process_ops_now(core);
        }
        net.run_ready(core);

        // Timers due now that were scheduled before this point; a zero-delay call
        // scheduled by one of them waits for the next turn.
        // Then queued local calls and woken futures (Deferreds, `spawn_local`).
        // (Slots closed in this turn stay vacant until its end: nothing can
        // reach them by handle, and no event of this batch can reach a
        // source that reused one.)
        let quiet = core.quiet_turn();
        let left = if core.due_unless_quiet(quiet) {
            core.run_due_timers_now(net);
            Left::Work
        } else if max_wait.is_none() && quiet {
            Left::Quiet
        } else {
            Left::Settled
        };
        net.free_dead();
        Ok(left)
    }
}

/// A zeroed input buffer, made on the heap (not built on the stack first).
fn read_buf() -> Box<[u8; READ_BUF]> {
    match vec![0; READ_BUF].into_boxed_slice().try_into() {
        Ok(b) => b,
        Err(_) => unreachable!("the vector is READ_BUF long"),
    }
}

impl Deref for Reactor {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl DerefMut for Reactor {
    fn deref_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}

/// Dropping a reactor ends what it runs: queued operations are carried out
/// (a queued connect fails with [`DisconnectReason::Cancelled`](crate::DisconnectReason::Cancelled)),
/// listeners stop, every pending connect hears `client_connection_failed`
/// (`Cancelled`) and every live connection `connection_lost`
/// ([`Aborted`](crate::DisconnectReason::Aborted)), once.
impl Drop for Reactor {
    fn drop(&mut self) {
        let core = &mut self.core;
        let net = &mut self.net;
        // Callbacks run here may queue more work or connect again: a few
        // rounds settle it (a protocol that reconnects forever from
        // `connection_lost` is cut off).
        for _ in 0..8 {
            for op in std::mem::take(&mut core.ops) {
                match op {
                    Op::Connect(p) => net.cancel_pending_connect(core, p),
                    op => crate::conn::ops::apply(core, net, op),
                }
            }
            let ids: Vec<u64> = net.listeners.keys().copied().collect();
            for id in ids {
                net.stop_listening(core, id);
            }
            net.end_connectors(core);
            let conns: Vec<usize> = net
                .entries
                .iter()
                .filter(|(_, e)| matches!(e, Entry::Conn(_)))
                .map(|(k, _)| k)
                .collect();
            for key in conns {
                net.close(core, key, crate::DisconnectReason::Aborted);
            }
            net.free_dead();
            if core.ops.is_empty() && net.connectors.is_empty() && net.live_conns == 0 {
                break;
            }
        }
    }
}

impl crate::core::TimerDriver for Net {
    fn internal_timer(&mut self, core: &mut Core, t: InternalTimer) {
        crate::conn::ops::on_timer(core, self, t);
    }
    fn process_ops(&mut self, core: &mut Core) {
        Net::process_ops(self, core);
    }
}

impl Net {
    pub(crate) fn next_gen(&mut self) -> u32 {
        self.next_gen = self.next_gen.wrapping_add(1);
        self.next_gen
    }

    pub(crate) fn gen_of(&self, key: usize) -> Option<u32> {
        match self.entries.get(key)? {
            Entry::Listener(l) => Some(l.gen),
            Entry::Connecting(c) => Some(c.gen),
            Entry::Conn(c) => Some(c.state.handle.gen),
            Entry::Lingering(l) => Some(l.gen),
            Entry::Source(_) => Some(0),
            Entry::Datagram(d) => Some(d.gen),
            Entry::Vacant => None,
        }
    }

    #[inline]
    fn free_dead(&mut self) {
        if self.dead.is_empty() {
            return;
        }
        for key in self.dead.drain(..) {
            self.entries.remove(key);
        }
    }

    /// Marks a slot closed; it is freed after the current batch.
    pub(crate) fn vacate(&mut self, key: usize) -> Entry {
        let e = std::mem::replace(&mut self.entries[key], Entry::Vacant);
        self.dead.push(key);
        e
    }

    /// Work queued before the turn's poll: operations, calls from other threads.
    #[inline(never)]
    fn before_poll(&mut self, core: &mut Core) {
        core.timing.mark();
        self.process_ops(core);
        self.run_thread_calls(core);
    }

    #[inline(always)]
    fn run_thread_calls(&mut self, core: &mut Core) {
        use std::sync::atomic::Ordering;
        // A plain load first (inline: a turn with nothing queued costs a
        // load and a branch): the locked swap only when something was queued.
        if core.shared.queued.load(Ordering::Relaxed) {
            self.run_thread_calls_now(core);
        }
    }

    #[inline(never)]
    fn run_thread_calls_now(&mut self, core: &mut Core) {
        use std::sync::atomic::Ordering;
        if !core.shared.queued.swap(false, Ordering::Acquire) {
            return;
        }
        loop {
            let next = core
                .shared
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some(f) = next else { break };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(core))) {
                core.caught_panic(p, "call_from_thread callback");
            }
            core.callback_done(crate::introspect::CallbackKind::CrossThread, || {
                "call_from_thread"
            });
            self.process_ops(core);
        }
    }

    #[inline]
    fn on_event(&mut self, core: &mut Core, ev: &poller::Event) {
        // Connections first, with one test: most events are theirs. (The
        // waker's token is no slab key: it takes the other path.)
        self.on_conn_event(core, *ev);
    }

    #[inline(never)]
    fn on_other_event(&mut self, core: &mut Core, key: usize) {
        if key == WAKER.0 {
            return self.run_thread_calls(core);
        }
        match self.entries.get(key) {
            Some(Entry::Listener(_)) => self.accept(core, key),
            Some(Entry::Connecting(_)) => self.on_connect_ready(core, key),
            Some(Entry::Lingering(_)) => self.on_linger_readable(core, key),
            Some(Entry::Source(_)) => self.on_source_ready(core, key),
            Some(Entry::Datagram(_)) => self.on_datagram_readable(core, key),
            Some(Entry::Conn(_) | Entry::Vacant) | None => {}
        }
    }

    /// Registers `source` for readability, then runs its handler at once, so
    /// that what it has already (a signal that came early, a child that
    /// exited) is seen now, not at the next event.
    pub(crate) fn add_source(
        &mut self,
        core: &mut Core,
        mut source: Box<dyn ExtraSource>,
    ) -> io::Result<()> {
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        self.registry
            .register(source.source(), Token(key), mio::Interest::READABLE)?;
        entry.insert(Entry::Source(source));
        self.on_source_ready(core, key);
        Ok(())
    }

    /// Runs a watched source's handler; removes the source once it is done.
    pub(crate) fn on_source_ready(&mut self, core: &mut Core, key: usize) {
        let Some(Entry::Source(x)) = self.entries.get_mut(key) else {
            return;
        };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| x.ready(core))) {
            core.caught_panic(p, "source handler");
        }
        if x.done() {
            if let Entry::Source(mut x) = self.vacate(key) {
                let _ = self.registry.deregister(x.source());
            }
        }
    }

    /// Resumes the sources on the ready list (inline: most turns have none,
    /// and the check must not cost a call).
    #[inline(always)]
    fn run_ready(&mut self, core: &mut Core) {
        if !self.ready.is_empty() {
            self.run_ready_now(core);
        }
    }

    #[inline(never)]
    fn run_ready_now(&mut self, core: &mut Core) {
        let ready = std::mem::take(&mut self.ready);
        for (key, gen) in ready {
            if self.gen_of(key) != Some(gen) {
                continue;
            }
            match self.entries.get_mut(key) {
                Some(Entry::Conn(c)) => {
                    let again = c.state.has(crate::transport::flags::READ_AGAIN);
                    let produce = c.state.has(crate::transport::flags::PRODUCE);
                    c.state.clear(crate::transport::flags::READ_AGAIN);
                    if produce {
                        self.produce(core, key);
                    }
                    if again {
                        self.on_readable(core, key);
                    }
                }
                Some(Entry::Listener(_)) => self.accept(core, key),
                Some(Entry::Datagram(_)) => self.on_datagram_readable(core, key),
                _ => {}
            }
            self.process_ops(core);
        }
    }

    #[inline(always)]
    pub(crate) fn process_ops(&mut self, core: &mut Core) {
        if core.ops.is_empty() && self.shutting_down.is_none() {
            return;
        }
        self.process_ops_now(core);
    }

    #[inline(never)]
    fn process_ops_now(&mut self, core: &mut Core) {
        crate::conn::ops::process_ops(core, self);
        if self.live_conns == 0 && core.running {
            if let Some(t) = self.shutting_down.take() {
                let _ = core.timers.cancel(t);
                let _ = core.stop();
            }
        }
    }

    /// The slab key of a live connection, if the handle is current.
    pub(crate) fn conn_key(&self, h: crate::ConnectionHandle) -> Option<usize> {
        match self.entries.get(h.key as usize) {
            Some(Entry::Conn(c)) if c.state.handle.gen == h.gen => Some(h.key as usize),
            _ => None,
        }
    }
}
