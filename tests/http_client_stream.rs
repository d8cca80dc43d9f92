//! The HTTP client's streamed response bodies (back-pressure, bounded
//! memory, errors mid-body, abandoning a body, `AsyncRead`) and its phase
//! timings, against the crate's server, raw sockets and Python's
//! `http.server`.

mod tls_util;
mod util;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use torsion::defer::Deferred;
use torsion::http::{
    BodyChunk, ClientConfig, ClientError, HttpClient, HttpError, HttpServer, Request, Response,
    Router, StreamingResponse, STREAM_QUEUE_MAX,
};
use torsion::{Core, Reactor};
use util::run_until;

/// The byte at offset `i` of every test body.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// `total` bytes of the pattern in pieces of `piece`.
fn pieces(total: u64, piece: usize) -> impl Iterator<Item = std::io::Result<Bytes>> {
    let mut at = 0u64;
    std::iter::from_fn(move || {
        if at >= total {
            return None;
        }
        let n = (total - at).min(piece as u64);
        let b: Vec<u8> = (at..at + n).map(pattern).collect();
        at += n;
        Some(Ok(Bytes::from(b)))
    })
}

const BIG: u64 = 64 * 1024 * 1024;

fn app() -> Router {
    Router::new()
        .get("/big", |_: &mut Core, _: Request| {
            Response::new(200).with_stream(pieces(BIG, 256 * 1024), Some(BIG))
        })
        .get("/chunked", |_: &mut Core, _: Request| {
            Response::new(200).with_stream(pieces(BIG / 4, 100_000), None)
        })
        .get("/small", |_: &mut Core, _: Request| Response::ok("small"))
        .get("/redirect", |_: &mut Core, _: Request| {
            Response::new(302).with_header("Location", "/small")
        })
}

fn serve(reactor: &mut Reactor, server: &HttpServer) -> SocketAddr {
    server
        .listen_tcp(reactor, "127.0.0.1:0".parse().unwrap())
        .unwrap()
        .local_addr()
}

fn head<T: 'static>(
    reactor: &mut Reactor,
    start: impl FnOnce(&mut Reactor) -> Deferred<T, ClientError>,
) -> Result<T, ClientError> {
    let d = start(reactor);
    reactor.run_until_complete(d).expect("the reactor runs")
}

/// What a consumer saw.
#[derive(Default)]
struct Seen {
    bytes: u64,
    /// Whether every byte matched the pattern.
    intact: bool,
    end: Option<Result<torsion::http::Timings, ClientError>>,
    pauses: u32,
}

/// Reads `resp`'s body, checking the pattern; pauses every `pause_every`
/// bytes and resumes on the next turn, so the server is held back.
fn consume(reactor: &mut Reactor, resp: StreamingResponse, pause_every: u64) -> Rc<RefCell<Seen>> {
    let seen = Rc::new(RefCell::new(Seen {
        intact: true,
        ..Seen::default()
    }));
    let s = seen.clone();
    let body = resp.body.clone();
    let mut since_pause = 0u64;
    resp.body.on_data(reactor, move |core: &mut Core, chunk| {
        let mut s = s.borrow_mut();
        match chunk {
            BodyChunk::Data(d) => {
                let at = s.bytes;
                if d.iter()
                    .enumerate()
                    .any(|(i, &b)| b != pattern(at + i as u64))
                {
                    s.intact = false;
                }
                s.bytes += d.len() as u64;
                since_pause += d.len() as u64;
                if pause_every > 0 && since_pause >= pause_every {
                    since_pause = 0;
                    s.pauses += 1;
                    body.pause(core);
                    let b = body.clone();
                    core.call_later(Duration::ZERO, move |core| b.resume(core));
                }
            }
            BodyChunk::End(t) => s.end = Some(Ok(t)),
            BodyChunk::Failed(e) => s.end = Some(Err(e)),
        }
    });
    seen
}

