//! The examples and tools run as a user runs them: separate processes over
//! 127.0.0.1, stopped with signals. [`TABLE`] holds every example registered in
//! the workspace's manifests, for the command-line convention's tests; a new
//! example fails `the_table_names_every_example_of_the_manifests` until it has
//! its row there.
//!
//! The example binaries are built by `cargo test` already;
//! `util::example_binary` asks cargo once more (a no-op when they are fresh)
//! so `cargo test --test examples` alone works too.

mod util;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Output;
use std::time::Instant;

use util::process::{run, text, ExampleServer};
use util::DEADLINE;

fn client(args: &[&str]) -> Output {
    run("echo_client", args)
}

#[test]
fn server_echoes_then_closes_gracefully_on_sigint() {
    let mut server = ExampleServer::start("echo_server", &[]);
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
    assert!(server.log_has_soon("stopped"));
    assert!(server.log_has("client connected"));
    assert!(server.log_has("client disconnected"));
    assert!(server.log_has("shutting down"));
    assert!(server.log_has("stopped"));
}

#[test]
fn server_with_two_threads_serves_on_both_reactors_and_stops_on_sigint() {
    let mut server = ExampleServer::start("echo_server", &["--threads", "2"]);
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
fn server_with_two_threads_exits_at_once_on_a_second_signal_while_draining() {
    let mut server = ExampleServer::start("echo_server", &["--threads", "2"]);
    assert!(server.log_has_soon("2 reactors on 2 threads"));
    // A client that sends and never reads: its reactor buffers the echo
    // until the back-pressure pauses reading, so the graceful shutdown
    // cannot finish while it is there.
    let conn = TcpStream::connect(server.addr).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        // Until the server is gone (an error then ends it).
        while writer.write_all(&chunk).is_ok() {}
    });
    // Snapshot tables (SIGUSR1, one per reactor) until one shows it paused.
    let end = Instant::now() + DEADLINE;
    loop {
        let tables = server
            .log()
            .iter()
            .filter(|l| l.starts_with("connections:"))
            .count();
        server.signal(libc::SIGUSR1);
        let printed = || {
            server
                .log()
                .iter()
                .filter(|l| l.starts_with("connections:"))
                .count()
                >= tables + 2
        };
        while !printed() {
            assert!(Instant::now() < end, "no snapshot tables");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if server.log_has("1 paused") {
            break;
        }
        assert!(Instant::now() < end, "the connection was never paused");
    }
    server.signal(libc::SIGINT);
    assert!(server.log_has_soon("shutting down"));
    // The signals' reactor outlives the first reactors to finish: a second
    // signal is seen while the last one drains.
    server.signal(libc::SIGINT);
    let status = server.wait();
    assert_eq!(status.code(), Some(130), "echo_server exited with {status}");
    assert!(server.log_has_soon("again: exiting at once"));
    drop(conn);
    flood.join().unwrap();
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
    let mut server = ExampleServer::start("echo_server", &[]);
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
    let mut server = ExampleServer::start("chat_server", &[]);
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
    let mut server = ExampleServer::start("echo_server", &["--idle-timeout", "200ms"]);
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
    assert!(server.log_has_soon("timed out"), "{:?}", server.log());
    server.signal(libc::SIGINT);
    assert!(server.wait().success());
}

/// How an example's runtime error is made to happen (`ADDR` in its arguments
/// is the address it fails on).
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// A server on a TCP port another socket holds; it says `cannot listen on
    /// ADDR: address already in use`.
    BusyTcp,
    /// The same on a UDP port.
    BusyUdp,
    /// A client connecting over TCP where nothing listens; it says `refused`.
    Refused,
    /// The same over UDP (the kernel's ICMP answer).
    RefusedUdp,
    /// Something else; the line it prints contains this.
    Says(&'static str),
}

use Fault::*;

