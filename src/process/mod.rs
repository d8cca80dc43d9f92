//! Child processes and the process's own standard I/O as transports
//! (Twisted's `spawnProcess` / `ProcessProtocol` and `StandardIO`).
//!
//! [`Core::spawn_process`](crate::Core::spawn_process) starts a program from a [`ProcessSpec`] (program,
//! arguments, an explicit environment — empty unless you add to it, as in
//! Twisted —, working directory, and which child descriptors are pipes). Its
//! [`ProcessProtocol`] hears `connection_made`, the data of every pipe from
//! the child (`child_data_received`, with `out_received` / `err_received`),
//! `child_connection_lost` per pipe, `process_exited` as soon as the child
//! exits (even while a grandchild still holds its pipes) and `process_ended`
//! once it exited **and** every pipe closed; each exactly once.
//!
//! Every pipe is a connection of the reactor's one stream engine, like a
//! socket: writes to the child's stdin made during a callback are gathered
//! and handed to the kernel in one call; what the pipe refuses is buffered,
//! with the same water marks (`pause_writing` / `resume_writing`), hard cap,
//! flush-then-close and panic isolation as a TCP connection.
//!
//! **Reaping**: each child gets a `pidfd` (Linux >= 5.3) registered with the
//! reactor; when it becomes readable the child is reaped with `waitpid` on
//! its own pid only, so a program's own `SIGCHLD` handling and other children
//! are never touched. Where `pidfd_open` is not available (older kernels,
//! other systems, a sandbox that forbids it) the reactor falls back to
//! `SIGCHLD`, through the handlers [`Core::watch_signals`](crate::Core::watch_signals)
//! uses (chained with any handler already installed), and still reaps only its own pids. A spawn that fails (no such
//! program, not executable, no such directory) is a [`SpawnError`] returned
//! by `spawn_process`: std's `Command` reports the `exec` failure
//! synchronously.
//!
//! [`Core::standard_io`](crate::Core::standard_io) attaches an ordinary [`Protocol`](crate::Protocol)
//! to the process's own stdin and stdout. [`FakeChild`] stands in for a
//! child in unit tests, on the [`Pump`](crate::testing::Pump).
//!
//! ```no_run
//! use torsion::process::{ProcessContext, ProcessProtocol, ProcessSpec, ProcessStatus};
//! use torsion::Reactor;
//!
//! struct Upper;
//! impl ProcessProtocol for Upper {
//!     fn connection_made(&mut self, ctx: &mut ProcessContext<'_, '_>) {
//!         ctx.write(b"hello\n");
//!         ctx.close_stdin();
//!     }
//!     fn out_received(&mut self, _ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
//!         print!("{}", String::from_utf8_lossy(data));
//!     }
//!     fn process_ended(&mut self, ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
//!         assert!(status.success());
//!         ctx.stop().unwrap();
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let spec = ProcessSpec::new("tr").args(["a-z", "A-Z"]).inherit_env();
//! reactor.spawn_process(spec, Upper)?;
//! reactor.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod context;
mod fake;
mod spawn;
mod state;
mod stdio;

use std::fmt;
use std::io;

pub use context::ProcessContext;
pub use fake::FakeChild;
pub use spawn::{ChildFd, ProcessSpec, SpawnError, MAX_CHILD_FD};
pub use state::Process;
pub(crate) use state::{Dir, PipeEnd, ProcessState, Slot};

use crate::error::DisconnectReason;

