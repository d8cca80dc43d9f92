//! Signals as reactor events (Twisted installs its signal handlers in the
//! reactor too): [`Core::watch_signals`] and its [`SignalWatch`].
//!
//! The handler of each watched signal sends the signal's number, one byte, on
//! one end of a socket pair without blocking (async-signal-safe: see
//! [`sys::send_on_signal`]); the reactor watches the other end and calls the
//! callback on its own thread, where it may do anything a callback may. The
//! handlers are chained through `signal-hook-registry`, so several watchers
//! of one signal (and handlers other crates installed through it) are all
//! called. The application runner ([`Application`](crate::service::Application))
//! and the child-exit watcher (`SIGCHLD`) use the same handlers.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::event::Source;
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use signal_hook_registry::SigId;

use super::{sys, ExtraSource};
use crate::context::{Core, Op};
use crate::error::Result;
use crate::introspect::CallbackKind;

/// Installed handlers, removed on drop.
struct Handlers(Vec<(i32, SigId)>);

impl Drop for Handlers {
    fn drop(&mut self) {
        // Each removal drops that handler's share of the write end; after the
        // last one the reader sees end-of-file.
        for (_, id) in self.0.drain(..) {
            signal_hook_registry::unregister(id);
        }
    }
}

/// Installs a handler for each of `signals` (each once, however often it is
/// listed) that sends the signal's number on a new socket pair; returns the
/// handlers and the pair's read end.
fn install(signals: &[i32]) -> io::Result<(Handlers, UnixStream)> {
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    // No MSG_NOSIGNAL there: the socket itself says no SIGPIPE.
    #[cfg(target_vendor = "apple")]
    socket2::SockRef::from(&write).set_nosigpipe(true)?;
    let write = Arc::new(OwnedFd::from(write));
    let mut handlers = Handlers(Vec::with_capacity(signals.len()));
    for (i, &sig) in signals.iter().enumerate() {
        if signals[..i].contains(&sig) {
            continue;
        }
        let byte = u8::try_from(sig)
            .ok()
            .filter(|b| *b != 0)
            .ok_or_else(|| invalid(sig, "not a signal number"))?;
        // On failure `handlers` is dropped: those installed so far are removed.
        let id = sys::send_on_signal(sig, write.clone(), byte)?;
        handlers.0.push((sig, id));
    }
    Ok((handlers, UnixStream::from_std(read)))
}

fn invalid(sig: i32, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("signal {sig}: {what}"))
}

/// Reads the signals that arrived from `read`, in order, calling `each` with
/// every one's number. Returns `false` once the write end is closed (every
/// handler removed).
fn drain(read: &mut UnixStream, mut each: impl FnMut(i32)) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match read.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => buf[..n].iter().for_each(|&b| each(i32::from(b))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// Handlers and their read end in one, for the reactor's own use (the
/// child-exit watcher's `SIGCHLD`); the handlers are removed on drop.
pub(crate) struct Signals {
    // Declared first, so dropped first: no handler writes to a closed pair.
    _handlers: Handlers,
    read: UnixStream,
}

impl Signals {
    /// Installs a handler for each of `signals`.
    pub(crate) fn new(signals: &[i32]) -> io::Result<Signals> {
        let (handlers, read) = install(signals)?;
        Ok(Signals {
            _handlers: handlers,
            read,
        })
    }

    /// Calls `each` with every signal that arrived since the last call.
    pub(crate) fn drain(&mut self, each: impl FnMut(i32)) {
        drain(&mut self.read, each);
    }
}

impl Source for Signals {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.read.register(r, t, i)
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.read.reregister(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        self.read.deregister(r)
    }
}

/// Signal handlers installed by [`Core::watch_signals`]: dropping it (or
/// [`cancel`](Self::cancel)) removes them, and the callback is not called
/// again, even for a signal that arrived before.
///
/// Keep it as long as the signals should be watched: `let _ =
/// core.watch_signals(..)` drops it at once. It is `Send`, so it may be
/// kept (and dropped) on another thread than the reactor's.
///
/// ```
/// use std::time::Duration;
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// // SIGHUP reloads (say) until the watch goes.
/// let watch = reactor.watch_signals(&[libc::SIGHUP], |_core, _signal| println!("reloading"))?;
/// reactor.call_later(Duration::from_millis(10), move |core| {
///     watch.cancel(); // no more reloads
///     core.stop().unwrap();
/// });
/// reactor.run()?;
/// # Ok::<(), torsion::Error>(())
/// ```
#[must_use = "dropping a SignalWatch removes its signal handlers at once"]
pub struct SignalWatch {
    handlers: Handlers,
    live: Arc<AtomicBool>,
}

impl fmt::Debug for SignalWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signals: Vec<i32> = self.handlers.0.iter().map(|(sig, _)| *sig).collect();
        f.debug_struct("SignalWatch")
            .field("signals", &signals)
            .finish()
    }
}

