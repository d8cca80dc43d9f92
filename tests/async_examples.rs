//! The async examples run as a user runs them: `async_echo_server` and
//! `async_client` as processes over 127.0.0.1, with each other, with the
//! protocol-style echo examples and with `nc`.

mod util;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use util::process::{run, text, ExampleServer};
use util::DEADLINE;

/// `async_client`'s output: three echoed lines with their round-trip times.
fn assert_three_round_trips(out: &Output) {
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, word) in lines.iter().zip(["one", "two", "three"]) {
        assert!(line.starts_with(&format!("{word}: ")), "{stdout}");
    }
}

#[test]
fn async_client_and_async_server_then_sigterm() {
    let mut server = ExampleServer::start("async_echo_server", &[]);
    let out = run("async_client", &[&server.addr.to_string()]);
    assert_three_round_trips(&out);
    assert!(server.log_has_soon("client connected"));
    assert!(server.log_has_soon("client disconnected"));
    let status = server.terminate();
    assert!(status.success(), "async_echo_server exited with {status}");
    assert!(server.log_has_soon("stopped"));
}

#[test]
fn async_client_against_the_protocol_echo_server() {
    let server = ExampleServer::start("echo_server", &[]);
    assert_three_round_trips(&run("async_client", &[&server.addr.to_string()]));
}

#[test]
fn protocol_echo_client_against_the_async_server() {
    let server = ExampleServer::start("async_echo_server", &[]);
    let out = run(
        "echo_client",
        &[&server.addr.to_string(), "from", "protocols"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("Received: from protocols\n"));
}

/// A client that closes its sending side still gets its whole echo, and a
/// large one: the server's task waits in `write_all` while the client is
/// not reading, then goes on.
#[test]
fn async_server_echoes_a_large_message_and_honours_half_close() {
    let server = ExampleServer::start("async_echo_server", &[]);
    let mut conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let sent: Vec<u8> = (0..4_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut writer = conn.try_clone().unwrap();
    let data = sent.clone();
    let w = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    w.join().unwrap();
    assert!(got == sent, "echo of {} bytes differs", got.len());
}

#[test]
fn nc_against_the_async_server() {
    if Command::new("nc").arg("-h").output().is_err() {
        eprintln!("nc is not installed: skipped (apt-get install netcat-openbsd)");
        return;
    }
    let server = ExampleServer::start("async_echo_server", &[]);
    let mut nc = Command::new("nc")
        .args(["-N", "127.0.0.1", &server.addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    nc.stdin.take().unwrap().write_all(b"hello nc\n").unwrap();
    let out = nc.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "hello nc\n");
}

#[test]
fn async_client_against_nc_as_the_server() {
    if Command::new("nc").arg("-h").output().is_err() {
        eprintln!("nc is not installed: skipped (apt-get install netcat-openbsd)");
        return;
    }
    // `nc -l` answers each line with our own echo of it: it copies what it
    // reads to stdout, which we feed back as its stdin through a thread.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nc = Command::new("nc")
        .args(["-l", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut to_nc, mut from_nc) = (nc.stdin.take().unwrap(), nc.stdout.take().unwrap());
    let pipe = std::thread::spawn(move || {
        let mut buf = [0; 1024];
        while let Ok(n) = from_nc.read(&mut buf) {
            if n == 0 || to_nc.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    // nc may take a moment to listen: retry while refused.
    let end = Instant::now() + DEADLINE;
    let out = loop {
        let out = run("async_client", &[&format!("127.0.0.1:{port}")]);
        if out.status.success() || !text(&out.stderr).contains("refused") {
            break out;
        }
        assert!(Instant::now() < end, "nc never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = nc.kill();
    let _ = nc.wait();
    let _ = pipe.join();
    assert_three_round_trips(&out);
}

#[test]
fn async_client_reports_a_refused_connection() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // closed again: nothing listens there now
    let out = run("async_client", &[&addr.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!("Connection failed: connection refused ({addr})")
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn async_client_gives_up_after_its_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts (the kernel does) and never answers.
    let out = run("async_client", &[&addr.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!("Connection failed: timed out ({addr})")
    );
    drop(listener);
}

#[test]
fn async_client_reports_a_server_that_closes_early() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"on").unwrap(); // half the echo of "one\n", then close
    });
    let out = run("async_client", &[&addr.to_string()]);
    peer.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!("Connection failed: the peer closed the connection 2 bytes short ({addr})")
    );
}
