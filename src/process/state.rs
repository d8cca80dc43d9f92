//! One child's state, shared by the adapters of its pipes (each pipe is a
//! connection of the stream engine whose protocol is a [`PipeEnd`]), its exit
//! watcher ([`Reaping`]) and the [`Process`] handle. Nothing here knows the
//! engine's insides: it sees pipes only through `Context` and handles.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use super::context::{abort_with, Inner, ProcessContext};
use super::{ProcessError, ProcessProtocol, ProcessStatus};
use crate::context::{ConnectionHandle, Core};
use crate::error::DisconnectReason;
use crate::protocol::Protocol;
use crate::reactor::{sys, ExitWatch};
use crate::transport::Context;

/// Which way a pipe carries data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// The parent writes, the child reads.
    ToChild,
    /// The child writes, the parent reads.
    FromChild,
}

/// One open pipe of the child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) dir: Dir,
    /// Set once the pipe's connection is registered.
    pub(crate) handle: Option<ConnectionHandle>,
}

pub(crate) struct ProcessState {
    pid: u32,
    pidfd: Option<OwnedFd>,
    /// A stand-in child (`testing::FakeChild`): signals are recorded here,
    /// never sent.
    recorded: Option<RefCell<Vec<i32>>>,
    protocol: RefCell<Box<dyn ProcessProtocol>>,
    /// Open pipes by child descriptor; a closed one is removed.
    pub(crate) pipes: RefCell<BTreeMap<i32, Slot>>,
    status: Cell<Option<ProcessStatus>>,
    ended: Cell<bool>,
}

impl ProcessState {
    pub(crate) fn new(
        pid: u32,
        pidfd: Option<OwnedFd>,
        protocol: Box<dyn ProcessProtocol>,
        pipes: BTreeMap<i32, Slot>,
    ) -> Rc<ProcessState> {
        Rc::new(ProcessState {
            pid,
            pidfd,
            recorded: None,
            protocol: RefCell::new(protocol),
            pipes: RefCell::new(pipes),
            status: Cell::new(None),
            ended: Cell::new(false),
        })
    }

    /// The state of a stand-in child with pid 0 whose signals are recorded.
    pub(crate) fn fake(
        protocol: Box<dyn ProcessProtocol>,
        pipes: BTreeMap<i32, Slot>,
    ) -> Rc<ProcessState> {
        Rc::new(ProcessState {
            pid: 0,
            pidfd: None,
            recorded: Some(RefCell::new(Vec::new())),
            protocol: RefCell::new(protocol),
            pipes: RefCell::new(pipes),
            status: Cell::new(None),
            ended: Cell::new(false),
        })
    }

