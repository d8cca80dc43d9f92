//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use torsion::Address;
use torsion::{ClientFactory, Context, DisconnectReason, Factory, Protocol, Reactor, Reconnect};

pub mod process;

/// Generous: only catches hangs.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `reactor` until `done` holds; panics if it does not within [`DEADLINE`].
pub fn run_until(reactor: &mut Reactor, mut done: impl FnMut() -> bool) {
    let ok = reactor
        .run_until(DEADLINE, |_| done())
        .expect("reactor failed");
    assert!(ok, "condition not reached within {DEADLINE:?}");
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Echoes every byte; stops reading while the peer is not reading its echo.
pub struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        ctx.write(data);
    }
    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        ctx.pause_reading();
    }
    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        ctx.resume_reading();
    }
}

pub struct EchoFactory;

impl Factory for EchoFactory {
    type Protocol = Echo;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Echo> {
        Some(Echo)
    }
}

/// Everything a client saw, shared with the test.
#[derive(Default, Debug)]
pub struct Seen {
    pub events: Vec<String>,
    pub received: Vec<u8>,
    pub lost: Option<DisconnectReason>,
    pub failed: Option<DisconnectReason>,
    pub built: usize,
}

pub type Shared = Rc<RefCell<Seen>>;

/// A client that sends `payload` on connect, records what comes back, and closes
/// once `expect` bytes have arrived.
pub struct Client {
    pub seen: Shared,
    pub payload: Vec<u8>,
    pub expect: usize,
}

impl Protocol for Client {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.seen.borrow_mut().events.push("made".into());
        let p = std::mem::take(&mut self.payload);
        ctx.write(&p);
        if self.expect == 0 {
            ctx.lose_connection();
        }
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        let mut s = self.seen.borrow_mut();
        s.received.extend_from_slice(data);
        if s.received.len() >= self.expect {
            ctx.lose_connection();
        }
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let mut s = self.seen.borrow_mut();
        s.events.push(format!("lost:{reason}"));
        assert!(s.lost.is_none(), "connection_lost twice");
        s.lost = Some(reason.clone());
    }
}

pub struct ClientF {
    pub seen: Shared,
    pub payload: Vec<u8>,
    pub expect: usize,
}

impl ClientFactory for ClientF {
    type Protocol = Client;
    fn started_connecting(&mut self, _core: &mut torsion::Core, _c: torsion::Connector) {
        self.seen.borrow_mut().events.push("started".into());
    }
    fn build_protocol(&mut self, _peer: &Address) -> Option<Client> {
        self.seen.borrow_mut().built += 1;
        Some(Client {
            seen: self.seen.clone(),
            payload: std::mem::take(&mut self.payload),
            expect: self.expect,
        })
    }
    fn client_connection_failed(
        &mut self,
        _core: &mut torsion::Core,
        _c: torsion::Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let mut s = self.seen.borrow_mut();
        s.events.push(format!("failed:{reason}"));
        s.failed = Some(reason.clone());
        Reconnect::Never
    }
    fn client_connection_lost(
        &mut self,
        _core: &mut torsion::Core,
        _c: torsion::Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        self.seen
            .borrow_mut()
            .events
            .push(format!("client_lost:{reason}"));
        Reconnect::Never
    }
}

/// Number of open descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The path of example `name`'s binary for this test binary's profile, built if
/// needed. `cargo test` builds the examples already; asking cargo again is a
/// no-op then, and makes `cargo test --test NAME` alone work too. The first
/// call builds every example of the workspace in one cargo run (one run per
/// example cost seconds each on a loaded machine).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let profile_dir = std::env::current_exe()
        .unwrap()
        .parent() // deps/
        .and_then(|p| p.parent())
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        let mut cmd = std::process::Command::new(env!("CARGO"));
        // The examples are the workspace's member crates (examples/, examples/more/).
        cmd.args(["build", "--quiet", "--workspace", "--examples"]);
        // Not the variables cargo set for this test process: build scripts
        // (ring's) rerun when CARGO_MANIFEST_DIR, CARGO_PKG_* or OUT_DIR
        // differ, which rebuilt half the tree on each nested build.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k == "OUT_DIR"
                || k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || k.starts_with("CARGO_CRATE_")
                || k.starts_with("CARGO_BIN_")
                || k == "CARGO_PRIMARY_PACKAGE"
                || k == "CARGO_TARGET_TMPDIR"
            {
                cmd.env_remove(&key);
            }
        }
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo");
        assert!(status.success(), "building the examples failed");
        *built = true;
    }
    let path = profile_dir.join("examples").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}