#[test]
fn a_large_body_streams_in_bounded_memory_with_pauses() {
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let client = HttpClient::new();
    for (path, total) in [("/big", BIG), ("/chunked", BIG / 4)] {
        let url = format!("http://{addr}{path}");
        let resp = head(&mut reactor, |r| client.get_streaming(r, &url)).unwrap();
        assert_eq!(resp.head.status, 200);
        assert!(resp.head.body_bytes().is_empty());
        let body = resp.body.clone();
        let seen = consume(&mut reactor, resp, 4 * 1024 * 1024);
        run_until(&mut reactor, || seen.borrow().end.is_some());
        let s = seen.borrow();
        assert!(matches!(s.end, Some(Ok(_))), "{path}: {:?}", s.end);
        assert_eq!(s.bytes, total, "{path}");
        assert!(s.intact, "{path}: the bytes are the server's, in order");
        assert!(s.pauses >= 3, "{path}: paused {} times", s.pauses);
        // Far below the body (64 MiB): what waits for the consumer plus one
        // read of the socket.
        let peak = body.peak_buffered();
        assert!(peak <= 4 * STREAM_QUEUE_MAX, "{path}: peak {peak} bytes");
        assert_eq!(body.received(), total);
    }
    // Both bodies were read to their end: the connection went back to the
    // pool each time and carried the next request.
    assert_eq!(client.stats().connections, 1);
    assert_eq!(client.idle_connections(), 1);
}

#[test]
fn a_consumer_that_sets_no_reader_holds_the_server_back() {
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let client = HttpClient::new();
    let url = format!("http://{addr}/big");
    let resp = head(&mut reactor, |r| client.get_streaming(r, &url)).unwrap();
    // Nobody reads: the client stops at its queue's limit. Run a few hundred
    // turns and check the body did not run ahead.
    let mut turns = 0;
    reactor
        .run_until(util::DEADLINE, |_| {
            turns += 1;
            turns > 300
        })
        .unwrap();
    let received = resp.body.received();
    assert!(
        received <= 4 * STREAM_QUEUE_MAX as u64,
        "received {received} with nobody reading"
    );
    assert!(resp.body.buffered() >= STREAM_QUEUE_MAX.min(received as usize));
    // Now read it all.
    let seen = consume(&mut reactor, resp, 0);
    run_until(&mut reactor, || seen.borrow().end.is_some());
    assert_eq!(seen.borrow().bytes, BIG);
    assert!(seen.borrow().intact);
}

#[test]
fn a_body_given_up_mid_way_closes_its_connection() {
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let client = HttpClient::new();
    let url = format!("http://{addr}/big");
    // Closed explicitly after the first bytes.
    let resp = head(&mut reactor, |r| client.get_streaming(r, &url)).unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let body = resp.body.clone();
    resp.body
        .on_data(&mut reactor, move |core: &mut Core, chunk| {
            let first = g.borrow().is_empty();
            g.borrow_mut().push(chunk);
            if first {
                body.close(core);
            }
        });
    run_until(&mut reactor, || server.stats().open == 0);
    assert_eq!(
        got.borrow().len(),
        1,
        "nothing after close: {:?}",
        got.borrow().len()
    );
    assert_eq!(client.idle_connections(), 0, "not returned to the pool");
    // Dropped with no reader set.
    let resp = head(&mut reactor, |r| client.get_streaming(r, &url)).unwrap();
    assert_eq!(server.stats().open, 1);
    drop(resp);
    run_until(&mut reactor, || server.stats().open == 0);
    assert_eq!(client.idle_connections(), 0);
    // The next request opens a new connection.
    let small = format!("http://{addr}/small");
    let r = head(&mut reactor, |r| client.get(r, &small)).unwrap();
    assert_eq!(r.body_bytes(), b"small");
    assert_eq!(client.stats().connections, 3);
    assert_eq!(client.stats().reused, 0);
}

