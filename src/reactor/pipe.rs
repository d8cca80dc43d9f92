//! Pipes as stream connections: a child process's pipes and the process's own
//! stdin/stdout are one more kind of [`Stream`], so they run through the same
//! connection code as sockets (`conn.rs`): gathered writes, the write buffer,
//! water marks and back-pressure, close and flush, panic isolation.
//!
//! What is process-specific lives in `crate::process` (spawning,
//! descriptors, reaping, exit status, the `ProcessProtocol` adapter), which
//! hands this file a [`PipeRequest`]; this file is only the `mio` side: the
//! descriptor kinds, their reads and writes, and the registration of pipes
//! (each with its protocol) and of an exit watcher.

use std::io::{self, IoSlice, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use mio::event::Source;
use mio::unix::pipe::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::stream::Stream;
use super::{sys, ExtraSource, Net};
use crate::address::{Address, UnixAddr};
use crate::context::Core;
use crate::protocol::Protocol;

/// One pipe descriptor (or the stdin/stdout pair of the process itself).
#[derive(Debug)]
pub(crate) enum Pipe {
    /// The parent reads (a child's stdout, stderr, or a "from child" fd).
    Reader(Receiver),
    /// The parent writes (a child's stdin, or a "to child" fd).
    Writer(Sender),
    /// `StandardIO`: reads from (a copy of) stdin, writes to descriptor 1.
    Stdio(Receiver, StdioFlags),
}

/// How `StandardIO` treats the process's descriptors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StdioFlags {
    /// stdin was a blocking pipe or socket we made non-blocking: restore it.
    pub(crate) restore_in: bool,
    /// What was done to stdout.
    pub(crate) out: StdoutMode,
}

/// stdout as `StandardIO` found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StdoutMode {
    /// A file or terminal: written blocking (never `WouldBlock`), not polled.
    Blocking,
    /// A pipe or socket already non-blocking: polled for writability.
    Polled,
    /// A pipe or socket we made non-blocking: polled, and restored afterwards.
    PolledRestore,
}

impl Pipe {
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Pipe::Reader(r) | Pipe::Stdio(r, _) => {
                let mut r: &Receiver = r;
                r.read(buf)
            }
            // A write end is "readable" only when its reader went away (an
            // error event): that is a broken pipe for this connection.
            Pipe::Writer(w) => {
                if sys::reader_gone(w.as_fd()) {
                    Err(io::Error::from(io::ErrorKind::BrokenPipe))
                } else {
                    Err(io::Error::from(io::ErrorKind::WouldBlock))
                }
            }
        }
    }

    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Pipe::Writer(w) => sys::write_vectored(w.as_fd(), bufs),
            Pipe::Stdio(..) => sys::write_vectored(sys::stdout_fd(), bufs),
            Pipe::Reader(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this pipe carries data from the child only",
            )),
        }
    }

    /// A pipe has no half-close of its own: the engine then closes the whole
    /// descriptor instead of lingering (a write end closed is the reader's EOF).
    pub(crate) fn shutdown(&self) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a pipe cannot be half-closed",
        ))
    }
}

impl AsFd for Pipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Pipe::Reader(r) | Pipe::Stdio(r, _) => r.as_fd(),
            Pipe::Writer(w) => w.as_fd(),
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        if let Pipe::Stdio(r, flags) = self {
            // Leave the descriptions as we found them: the shell (or whoever
            // shares them) expects blocking descriptors.
            if flags.restore_in {
                let _ = sys::set_nonblocking(r.as_fd(), false);
            }
            if flags.out == StdoutMode::PolledRestore {
                let _ = sys::set_nonblocking(sys::stdout_fd(), false);
            }
        }
    }
}