/// Every example and tool, one row each: its name; the arguments of one usage
/// error (exit 2, one line: clap's, made one line by `cli::parse`); one
/// runtime error (exit 1, one line, once) and its arguments, split at spaces,
/// with `ADDR` for the address it fails on. Adding an example is adding a row.
#[rustfmt::skip] // One line a row.
const TABLE: &[(&str, &str, Fault, &str)] = &[
    ("echo_server", "not-an-address", BusyTcp, "ADDR"),
    ("echo_client", "no-port", Refused, "ADDR"),
    ("udp_echo_server", "127.0.0.1", BusyUdp, "ADDR"),
    ("udp_echo_client", "not-an-address", RefusedUdp, "ADDR"),
    ("chat_server", "--idle-timeout soon", BusyTcp, "ADDR"),
    ("stuck_server", "--slow-callback soon", BusyTcp, "ADDR"),
    ("chat_client", "--timeout 0", Refused, "ADDR"),
    ("http_server", "--shutdown-timeout soon", BusyTcp, "ADDR"),
    ("http_get", "", Refused, "http://ADDR/"),
    ("async_client", "not-an-address", Refused, "ADDR"),
    ("async_echo_server", "127.0.0.1:http", BusyTcp, "ADDR"),
    ("spawn", "", Says("cannot run /no/such/program"), "/no/such/program"),
    ("netperf", "--size many", Refused, "ADDR --duration 1"),
    ("netmon", "--count many", BusyTcp, "127.0.0.1:9 --metrics ADDR"),
    ("tls_echo_server", "--cert only-a-cert.pem", BusyTcp, "ADDR"),
    ("tls_echo_client", "--ca x.pem --insecure", Refused, "ADDR --insecure"),
];

/// The examples the workspace's member crates register (`[[example]]` in
/// each member's Cargo.toml).
fn registered_examples() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |dir: &Path| -> toml::Table {
        let path = dir.join("Cargo.toml");
        let body = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        body.parse()
            .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    };
    let workspace = read(root);
    let members = workspace["workspace"]["members"]
        .as_array()
        .expect("workspace.members");
    let mut names = BTreeSet::new();
    for member in members {
        let manifest = read(&root.join(member.as_str().expect("a member's path")));
        let examples = manifest.get("example").and_then(|e| e.as_array());
        for example in examples.into_iter().flatten() {
            names.insert(example["name"].as_str().expect("a name").to_owned());
        }
    }
    names
}

#[test]
fn the_table_names_every_example_of_the_manifests() {
    let registered = registered_examples();
    // Both member crates were read.
    assert!(registered.contains("echo_server") && registered.contains("netperf"));
    let listed: BTreeSet<String> = TABLE.iter().map(|row| row.0.to_owned()).collect();
    let missing: Vec<&String> = registered.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "examples with no row in TABLE (tests/examples.rs): {missing:?}"
    );
    let stale: Vec<&String> = listed.difference(&registered).collect();
    assert!(
        stale.is_empty(),
        "rows for no registered example: {stale:?}"
    );
}

/// Whether `line` is one of the log's (`2026-12-02T01:00:00.000000Z  INFO
/// target: ...`), not a message the program printed itself.
fn is_log_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let stamp = words.next().unwrap_or_default();
    let level = words.next().unwrap_or_default();
    stamp.ends_with('Z') && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level)
}

/// What is wrong with a failed run's stderr, if anything: it must hold
/// exactly one line besides the log, and no ERROR log line (the same error
/// printed twice).
fn one_line(stderr: &str) -> Result<String, String> {
    let said: Vec<&str> = stderr.lines().filter(|l| !is_log_line(l)).collect();
    if stderr
        .lines()
        .any(|l| is_log_line(l) && l.contains(" ERROR "))
    {
        return Err(format!("the error is logged too: {stderr:?}"));
    }
    match said[..] {
        [line] => Ok(line.to_owned()),
        _ => Err(format!("{} lines, not one: {stderr:?}", said.len())),
    }
}

