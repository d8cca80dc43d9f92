//! What the benchmarks share: the torsion echo server, the hand-written `mio`
//! baseline it is measured against, per-thread CPU clocks, core pinning, and
//! small statistics.
#![allow(dead_code)] // each bench uses a different part

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use torsion::{factory, Context, Protocol, Reactor};

/// The torsion echo protocol: the same as `examples/echo_server.rs`, without
/// the logging.
pub struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        ctx.write(data);
    }
}

/// Which server a measurement ran against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Torsion,
    Mio,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Torsion => "torsion",
            Kind::Mio => "mio",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "torsion" => Some(Kind::Torsion),
            "mio" => Some(Kind::Mio),
            _ => None,
        }
    }
}

/// An echo server running on its own thread.
pub struct ServerThread {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    clock: libc::clockid_t,
    stop: Option<Box<dyn FnOnce() + Send>>,
    join: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Starts a `kind` echo server on 127.0.0.1 (a free port), its thread pinned
    /// to `core` if given.
    pub fn spawn(kind: Kind, core: Option<core_affinity::CoreId>) -> ServerThread {
        let (tx, rx) = mpsc::channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let join = std::thread::Builder::new()
            .name(format!("{}-server", kind.name()))
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                match kind {
                    Kind::Torsion => run_torsion(tx, counter),
                    Kind::Mio => run_mio(tx, counter).expect("mio baseline server failed"),
                }
            })
            .expect("spawn server thread");
        let (addr, stop) = rx.recv().expect("server thread failed to start");
        let clock = thread_clock(&join);
        ServerThread {
            kind,
            addr,
            accepted,
            clock,
            stop: Some(stop),
            join: Some(join),
        }
    }

    /// CPU time (user + system) the server thread has used so far.
    pub fn cpu_time(&self) -> Duration {
        clock_time(self.clock)
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Where a server listens, and how to stop it.
pub type Started = mpsc::Sender<(SocketAddr, Box<dyn FnOnce() + Send>)>;

fn run_torsion(tx: Started, accepted: Arc<AtomicUsize>) {
    let mut reactor = Reactor::new().expect("reactor");
    // TORSION_BENCH_NO_TIMING=1: callbacks untimed (slow-callback detection
    // off), to measure what timing them costs.
    if std::env::var_os("TORSION_BENCH_NO_TIMING").is_some() {
        reactor.set_slow_callback_threshold(None);
    }
    let port = reactor
        .listen_tcp(
            "127.0.0.1:0".parse().unwrap(),
            // Counts the accepted connections, so a bench can wait for them.
            factory(move |_peer| {
                accepted.fetch_add(1, Ordering::Relaxed);
                Echo
            }),
        )
        .expect("listen");
    run_announced(reactor, port.local_addr(), &tx);
}

/// Tells the load side where a torsion server listens and how to stop it,
/// then runs the reactor until it is stopped.
pub fn run_announced(mut reactor: Reactor, addr: SocketAddr, tx: &Started) {
    let handle = reactor.reactor_handle();
    tx.send((
        addr,
        Box::new(move || {
            handle.call_from_thread(|core| {
                let _ = core.stop();
            })
        }),
    ))
    .unwrap();
    reactor.run().expect("torsion server failed");
}

/// The baselines' listener token.
pub const LISTENER: Token = Token(usize::MAX - 1);
/// The baselines' waker token.
pub const WAKER: Token = Token(usize::MAX);

/// One connection of the baseline: the socket, and what the kernel refused.
struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
}

/// The baseline: the echo server one writes by hand on `mio` when performance is
/// all that matters. Sockets are registered once, edge-triggered, for reading and
/// writing; each readable event reads into one 64 KiB buffer until `WouldBlock`
/// (or a short read, which on epoll proves the socket drained, as in torsion);
/// every read is written back at once and only what the kernel refuses is kept,
/// to be flushed on the next writable event.
fn run_mio(tx: Started, accepted: Arc<AtomicUsize>) -> io::Result<()> {
    let (poll, listener, stop, _waker) = mio_listening(&tx)?;
    mio_echo(poll, listener, &stop, &accepted, false)
}

