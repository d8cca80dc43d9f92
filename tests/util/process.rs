//! The examples as processes, run as a user runs them: one to completion
//! ([`run`]), or a server in the background ([`ExampleServer`]) whose log is
//! collected and which is stopped with signals.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{example_binary, DEADLINE};

/// Runs example `name` with `args` to completion (stdin closed, `RUST_LOG`
/// unset so that the example's own default level applies).
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(example_binary(name))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

/// Bytes of output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running example server, killed if the test ends before it exits.
pub struct ExampleServer {
    /// The process.
    pub child: Child,
    /// Where it listens (the address after "listening on " in its log).
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl ExampleServer {
    /// Starts server example `name` with `args` on a free port of 127.0.0.1,
    /// its log at DEBUG (so that connections show), and waits for the line
    /// that says `listening on ADDR`. The rest of its log is collected by a
    /// thread, so the server never blocks on a full pipe.
    pub fn start(name: &str, args: &[&str]) -> ExampleServer {
        let mut child = Command::new(example_binary(name))
            .args(args)
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut early = Vec::new();
        let marker = "listening on ";
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{name} exited before listening: {early:?}"))
                .unwrap();
            if let Some(at) = line.find(marker) {
                let rest = &line[at + marker.len()..];
                let word = rest.split_whitespace().next().unwrap_or_default();
                break word
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: no address in {line:?}"));
            }
            early.push(line);
        };
        let log = Arc::new(Mutex::new(early));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        ExampleServer {
            child,
            addr,
            log,
            name: name.to_owned(),
        }
    }

    /// Sends signal `sig` to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit (polling its status until the deadline).
    pub fn wait(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then [`wait`](Self::wait).
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    /// The log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Whether a line of the log so far contains `needle`.
    pub fn log_has(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// Whether `needle` shows up in the log before the deadline.
    pub fn log_has_soon(&self, needle: &str) -> bool {
        let end = Instant::now() + DEADLINE;
        while !self.log_has(needle) {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
