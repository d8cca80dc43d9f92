//! A reactor per core: N reactors, each on its own thread.
//!
//! A [`Reactor`] is single-threaded by design (its protocols are not `Send`), so
//! the way to use more cores is to run several reactors side by side, each with
//! its own listener on the same address: [`TcpOptions::reuse_port`](crate::TcpOptions::reuse_port) sets
//! `SO_REUSEPORT`, and the kernel then spreads incoming connections over the
//! listeners. Nothing is shared between the reactors unless the application
//! shares it; each builds its own factory (usually of one factory type), and a
//! connection stays on the reactor that accepted it for its whole life.
//!
//! [`ReactorPool::spawn`] starts the threads and runs a setup closure on each
//! reactor before it starts running, one reactor at a time and in order, so a
//! failed `listen` is reported to the caller rather than lost on a thread, and a
//! later setup can use what an earlier one learned (for example the port the
//! first listener was given when asked for port 0).
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::{Arc, OnceLock};
//! use std::time::Duration;
//! use torsion::multi::ReactorPool;
//! use torsion::{factory, Context, Protocol, TcpOptions};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         ctx.write(data);
//!     }
//! }
//!
//! // The first reactor asks for any free port; the others listen on the same one.
//! let bound = Arc::new(OnceLock::new());
//! let seen = bound.clone();
//! let pool = ReactorPool::spawn(2, move |_index, reactor| {
//!     let addr = *seen.get().unwrap_or(&"127.0.0.1:0".parse().unwrap());
//!     let options = TcpOptions::default().reuse_port(true);
//!     let port = reactor.listen_tcp_with(addr, factory(|_peer| Echo), options)?;
//!     let _ = seen.set(port.local_addr());
//!     Ok(())
//! })
//! .unwrap();
//! let addr: SocketAddr = *bound.get().unwrap();
//!
//! let mut client = std::net::TcpStream::connect(addr).unwrap();
//! std::io::Write::write_all(&mut client, b"hi").unwrap();
//! let mut back = [0; 2];
//! std::io::Read::read_exact(&mut client, &mut back).unwrap();
//! assert_eq!(&back, b"hi");
//! drop(client);
//!
//! pool.shutdown(Duration::from_secs(5));
//! pool.join().unwrap();
//! ```

use std::fmt;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::context::{Core, ReactorHandle};
use crate::error::{Error, Result};
use crate::reactor::Reactor;

/// N reactors running on N threads (see the [module docs](self)).
///
/// Dropping the pool without [`join`](Self::join) stops every reactor at once
/// (as [`stop`](Self::stop)) and waits for the threads, so no reactor outlives
/// its pool unnoticed.
///
/// ```no_run
/// use std::net::SocketAddr;
/// use torsion::Address;
/// use torsion::multi::ReactorPool;
/// use torsion::{Context, Factory, Protocol, TcpOptions};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         ctx.write(data);
///     }
/// }
/// struct EchoFactory;
/// impl Factory for EchoFactory {
///     type Protocol = Echo;
///     fn build_protocol(&mut self, _peer: &Address) -> Option<Echo> {
///         Some(Echo)
///     }
/// }
///
/// // Two reactors on two threads, each with its own SO_REUSEPORT listener on
/// // the same port; the kernel spreads the connections.
/// let addr: SocketAddr = "127.0.0.1:8000".parse().unwrap();
/// let pool = ReactorPool::spawn(2, move |_index, reactor| {
///     reactor.listen_tcp_with(addr, EchoFactory, TcpOptions::default().reuse_port(true))?;
///     Ok(())
/// })?;
/// pool.join()?;
/// # Ok::<(), torsion::Error>(())
/// ```
pub struct ReactorPool {
    handles: Vec<ReactorHandle>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl fmt::Debug for ReactorPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactorPool")
            .field("reactors", &self.handles.len())
            .finish()
    }
}

