//! [`ProcessContext`]: what a [`ProcessProtocol`](super::ProcessProtocol)
//! callback reaches — the child's pipes, signals, and the reactor.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use bytes::Bytes;

use super::state::{Dir, ProcessState};
use super::{Process, ProcessError};
use crate::context::Core;
use crate::error::DisconnectReason;
use crate::transport::{flags, Context};

/// Where a process callback runs: inside the callback of one of its pipes
/// (whose context can be used directly), or elsewhere (start, exit).
pub(crate) enum Inner<'a, 'b> {
    Pipe(&'a mut Context<'b>, i32),
    Core(&'a mut Core),
}

impl Inner<'_, '_> {
    pub(crate) fn core(&mut self) -> &mut Core {
        match self {
            Inner::Pipe(ctx, _) => ctx.core(),
            Inner::Core(core) => core,
        }
    }
}

/// Aborts a pipe's connection with `reason`, as the engine does after a
/// panic in a connection's own callback.
pub(crate) fn abort_with(ctx: &mut Context<'_>, reason: DisconnectReason) {
    ctx.conn.set(flags::ABORT);
    ctx.conn.extra().close_reason = Some(reason);
}

/// A child process's transport, as seen from a
/// [`ProcessProtocol`](super::ProcessProtocol) callback (Twisted's process
/// transport). Dereferences to [`Core`] for timers, stop and connections.
///
/// Writes to the child's stdin made during one callback are gathered and
/// handed to the pipe in one call when the callback returns, with the
/// socket's write buffer, water marks and back-pressure behind them. Writes
/// after [`close_stdin`](Self::close_stdin) are dropped, as writes after
/// `lose_connection` are on a socket.
pub struct ProcessContext<'a, 'b> {
    pub(crate) inner: Inner<'a, 'b>,
    state: &'a Rc<ProcessState>,
    /// Writes to a pipe other than the current one, not yet queued: one
    /// operation carries them all, so they are gathered like a socket's.
    gathered: Option<(i32, Vec<Bytes>)>,
}

impl fmt::Debug for ProcessContext<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessContext")
            .field("pid", &self.state.pid())
            .finish_non_exhaustive()
    }
}

impl Deref for ProcessContext<'_, '_> {
    type Target = Core;
    fn deref(&self) -> &Core {
        match &self.inner {
            Inner::Pipe(ctx, _) => ctx,
            Inner::Core(core) => core,
        }
    }
}

impl DerefMut for ProcessContext<'_, '_> {
    fn deref_mut(&mut self) -> &mut Core {
        self.inner.core()
    }
}

impl<'a, 'b> ProcessContext<'a, 'b> {
    pub(crate) fn new(inner: Inner<'a, 'b>, state: &'a Rc<ProcessState>) -> Self {
        ProcessContext {
            inner,
            state,
            gathered: None,
        }
    }

    /// The reactor part of the context, explicitly.
    pub fn core(&mut self) -> &mut Core {
        self.inner.core()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.state.pid()
    }

    /// A handle to this process (for timers, or to keep).
    pub fn process(&self) -> Process {
        Process {
            state: self.state.clone(),
        }
    }

    /// Writes `data` to the child's stdin. Dropped if stdin is not a pipe or is
    /// closed; [`write_to_child`](Self::write_to_child) says which.
    pub fn write(&mut self, data: &[u8]) {
        let _ = self.write_to_child(0, data);
    }

    /// Writes `data` to the child's stdin without copying it.
    pub fn write_bytes(&mut self, data: Bytes) {
        let _ = self.write_bytes_to_child(0, data);
    }

    /// Writes `data` to the child's descriptor `fd` (a pipe to the child).
    ///
    /// # Errors
    /// [`ProcessError::UnknownFd`] if `fd` is not an open pipe;
    /// [`ProcessError::NotWritable`] if it is a pipe from the child.
    pub fn write_to_child(&mut self, fd: i32, data: &[u8]) -> Result<(), ProcessError> {
        self.writable(fd)?;
        if let Inner::Pipe(ctx, cur) = &mut self.inner {
            if *cur == fd {
                ctx.write(data);
                return Ok(());
            }
        }
        self.gather(fd, Bytes::copy_from_slice(data));
        Ok(())
    }

    /// [`write_to_child`](Self::write_to_child) without a copy.
    ///
    /// # Errors
    /// As [`write_to_child`](Self::write_to_child).
    pub fn write_bytes_to_child(&mut self, fd: i32, data: Bytes) -> Result<(), ProcessError> {
        self.writable(fd)?;
        if let Inner::Pipe(ctx, cur) = &mut self.inner {
            if *cur == fd {
                ctx.write_bytes(data);
                return Ok(());
            }
        }
        self.gather(fd, data);
        Ok(())
    }

    fn writable(&self, fd: i32) -> Result<(), ProcessError> {
        match self.state.slot(fd) {
            None => Err(ProcessError::UnknownFd(fd)),
            Some(s) if s.dir == Dir::FromChild => Err(ProcessError::NotWritable(fd)),
            Some(_) => Ok(()),
        }
    }