    /// The protocol, as a `P`.
    ///
    /// # Panics
    /// If it is not a `P`, or a callback is running.
    pub(crate) fn protocol_ref<P: ProcessProtocol>(&self) -> std::cell::Ref<'_, P> {
        std::cell::Ref::map(self.protocol.borrow(), |b| {
            let any: &dyn std::any::Any = &**b;
            match any.downcast_ref::<P>() {
                Some(p) => p,
                None => panic!(
                    "the process protocol is not a {}",
                    std::any::type_name::<P>()
                ),
            }
        })
    }

    /// Signals sent to a stand-in child.
    pub(crate) fn recorded_signals(&self) -> Vec<i32> {
        self.recorded
            .as_ref()
            .map(|r| r.borrow().clone())
            .unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn pidfd(&self) -> Option<RawFd> {
        self.pidfd.as_ref().map(|f| f.as_raw_fd())
    }

    pub(crate) fn slot(&self, fd: i32) -> Option<Slot> {
        self.pipes.borrow().get(&fd).copied()
    }

    pub(crate) fn signal(&self, signal: i32) -> Result<(), ProcessError> {
        if self.status.get().is_some() {
            return Err(ProcessError::ExitedAlready);
        }
        if let Some(r) = &self.recorded {
            r.borrow_mut().push(signal);
            return Ok(());
        }
        let res = match &self.pidfd {
            Some(fd) => sys::pidfd_send_signal(fd.as_fd(), signal),
            // Not reaped yet (we reap it ourselves), so the pid is still ours.
            None => sys::kill(self.pid, signal),
        };
        match res {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(ProcessError::ExitedAlready),
            Err(e) => Err(ProcessError::Io(e)),
            Ok(()) => Ok(()),
        }
    }

    /// The protocol of the connection for child descriptor `fd`.
    pub(crate) fn pipe_protocol(self: &Rc<Self>, fd: i32) -> Box<dyn Protocol> {
        Box::new(self.pipe_end(fd))
    }

    pub(crate) fn pipe_end(self: &Rc<Self>, fd: i32) -> PipeEnd {
        PipeEnd {
            state: self.clone(),
            fd,
        }
    }

    /// Runs `f` on the user's protocol with a process context, catching a
    /// panic: it costs this process (all its pipes are aborted), nothing else.
    pub(crate) fn call(
        self: &Rc<Self>,
        inner: Inner<'_, '_>,
        f: impl FnOnce(&mut dyn ProcessProtocol, &mut ProcessContext<'_, '_>),
    ) {
        let Ok(mut proto) = self.protocol.try_borrow_mut() else {
            tracing::warn!(
                pid = self.pid,
                "process callback while another runs: skipped"
            );
            return;
        };
        let mut ctx = ProcessContext::new(inner, self);
        let res = catch_unwind(AssertUnwindSafe(|| f(&mut **proto, &mut ctx)));
        drop(proto);
        match res {
            Ok(()) => ctx.flush(),
            Err(p) => {
                let msg = ctx.core().caught_panic(p, "process callback");
                let reason = DisconnectReason::Panicked(msg);
                ctx.drop_gathered();
                self.abort_all(&mut ctx.inner, reason);
            }
        }
    }

    /// Aborts every open pipe with `reason` (the current one directly, the
    /// others through their handles).
    fn abort_all(&self, inner: &mut Inner<'_, '_>, reason: DisconnectReason) {
        let pipes: Vec<(i32, Slot)> = self
            .pipes
            .borrow()
            .iter()
            .map(|(fd, s)| (*fd, *s))
            .collect();
        for (fd, slot) in pipes {
            match inner {
                Inner::Pipe(ctx, cur) if *cur == fd => abort_with(ctx, reason.clone()),
                _ => {
                    if let Some(h) = slot.handle {
                        let reason = reason.clone();
                        inner
                            .core()
                            .call_on(h, Box::new(move |_, ctx| abort_with(ctx, reason)));
                    }
                }
            }
        }
    }

    /// Every pipe is registered: the protocol hears `connection_made`.
    pub(crate) fn started(self: &Rc<Self>, core: &mut Core) {
        tracing::debug!(pid = self.pid, "process started");
        self.call(Inner::Core(core), |p, ctx| p.connection_made(ctx));
    }

    /// A pipe could not be registered: it is closed and forgotten.
    pub(crate) fn pipe_failed(&self, fd: i32) {
        self.pipes.borrow_mut().remove(&fd);
    }

    fn pipe_lost(self: &Rc<Self>, ctx: &mut Context<'_>, fd: i32, reason: &DisconnectReason) {
        if self.pipes.borrow_mut().remove(&fd).is_none() {
            return;
        }
        tracing::debug!(pid = self.pid, fd, %reason, "child pipe closed");
        self.call(Inner::Pipe(ctx, fd), |p, ctx| {
            p.child_connection_lost(ctx, fd, reason)
        });
        self.maybe_ended(Inner::Pipe(ctx, fd));
    }

    /// The child was reaped with `status`: `process_exited`, and
    /// `process_ended` if no pipe is open any more.
    pub(crate) fn exited(self: &Rc<Self>, core: &mut Core, status: ProcessStatus) {
        if self.status.get().is_some() {
            return;
        }
        tracing::debug!(pid = self.pid, %status, "process exited");
        self.status.set(Some(status));
        self.call(Inner::Core(core), |p, ctx| p.process_exited(ctx, status));
        self.maybe_ended(Inner::Core(core));
    }

    fn maybe_ended(self: &Rc<Self>, inner: Inner<'_, '_>) {
        let Some(status) = self.status.get() else {
            return;
        };
        if self.ended.get() || !self.pipes.borrow().is_empty() {
            return;
        }
        self.ended.set(true);
        tracing::debug!(pid = self.pid, %status, "process ended");
        self.call(inner, |p, ctx| p.process_ended(ctx, status));
    }
}