/// A one-shot server that reads a request and writes `head`, then `body`
/// bytes of the pattern, then closes.
fn raw_server(head: String, body: u64) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(head.as_bytes());
            let mut at = 0;
            while at < body {
                let n = (body - at).min(64 * 1024);
                let chunk: Vec<u8> = (at..at + n).map(pattern).collect();
                if s.write_all(&chunk).is_err() {
                    return;
                }
                at += n;
            }
        }
    });
    addr
}

#[test]
fn bodies_delimited_by_the_close_stream_and_errors_mid_body_reach_the_reader() {
    let mut reactor = Reactor::new().unwrap();
    let client = HttpClient::new();
    // Read until close, 8 MiB, with pauses.
    let total = 8 * 1024 * 1024;
    let addr = raw_server("HTTP/1.0 200 OK\r\n\r\n".into(), total);
    let resp = head(&mut reactor, |r| {
        client.get_streaming(r, &format!("http://{addr}/"))
    })
    .unwrap();
    let body = resp.body.clone();
    let seen = consume(&mut reactor, resp, 1024 * 1024);
    run_until(&mut reactor, || seen.borrow().end.is_some());
    assert!(matches!(seen.borrow().end, Some(Ok(_))));
    assert_eq!(seen.borrow().bytes, total);
    assert!(seen.borrow().intact);
    assert!(body.peak_buffered() <= 4 * STREAM_QUEUE_MAX);
    // Content-Length promises more than comes: the reader hears Failed
    // after the bytes that did come.
    let addr = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".into(),
        300_000,
    );
    let resp = head(&mut reactor, |r| {
        client.get_streaming(r, &format!("http://{addr}/"))
    })
    .unwrap();
    let seen = consume(&mut reactor, resp, 0);
    run_until(&mut reactor, || seen.borrow().end.is_some());
    assert_eq!(seen.borrow().bytes, 300_000);
    assert_eq!(
        seen.borrow().end,
        Some(Err(ClientError::Http(HttpError::Incomplete)))
    );
    // Broken chunked framing mid-body.
    let addr = canned(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n");
    let resp = head(&mut reactor, |r| {
        client.get_streaming(r, &format!("http://{addr}/"))
    })
    .unwrap();
    let parts = Rc::new(RefCell::new(Vec::new()));
    let p = parts.clone();
    resp.body
        .on_data(&mut reactor, move |_: &mut Core, c| p.borrow_mut().push(c));
    run_until(&mut reactor, || parts.borrow().len() == 2);
    assert_eq!(
        parts.borrow()[0],
        BodyChunk::Data(Bytes::from_static(b"hello"))
    );
    assert!(
        matches!(
            &parts.borrow()[1],
            BodyChunk::Failed(ClientError::Http(HttpError::BadChunk(_)))
        ),
        "{:?}",
        parts.borrow()[1]
    );
}

fn canned(response: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(response);
            // Hold the connection open until the client closes it.
            let _ = s.read(&mut buf);
        }
    });
    addr
}

#[test]
fn limits_and_the_silence_timeout_apply_to_streamed_bodies() {
    let mut reactor = Reactor::new().unwrap();
    let client = HttpClient::with_config(ClientConfig {
        max_streamed_body: Some(100_000),
        response_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    });
    // Declared too large: refused at the head.
    let addr = raw_server(
        "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n".into(),
        0,
    );
    let e = head(&mut reactor, |r| {
        client.get_streaming(r, &format!("http://{addr}/"))
    })
    .unwrap_err();
    assert_eq!(e, ClientError::Http(HttpError::BodyTooLarge(100_000)));
    // Grows too large: the reader hears it.
    let addr = raw_server("HTTP/1.0 200 OK\r\n\r\n".into(), 300_000);
    let resp = head(&mut reactor, |r| {
        client.get_streaming(r, &format!("http://{addr}/"))
    })
    .unwrap();
    let seen = consume(&mut reactor, resp, 0);
    run_until(&mut reactor, || seen.borrow().end.is_some());
    assert_eq!(
        seen.borrow().end,
        Some(Err(ClientError::Http(HttpError::BodyTooLarge(100_000))))
    );
    assert!(seen.borrow().bytes <= 100_000);
    // A server that goes quiet mid-body.
    let addr = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart");
    let resp = head(&mut reactor, |r| {
        client.get_streaming(r, &format!("http://{addr}/"))
    })
    .unwrap();
    let seen = consume(&mut reactor, resp, 0);
    run_until(&mut reactor, || seen.borrow().end.is_some());
    assert_eq!(seen.borrow().bytes, 4);
    assert!(
        matches!(seen.borrow().end, Some(Err(ClientError::Timeout(_)))),
        "{:?}",
        seen.borrow().end
    );
}