    fn gather(&mut self, fd: i32, data: Bytes) {
        match &mut self.gathered {
            Some((f, parts)) if *f == fd => parts.push(data),
            _ => {
                self.flush();
                self.gathered = Some((fd, vec![data]));
            }
        }
    }

    /// Queues the gathered writes as one operation on their pipe.
    pub(crate) fn flush(&mut self) {
        let Some((fd, parts)) = self.gathered.take() else {
            return;
        };
        if let Some(h) = self.state.slot(fd).and_then(|s| s.handle) {
            self.inner.core().call_on(
                h,
                Box::new(move |_, ctx| {
                    for p in parts {
                        ctx.write_bytes(p);
                    }
                }),
            );
        }
    }

    pub(crate) fn drop_gathered(&mut self) {
        self.gathered = None;
    }

    /// Runs `f` on the connection of pipe `fd`: now if this callback runs on
    /// it, else once the callback returns (after the writes made before).
    fn on_pipe(
        &mut self,
        fd: i32,
        f: impl FnOnce(&mut Context<'_>) + 'static,
    ) -> Result<(), ProcessError> {
        let slot = self.state.slot(fd).ok_or(ProcessError::UnknownFd(fd))?;
        if let Inner::Pipe(ctx, cur) = &mut self.inner {
            if *cur == fd {
                f(ctx);
                return Ok(());
            }
        }
        self.flush();
        if let Some(h) = slot.handle {
            self.inner.core().call_on(h, Box::new(move |_, ctx| f(ctx)));
        }
        Ok(())
    }

    /// Closes the child's stdin once what was written to it is flushed: the
    /// child reads EOF. Nothing happens if stdin is not an open pipe.
    pub fn close_stdin(&mut self) {
        let _ = self.close_child_fd(0);
    }

    /// Closes the pipe of the child's stdout (the child gets `EPIPE` or
    /// `SIGPIPE` if it writes on).
    pub fn close_stdout(&mut self) {
        let _ = self.close_child_fd(1);
    }

    /// Closes the pipe of the child's stderr.
    pub fn close_stderr(&mut self) {
        let _ = self.close_child_fd(2);
    }

    /// Closes the pipe at child descriptor `fd` (after flushing, for a pipe to
    /// the child). `child_connection_lost(fd)` follows.
    ///
    /// # Errors
    /// [`ProcessError::UnknownFd`] if `fd` is not an open pipe.
    pub fn close_child_fd(&mut self, fd: i32) -> Result<(), ProcessError> {
        self.on_pipe(fd, |ctx| ctx.lose_connection())
    }

    /// Closes every pipe (stdin after flushing). The child is not signalled.
    pub fn lose_connection(&mut self) {
        for fd in self.open_fds() {
            let _ = self.close_child_fd(fd);
        }
    }

    /// Stops reading every pipe from the child until
    /// [`resume_reading`](Self::resume_reading): the child blocks once the
    /// pipes are full (back-pressure on its output).
    pub fn pause_reading(&mut self) {
        for fd in self.open_fds() {
            if self.state.slot(fd).is_some_and(|s| s.dir == Dir::FromChild) {
                let _ = self.on_pipe(fd, |ctx| ctx.pause_reading());
            }
        }
    }

    /// Resumes reading the pipes from the child.
    pub fn resume_reading(&mut self) {
        for fd in self.open_fds() {
            if self.state.slot(fd).is_some_and(|s| s.dir == Dir::FromChild) {
                let _ = self.on_pipe(fd, |ctx| ctx.resume_reading());
            }
        }
    }

    /// Sets the water marks of the child's stdin buffer (see
    /// [`Context::set_write_water_marks`]).
    pub fn set_write_water_marks(&mut self, low: usize, high: usize) {
        let _ = self.on_pipe(0, move |ctx| ctx.set_write_water_marks(low, high));
    }

    /// The child descriptors that are open pipes.
    pub fn open_fds(&self) -> Vec<i32> {
        self.state.pipes.borrow().keys().copied().collect()
    }

    /// Sends `signal` to the child (Twisted's `signalProcess`).
    ///
    /// # Errors
    /// [`ProcessError::ExitedAlready`] once the child exited.
    pub fn signal(&mut self, signal: i32) -> Result<(), ProcessError> {
        self.state.signal(signal)
    }

    /// Sends `SIGKILL`.
    ///
    /// # Errors
    /// As [`signal`](Self::signal).
    pub fn kill(&mut self) -> Result<(), ProcessError> {
        self.signal(libc::SIGKILL)
    }

    /// Sends `SIGTERM`.
    ///
    /// # Errors
    /// As [`signal`](Self::signal).
    pub fn terminate(&mut self) -> Result<(), ProcessError> {
        self.signal(libc::SIGTERM)
    }
}
