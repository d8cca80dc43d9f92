//! The HTTP client against Python's `http.server` and against the crate's
//! own server (plain and TLS): the keep-alive pool, chunked responses,
//! redirects, timeouts, refused connections, and responses that break the
//! rules.

mod tls_util;
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use torsion::defer::{Deferred, Failure};
use torsion::http::{
    ClientConfig, ClientError, Headers, HttpClient, HttpError, HttpServer, Method, Request,
    Response, Router,
};
use torsion::{Core, Reactor};

fn app() -> Router {
    Router::new()
        .get("/", |_: &mut Core, _: Request| {
            Response::ok("Hello, World!")
        })
        .post("/echo", |_: &mut Core, req: Request| Response::ok(req.body))
        .get("/chunked", |_: &mut Core, _: Request| {
            Response::new(200).with_stream((0..50).map(|i| Ok(Bytes::from(format!("{i},")))), None)
        })
        .get("/redirect", |_: &mut Core, _: Request| {
            Response::new(302).with_header("Location", "/")
        })
        .get("/loop", |_: &mut Core, _: Request| {
            Response::new(307).with_header("Location", "/loop")
        })
        .get("/never", |_: &mut Core, _: Request| {
            let (d, t) = Deferred::<Response, Failure>::new();
            std::mem::forget(t); // never answers
            d
        })
}

fn serve(reactor: &mut Reactor, server: &HttpServer) -> SocketAddr {
    server
        .listen_tcp(reactor, "127.0.0.1:0".parse().unwrap())
        .unwrap()
        .local_addr()
}

fn wait<T: 'static>(
    reactor: &mut Reactor,
    start: impl FnOnce(&mut Reactor) -> Deferred<T, ClientError>,
) -> Result<T, ClientError> {
    let d = start(reactor);
    reactor.run_until_complete(d).expect("the reactor runs")
}

#[test]
fn against_its_own_server_with_a_keep_alive_pool() {
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let client = HttpClient::new();
    for _ in 0..3 {
        let r = wait(&mut reactor, |r| client.get(r, &format!("http://{addr}/"))).unwrap();
        assert_eq!((r.status, r.body_bytes()), (200, &b"Hello, World!"[..]));
    }
    let r = wait(&mut reactor, |r| {
        client.post(r, &format!("http://{addr}/echo"), "ping")
    })
    .unwrap();
    assert_eq!(r.body_bytes(), b"ping");
    let r = wait(&mut reactor, |r| {
        client.get(r, &format!("http://{addr}/chunked"))
    })
    .unwrap();
    assert_eq!(r.headers.get("transfer-encoding"), Some("chunked"));
    let want: String = (0..50).map(|i| format!("{i},")).collect();
    assert_eq!(r.body_text(), want);
    let r = wait(&mut reactor, |r| {
        client.request(
            r,
            Method::Head,
            &format!("http://{addr}/"),
            Headers::new(),
            Bytes::new(),
        )
    })
    .unwrap();
    assert_eq!((r.status, r.body_bytes().len()), (200, 0));
    assert_eq!(client.stats().connections, 1, "one connection for all");
    assert_eq!(client.stats().reused, 5);
    assert_eq!(server.stats().connections, 1);
    assert_eq!(server.stats().reused, 5);
    assert_eq!(client.idle_connections(), 1);
}

#[test]
fn redirects_are_opt_in() {
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let plain = HttpClient::new();
    let r = wait(&mut reactor, |r| {
        plain.get(r, &format!("http://{addr}/redirect"))
    })
    .unwrap();
    assert_eq!(r.status, 302);
    let following = HttpClient::with_config(ClientConfig {
        follow_redirects: 3,
        ..ClientConfig::default()
    });
    let r = wait(&mut reactor, |r| {
        following.get(r, &format!("http://{addr}/redirect"))
    })
    .unwrap();
    assert_eq!((r.status, r.body_bytes()), (200, &b"Hello, World!"[..]));
    let e = wait(&mut reactor, |r| {
        following.get(r, &format!("http://{addr}/loop"))
    })
    .unwrap_err();
    assert_eq!(e, ClientError::TooManyRedirects);
}