/// The protocol of one child pipe's connection: forwards the engine's events
/// to the process's [`ProcessProtocol`], naming the child descriptor.
pub(crate) struct PipeEnd {
    state: Rc<ProcessState>,
    fd: i32,
}

impl Protocol for PipeEnd {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        if let Some(slot) = self.state.pipes.borrow_mut().get_mut(&self.fd) {
            slot.handle = Some(ctx.handle());
        }
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        let fd = self.fd;
        self.state.call(Inner::Pipe(ctx, fd), |p, ctx| {
            p.child_data_received(ctx, fd, data)
        });
    }
    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.state.pipe_lost(ctx, self.fd, reason);
    }
    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        self.state
            .call(Inner::Pipe(ctx, self.fd), |p, ctx| p.pause_writing(ctx));
    }
    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        self.state
            .call(Inner::Pipe(ctx, self.fd), |p, ctx| p.resume_writing(ctx));
    }
}

/// Reaps one child: owns its `std::process::Child` and checks it when the
/// exit watcher fires. Only this child's pid is waited for.
pub(crate) struct Reaping {
    state: Rc<ProcessState>,
    child: std::process::Child,
}

impl Reaping {
    pub(crate) fn new(state: Rc<ProcessState>, child: std::process::Child) -> Self {
        Reaping { state, child }
    }

    pub(crate) fn is_reaped(&self) -> bool {
        self.state.status.get().is_some()
    }
}

impl ExitWatch for Reaping {
    fn pidfd(&self) -> Option<RawFd> {
        self.state.pidfd()
    }

    fn is_done(&self) -> bool {
        self.is_reaped()
    }

    /// Reaps the child if it exited, and reports it.
    fn check(&mut self, core: &mut Core) {
        if self.is_reaped() {
            return;
        }
        let status = match self.child.try_wait() {
            Ok(Some(s)) => ProcessStatus::from_std(s),
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(pid = self.state.pid, error = %e, "child reaped elsewhere");
                ProcessStatus::Unknown
            }
        };
        self.state.exited(core, status);
    }
}

impl Drop for Reaping {
    fn drop(&mut self) {
        // The reactor went away with the child still running: reap it if it
        // has exited; a running child is left alone (Twisted does the same).
        if !self.is_reaped() {
            let _ = self.child.try_wait();
        }
    }
}

/// A handle to a spawned child, returned by
/// [`Core::spawn_process`](crate::Core::spawn_process): its pid, signals,
/// and whether it ended.
#[derive(Clone)]
pub struct Process {
    pub(crate) state: Rc<ProcessState>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.state.pid)
            .field("status", &self.state.status.get())
            .finish_non_exhaustive()
    }
}

impl Process {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.state.pid
    }

    /// The exit status, once the child was reaped.
    pub fn status(&self) -> Option<ProcessStatus> {
        self.state.status.get()
    }

    /// Whether `process_ended` ran (the child exited and all its pipes closed).
    pub fn has_ended(&self) -> bool {
        self.state.ended.get()
    }

    /// Sends `signal` (for example `libc::SIGINT`) to the child.
    ///
    /// # Errors
    /// [`ProcessError::ExitedAlready`] once the child exited;
    /// [`ProcessError::Io`] for a signal the system refuses.
    pub fn signal(&self, signal: i32) -> Result<(), ProcessError> {
        self.state.signal(signal)
    }

    /// Sends `SIGKILL`.
    ///
    /// # Errors
    /// As [`signal`](Self::signal).
    pub fn kill(&self) -> Result<(), ProcessError> {
        self.signal(libc::SIGKILL)
    }

    /// Sends `SIGTERM`.
    ///
    /// # Errors
    /// As [`signal`](Self::signal).
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.signal(libc::SIGTERM)
    }
}