/// What you implement to run a child process (Twisted's `ProcessProtocol`).
///
/// Every method has a default that does nothing, except
/// [`child_data_received`](Self::child_data_received), which hands stdout to
/// [`out_received`](Self::out_received) and stderr to
/// [`err_received`](Self::err_received). Child descriptor numbers are the
/// child's (0 stdin, 1 stdout, 2 stderr, 3 and up as configured).
///
/// ```no_run
/// use torsion::process::{ProcessContext, ProcessProtocol, ProcessSpec, ProcessStatus};
/// use torsion::Reactor;
///
/// /// Counts what a child prints, and stops the reactor when it is done.
/// #[derive(Default)]
/// struct Count {
///     out: usize,
///     err: usize,
/// }
///
/// impl ProcessProtocol for Count {
///     fn out_received(&mut self, _ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
///         self.out += data.len();
///     }
///     fn err_received(&mut self, _ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
///         self.err += data.len();
///     }
///     fn process_ended(&mut self, ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
///         println!("{status}: {} bytes out, {} bytes err", self.out, self.err);
///         let _ = ctx.stop();
///     }
/// }
///
/// let mut reactor = Reactor::new()?;
/// reactor.spawn_process(ProcessSpec::new("ls").arg("/"), Count::default())?;
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait ProcessProtocol: std::any::Any {
    /// The child started and its pipes are registered. Called first, once.
    fn connection_made(&mut self, ctx: &mut ProcessContext<'_, '_>) {
        let _ = ctx;
    }

    /// The child wrote `data` to its descriptor `fd` (a pipe from the child).
    fn child_data_received(&mut self, ctx: &mut ProcessContext<'_, '_>, fd: i32, data: &[u8]) {
        match fd {
            1 => self.out_received(ctx, data),
            2 => self.err_received(ctx, data),
            _ => {}
        }
    }

    /// The child wrote `data` to its stdout.
    fn out_received(&mut self, ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
        let _ = (ctx, data);
    }

    /// The child wrote `data` to its stderr.
    fn err_received(&mut self, ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
        let _ = (ctx, data);
    }

    /// The pipe at the child's descriptor `fd` closed: the child (and every
    /// grandchild holding it) closed its end ([`DisconnectReason::Done`] for
    /// an EOF, [`DisconnectReason::Reset`] for a stdin the child stopped
    /// reading), or this side closed or aborted it. Once per pipe.
    fn child_connection_lost(
        &mut self,
        ctx: &mut ProcessContext<'_, '_>,
        fd: i32,
        reason: &DisconnectReason,
    ) {
        let _ = (ctx, fd, reason);
    }

    /// The child exited (it may still have open pipes, held by grandchildren).
    /// Once.
    fn process_exited(&mut self, ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
        let _ = (ctx, status);
    }

    /// The child exited and every one of its pipes closed. Last, once.
    fn process_ended(&mut self, ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
        let _ = (ctx, status);
    }

    /// The child's stdin buffered more than its high water mark: stop writing
    /// until [`resume_writing`](Self::resume_writing).
    fn pause_writing(&mut self, ctx: &mut ProcessContext<'_, '_>) {
        let _ = ctx;
    }

    /// The child's stdin buffer drained to its low water mark.
    fn resume_writing(&mut self, ctx: &mut ProcessContext<'_, '_>) {
        let _ = ctx;
    }
}

/// How a child process ended: an exit code, or a signal. (Twisted's
/// `ProcessDone` is `Exited(0)`; `ProcessTerminated` the others.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcessStatus {
    /// The child exited with this code.
    Exited(i32),
    /// A signal killed the child.
    Signaled {
        /// The signal's number (`libc::SIGKILL` is 9).
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
    /// The child was reaped by someone else (a `waitpid(-1)` of the program's
    /// own): its status is lost.
    Unknown,
}

impl ProcessStatus {
    /// The exit code, if the child exited (rather than was killed).
    pub fn code(&self) -> Option<i32> {
        match self {
            ProcessStatus::Exited(c) => Some(*c),
            _ => None,
        }
    }

    /// The signal that killed the child, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            ProcessStatus::Signaled { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    /// Whether the child exited with code 0.
    pub fn success(&self) -> bool {
        *self == ProcessStatus::Exited(0)
    }

    pub(crate) fn from_std(s: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        if let Some(code) = s.code() {
            ProcessStatus::Exited(code)
        } else if let Some(signal) = s.signal() {
            ProcessStatus::Signaled {
                signal,
                core_dumped: s.core_dumped(),
            }
        } else {
            ProcessStatus::Unknown
        }
    }
}

impl fmt::Display for ProcessStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessStatus::Exited(c) => write!(f, "exited with status {c}"),
            ProcessStatus::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by signal {signal}")?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            ProcessStatus::Unknown => f.write_str("exit status unknown (reaped elsewhere)"),
        }
    }
}

/// Errors of operations on a running child.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The child descriptor is not an open pipe (never configured, or closed
    /// already): Twisted's `KeyError` from `writeToChild`.
    #[error("child descriptor {0} is not an open pipe")]
    UnknownFd(i32),
    /// The child descriptor is a pipe from the child: it cannot be written.
    #[error("child descriptor {0} is a pipe from the child and cannot be written")]
    NotWritable(i32),
    /// The child exited already (Twisted's `ProcessExitedAlready`).
    #[error("the process has exited already")]
    ExitedAlready,
    /// The operating system refused (for example a signal number it does not
    /// know).
    #[error(transparent)]
    Io(#[from] io::Error),
}