impl ReactorPool {
    /// Starts `threads` reactors (at least one), each on its own thread named
    /// `torsion-reactor-<index>`. On each thread a new [`Reactor`] is built,
    /// `setup(index, &mut reactor)` runs on it (listen, connect, schedule
    /// timers...), and then the reactor runs until stopped. Setups run one at a
    /// time, in index order: thread `i + 1` starts only once the setup of
    /// thread `i` has returned.
    ///
    /// # Errors
    /// The first error from building a reactor, from a setup, or from starting
    /// a thread. The reactors already started are then stopped and joined
    /// before this returns, so nothing is left running.
    pub fn spawn<S>(threads: usize, setup: S) -> Result<ReactorPool>
    where
        S: Fn(usize, &mut Reactor) -> Result<()> + Send + Sync + 'static,
    {
        let setup = Arc::new(setup);
        let mut pool = ReactorPool {
            handles: Vec::with_capacity(threads.max(1)),
            threads: Vec::with_capacity(threads.max(1)),
        };
        for index in 0..threads.max(1) {
            let (tx, rx) = mpsc::channel();
            let setup = setup.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("torsion-reactor-{index}"))
                .spawn(move || run_one(index, &*setup, tx));
            let join = match spawned {
                Ok(j) => j,
                Err(e) => {
                    pool.stop();
                    let _ = pool.join_all();
                    return Err(Error::Io(e));
                }
            };
            match rx.recv() {
                Ok(Ok(handle)) => {
                    pool.handles.push(handle);
                    pool.threads.push(join);
                }
                // The setup failed (Ok(Err)) or panicked (the sender dropped).
                ready => {
                    let err = match ready {
                        Ok(Err(e)) => e,
                        _ => match join.join() {
                            Ok(Err(e)) => e,
                            Ok(Ok(())) => Error::Stopped,
                            Err(panic) => Error::Panicked(panic_message(&*panic)),
                        },
                    };
                    pool.stop();
                    let _ = pool.join();
                    return Err(err);
                }
            }
        }
        Ok(pool)
    }

    /// How many reactors the pool runs.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: a pool runs at least one reactor.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// A handle to each reactor, in index order (for
    /// [`call_from_thread`](ReactorHandle::call_from_thread) on one of them).
    pub fn handles(&self) -> &[ReactorHandle] {
        &self.handles
    }

    /// Queues `f` to run on every reactor's thread (each call gets its own
    /// clone of `f`).
    pub fn call_in_each<F>(&self, f: F)
    where
        F: Fn(&mut Core) + Clone + Send + 'static,
    {
        for h in &self.handles {
            let f = f.clone();
            h.call_from_thread(move |core| f(core));
        }
    }

    /// Graceful shutdown of every reactor ([`Core::shutdown`]): each stops
    /// listening, closes its connections after their flush, and stops once all
    /// are closed or when `timeout` passes. [`join`](Self::join) waits for it.
    pub fn shutdown(&self, timeout: Duration) {
        self.call_in_each(move |core| core.shutdown(timeout));
    }

    /// Stops every reactor at its next turn, leaving connections as they are
    /// ([`Core::stop`]).
    pub fn stop(&self) {
        self.call_in_each(|core| {
            let _ = core.stop();
        });
    }

    /// Waits for every reactor to stop.
    ///
    /// # Errors
    /// The first error a reactor's [`run`](Reactor::run) returned (in index
    /// order), or [`Error::Panicked`] if a reactor thread panicked. Every thread
    /// is joined either way.
    pub fn join(mut self) -> Result<()> {
        self.join_all()
    }

    fn join_all(&mut self) -> Result<()> {
        let mut first = Ok(());
        for t in self.threads.drain(..) {
            let res = match t.join() {
                Ok(r) => r,
                Err(panic) => Err(Error::Panicked(panic_message(&*panic))),
            };
            if first.is_ok() {
                first = res;
            }
        }
        first
    }
}

impl Drop for ReactorPool {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop();
            let _ = self.join_all();
        }
    }
}

/// One reactor thread: build, set up, report, run.
fn run_one(
    index: usize,
    setup: &(dyn Fn(usize, &mut Reactor) -> Result<()> + Send + Sync),
    ready: mpsc::Sender<Result<ReactorHandle>>,
) -> Result<()> {
    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    if let Err(e) = setup(index, &mut reactor) {
        let _ = ready.send(Err(e));
        return Ok(());
    }
    let _ = ready.send(Ok(reactor.reactor_handle()));
    drop(ready);
    reactor.run()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a reactor thread panicked".to_owned())
}
