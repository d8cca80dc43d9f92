//! A thousand short processes in a row leave no zombie and no descriptor
//! behind. In its own binary: other tests' children would show in `/proc`.
mod util;

use std::cell::Cell;
use std::rc::Rc;

use torsion::process::{ProcessContext, ProcessProtocol, ProcessSpec, ProcessStatus};
use torsion::Reactor;
use util::{fd_count, run_until};

struct Short {
    ended: Rc<Cell<usize>>,
}

impl ProcessProtocol for Short {
    fn connection_made(&mut self, ctx: &mut ProcessContext<'_, '_>) {
        ctx.write(b"x");
        ctx.close_stdin();
    }
    fn process_ended(&mut self, _ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
        assert_eq!(status, ProcessStatus::Exited(0));
        self.ended.set(self.ended.get() + 1);
    }
}

/// Children of this process in `/proc`, with their state letter.
fn children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces; split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == me {
            out.push((pid, state));
        }
    }
    out
}

#[test]
fn a_thousand_short_processes_leave_no_zombie_and_no_descriptor() {
    let mut reactor = Reactor::new().unwrap();
    let ended = Rc::new(Cell::new(0));
    // One first, so lazily opened descriptors (the reactor's, std's) exist.
    reactor
        .spawn_process(
            ProcessSpec::new("true"),
            Short {
                ended: ended.clone(),
            },
        )
        .unwrap();
    run_until(&mut reactor, || ended.get() == 1);
    let fds_before = fd_count();
    for i in 2..=1000 {
        // Half echo their stdin and exit at its EOF (cat), half exit at once
        // (true), with our write to it racing the exit.
        let program = if i % 2 == 0 { "cat" } else { "true" };
        let proto = Short {
            ended: ended.clone(),
        };
        reactor
            .spawn_process(ProcessSpec::new(program), proto)
            .unwrap();
        run_until(&mut reactor, || ended.get() == i);
    }
    assert_eq!(ended.get(), 1000);
    assert_eq!(fd_count(), fds_before, "descriptors leaked");
    assert_eq!(children(), [], "children left (zombies or running)");
    assert_eq!(reactor.connection_count(), 0);
    // Only the reactor's own sources are left: no exit watcher lingers.
    assert_eq!(reactor.source_count(), 0);
}
