//! Child processes, with real programs (`sh`, `cat`, `env`, `sleep`):
//! Twisted's process behaviours (`test_process.py`).
mod util;

use std::cell::RefCell;
use std::rc::Rc;

use torsion::process::{
    ChildFd, ProcessContext, ProcessError, ProcessProtocol, ProcessSpec, ProcessStatus, SpawnError,
};
use torsion::{DisconnectReason, PanicPolicy, Reactor};
use util::run_until;

/// Everything a process protocol heard, in order.
#[derive(Default, Debug)]
struct Seen {
    events: Vec<String>,
    out: Vec<u8>,
    err: Vec<u8>,
    fds: Vec<(i32, Vec<u8>)>,
    lost: Vec<(i32, DisconnectReason)>,
    exited: Option<ProcessStatus>,
    ended: Option<ProcessStatus>,
    /// Pipes still open when `process_exited` ran.
    open_at_exit: Vec<i32>,
    notes: Vec<String>,
}

type Shared = Rc<RefCell<Seen>>;

type Hook = Box<dyn FnMut(&mut ProcessContext<'_, '_>, &Shared)>;

/// Records every callback; `on_made` runs in `connection_made`, `on_ended`
/// in `process_ended`.
struct Recorder {
    seen: Shared,
    on_made: Option<Hook>,
    on_ended: Option<Hook>,
}

impl Recorder {
    fn new(seen: &Shared) -> Self {
        Recorder {
            seen: seen.clone(),
            on_made: None,
            on_ended: None,
        }
    }
    fn on_made(mut self, f: impl FnMut(&mut ProcessContext<'_, '_>, &Shared) + 'static) -> Self {
        self.on_made = Some(Box::new(f));
        self
    }
    fn on_ended(mut self, f: impl FnMut(&mut ProcessContext<'_, '_>, &Shared) + 'static) -> Self {
        self.on_ended = Some(Box::new(f));
        self
    }
}

impl ProcessProtocol for Recorder {
    fn connection_made(&mut self, ctx: &mut ProcessContext<'_, '_>) {
        self.seen.borrow_mut().events.push("made".into());
        if let Some(f) = &mut self.on_made {
            f(ctx, &self.seen);
        }
    }
    fn child_data_received(&mut self, _ctx: &mut ProcessContext<'_, '_>, fd: i32, data: &[u8]) {
        let mut s = self.seen.borrow_mut();
        match fd {
            1 => s.out.extend_from_slice(data),
            2 => s.err.extend_from_slice(data),
            _ => match s.fds.iter_mut().find(|(f, _)| *f == fd) {
                Some((_, d)) => d.extend_from_slice(data),
                None => s.fds.push((fd, data.to_vec())),
            },
        }
    }
    fn child_connection_lost(
        &mut self,
        _ctx: &mut ProcessContext<'_, '_>,
        fd: i32,
        reason: &DisconnectReason,
    ) {
        let mut s = self.seen.borrow_mut();
        assert!(
            !s.lost.iter().any(|(f, _)| *f == fd),
            "child_connection_lost({fd}) twice"
        );
        assert!(
            s.ended.is_none(),
            "child_connection_lost after process_ended"
        );
        s.lost.push((fd, reason.clone()));
        s.events.push(format!("lost {fd}"));
    }
    fn process_exited(&mut self, ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
        let mut s = self.seen.borrow_mut();
        assert!(s.exited.is_none(), "process_exited twice");
        s.exited = Some(status);
        s.open_at_exit = ctx.open_fds();
        s.events.push("exited".into());
    }
    fn process_ended(&mut self, ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
        {
            let mut s = self.seen.borrow_mut();
            assert!(s.ended.is_none(), "process_ended twice");
            assert!(s.exited.is_some(), "process_ended before process_exited");
            s.ended = Some(status);
            s.events.push("ended".into());
        }
        if let Some(f) = &mut self.on_ended {
            f(ctx, &self.seen);
        }
    }
}

fn sh(script: &str) -> ProcessSpec {
    ProcessSpec::new("/bin/sh").args(["-c", script])
}

