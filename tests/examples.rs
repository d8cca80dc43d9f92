//! The echo examples run as a user runs them: separate processes over 127.0.0.1,
//! stopped with signals.
//!
//! The example binaries are built by `cargo test` already; `example()` asks cargo
//! once more (a no-op when they are fresh) so `cargo test --test examples` alone
//! works too.

mod util;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use util::DEADLINE;

fn example(name: &str) -> PathBuf {
    util::example_binary(name)
}

/// A running `echo_server` process, killed if the test fails before it exits.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Server {
        let mut child = Command::new(example("echo_server"))
            .args(extra)
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn echo_server");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut early = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .expect("echo_server exited before listening")
                .unwrap();
            if let Some(at) = line.find("listening on ") {
                break line[at + "listening on ".len()..].trim().parse().unwrap();
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
        Server { child, addr, log }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit (polling its status until the deadline).
    fn wait(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "echo_server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_has(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// Whether `needle` shows up in the log before the deadline.
    fn log_has_soon(&self, needle: &str) -> bool {
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(args: &[&str]) -> Output {
    Command::new(example("echo_client"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run echo_client")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn server_echoes_then_closes_gracefully_on_sigint() {
    let mut server = Server::start();
    let mut conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let sent: Vec<u8> = (0..60_000u32).map(|i| (i * 7 % 251) as u8).collect();
    conn.write_all(&sent).unwrap();
    let mut got = vec![0; sent.len()];
    conn.read_exact(&mut got).unwrap();
    assert!(got == sent, "the echo differs from what was sent");

    server.signal(libc::SIGINT);
    // Graceful: the open connection sees an orderly EOF, not a reset.
    let mut rest = Vec::new();
    let n = conn.read_to_end(&mut rest).expect("EOF, not an error");
    assert_eq!(n, 0);
    let status = server.wait();
    assert!(status.success(), "echo_server exited with {status}");
    // The log is complete once the process is gone and its pipe drained.
    let end = Instant::now() + DEADLINE;
    while !server.log_has("stopped") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(server.log_has("client connected"));
    assert!(server.log_has("client disconnected"));
    assert!(server.log_has("shutting down"));
    assert!(server.log_has("stopped"));
}

#[test]
fn server_with_two_threads_serves_on_both_reactors_and_stops_on_sigint() {
    let mut server = Server::start_with(&["--threads", "2"]);
    assert!(server.log_has_soon("2 reactors on 2 threads"));
    // Connections spread over the two SO_REUSEPORT listeners; each must echo,
    // whichever reactor took it, and each must see an orderly close.
    let mut conns = Vec::new();
    for i in 0..20u8 {
        let mut conn = TcpStream::connect(server.addr).unwrap();
        conn.set_read_timeout(Some(DEADLINE)).unwrap();
        let sent = [i; 100];
        conn.write_all(&sent).unwrap();
        let mut got = [0; 100];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(got, sent);
        conns.push(conn);
    }
    server.signal(libc::SIGINT);
    for mut conn in conns {
        let mut rest = Vec::new();
        let n = conn.read_to_end(&mut rest).expect("EOF, not an error");
        assert_eq!(n, 0);
    }
    let status = server.wait();
    assert!(status.success(), "echo_server exited with {status}");
    assert!(server.log_has_soon("stopped"));
    assert!(TcpStream::connect(server.addr).is_err(), "still listening");
}

#[test]
fn server_rejects_a_bad_thread_count() {
    let out = Command::new(example("echo_server"))
        .args(["--threads", "0", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("run echo_server");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a thread count"));
}

#[test]
fn client_prints_the_echo_and_exits_zero_then_server_stops_on_sigterm() {
    let mut server = Server::start();
    let addr = server.addr.to_string();

    let out = client(&[&addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("Received: Hello, torsion!\n"),
        "{stdout}"
    );
    assert!(stdout.contains("Round trip: "), "{stdout}");

    let out = client(&[&addr, "several", "words here"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("Received: several words here\n"));

    server.signal(libc::SIGTERM);
    let status = server.wait();
    assert!(status.success(), "echo_server exited with {status}");
}

#[test]
fn client_reports_a_refused_connection() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }; // closed again: nothing listens there now
    let out = client(&[&addr.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!("Connection failed: connection refused ({addr})")
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn client_reports_a_server_that_closes_before_the_whole_echo() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0; 6];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf[..3]).unwrap();
        // Dropped here: an orderly close after half the echo.
    });
    let out = client(&[&addr.to_string(), "abcdef"]);
    peer.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("Connection lost after 3 of 6 bytes of echo"),
        "{stderr}"
    );
}
