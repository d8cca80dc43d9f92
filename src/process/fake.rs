//! [`FakeChild`]: a stand-in for a child process, so a
//! [`ProcessProtocol`](crate::process::ProcessProtocol) is unit-tested on the
//! [`Pump`] through the same engine as over real pipes. (It lives here, not
//! in `testing`, because the test tools sit below the process layer.)

use std::cell::Ref;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use crate::error::DisconnectReason;
use crate::process::{
    ChildFd, Dir, PipeEnd, Process, ProcessProtocol, ProcessState, ProcessStatus, Slot,
};
use crate::protocol::Protocol;
use crate::testing::{Link, Pump};
use crate::transport::Context;

/// The child's end of one pipe: records what the protocol wrote to it.
#[derive(Default)]
pub(crate) struct ChildEnd {
    received: Vec<u8>,
}

impl Protocol for ChildEnd {
    fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
        self.received.extend_from_slice(data);
    }
}

/// A child process played by the test: each of its pipes is a link of a
/// [`Pump`] (the protocol's end runs on the stream engine exactly as a real
/// pipe's does: gathered writes, water marks, flush-then-close, panics);
/// the test writes as the child, reads what the child was sent, closes the
/// child's ends and makes it exit. Signals are recorded, never sent. Its pid
/// is 0.
///
/// ```
/// use torsion::process::{ChildFd, ProcessContext, ProcessProtocol, ProcessStatus};
/// use torsion::testing::Pump;
/// use torsion::process::FakeChild;
///
/// /// Sends a command, then waits for the child to answer and exit.
/// #[derive(Default)]
/// struct Ask {
///     answer: Vec<u8>,
///     ended: Option<ProcessStatus>,
/// }
/// impl ProcessProtocol for Ask {
///     fn connection_made(&mut self, ctx: &mut ProcessContext<'_, '_>) {
///         ctx.write(b"status\n");
///         ctx.close_stdin();
///     }
///     fn out_received(&mut self, _ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
///         self.answer.extend_from_slice(data);
///     }
///     fn process_ended(&mut self, _ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
///         self.ended = Some(status);
///     }
/// }
///
/// let mut pump = Pump::new();
/// let child = pump.spawn_fake(Ask::default(), &[(0, ChildFd::ToChild), (1, ChildFd::FromChild)]);
/// pump.flush();
/// assert_eq!(child.received(&pump, 0), b"status\n");
/// assert!(child.closed_by_parent(&pump, 0));
/// child.write(&mut pump, 1, b"all good\n");
/// child.close(&mut pump, 1);
/// child.exit(&mut pump, ProcessStatus::Exited(0));
/// pump.flush();
/// let ask = child.protocol::<Ask>(&pump);
/// assert_eq!(ask.answer, b"all good\n");
/// assert_eq!(ask.ended, Some(ProcessStatus::Exited(0)));
/// ```
pub struct FakeChild {
    state: Rc<ProcessState>,
    links: BTreeMap<i32, Link<PipeEnd, ChildEnd>>,
}