fn ended(seen: &Shared) -> bool {
    seen.borrow().ended.is_some()
}

#[test]
fn output_streams_and_exit_code_arrive_in_order() {
    let mut reactor = Reactor::new().unwrap();
    let seen = Shared::default();
    reactor
        .spawn_process(sh("echo out; echo err >&2; exit 3"), Recorder::new(&seen))
        .unwrap();
    run_until(&mut reactor, || ended(&seen));
    let s = seen.borrow();
    assert_eq!(s.out, b"out\n");
    assert_eq!(s.err, b"err\n");
    assert_eq!(s.exited, Some(ProcessStatus::Exited(3)));
    assert_eq!(s.ended, Some(ProcessStatus::Exited(3)));
    assert_eq!(s.ended.unwrap().code(), Some(3));
    assert_eq!(s.ended.unwrap().signal(), None);
    assert_eq!(s.events.first().map(String::as_str), Some("made"));
    assert_eq!(s.events.last().map(String::as_str), Some("ended"));
    let mut lost: Vec<i32> = s.lost.iter().map(|(f, _)| *f).collect();
    lost.sort();
    assert_eq!(lost, [0, 1, 2], "every pipe closes once");
    for (fd, reason) in &s.lost {
        if *fd != 0 {
            assert!(reason.is_clean(), "fd {fd}: {reason}");
        }
    }
}

#[test]
fn process_exited_fires_while_a_grandchild_holds_stdout_and_ended_waits_for_it() {
    let mut reactor = Reactor::new().unwrap();
    let seen = Shared::default();
    // The shell starts a grandchild that inherits stdout and stderr, prints
    // its pid, and exits at once.
    reactor
        .spawn_process(sh("sleep 60 & echo $!"), Recorder::new(&seen))
        .unwrap();
    run_until(&mut reactor, || {
        let s = seen.borrow();
        s.exited.is_some() && s.out.ends_with(b"\n")
    });
    let grandchild = String::from_utf8(seen.borrow().out.clone()).unwrap();
    {
        let s = seen.borrow();
        assert_eq!(s.exited, Some(ProcessStatus::Exited(0)));
        assert!(
            s.open_at_exit.contains(&1),
            "stdout open at exit: {:?}",
            s.open_at_exit
        );
        assert!(s.ended.is_none(), "ended while the grandchild holds stdout");
        assert!(!s.lost.iter().any(|(f, _)| *f == 1));
    }
    // A few more turns change nothing while the grandchild lives.
    for _ in 0..5 {
        reactor
            .run_once(Some(std::time::Duration::from_millis(10)))
            .unwrap();
    }
    assert!(seen.borrow().ended.is_none());
    let killed = std::process::Command::new("kill")
        .args(["-9", grandchild.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    run_until(&mut reactor, || ended(&seen));
    let s = seen.borrow();
    let at = |e: &str| s.events.iter().position(|x| x == e).unwrap();
    assert!(at("exited") < at("lost 1"));
    assert!(at("lost 1") < at("ended"));
    assert_eq!(s.ended, Some(ProcessStatus::Exited(0)));
}

/// Writes `total` bytes of a pattern to `cat` as fast as back-pressure lets
/// it, and checks every byte that comes back.
struct Firehose {
    total: usize,
    written: usize,
    paused: bool,
    pauses: usize,
    checked: usize,
    mismatch: Option<usize>,
    done: Rc<RefCell<Option<FirehoseResult>>>,
}

/// Bytes checked, pauses, the offset of the first wrong byte, the status.
type FirehoseResult = (usize, usize, Option<usize>, ProcessStatus);

const PERIOD: usize = 251;
const CHUNK: usize = 256 * 1024;

fn pattern() -> &'static [u8] {
    static P: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    P.get_or_init(|| (0..CHUNK + PERIOD).map(|i| (i % PERIOD) as u8).collect())
}

impl Firehose {
    fn pump(&mut self, ctx: &mut ProcessContext<'_, '_>) {
        while !self.paused && self.written < self.total {
            let n = CHUNK.min(self.total - self.written);
            let off = self.written % PERIOD;
            ctx.write_bytes(bytes::Bytes::from_static(&pattern()[off..off + n]));
            self.written += n;
            // `pause_writing` comes when the callback returns and the pipe
            // refuses; stop after a few chunks per callback either way.
            if self.written % (4 * CHUNK) == 0 {
                break;
            }
        }
        if self.written == self.total {
            ctx.close_stdin();
        }
    }
}

impl ProcessProtocol for Firehose {
    fn connection_made(&mut self, ctx: &mut ProcessContext<'_, '_>) {
        self.pump(ctx);
    }
    fn pause_writing(&mut self, _ctx: &mut ProcessContext<'_, '_>) {
        self.paused = true;
        self.pauses += 1;
    }
    fn resume_writing(&mut self, ctx: &mut ProcessContext<'_, '_>) {
        self.paused = false;
        self.pump(ctx);
    }
    fn out_received(&mut self, ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
        let off = self.checked % PERIOD;
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            let o = (off + i * CHUNK) % PERIOD;
            if self.mismatch.is_none() && chunk != &pattern()[o..o + chunk.len()] {
                self.mismatch = Some(self.checked);
            }
        }
        self.checked += data.len();
        // Not paused by the pipe: keep it busy (the writes of one callback are
        // bounded; the next batch goes when output arrives).
        if !self.paused {
            self.pump(ctx);
        }
    }
    fn process_ended(&mut self, _ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
        *self.done.borrow_mut() = Some((self.checked, self.pauses, self.mismatch, status));
    }
}

