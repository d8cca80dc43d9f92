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
        Server::start_example("echo_server", extra)
    }

    /// Starts server example `name` on a free port, its log at DEBUG (so that
    /// connections show), and waits for its "listening on ADDR" line.
    fn start_example(name: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(example(name))
            .args(extra)
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut early = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{name} exited before listening: {early:?}"))
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
    let out = run("echo_server", &["--threads", "0", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--threads"), "{stderr}");
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

/// Runs example `name` with `args` to completion (stdin closed).
fn run(name: &str, args: &[&str]) -> Output {
    Command::new(example(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

/// Every example and tool, for the command-line convention's tests.
const ALL: &[&str] = &[
    "echo_server",
    "echo_client",
    "udp_echo_server",
    "udp_echo_client",
    "chat_server",
    "stuck_server",
    "tls_echo_server",
    "tls_echo_client",
    "netperf",
    "netmon",
];

#[test]
fn every_example_has_help_and_version_that_exit_zero() {
    for name in ALL {
        let out = run(name, &["--help"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name} --help: {}",
            text(&out.stderr)
        );
        let help = text(&out.stdout);
        assert!(help.contains("Usage: "), "{name} --help: {help}");
        // The shared flags, under the same names everywhere.
        for flag in ["-v, --verbose", "-q, --quiet", "-V, --version"] {
            assert!(help.contains(flag), "{name} --help lacks {flag}: {help}");
        }
        let out = run(name, &["--version"]);
        assert_eq!(out.status.code(), Some(0), "{name} --version");
        assert!(
            text(&out.stdout).starts_with(&format!("{name} ")),
            "{name} --version"
        );
    }
}

#[test]
fn servers_take_idle_timeout_and_no_short_flag_means_two_things() {
    for name in [
        "echo_server",
        "udp_echo_server",
        "chat_server",
        "stuck_server",
        "tls_echo_server",
    ] {
        let help = text(&run(name, &["--help"]).stdout);
        if name != "udp_echo_server" {
            assert!(help.contains("--idle-timeout <DURATION>"), "{name}: {help}");
            assert!(help.contains("[default: 5m]"), "{name}: {help}");
        }
    }
    // Each short flag means one long name across all the tools.
    let mut meaning = std::collections::BTreeMap::<String, (String, &str)>::new();
    for name in ALL {
        let help = text(&run(name, &["--help"]).stdout);
        for line in help.lines() {
            let line = line.trim_start();
            let Some(rest) = line.strip_prefix('-') else {
                continue;
            };
            let Some((short, long)) = rest.split_once(", --") else {
                continue;
            };
            let long = long.split([' ', '.']).next().unwrap().to_owned();
            if let Some((before, by)) = meaning.get(short) {
                assert_eq!(
                    before, &long,
                    "-{short} is --{before} in {by} but --{long} in {name}"
                );
            } else {
                meaning.insert(short.to_owned(), (long, name));
            }
        }
    }
}

#[test]
fn bad_arguments_are_usage_errors_with_status_2() {
    for (name, args) in [
        ("echo_server", &["not-an-address"][..]),
        ("udp_echo_server", &["127.0.0.1"]),
        ("chat_server", &["--idle-timeout", "soon"]),
        ("tls_echo_server", &["--cert", "only-a-cert.pem"]),
        ("echo_client", &["no-port"]),
        ("tls_echo_client", &["--ca", "x.pem", "--insecure"]),
        ("netperf", &["--size", "many"]),
        ("netmon", &[]),
    ] {
        let out = run(name, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name} {args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            !text(&out.stderr).is_empty(),
            "{name} {args:?} said nothing"
        );
    }
}

#[test]
fn servers_on_a_busy_port_say_so_once_and_exit_1() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = tcp.local_addr().unwrap().to_string();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy_udp = udp.local_addr().unwrap().to_string();
    for (name, addr) in [
        ("echo_server", &busy),
        ("chat_server", &busy),
        ("tls_echo_server", &busy),
        ("udp_echo_server", &busy_udp),
    ] {
        let out = Command::new(example(name))
            .arg(addr)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        // One plain sentence, once (the log may say where a certificate went).
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("cannot listen"))
            .collect();
        assert_eq!(
            errors,
            [format!("cannot listen on {addr}: address already in use")],
            "{name}: {stderr}"
        );
        assert!(
            !stderr.contains("ERROR"),
            "{name} printed the error twice: {stderr}"
        );
    }
    // With several reactors too.
    let out = run("echo_server", &["--threads", "2", &busy]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!("cannot listen on {busy}: address already in use")
    );
}

#[test]
fn clients_and_tools_report_a_refused_connection_with_their_failure_status() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }; // closed again: nothing listens there now
       // netmon with --count answers in Nagios' codes: 2 is "down".
    for (name, args, status) in [
        ("tls_echo_client", vec![addr.as_str(), "--insecure"], 1),
        ("netperf", vec![addr.as_str(), "--duration", "1", "-q"], 1),
        (
            "netmon",
            vec![addr.as_str(), "--count", "1", "--interval", "0.1"],
            2,
        ),
    ] {
        let out = run(name, &args);
        assert_eq!(
            out.status.code(),
            Some(status),
            "{name}: {}",
            text(&out.stderr)
        );
    }
    let out = run("tls_echo_client", &[&addr, "--insecure"]);
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!("Connection failed: connection refused ({addr})")
    );
}

/// A line client over a real socket: sends raw bytes, reads what comes back.
fn chat_read_until(conn: &mut TcpStream, buf: &mut Vec<u8>, needle: &str) -> String {
    let end = Instant::now() + DEADLINE;
    loop {
        let got = text(buf);
        if got.contains(needle) {
            return got;
        }
        assert!(Instant::now() < end, "no {needle:?} in {got:?}");
        let mut chunk = [0; 4096];
        let n = conn.read(&mut chunk).expect("read");
        assert!(n > 0, "closed before {needle:?}: {got:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn chat_server_works_with_nc_and_telnet_line_endings_and_stops_on_sigterm() {
    let mut server = Server::start_example("chat_server", &[]);
    // nc sends \n, telnet \r\n: both are lines; the server sends \r\n.
    let mut nc = TcpStream::connect(server.addr).unwrap();
    nc.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut nc_buf = Vec::new();
    chat_read_until(&mut nc, &mut nc_buf, "What's your name?\r\n");
    nc.write_all(b"alice\n").unwrap();
    chat_read_until(&mut nc, &mut nc_buf, "Welcome, alice!\r\n");

    let mut telnet = TcpStream::connect(server.addr).unwrap();
    telnet.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut t_buf = Vec::new();
    chat_read_until(&mut telnet, &mut t_buf, "What's your name?\r\n");
    telnet.write_all(b"bob\r\n").unwrap();
    chat_read_until(&mut telnet, &mut t_buf, "Welcome, bob!\r\n");
    chat_read_until(&mut nc, &mut nc_buf, "* bob has joined.\r\n");

    telnet.write_all(b"hi from telnet\r\n").unwrap();
    chat_read_until(&mut nc, &mut nc_buf, "<bob> hi from telnet\r\n");
    nc.write_all(b"hi from nc\n").unwrap();
    chat_read_until(&mut telnet, &mut t_buf, "<alice> hi from nc\r\n");

    // A line over the limit: the client is told why, then closed; logged.
    telnet.write_all(&vec![b'x'; 5000]).unwrap();
    chat_read_until(&mut telnet, &mut t_buf, "line too long");
    let mut rest = Vec::new();
    let _ = telnet.read_to_end(&mut rest);
    chat_read_until(&mut nc, &mut nc_buf, "* bob has left.\r\n");
    assert!(server.log_has_soon("line too long: closing"));
    assert!(server.log_has_soon("client connected"));

    server.signal(libc::SIGTERM);
    let status = server.wait();
    assert!(status.success(), "chat_server exited with {status}");
    let mut rest = Vec::new();
    assert_eq!(nc.read_to_end(&mut rest).expect("EOF, not a reset"), 0);
}

#[test]
fn echo_server_closes_idle_connections_after_idle_timeout() {
    let mut server = Server::start_example("echo_server", &["--idle-timeout", "200ms"]);
    let mut conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    conn.write_all(b"ping").unwrap();
    let mut got = [0; 4];
    conn.read_exact(&mut got).unwrap();
    // Then silence: the server closes the connection (an orderly EOF).
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).expect("EOF, not a reset"), 0);
    // Slowloris: many connections that never send a byte do not stay open.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    for mut c in idle {
        c.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).expect("closed by the server"), 0);
    }
    assert!(
        server.log_has_soon("timed out"),
        "{:?}",
        server.log.lock().unwrap()
    );
    server.signal(libc::SIGINT);
    assert!(server.wait().success());
}