#[test]
fn a_body_read_as_async_read() {
    use futures_io::AsyncRead;
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let client = HttpClient::new();
    let url = format!("http://{addr}/chunked");
    let resp = head(&mut reactor, |r| client.get_streaming(r, &url)).unwrap();
    let mut reader = resp.body.into_reader();
    let task = reactor.spawn_local(async move {
        let mut buf = vec![0u8; 10_000];
        let mut total = 0u64;
        loop {
            let n =
                std::future::poll_fn(|cx| Pin::new(&mut reader).poll_read(cx, &mut buf)).await?;
            if n == 0 {
                break;
            }
            if buf[..n]
                .iter()
                .enumerate()
                .any(|(i, &b)| b != pattern(total + i as u64))
            {
                return Err(std::io::Error::other("corrupt"));
            }
            total += n as u64;
        }
        Ok::<_, std::io::Error>((total, reader.body().peak_buffered()))
    });
    let (total, peak) = reactor.run_until_complete(task).unwrap().unwrap();
    assert_eq!(total, BIG / 4);
    assert!(peak <= 4 * STREAM_QUEUE_MAX, "peak {peak}");
    assert_eq!(client.idle_connections(), 1);
}

#[test]
fn timings_are_ordered_and_tell_reuse_and_tls() {
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let addr = serve(&mut reactor, &server);
    let client = HttpClient::new();
    let url = format!("http://{addr}/small");
    let first = head(&mut reactor, |r| client.get(r, &url)).unwrap();
    let t = first.timings().expect("timings");
    assert!(!t.reused);
    assert!(t.connect() > Duration::ZERO, "{t:?}");
    assert_eq!(t.tls(), None);
    assert!(t.resolved <= t.connected && t.connected <= t.request_written);
    assert!(t.request_written <= t.first_byte && Some(t.first_byte) <= t.complete);
    let second = head(&mut reactor, |r| client.get(r, &url)).unwrap();
    let t2 = second.timings().expect("timings");
    assert!(t2.reused, "{t2:?}");
    assert_eq!((t2.connect(), t2.tls()), (Duration::ZERO, None));
    assert!(t2.first_byte > Duration::ZERO && t2.total().is_some());
    // A streamed response: the head's timings end at the first byte, the
    // End's at the body's end.
    let resp = head(&mut reactor, |r| {
        client.get_streaming(r, &format!("http://{addr}/chunked"))
    })
    .unwrap();
    let ht = resp.head.timings().expect("timings");
    assert!(ht.reused && ht.complete.is_none());
    let seen = consume(&mut reactor, resp, 0);
    run_until(&mut reactor, || seen.borrow().end.is_some());
    let Some(Ok(et)) = seen.borrow().end.clone() else {
        panic!("no end");
    };
    assert!(et.complete.is_some_and(|c| c >= et.first_byte) && et.transfer().is_some());
    // A followed redirect reports the final response's exchange.
    let follower = HttpClient::with_config(ClientConfig {
        follow_redirects: 3,
        ..ClientConfig::default()
    });
    let r = head(&mut reactor, |r| {
        follower.get(r, &format!("http://{addr}/redirect"))
    })
    .unwrap();
    assert_eq!(r.body_bytes(), b"small");
    assert!(r.timings().expect("timings").reused);
    // https: TLS is measured on the new connection only.
    let certs = tls_util::certs(&["localhost"]);
    let tls_server = HttpServer::new(app());
    let port = tls_server
        .listen_tls(&mut reactor, "127.0.0.1:0".parse().unwrap(), certs.server())
        .unwrap();
    let url = format!("https://localhost:{}/small", port.local_addr().port());
    let secure = HttpClient::with_config(ClientConfig {
        tls: Some(certs.client()),
        ..ClientConfig::default()
    });
    let r = head(&mut reactor, |r| secure.get(r, &url)).unwrap();
    let t = r.timings().expect("timings");
    assert!(!t.reused && t.connect() > Duration::ZERO, "{t:?}");
    assert!(t.tls().is_some_and(|d| d > Duration::ZERO), "{t:?}");
    assert!(t.resolve() > Duration::ZERO, "localhost is resolved: {t:?}");
    assert!(t.tls_done.unwrap() <= t.request_written);
    let r = head(&mut reactor, |r| secure.get(r, &url)).unwrap();
    let t = r.timings().expect("timings");
    assert!(t.reused && t.tls().is_none(), "{t:?}");
}