#[test]
fn a_hundred_mib_through_cat_both_ways_with_back_pressure() {
    let mut reactor = Reactor::new().unwrap();
    let done = Rc::new(RefCell::new(None));
    let total = 100 * 1024 * 1024;
    reactor
        .spawn_process(
            ProcessSpec::new("cat"),
            Firehose {
                total,
                written: 0,
                paused: false,
                pauses: 0,
                checked: 0,
                mismatch: None,
                done: done.clone(),
            },
        )
        .unwrap();
    run_until(&mut reactor, || done.borrow().is_some());
    let (checked, pauses, mismatch, status) = done.borrow().unwrap();
    assert_eq!(status, ProcessStatus::Exited(0));
    assert_eq!(checked, total, "every byte came back");
    assert_eq!(mismatch, None, "identical bytes");
    assert!(pauses > 0, "the pipe pushed back at least once");
}

#[test]
fn writing_to_an_unknown_or_read_only_fd_is_an_error_value() {
    let mut reactor = Reactor::new().unwrap();
    let seen = Shared::default();
    let proto = Recorder::new(&seen)
        .on_made(|ctx, seen| {
            let mut s = seen.borrow_mut();
            s.notes.push(format!("{:?}", ctx.write_to_child(7, b"x")));
            s.notes.push(format!("{:?}", ctx.write_to_child(1, b"x")));
            s.notes.push(format!("{:?}", ctx.close_child_fd(9)));
            s.notes
                .push(format!("{:?}", ctx.write_to_child(0, b"in\n")));
            ctx.close_stdin();
        })
        .on_ended(|ctx, seen| {
            let mut s = seen.borrow_mut();
            s.notes
                .push(format!("{:?}", ctx.write_to_child(0, b"late")));
            s.notes.push(format!("{:?}", ctx.kill()));
        });
    reactor
        .spawn_process(ProcessSpec::new("cat"), proto)
        .unwrap();
    run_until(&mut reactor, || ended(&seen));
    let s = seen.borrow();
    assert_eq!(
        s.notes,
        [
            "Err(UnknownFd(7))",
            "Err(NotWritable(1))",
            "Err(UnknownFd(9))",
            "Ok(())",
            "Err(UnknownFd(0))",
            "Err(ExitedAlready)",
        ]
    );
    assert_eq!(s.out, b"in\n");
    assert!(matches!(
        ProcessError::UnknownFd(7).to_string().as_str(),
        "child descriptor 7 is not an open pipe"
    ));
}

