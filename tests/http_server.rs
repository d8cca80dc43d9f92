//! The HTTP server against real, independent clients over 127.0.0.1: curl,
//! Python's `http.client`, and a raw socket sending pipelined and malformed
//! requests; slowloris cut off while a normal client is served; a huge
//! response to a client that stops reading, in bounded memory.

mod util;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use torsion::http::{HttpServer, Request, Response, Router, ServerConfig};
use torsion::{Core, Reactor};
use util::run_until;

fn app() -> Router {
    Router::new()
        .get("/", |_: &mut Core, _: Request| {
            Response::ok("Hello, World!")
        })
        .post("/echo", |_: &mut Core, req: Request| Response::ok(req.body))
        .get("/panic", |_: &mut Core, _: Request| -> Response {
            panic!("handler bug")
        })
}

fn serve(reactor: &mut Reactor, server: &HttpServer) -> SocketAddr {
    server
        .listen_tcp(reactor, "127.0.0.1:0".parse().unwrap())
        .expect("listen")
        .local_addr()
}

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required in CI (.ci/run installs it)"
        );
        eprintln!("skipping: {tool} not installed");
    }
    ok
}

/// Runs `cmd` to completion while the reactor serves; its stdout.
fn run_client(reactor: &mut Reactor, cmd: &mut Command, stdin: &[u8]) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the client");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut out = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut status = None;
    run_until(reactor, || {
        status = child.try_wait().expect("wait");
        status.is_some()
    });
    writer.join().unwrap();
    let out = reader.join().unwrap();
    assert!(status.unwrap().success(), "client failed; output: {out}");
    out
}

#[test]
fn curl_gets_posts_chunked_and_reuses_the_connection() {
    if !have("curl") {
        return;
    }
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let url = format!("http://{addr}/");
    // Two URLs in one curl: the second goes over the kept-alive connection.
    let out = run_client(
        &mut reactor,
        Command::new("curl").args(["-sS", &url, &url]),
        b"",
    );
    assert_eq!(out, "Hello, World!Hello, World!");
    assert_eq!(server.stats().connections, 1);
    assert_eq!(
        server.stats().reused,
        1,
        "keep-alive reuse counted on the server"
    );

    let body = vec![b'z'; 200_000];
    let out = run_client(
        &mut reactor,
        Command::new("curl").args([
            "-sS",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
            &format!("{url}echo"),
        ]),
        &body,
    );
    assert_eq!(out.len(), body.len());
    assert!(out.bytes().all(|b| b == b'z'));

    let head = run_client(
        &mut reactor,
        Command::new("curl").args(["-sS", "-I", &url]),
        b"",
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 13\r\n"));
    let status = run_client(
        &mut reactor,
        Command::new("curl").args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{url}panic"),
        ]),
        b"",
    );
    assert_eq!(status, "500");
}

const PY_CLIENT: &str = r#"
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=30)
out = []
for method, path, body in [("GET", "/", None), ("POST", "/echo", b"ping"), ("HEAD", "/", None), ("GET", "/missing", None), ("GET", "/", None)]:
    c.request(method, path, body=body)
    r = c.getresponse()
    data = r.read()
    out.append("%s %d %s %s" % (method, r.status, r.getheader("Content-Length"), data.decode()))
print("|".join(out))
"#;

#[test]
fn python_http_client_keeps_one_connection_alive() {
    if !have("python3") {
        return;
    }
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let out = run_client(
        &mut reactor,
        Command::new("python3").args([
            "-c",
            PY_CLIENT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ]),
        b"",
    );
    assert_eq!(
        out.trim(),
        "GET 200 13 Hello, World!|POST 200 4 ping|HEAD 200 13 |GET 404 10 Not Found\n|GET 200 13 Hello, World!"
    );
    let stats = server.stats();
    assert_eq!((stats.connections, stats.requests, stats.reused), (1, 5, 4));
}

/// Sends `input` on a new connection and reads until the server closes.
fn exchange(addr: SocketAddr, input: Vec<u8>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(&input).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    })
}

fn finish(reactor: &mut Reactor, t: thread::JoinHandle<Vec<u8>>) -> String {
    run_until(reactor, || t.is_finished());
    String::from_utf8_lossy(&t.join().unwrap()).into_owned()
}

#[test]
fn raw_socket_pipelined_requests_are_answered_in_order() {
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let t = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nsecondPOST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nthird\r\n0\r\n\r\n".to_vec(),
    );
    let out = finish(&mut reactor, t);
    let bodies: Vec<&str> = out
        .split("HTTP/1.1 200 OK\r\n")
        .skip(1)
        .map(|r| r.split("\r\n\r\n").nth(1).unwrap())
        .collect();
    assert_eq!(bodies, ["Hello, World!", "second", "third"], "{out}");
    assert!(out.contains("Connection: close\r\n"));
}

#[test]
fn raw_socket_malformed_and_smuggling_requests_get_400_and_a_close() {
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let cases: &[(&[u8], &str)] = &[
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", "400"),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", "400"),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\n\r\n", "400"),
        (b"\x00\x01\x02 nonsense\r\n\r\n", "400"),
        (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", "505"),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999\r\n\r\n", "413"),
    ];
    for (input, status) in cases {
        let out = finish(&mut reactor, exchange(addr, input.to_vec()));
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status} ")),
            "{out:?} for {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(
            out.matches("HTTP/1.1").count(),
            1,
            "one answer, then the close: {out}"
        );
        assert!(out.contains("Connection: close\r\n"));
    }
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(finish(&mut reactor, exchange(addr, many.into_bytes())).starts_with("HTTP/1.1 431 "));
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    assert!(finish(&mut reactor, exchange(addr, huge.into_bytes())).starts_with("HTTP/1.1 431 "));
    assert_eq!(server.stats().rejected, cases.len() as u64 + 2);
}

