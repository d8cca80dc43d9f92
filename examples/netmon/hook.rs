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
//! logged as a warning; the monitor carries on either way.

use std::io::Write;

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
pub fn run(core: &mut Core, cmd: &str, event: &Event) {
    let hook = Hook {
        target: event.target.clone(),
    };
    if let Err(e) = core.spawn_process(spec(cmd, event), hook) {
        tracing::warn!(target = %event.target, "cannot run the --on-change command: {e}");
    }
}

/// Passes the child's output through and logs how it ended.
#[derive(Debug)]
struct Hook {
    target: String,
}

impl ProcessProtocol for Hook {
    fn out_received(&mut self, _ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
        let _ = std::io::stderr().write_all(data);
    }

    fn err_received(&mut self, _ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
        let _ = std::io::stderr().write_all(data);
    }

    fn process_ended(&mut self, _ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
        if !status.success() {
            tracing::warn!(target = %self.target, "the --on-change command failed: {status}");
        }
    }
}