fn env_lines(spec: ProcessSpec) -> Vec<String> {
    let mut reactor = Reactor::new().unwrap();
    let seen = Shared::default();
    reactor.spawn_process(spec, Recorder::new(&seen)).unwrap();
    run_until(&mut reactor, || ended(&seen));
    let s = seen.borrow();
    assert_eq!(
        s.ended,
        Some(ProcessStatus::Exited(0)),
        "{}",
        String::from_utf8_lossy(&s.err)
    );
    let mut lines: Vec<String> = String::from_utf8(s.out.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn the_environment_is_exactly_what_was_given() {
    // Empty by default, as in Twisted.
    assert!(env_lines(ProcessSpec::new("env")).is_empty());
    assert_eq!(
        env_lines(
            ProcessSpec::new("env")
                .env("A", "1")
                .env("B", "two words")
                .env("EMPTY", "")
        ),
        ["A=1", "B=two words", "EMPTY="]
    );
    // Inheriting is the caller's choice.
    std::env::set_var("TORSION_TEST_INHERITED", "yes");
    let inherited = env_lines(ProcessSpec::new("env").inherit_env());
    assert!(inherited.iter().any(|l| l == "TORSION_TEST_INHERITED=yes"));
}

#[test]
fn the_working_directory_and_extra_descriptors_are_as_asked() {
    let mut reactor = Reactor::new().unwrap();
    let seen = Shared::default();
    let spec = sh("pwd; echo three >&3; cat <&4")
        .current_dir("/tmp")
        .stdin(ChildFd::Null)
        .child_fd(3, ChildFd::FromChild)
        .child_fd(4, ChildFd::ToChild);
    let proto = Recorder::new(&seen).on_made(|ctx, _| {
        ctx.write_to_child(4, b"four\n").unwrap();
        ctx.close_child_fd(4).unwrap();
        // stdin is /dev/null, not a pipe.
        assert!(matches!(
            ctx.write_to_child(0, b"x"),
            Err(ProcessError::UnknownFd(0))
        ));
    });
    reactor.spawn_process(spec, proto).unwrap();
    run_until(&mut reactor, || ended(&seen));
    let s = seen.borrow();
    assert_eq!(String::from_utf8_lossy(&s.out), "/tmp\nfour\n");
    assert_eq!(s.fds, [(3, b"three\n".to_vec())]);
    assert_eq!(s.ended, Some(ProcessStatus::Exited(0)));
    let mut lost: Vec<i32> = s.lost.iter().map(|(f, _)| *f).collect();
    lost.sort();
    assert_eq!(lost, [1, 2, 3, 4]);
}

#[test]
fn killing_or_terminating_a_child_reports_the_signal() {
    for (sig, kill) in [(libc::SIGKILL, true), (libc::SIGTERM, false)] {
        let mut reactor = Reactor::new().unwrap();
        let seen = Shared::default();
        let proto = Recorder::new(&seen).on_made(move |ctx, _| {
            if kill {
                ctx.kill().unwrap();
            } else {
                ctx.terminate().unwrap();
            }
        });
        let p = reactor
            .spawn_process(ProcessSpec::new("sleep").arg("60"), proto)
            .unwrap();
        run_until(&mut reactor, || ended(&seen));
        let status = seen.borrow().ended.unwrap();
        assert_eq!(status.signal(), Some(sig));
        assert_eq!(status.code(), None);
        assert!(!status.success());
        assert_eq!(status.to_string(), format!("killed by signal {sig}"));
        assert!(p.has_ended());
        assert!(matches!(
            p.signal(libc::SIGINT),
            Err(ProcessError::ExitedAlready)
        ));
    }
}

#[test]
fn a_failed_spawn_is_an_error_value_and_the_protocol_never_runs() {
    let mut reactor = Reactor::new().unwrap();
    let seen = Shared::default();
    let err = reactor
        .spawn_process(
            ProcessSpec::new("/nonexistent/program"),
            Recorder::new(&seen),
        )
        .unwrap_err();
    assert!(matches!(err, SpawnError::NotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot run /nonexistent/program: no such program"
    );
    let err = reactor
        .spawn_process(
            ProcessSpec::new("no-such-program-anywhere"),
            Recorder::new(&seen),
        )
        .unwrap_err();
    assert!(matches!(err, SpawnError::NotFound { .. }), "{err:?}");

    let dir = std::env::temp_dir().join(format!("torsion-noexec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("script");
    std::fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
    let err = reactor
        .spawn_process(ProcessSpec::new(&file), Recorder::new(&seen))
        .unwrap_err();
    assert!(
        matches!(err, SpawnError::PermissionDenied { .. }),
        "{err:?}"
    );
    let err = reactor
        .spawn_process(
            ProcessSpec::new("true").current_dir(dir.join("missing")),
            Recorder::new(&seen),
        )
        .unwrap_err();
    assert!(matches!(err, SpawnError::NoSuchDirectory { .. }), "{err:?}");
    let err = reactor
        .spawn_process(
            ProcessSpec::new("true").child_fd(3, ChildFd::Inherit),
            Recorder::new(&seen),
        )
        .unwrap_err();
    assert!(
        matches!(err, SpawnError::InvalidFd { fd: 3, .. }),
        "{err:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    for _ in 0..3 {
        reactor
            .run_once(Some(std::time::Duration::from_millis(1)))
            .unwrap();
    }
    assert!(
        seen.borrow().events.is_empty(),
        "{:?}",
        seen.borrow().events
    );
    assert_eq!(reactor.connection_count(), 0);
}

/// Echoes through `cat`; panics on the first output if asked to.
struct Talker {
    panic: bool,
    seen: Shared,
}

impl ProcessProtocol for Talker {
    fn connection_made(&mut self, ctx: &mut ProcessContext<'_, '_>) {
        ctx.write(b"hello\n");
    }
    fn out_received(&mut self, ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
        if self.panic {
            panic!("boom in out_received");
        }
        self.seen.borrow_mut().out.extend_from_slice(data);
        ctx.close_stdin();
    }
    fn child_connection_lost(
        &mut self,
        _ctx: &mut ProcessContext<'_, '_>,
        fd: i32,
        reason: &DisconnectReason,
    ) {
        self.seen.borrow_mut().lost.push((fd, reason.clone()));
    }
    fn process_ended(&mut self, _ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
        self.seen.borrow_mut().ended = Some(status);
    }
}

#[test]
fn a_panic_in_a_process_callback_costs_that_process_only() {
    let mut reactor = Reactor::new().unwrap();
    reactor.set_panic_policy(PanicPolicy::Record);
    let bad = Shared::default();
    let good = Shared::default();
    reactor
        .spawn_process(
            ProcessSpec::new("cat"),
            Talker {
                panic: true,
                seen: bad.clone(),
            },
        )
        .unwrap();
    reactor
        .spawn_process(
            ProcessSpec::new("cat"),
            Talker {
                panic: false,
                seen: good.clone(),
            },
        )
        .unwrap();
    run_until(&mut reactor, || ended(&bad) && ended(&good));
    let panics = reactor.take_panics();
    assert_eq!(panics.len(), 1, "{panics:?}");
    assert!(panics[0].contains("boom"));
    let g = good.borrow();
    assert_eq!(g.out, b"hello\n");
    assert_eq!(g.ended, Some(ProcessStatus::Exited(0)));
    assert!(
        g.lost.iter().all(|(fd, r)| *fd == 0 || r.is_clean()),
        "{:?}",
        g.lost
    );
    let b = bad.borrow();
    assert!(b.out.is_empty());
    // Its pipes were aborted with the panic as the reason; cat then saw EOF.
    assert_eq!(b.lost.len(), 3, "{:?}", b.lost);
    assert!(b
        .lost
        .iter()
        .all(|(_, r)| matches!(r, DisconnectReason::Panicked(m) if m.contains("boom"))));
    assert!(b.ended.is_some());
}