/// The start of every hand-written mio baseline: a listener on a free
/// loopback port registered as [`LISTENER`], a waker as [`WAKER`], and the
/// address announced on `tx` with a stop that sets the returned flag and
/// wakes the poll.
///
/// The server keeps the returned waker until its loop returns: were the
/// stop's copy the last one, dropping it after the wake would close the
/// eventfd, and closing a file takes its pending event off the epoll ready
/// list before the poll collects it (the stop is lost and the server waits
/// for ever: it hung that way under valgrind, which runs one thread at a time).
#[allow(dead_code)] // not every bench that includes this module runs a mio baseline
pub fn mio_listening(tx: &Started) -> io::Result<(Poll, TcpListener, Arc<AtomicBool>, Arc<Waker>)> {
    let poll = Poll::new()?;
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let stop = Arc::new(AtomicBool::new(false));
    let (s, w) = (stop.clone(), waker.clone());
    tx.send((
        listener.local_addr()?,
        Box::new(move || {
            s.store(true, Ordering::Release);
            let _ = w.wake();
        }),
    ))
    .unwrap();
    Ok((poll, listener, stop, waker))
}

/// The same baseline as a process of its own, for a client in another process
/// (`benches/callgrind.sh`'s external mode): listens on `addr`, prints
/// `listening on ADDR` on stdout, and returns once the last connection closed
/// after at least one was accepted.
pub fn serve_mio_standalone(addr: SocketAddr) -> io::Result<()> {
    let poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("mio echo server listening on {}", listener.local_addr()?);
    mio_echo(
        poll,
        listener,
        &AtomicBool::new(false),
        &AtomicUsize::new(0),
        true,
    )
}

/// The baseline's loop (see [`run_mio`]): until `stop` is set and the waker
/// rings, or, with `until_idle`, until no connection is left after one was
/// accepted (checked only when a connection closes).
fn mio_echo(
    mut poll: Poll,
    listener: TcpListener,
    stop: &AtomicBool,
    accepted: &AtomicUsize,
    until_idle: bool,
) -> io::Result<()> {
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            match ev.token() {
                WAKER => {
                    if stop.load(Ordering::Acquire) {
                        return Ok(());
                    }
                }
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nodelay(true)?;
                            let entry = conns.vacant_entry();
                            poll.registry().register(
                                &mut stream,
                                Token(entry.key()),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            entry.insert(Conn {
                                stream,
                                pending: Vec::new(),
                            });
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                },
                Token(key) => {
                    let Some(c) = conns.get_mut(key) else {
                        continue;
                    };
                    let mut open = true;
                    if ev.is_writable() && !c.pending.is_empty() {
                        open = flush(c);
                    }
                    if open && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                        open = echo(c, &mut buf, ev.is_read_closed());
                    }
                    if !open {
                        let mut c = conns.remove(key);
                        let _ = poll.registry().deregister(&mut c.stream);
                        if until_idle && conns.is_empty() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// Reads until drained, writing each read back. Returns whether to keep the
/// connection.
fn echo(c: &mut Conn, buf: &mut [u8], read_closed: bool) -> bool {
    loop {
        match c.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                if c.pending.is_empty() {
                    match c.stream.write(&buf[..n]) {
                        Ok(w) => c.pending.extend_from_slice(&buf[w..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            c.pending.extend_from_slice(&buf[..n])
                        }
                        Err(_) => return false,
                    }
                } else {
                    c.pending.extend_from_slice(&buf[..n]);
                }
                if n < buf.len() && !read_closed {
                    return true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Writes what was refused before. Returns whether to keep the connection.
fn flush(c: &mut Conn) -> bool {
    while !c.pending.is_empty() {
        match c.stream.write(&c.pending) {
            Ok(n) => {
                c.pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    c.pending = Vec::new(); // an idle connection keeps no buffer
    true
}

/// The CPU clock of another thread.
pub fn thread_clock(join: &JoinHandle<()>) -> libc::clockid_t {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the thread is alive (it is only joined on drop) and `clock` is a
    // valid out-pointer.
    let rc = unsafe { libc::pthread_getcpuclockid(join.as_pthread_t(), &mut clock) };
    assert_eq!(rc, 0, "pthread_getcpuclockid failed");
    clock
}

/// CPU time used so far by the calling thread.
pub fn own_cpu_time() -> Duration {
    clock_time(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time used so far on `clock`.
pub fn clock_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Raises the soft descriptor limit to `want` (or as far as allowed) and
/// returns the limit now in force.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit read and write only the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur >= want {
            return lim.rlim_cur;
        }
        // Root may raise the hard limit too; others stop at it.
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return want;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur
    }
}

/// Cores to run servers and load on: (server core, load core). `None` where
/// the machine has only one core available.
pub fn pick_cores() -> (Option<core_affinity::CoreId>, Option<core_affinity::CoreId>) {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.len() < 2 {
        return (None, None);
    }
    (Some(cores[0]), Some(cores[1]))
}

/// The median of `xs` (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A number read from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