#[test]
fn timeouts_refusals_and_bad_urls_are_errors() {
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let client = HttpClient::with_config(ClientConfig {
        response_timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    });
    let e = wait(&mut reactor, |r| {
        client.get(r, &format!("http://{addr}/never"))
    })
    .unwrap_err();
    assert_eq!(e, ClientError::Timeout(Duration::from_millis(200)));
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = wait(&mut reactor, |r| {
        client.get(r, &format!("http://{closed}/"))
    })
    .unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    let e = wait(&mut reactor, |r| client.get(r, "ftp://example.org/")).unwrap_err();
    assert!(matches!(e, ClientError::BadUrl(_)));
    let mut bad = Headers::new();
    bad.append("X-Bad", "a\r\nInjected: yes");
    let e = wait(&mut reactor, |r| {
        client.request(
            r,
            Method::Get,
            &format!("http://{addr}/"),
            bad,
            Bytes::new(),
        )
    })
    .unwrap_err();
    assert!(matches!(e, ClientError::BadRequest(_)));
}

/// A one-shot server that answers any request with `response`, then closes.
fn canned(response: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(response);
        }
    });
    addr
}

#[test]
fn responses_that_break_the_rules_are_refused() {
    let mut reactor = Reactor::new().unwrap();
    let client = HttpClient::new();
    let cases: &[(&'static [u8], ClientError)] = &[
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ClientError::Http(HttpError::LengthAndChunked),
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            ClientError::Http(HttpError::Incomplete),
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnot-hex\r\n",
            ClientError::Http(HttpError::BadChunk("invalid chunk size")),
        ),
        (
            b"NONSENSE\r\n\r\n",
            ClientError::Http(HttpError::BadHead("invalid version")),
        ),
        (
            b"HTTP/2.0 200 OK\r\n\r\n",
            ClientError::Http(HttpError::UnsupportedVersion),
        ),
    ];
    for (response, want) in cases {
        let addr = canned(response);
        let e = wait(&mut reactor, |r| client.get(r, &format!("http://{addr}/"))).unwrap_err();
        assert_eq!(&e, want);
    }
    // Too large a body for the configured limit.
    let small = HttpClient::with_config(ClientConfig {
        limits: torsion::http::Limits {
            max_body_size: 4,
            ..Default::default()
        },
        ..ClientConfig::default()
    });
    let addr = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    let e = wait(&mut reactor, |r| small.get(r, &format!("http://{addr}/"))).unwrap_err();
    assert_eq!(e, ClientError::Http(HttpError::BodyTooLarge(4)));
    // A body delimited by the close is fine.
    let addr = canned(b"HTTP/1.0 200 OK\r\n\r\nuntil close");
    let r = wait(&mut reactor, |r| client.get(r, &format!("http://{addr}/"))).unwrap();
    assert_eq!(r.body_bytes(), b"until close");
}

#[test]
fn https_with_a_checked_certificate() {
    let certs = tls_util::certs(&["localhost"]);
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let port = server
        .listen_tls(&mut reactor, "127.0.0.1:0".parse().unwrap(), certs.server())
        .unwrap();
    let url = format!("https://localhost:{}/", port.local_addr().port());
    let client = HttpClient::with_config(ClientConfig {
        tls: Some(certs.client()),
        ..ClientConfig::default()
    });
    for _ in 0..2 {
        let r = wait(&mut reactor, |r| client.get(r, &url)).unwrap();
        assert_eq!(r.body_bytes(), b"Hello, World!");
    }
    assert_eq!(client.stats().connections, 1, "kept alive over TLS too");
    // A client that trusts another CA refuses the server.
    let other = tls_util::certs(&["localhost"]);
    let stranger = HttpClient::with_config(ClientConfig {
        tls: Some(other.client()),
        ..ClientConfig::default()
    });
    let e = wait(&mut reactor, |r| stranger.get(r, &url)).unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
}

#[test]
fn against_python_http_server() {
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 is required in CI"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("torsion-http-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello from python\n").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    let mut child = Command::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
    let port: u16 = line
        .split(" port ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"));
    let mut reactor = Reactor::new().unwrap();
    let client = HttpClient::new();
    let base = format!("http://127.0.0.1:{port}");
    let r = wait(&mut reactor, |r| {
        client.get(r, &format!("{base}/hello.txt"))
    });
    let r2 = wait(&mut reactor, |r| client.get(r, &format!("{base}/big.bin")));
    let r3 = wait(&mut reactor, |r| client.get(r, &format!("{base}/missing")));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let r = r.unwrap();
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "hello from python\n")
    );
    assert!(r
        .headers
        .get("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    assert_eq!(r2.unwrap().body_bytes(), big.as_slice());
    assert_eq!(r3.unwrap().status, 404);
}