impl Source for Pipe {
    fn register(&mut self, r: &Registry, t: Token, _i: Interest) -> io::Result<()> {
        match self {
            Pipe::Reader(p) => p.register(r, t, Interest::READABLE),
            Pipe::Writer(p) => p.register(r, t, Interest::WRITABLE),
            Pipe::Stdio(p, flags) => {
                p.register(r, t, Interest::READABLE)?;
                if flags.out != StdoutMode::Blocking {
                    let fd = sys::stdout_fd().as_raw_fd();
                    if let Err(e) = SourceFd(&fd).register(r, t, Interest::WRITABLE) {
                        let _ = p.deregister(r);
                        return Err(e);
                    }
                }
                Ok(())
            }
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        let _ = self.deregister(r);
        self.register(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Pipe::Reader(p) => p.deregister(r),
            Pipe::Writer(p) => p.deregister(r),
            Pipe::Stdio(p, flags) => {
                if flags.out != StdoutMode::Blocking {
                    let fd = sys::stdout_fd().as_raw_fd();
                    let _ = SourceFd(&fd).deregister(r);
                }
                p.deregister(r)
            }
        }
    }
}

/// The address a pipe connection reports as its peer.
pub(crate) fn pipe_peer() -> Address {
    Address::Unix(UnixAddr::Unnamed)
}

/// One descriptor to register as a stream connection.
#[derive(Debug)]
pub(crate) enum PipeEndFd {
    /// The parent reads it.
    Reader(OwnedFd),
    /// The parent writes it.
    Writer(OwnedFd),
    /// `StandardIO`: reads this (stdin, or a pipe a thread fills from it) and
    /// writes descriptor 1.
    Stdio(OwnedFd, StdioFlags),
}

/// A child's exit, as the reactor watches it: a pidfd when there is one,
/// `SIGCHLD` otherwise.
pub(crate) trait ExitWatch {
    /// The child's pidfd, if it has one.
    fn pidfd(&self) -> Option<RawFd>;
    /// Something happened (the pidfd became readable, or a `SIGCHLD`
    /// arrived): reap the child if it exited, and report it.
    fn check(&mut self, core: &mut Core);
    /// Whether the child was reaped: the watcher is then removed.
    fn is_done(&self) -> bool;
}

/// Called once the pipes are registered, with which ones could be.
pub(crate) type StartedFn = Box<dyn FnOnce(&mut Core, &[bool])>;

/// What `Op::Pipes` carries: descriptors with their protocols, what to call
/// once they are registered (with which ones could be), and an exit watcher.
pub(crate) struct PipeRequest {
    pub(crate) pipes: Vec<(PipeEndFd, Box<dyn Protocol>)>,
    pub(crate) started: Option<StartedFn>,
    pub(crate) watch: Option<Box<dyn ExitWatch>>,
}

/// A child's exit watcher: its pidfd (or `SIGCHLD` signals) as a source.
struct ChildWatch {
    fd: WatchFd,
    watch: Box<dyn ExitWatch>,
}

enum WatchFd {
    /// The descriptor itself is owned by the process's state (signals use it).
    Pidfd(RawFd),
    Sigchld(super::Signals),
}

impl Source for WatchFd {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            WatchFd::Pidfd(fd) => SourceFd(fd).register(r, t, i),
            WatchFd::Sigchld(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            WatchFd::Pidfd(fd) => SourceFd(fd).reregister(r, t, i),
            WatchFd::Sigchld(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            WatchFd::Pidfd(fd) => SourceFd(fd).deregister(r),
            WatchFd::Sigchld(s) => s.deregister(r),
        }
    }
}

impl ExtraSource for ChildWatch {
    fn source(&mut self) -> &mut dyn Source {
        &mut self.fd
    }
    fn ready(&mut self, core: &mut Core) {
        if let WatchFd::Sigchld(s) = &mut self.fd {
            // Drain: any child's exit wakes every watcher; ours checks its own.
            s.drain(|_| {});
        }
        self.watch.check(core);
    }
    fn done(&self) -> bool {
        self.watch.is_done()
    }
}

impl Net {
    /// Registers each pipe as a connection (its protocol hears
    /// `connection_made`), calls `started`, then registers the exit watcher.
    pub(crate) fn add_pipes(&mut self, core: &mut Core, req: PipeRequest) {
        let PipeRequest {
            pipes,
            started,
            watch,
        } = req;
        let mut registered = Vec::with_capacity(pipes.len());
        for (fd, protocol) in pipes {
            let stream = Stream::Pipe(match fd {
                PipeEndFd::Reader(f) => Pipe::Reader(Receiver::from(f)),
                PipeEndFd::Writer(f) => Pipe::Writer(Sender::from(f)),
                PipeEndFd::Stdio(f, flags) => Pipe::Stdio(Receiver::from(f), flags),
            });
            let h = self.add_connection(core, stream, pipe_peer(), protocol, 0);
            registered.push(h.is_some());
        }
        if let Some(started) = started {
            started(core, &registered);
        }
        let Some(watch) = watch else { return };
        let fd = match watch.pidfd() {
            Some(fd) => WatchFd::Pidfd(fd),
            None => match super::Signals::new(&[libc::SIGCHLD]) {
                Ok(s) => WatchFd::Sigchld(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch for SIGCHLD; the child's exit will not be seen");
                    return;
                }
            },
        };
        // A child that exited already (before the pidfd existed or before the
        // signal handler did) is seen at once, not at the next event.
        if let Err(e) = self.add_source(core, Box::new(ChildWatch { fd, watch })) {
            tracing::error!(error = %e, "cannot watch the child's exit");
        }
    }
}