impl fmt::Debug for FakeChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeChild")
            .field("fds", &self.links.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Pump {
    /// Runs `protocol` for a stand-in child whose descriptors `fds` are pipes
    /// (`ToChild` or `FromChild`; other kinds are not pipes and are ignored).
    /// Its `connection_made` runs now; what it wrote moves on the next
    /// [`step`](Pump::step) or [`flush`](Pump::flush).
    pub fn spawn_fake<P: ProcessProtocol>(
        &mut self,
        protocol: P,
        fds: &[(i32, ChildFd)],
    ) -> FakeChild {
        let mut slots = BTreeMap::new();
        for &(fd, what) in fds {
            let dir = match what {
                ChildFd::ToChild => Dir::ToChild,
                ChildFd::FromChild => Dir::FromChild,
                _ => continue,
            };
            slots.insert(fd, Slot { dir, handle: None });
        }
        let state = ProcessState::fake(Box::new(protocol), slots.clone());
        let mut links = BTreeMap::new();
        for fd in slots.into_keys() {
            let link = self.connect(state.pipe_end(fd), ChildEnd::default());
            links.insert(fd, link);
        }
        state.started(self.core_mut());
        FakeChild { state, links }
    }
}

impl FakeChild {
    fn link(&self, fd: i32) -> Link<PipeEnd, ChildEnd> {
        match self.links.get(&fd) {
            Some(l) => *l,
            None => panic!("child descriptor {fd} is not a pipe of this FakeChild"),
        }
    }

    /// The handle the protocol's context gives out.
    pub fn process(&self) -> Process {
        Process {
            state: self.state.clone(),
        }
    }

    /// The protocol, to look at what it recorded.
    ///
    /// # Panics
    /// If it is not a `P`, or is running a callback.
    pub fn protocol<'a, P: ProcessProtocol>(&'a self, _pump: &'a Pump) -> Ref<'a, P> {
        self.state.protocol_ref::<P>()
    }

    /// The child writes `data` to its descriptor `fd`: the protocol hears
    /// `child_data_received(fd, ..)` once the pump delivers it.
    ///
    /// # Panics
    /// If `fd` is not one of the pipes.
    pub fn write(&self, pump: &mut Pump, fd: i32, data: &[u8]) {
        let data = data.to_vec();
        pump.with_server(self.link(fd), move |_, ctx| ctx.write(&data));
    }

    /// What the child has read from its descriptor `fd` so far.
    ///
    /// # Panics
    /// If `fd` is not one of the pipes.
    pub fn received<'a>(&self, pump: &'a Pump, fd: i32) -> &'a [u8] {
        &pump.server(self.link(fd)).received
    }

    /// Whether the protocol's side closed the pipe at `fd` (the child saw
    /// EOF, or the pipe was aborted).
    ///
    /// # Panics
    /// If `fd` is not one of the pipes.
    pub fn closed_by_parent(&self, pump: &Pump, fd: i32) -> bool {
        pump.server_lost(self.link(fd)).is_some()
    }

    /// The child closes its end of `fd` (with every grandchild): the protocol
    /// hears `child_connection_lost(fd)` once the pump delivers the EOF.
    ///
    /// # Panics
    /// If `fd` is not one of the pipes.
    pub fn close(&self, pump: &mut Pump, fd: i32) {
        pump.with_server(self.link(fd), |_, ctx| ctx.lose_connection());
    }

    /// The child exits with `status`: `process_exited` now, `process_ended`
    /// once every pipe is closed too. A second exit is ignored.
    pub fn exit(&self, pump: &mut Pump, status: ProcessStatus) {
        self.state.exited(pump.core_mut(), status);
    }

    /// The signals the protocol sent, in order.
    pub fn signals(&self) -> Vec<i32> {
        self.state.recorded_signals()
    }

    /// Whether `process_ended` ran.
    pub fn has_ended(&self) -> bool {
        self.process().has_ended()
    }

    /// How each pipe the protocol side has seen close ended, by descriptor.
    pub fn lost(&self, pump: &Pump) -> Vec<(i32, DisconnectReason)> {
        self.links
            .iter()
            .filter_map(|(fd, l)| pump.client_lost(*l).map(|r| (*fd, r.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ProcessContext;

    /// Feeds the child a lot, pausing when asked; records everything.
    #[derive(Default)]
    struct Feeder {
        events: Vec<String>,
        paused: bool,
        sent: usize,
    }

    impl Feeder {
        fn feed(&mut self, ctx: &mut ProcessContext<'_, '_>) {
            while !self.paused && self.sent < 1_000_000 {
                ctx.write(&[b'x'; 10_000]);
                self.sent += 10_000;
            }
        }
    }

    impl ProcessProtocol for Feeder {
        fn connection_made(&mut self, ctx: &mut ProcessContext<'_, '_>) {
            self.events.push("made".into());
            self.feed(ctx);
        }
        fn pause_writing(&mut self, _ctx: &mut ProcessContext<'_, '_>) {
            self.paused = true;
            self.events.push("pause".into());
        }
        fn resume_writing(&mut self, ctx: &mut ProcessContext<'_, '_>) {
            self.paused = false;
            self.events.push("resume".into());
            self.feed(ctx);
            if self.sent == 1_000_000 {
                ctx.close_stdin();
            }
        }
        fn out_received(&mut self, ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
            self.events
                .push(format!("out {}", String::from_utf8_lossy(data)));
            if data == b"stop" {
                ctx.terminate().unwrap();
            }
        }
        fn child_connection_lost(
            &mut self,
            _ctx: &mut ProcessContext<'_, '_>,
            fd: i32,
            reason: &DisconnectReason,
        ) {
            self.events.push(format!("lost {fd} {reason}"));
        }
        fn process_exited(&mut self, _ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
            self.events.push(format!("exited {status}"));
        }
        fn process_ended(&mut self, ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
            self.events.push(format!("ended {status}"));
            assert!(ctx.kill().is_err(), "a signal after the end is an error");
        }
    }

    #[test]
    fn a_fake_child_runs_a_process_protocol_on_the_engine() {
        let mut pump = Pump::new();
        let child = pump.spawn_fake(
            Feeder::default(),
            &[
                (0, ChildFd::ToChild),
                (1, ChildFd::FromChild),
                (2, ChildFd::Null),
            ],
        );
        pump.flush();
        // Back-pressure came from the pump's bounded wire, as from a pipe.
        assert_eq!(child.received(&pump, 0).len(), 1_000_000);
        assert!(
            child.closed_by_parent(&pump, 0),
            "stdin closed after the flush"
        );
        child.write(&mut pump, 1, b"stop");
        pump.flush();
        assert_eq!(child.signals(), [libc::SIGTERM]);
        child.exit(
            &mut pump,
            ProcessStatus::Signaled {
                signal: 15,
                core_dumped: false,
            },
        );
        pump.flush();
        assert!(!child.has_ended(), "stdout still open");
        child.close(&mut pump, 1);
        pump.flush();
        assert!(child.has_ended());
        let f = child.protocol::<Feeder>(&pump);
        assert_eq!(f.events.first().map(String::as_str), Some("made"));
        assert!(f.events.iter().any(|e| e == "pause"));
        assert!(f.events.iter().any(|e| e == "resume"));
        let tail: Vec<&str> = f
            .events
            .iter()
            .rev()
            .take(4)
            .rev()
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            [
                "out stop",
                "exited killed by signal 15",
                "lost 1 connection closed cleanly",
                "ended killed by signal 15"
            ]
        );
        assert!(f
            .events
            .iter()
            .any(|e| e == "lost 0 connection closed cleanly"));
        drop(f);
        pump.core_mut().assert_no_panics();
    }
}