#[test]
fn slowloris_is_closed_by_the_header_timeout_while_a_normal_client_is_served() {
    let mut reactor = Reactor::new().unwrap();
    let config = ServerConfig {
        header_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    };
    let server = HttpServer::with_config(app(), config);
    let addr = serve(&mut reactor, &server);
    let slow_sent = Arc::new(AtomicU64::new(0));
    let sent = slow_sent.clone();
    let slow = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut out = Vec::new();
        for b in head {
            // Pacing the attacker, not synchronising: one byte every 20 ms,
            // until the server's answer shows up.
            if s.write_all(&[*b]).is_err() {
                break;
            }
            sent.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(20));
            s.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 1024];
            let answered =
                matches!(s.read(&mut buf), Ok(n) if { out.extend_from_slice(&buf[..n]); true });
            s.set_nonblocking(false).unwrap();
            if answered {
                break;
            }
        }
        let _ = s.read_to_end(&mut out);
        out
    });
    let normal = thread::spawn(move || {
        let mut answers = 0;
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        for _ in 0..20 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            if buf[..n].starts_with(b"HTTP/1.1 200 OK") && buf[..n].ends_with(b"Hello, World!") {
                answers += 1;
            }
        }
        answers
    });
    run_until(&mut reactor, || slow.is_finished() && normal.is_finished());
    let out = String::from_utf8_lossy(&slow.join().unwrap()).into_owned();
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(
        slow_sent.load(Ordering::Relaxed) < 130,
        "closed before its head was complete"
    );
    assert_eq!(
        normal.join().unwrap(),
        20,
        "the normal client was served throughout"
    );
    assert_eq!(server.stats().header_timeouts, 1);
}

#[test]
fn a_huge_response_to_a_client_that_stops_reading_stays_in_bounded_memory() {
    const GIB: u64 = 1 << 30;
    const CHUNK: usize = 64 * 1024;
    let produced = Rc::new(Cell::new(0u64));
    let p = produced.clone();
    let server = HttpServer::new(move |_: &mut Core, _: Request| {
        let p = p.clone();
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        let source = (0..GIB / CHUNK as u64).map(move |_| {
            p.set(p.get() + CHUNK as u64);
            Ok(chunk.clone())
        });
        Response::new(200).with_stream(source, Some(GIB))
    });
    let mut reactor = Reactor::new().unwrap();
    let addr = serve(&mut reactor, &server);
    let read = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (r, st) = (read.clone(), stop.clone());
    let client = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        while r.load(Ordering::Relaxed) < 8 << 20 {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            r.fetch_add(n as u64, Ordering::Relaxed);
        }
        // Then stop reading, with the connection open, until told.
        while !st.load(Ordering::Relaxed) {
            thread::park_timeout(Duration::from_millis(10));
        }
    });
    run_until(&mut reactor, || read.load(Ordering::Relaxed) >= 8 << 20);
    // Give the server every chance to run ahead: many turns of the loop.
    for _ in 0..40 {
        reactor.run_once(Some(Duration::from_millis(25))).unwrap();
    }
    let ahead = produced.get() - read.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    client.thread().unpark();
    client.join().unwrap();
    // Kernel socket buffers (a few MiB on loopback) plus the transport's
    // high water mark: nowhere near the gigabyte.
    assert!(ahead < 32 << 20, "ran {ahead} bytes ahead of the reader");
    assert!(produced.get() < GIB / 8);
}

#[test]
fn the_same_server_over_a_unix_socket() {
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let path = std::env::temp_dir().join(format!("torsion-http-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    reactor.listen_unix(&path, server.factory()).unwrap();
    let p = path.clone();
    let t = thread::spawn(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&p).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nConnection: close\r\n\r\nunix")
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    });
    run_until(&mut reactor, || t.is_finished());
    let out = String::from_utf8(t.join().unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.contains("\r\n\r\nHello, World!HTTP/1.1 200 OK"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\nunix"), "{out}");
    assert_eq!(server.stats().reused, 1);
}

#[test]
fn a_handler_whose_deferred_is_abandoned_gets_a_500_and_the_connection_goes_on() {
    use torsion::defer::{Deferred, Failure};
    let mut reactor = Reactor::new().unwrap();
    let app = app().get("/abandon", |core: &mut Core, _: Request| {
        // The producer holds the trigger for a while, then drops it unfired
        // (a lost reply, a task that went away).
        let (d, trigger) = Deferred::<Response, Failure>::new();
        core.call_later(Duration::from_millis(1), move |_| drop(trigger));
        d
    });
    let server = HttpServer::new(app);
    let addr = serve(&mut reactor, &server);
    let t = exchange(
        addr,
        b"GET /abandon HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            .to_vec(),
    );
    let out = finish(&mut reactor, t);
    let statuses: Vec<&str> = out.split("HTTP/1.1 ").skip(1).map(|r| &r[..3]).collect();
    assert_eq!(statuses, ["500", "200"], "{out}");
    assert!(out.ends_with("Hello, World!"), "{out}");
}