/// Fails with every problem in `problems` at once.
fn assert_none(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

#[test]
fn every_example_has_help_and_version_that_exit_zero() {
    let mut problems = Vec::new();
    for &(name, ..) in TABLE {
        let out = run(name, &["--help"]);
        let help = text(&out.stdout);
        if out.status.code() != Some(0) {
            problems.push(format!("{name} --help: {}", out.status));
        }
        if !help.contains(&format!("Usage: {name} ")) {
            problems.push(format!("{name} --help prints no usage: {help:?}"));
        }
        // The shared flags, under the same names everywhere.
        for flag in [
            "-v, --verbose",
            "-q, --quiet",
            "-h, --help",
            "-V, --version",
        ] {
            if !help.contains(flag) {
                problems.push(format!("{name} --help lacks {flag}"));
            }
        }
        let out = run(name, &["--version"]);
        let version = text(&out.stdout);
        if out.status.code() != Some(0) || !version.starts_with(&format!("{name} ")) {
            problems.push(format!("{name} --version: {} {version:?}", out.status));
        }
    }
    assert_none("--help and --version", problems);
}

#[test]
fn every_example_says_a_usage_error_in_one_line_with_status_2() {
    let mut problems = Vec::new();
    for &(name, usage, ..) in TABLE {
        let args: Vec<&str> = usage.split_whitespace().collect();
        let out = run(name, &args);
        let stderr = text(&out.stderr);
        if out.status.code() != Some(2) {
            problems.push(format!("{name} {usage}: {} {stderr:?}", out.status));
        }
        if let Err(e) = one_line(&stderr) {
            problems.push(format!("{name} {usage}: {e}"));
        }
    }
    assert_none("usage errors", problems);
}

#[test]
fn every_example_says_a_runtime_error_once_in_one_line_with_status_1() {
    // Held for the whole test: the busy ports.
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy_tcp = tcp.local_addr().unwrap().to_string();
    let busy_udp = udp.local_addr().unwrap().to_string();
    let mut problems = Vec::new();
    for &(name, _, fault, args) in TABLE {
        // Free ports, closed again: nothing listens there now.
        let refused = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .to_string();
        let refused_udp = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .to_string();
        let (addr, expect) = match fault {
            BusyTcp => (
                busy_tcp.clone(),
                format!("cannot listen on {busy_tcp}: address already in use"),
            ),
            BusyUdp => (
                busy_udp.clone(),
                format!("cannot listen on {busy_udp}: address already in use"),
            ),
            Refused => (refused, "refused".to_owned()),
            RefusedUdp => (refused_udp, "refused".to_owned()),
            Says(what) => (String::new(), what.to_owned()),
        };
        let args: Vec<String> = args
            .split_whitespace()
            .map(|a| a.replace("ADDR", &addr))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(name, &args);
        let stderr = text(&out.stderr);
        if out.status.code() != Some(1) {
            problems.push(format!("{name} {args:?}: {} {stderr:?}", out.status));
        }
        match one_line(&stderr) {
            Ok(line) if line.to_lowercase().contains(&expect) => {}
            Ok(line) => problems.push(format!("{name} {args:?}: {line:?} lacks {expect:?}")),
            Err(e) => problems.push(format!("{name} {args:?}: {e}")),
        }
    }
    assert_none("runtime errors", problems);
    drop((tcp, udp));
}

#[test]
fn servers_take_idle_timeout_and_no_short_flag_means_two_things() {
    for name in [
        "echo_server",
        "chat_server",
        "stuck_server",
        "tls_echo_server",
        "http_server",
    ] {
        let help = text(&run(name, &["--help"]).stdout);
        assert!(help.contains("--idle-timeout <DURATION>"), "{name}: {help}");
        assert!(help.contains("[default: 5m]"), "{name}: {help}");
    }
    // Each short flag means one long name across all the tools.
    let mut meaning = std::collections::BTreeMap::<String, (String, &str)>::new();
    for &(name, ..) in TABLE {
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
fn servers_with_several_reactors_on_a_busy_port_say_so_once_and_exit_1() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = tcp.local_addr().unwrap().to_string();
    let out = run("echo_server", &["--threads", "2", &busy]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!("cannot listen on {busy}: address already in use")
    );
}