impl SignalWatch {
    /// Removes the handlers (the same as dropping the watch).
    pub fn cancel(self) {}
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        // Before the handlers go: a signal already on its way is not called
        // back. The reactor drops the read end when it sees end-of-file.
        self.live.store(false, Ordering::Release);
    }
}

/// The reactor's side of a [`SignalWatch`].
struct Watched<F> {
    read: UnixStream,
    live: Arc<AtomicBool>,
    closed: bool,
    on_signal: F,
}

impl<F: FnMut(&mut Core, i32)> ExtraSource for Watched<F> {
    fn source(&mut self) -> &mut dyn Source {
        &mut self.read
    }
    fn ready(&mut self, core: &mut Core) {
        let (live, on_signal) = (&self.live, &mut self.on_signal);
        let open = drain(&mut self.read, |sig| {
            // Checked at each: the callback may drop its own watch.
            if live.load(Ordering::Acquire) {
                on_signal(core, sig);
                core.callback_done(CallbackKind::Signal, || "watch_signals");
            }
        });
        self.closed = !open;
    }
    fn done(&self) -> bool {
        self.closed || !self.live.load(Ordering::Acquire)
    }
}

impl Core {
    /// Calls `on_signal` on the reactor's thread, with the signal's number,
    /// each time one of `signals` arrives, until the returned [`SignalWatch`]
    /// is dropped. The handlers are installed now (so a signal arriving from
    /// here on is not lost, and a bad signal number is an error now); the
    /// callback runs from the next turn of the loop on, in the order the
    /// signals arrived, as any other callback (a panic in it is caught).
    ///
    /// Several watchers of one signal are all called. Signals of one kind
    /// that arrive while the process is busy may come as one, as the kernel
    /// merges pending signals. Once the last handler of a signal is removed,
    /// that signal is ignored: its default action (for SIGINT, ending the
    /// process) is not restored. A watch adds one to
    /// [`Reactor::source_count`](crate::Reactor::source_count).
    ///
    /// ```
    /// use torsion::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// let watch = reactor.watch_signals(&[libc::SIGUSR2], |core, signal| {
    ///     println!("signal {signal}: stopping");
    ///     core.stop().unwrap();
    /// })?;
    /// // `kill -USR2 PID` from a shell, or:
    /// reactor.call_later(std::time::Duration::ZERO, |_core| unsafe {
    ///     libc::raise(libc::SIGUSR2);
    /// });
    /// reactor.run()?; // returns after the signal
    /// drop(watch); // the handler is removed
    /// # Ok::<(), torsion::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) with
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput) for a number that
    /// is no signal or one that cannot be handled (SIGKILL, SIGSTOP, and
    /// SIGILL, SIGFPE and SIGSEGV, which only a crash raises);
    /// [`Unsupported`](std::io::ErrorKind::Unsupported) under the test tools'
    /// fake clock (there is no reactor to wake); the operating system's error
    /// if the handlers or the socket pair cannot be made. No handler stays
    /// installed after an error.
    pub fn watch_signals(
        &mut self,
        signals: &[i32],
        on_signal: impl FnMut(&mut Core, i32) + 'static,
    ) -> Result<SignalWatch> {
        if self.is_simulated() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "signals need a reactor (this core runs under the fake clock)",
            )
            .into());
        }
        let (handlers, read) = install(signals)?;
        let live = Arc::new(AtomicBool::new(true));
        let source: Box<dyn ExtraSource> = Box::new(Watched {
            read,
            live: live.clone(),
            closed: false,
            on_signal,
        });
        self.ops.push(Op::Watch(Box::new(source)));
        Ok(SignalWatch { handlers, live })
    }
}