#[test]
fn streams_from_python_http_server() {
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 is required in CI"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("torsion-http-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let total = 16 * 1024 * 1024u64;
    let big: Vec<u8> = (0..total).map(pattern).collect();
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    drop(big);
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
    let port: u16 = line
        .split(" port ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"));
    let mut reactor = Reactor::new().unwrap();
    let client = HttpClient::new();
    let url = format!("http://127.0.0.1:{port}/big.bin");
    let resp = head(&mut reactor, |r| client.get_streaming(r, &url));
    let outcome = resp.map(|resp| {
        let body = resp.body.clone();
        let seen = consume(&mut reactor, resp, 2 * 1024 * 1024);
        run_until(&mut reactor, || seen.borrow().end.is_some());
        (seen, body.peak_buffered())
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (seen, peak) = outcome.unwrap();
    let s = seen.borrow();
    assert!(matches!(s.end, Some(Ok(_))), "{:?}", s.end);
    assert_eq!(s.bytes, total);
    assert!(s.intact);
    assert!(peak <= 4 * STREAM_QUEUE_MAX, "peak {peak}");
}

/// Streams an upload in, checking the pattern, pausing every 4 MiB until the
/// next turn; answers with the count.
struct Sink(Rc<std::cell::Cell<u64>>);

impl torsion::http::Handler for Sink {
    fn handle(&mut self, core: &mut Core, mut req: Request) -> torsion::http::Reply {
        let incoming = req.take_incoming().expect("streamed");
        let (d, t) = Deferred::<Response, torsion::defer::Failure>::new();
        let received = self.0.clone();
        let mut t = Some(t);
        let mut intact = true;
        let mut since_pause = 0;
        let inc = incoming.clone();
        incoming.on_data(core, move |core, part| match part {
            torsion::http::BodyPart::Data(b) => {
                let at = received.get();
                intact &= b
                    .iter()
                    .enumerate()
                    .all(|(i, &x)| x == pattern(at + i as u64));
                received.set(at + b.len() as u64);
                since_pause += b.len();
                if since_pause >= 4 << 20 {
                    since_pause = 0;
                    inc.pause(core);
                    let i = inc.clone();
                    core.call_later(Duration::ZERO, move |core| i.resume(core));
                }
            }
            torsion::http::BodyPart::End => {
                if let Some(t) = t.take() {
                    let _ = t.callback(Response::ok(format!("{} {intact}", received.get())));
                }
            }
            torsion::http::BodyPart::Aborted => {}
        });
        torsion::http::Reply::Later(d)
    }

    fn streams_body(&self, _req: &Request) -> bool {
        true
    }
}

#[test]
fn uploads_stream_from_a_source_with_back_pressure() {
    use std::cell::Cell;
    use torsion::http::{Headers, Method, ServerConfig};
    let mut reactor = Reactor::new().unwrap();
    let received = Rc::new(Cell::new(0u64));
    let server = HttpServer::with_config(
        Router::new()
            .post("/up", Sink(received.clone()))
            .get("/temp", |_: &mut Core, _: Request| {
                Response::new(307).with_header("Location", "/up")
            }),
        ServerConfig {
            limits: torsion::http::Limits {
                max_body_size: u64::MAX,
                ..Default::default()
            },
            ..ServerConfig::default()
        },
    );
    let addr = serve(&mut reactor, &server);
    let client = HttpClient::new();
    let url = format!("http://{addr}/up");
    for length in [None, Some(BIG)] {
        received.set(0);
        let ahead = Rc::new(Cell::new(0u64));
        let (a, r) = (ahead.clone(), received.clone());
        let mut pulled = 0u64;
        let source = pieces(BIG, 256 * 1024).inspect(move |p| {
            if let Ok(b) = p {
                pulled += b.len() as u64;
                a.set(a.get().max(pulled - r.get()));
            }
        });
        let resp = head(&mut reactor, |r| {
            client.upload(r, Method::Post, &url, Headers::new(), source, length)
        })
        .unwrap();
        assert_eq!(resp.body_text(), format!("{BIG} true"), "{length:?}");
        // Pulled only as the server took it: far less than the body ahead.
        let ahead = ahead.get();
        assert!(
            ahead <= 24 << 20,
            "{length:?}: {ahead} bytes ahead of the server"
        );
        let t = resp.timings().unwrap();
        assert!(t.request_written <= t.first_byte, "{t:?}");
    }
    // A source that fails, and one shorter than its announced length.
    let failing = pieces(1 << 20, 64 * 1024)
        .chain(std::iter::once(Err(std::io::Error::other("disk on fire"))));
    let e = head(&mut reactor, |r| {
        client.upload(r, Method::Post, &url, Headers::new(), failing, None)
    })
    .unwrap_err();
    assert!(
        matches!(&e, ClientError::RequestBody(m) if m.contains("disk on fire")),
        "{e}"
    );
    let short = pieces(1000, 100);
    let e = head(&mut reactor, |r| {
        client.upload(r, Method::Post, &url, Headers::new(), short, Some(5000))
    })
    .unwrap_err();
    assert!(matches!(e, ClientError::RequestBody(_)), "{e}");
    // A 307 would need the body again: it is the answer.
    let follower = HttpClient::with_config(ClientConfig {
        follow_redirects: 3,
        ..ClientConfig::default()
    });
    let temp = format!("http://{addr}/temp");
    let r = head(&mut reactor, |r| {
        follower.upload(
            r,
            Method::Get,
            &temp,
            Headers::new(),
            pieces(10, 10),
            Some(10),
        )
    })
    .unwrap();
    assert_eq!(r.status, 307);
}

#[test]
fn a_streamed_body_over_tls_keeps_its_bound_and_pauses() {
    let certs = tls_util::certs(&["localhost"]);
    let mut reactor = Reactor::new().unwrap();
    let server = HttpServer::new(app());
    let port = server
        .listen_tls(&mut reactor, "127.0.0.1:0".parse().unwrap(), certs.server())
        .unwrap();
    let client = HttpClient::with_config(ClientConfig {
        tls: Some(certs.client()),
        ..ClientConfig::default()
    });
    let url = format!("https://localhost:{}/chunked", port.local_addr().port());
    let resp = head(&mut reactor, |r| client.get_streaming(r, &url)).unwrap();
    let body = resp.body.clone();
    let seen = consume(&mut reactor, resp, 2 * 1024 * 1024);
    run_until(&mut reactor, || seen.borrow().end.is_some());
    let s = seen.borrow();
    assert!(matches!(s.end, Some(Ok(_))), "{:?}", s.end);
    assert_eq!(s.bytes, BIG / 4);
    assert!(s.intact && s.pauses >= 3);
    let peak = body.peak_buffered();
    assert!(peak <= 4 * STREAM_QUEUE_MAX, "peak {peak}");
    assert_eq!(client.idle_connections(), 1, "back in the pool");
}
