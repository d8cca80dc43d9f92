//! `--on-change CMD`: a shell command run on every change of state, through
//! the crate's process API (`sh -c CMD`), with the change in its environment.
//!
//! The child's environment is explicit: `PATH` and `HOME` from netmon's own,
//! plus `NETMON_TARGET` (the target as given), `NETMON_STATE` (`up`,
//! `warning` or `down`), `NETMON_PREVIOUS` (the state before, empty on the
//! first result), `NETMON_REASON` (the words of the event line: latency, or
//! why it is down) and `NETMON_SINCE` (when the new state began, RFC 3339
//! UTC). Its stdin is empty; what it writes to stdout or stderr goes to
//! netmon's stderr. A command that cannot be started or exits non-zero is
//! logged as a warning; the monitor carries on either way. On exit netmon
//! waits (up to 10 s) for the commands still running.

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;

use torsion::process::{ChildFd, ProcessContext, ProcessProtocol, ProcessSpec, ProcessStatus};
use torsion::Core;

use super::status::{describe, timestamp, Event};

/// The child's command line and environment for `event`.
pub fn spec(cmd: &str, event: &Event) -> ProcessSpec {
    let mut spec = ProcessSpec::new("sh")
        .args(["-c", cmd])
        .stdin(ChildFd::Null);
    for key in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            spec = spec.env(key, v);
        }
    }
    spec.env("NETMON_TARGET", &event.target)
        .env("NETMON_STATE", event.health().word())
        .env("NETMON_PREVIOUS", event.previous.map_or("", |h| h.word()))
        .env("NETMON_REASON", describe(&event.status))
        .env("NETMON_SINCE", timestamp(event.since))
}

/// Starts `cmd` for `event`; a spawn failure is logged, never returned.
pub fn run(core: &mut Core, cmd: &str, event: &Event, hooks: Rc<Hooks>) {
    let hook = Hook {
        target: event.target.clone(),
        hooks: hooks.clone(),
    };
    match core.spawn_process(spec(cmd, event), hook) {
        Ok(_) => hooks.running.set(hooks.running.get() + 1),
        Err(e) => {
            tracing::warn!(target = %event.target, "cannot run the --on-change command: {e}")
        }
    }
}

/// The commands not ended yet; when the last one ends while `waiting` is
/// set, the reactor is stopped (netmon waits for them on exit).
#[derive(Debug, Default)]
pub struct Hooks {
    /// Commands started and not ended.
    pub running: Cell<usize>,
    /// Someone runs the reactor until they end.
    pub waiting: Cell<bool>,
}

/// Passes the child's output through and logs how it ended.
#[derive(Debug)]
struct Hook {
    target: String,
    hooks: Rc<Hooks>,
}

impl ProcessProtocol for Hook {
    fn out_received(&mut self, _ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
        let _ = std::io::stderr().write_all(data);
    }

    fn err_received(&mut self, _ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
        let _ = std::io::stderr().write_all(data);
    }

    fn process_ended(&mut self, ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
        if !status.success() {
            tracing::warn!(target = %self.target, "the --on-change command failed: {status}");
        }
        let h = &self.hooks;
        h.running.set(h.running.get().saturating_sub(1));
        if h.running.get() == 0 && h.waiting.get() && ctx.core().is_running() {
            let _ = ctx.core().stop();
        }
    }
}
