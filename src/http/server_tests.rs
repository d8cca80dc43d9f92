//! The server over the in-memory pump with the fake clock: timeouts,
//! pipelining, HEAD, 100-continue, HTTP/1.0, panics, Deferred handlers,
//! streamed bodies both ways, graceful shutdown.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::codec::{Event, ResponseDecoder};
use super::*;
use crate::defer::{Deferred, Failure};
use crate::task::defer_later;
use crate::testing::{Link, Pump};
use crate::{Context, Core, Protocol};

/// A client that sends what it is told and records what comes back.
#[derive(Default)]
struct Raw {
    got: Vec<u8>,
}

impl Protocol for Raw {
    fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
    }
}

type L = Link<Raw, ServerConnection>;

fn app() -> Router {
    Router::new()
        .get("/", |_: &mut Core, _: Request| {
            Response::ok("Hello, World!")
        })
        .post("/echo", |_: &mut Core, req: Request| Response::ok(req.body))
        .get("/slow", |core: &mut Core, _: Request| {
            let d: Deferred<Response, Failure> =
                defer_later(core, Duration::from_millis(50), |_| {
                    Ok(Response::ok("slow"))
                });
            d
        })
        .get("/panic", |_: &mut Core, _: Request| -> Response {
            panic!("handler bug")
        })
        .get("/big", |_: &mut Core, _: Request| {
            Response::new(200)
                .with_stream((0..100).map(|_| Ok(Bytes::from(vec![b'x'; 1000]))), None)
        })
}

fn start(server: &HttpServer) -> (Pump, L) {
    let mut pump = Pump::new();
    let link = pump
        .connect_factory(Raw::default(), &mut server.factory())
        .expect("a connection");
    pump.flush();
    (pump, link)
}

fn send(pump: &mut Pump, link: L, data: &[u8]) {
    let data = data.to_vec();
    pump.with_client(link, move |_, ctx| ctx.write(&data));
    settle(pump);
}

/// Flushes, running local calls (Deferred deliveries) until quiet.
fn settle(pump: &mut Pump) {
    for _ in 0..10 {
        pump.flush();
        pump.core_mut().run_local();
    }
    pump.flush();
}

/// The responses in `raw`, for requests with these methods.
fn parse(raw: &[u8], methods: &[Method]) -> Vec<(u16, Headers, Vec<u8>)> {
    let mut d = ResponseDecoder::new(Limits::default());
    let mut buf = BytesMut::from(raw);
    let mut out = Vec::new();
    let mut methods = methods.iter();
    d.expect(methods.next().cloned().unwrap_or(Method::Get));
    let mut cur = None;
    while let Some(ev) = d.decode(&mut buf).expect("a valid response") {
        match ev {
            Event::Head(h) => cur = Some((h.status, h.headers, Vec::new())),
            Event::Data(b) => cur.as_mut().unwrap().2.extend_from_slice(&b),
            Event::End => {
                out.push(cur.take().unwrap());
                d.expect(methods.next().cloned().unwrap_or(Method::Get));
            }
        }
    }
    out
}

fn got(pump: &Pump, link: L) -> Vec<u8> {
    pump.client(link).got.clone()
}

#[test]
fn hello_world_with_date_and_length() {
    let server = HttpServer::new(app());
    let (mut pump, link) = start(&server);
    send(&mut pump, link, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = parse(&got(&pump, link), &[]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, 200);
    assert_eq!(r[0].2, b"Hello, World!");
    assert_eq!(r[0].1.get("content-length"), Some("13"));
    assert!(r[0].1.get("date").is_some_and(|d| d.ends_with(" GMT")));
    assert!(pump.server_lost(link).is_none(), "kept alive");
}

#[test]
fn pipelined_requests_are_answered_in_order_even_when_the_first_is_slow() {
    let server = HttpServer::new(app());
    let (mut pump, link) = start(&server);
    send(
        &mut pump,
        link,
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(
        got(&pump, link).is_empty(),
        "nothing before the slow answer"
    );
    pump.advance(Duration::from_millis(60));
    settle(&mut pump);
    let r = parse(&got(&pump, link), &[]);
    let bodies: Vec<&[u8]> = r.iter().map(|x| x.2.as_slice()).collect();
    assert_eq!(bodies, [&b"slow"[..], b"abc", b"Hello, World!"]);
    assert_eq!(server.stats().requests, 3);
    assert_eq!(server.stats().reused, 2);
}

#[test]
fn head_has_no_body_and_100_continue_comes_first() {
    let server = HttpServer::new(app());
    let (mut pump, link) = start(&server);
    send(&mut pump, link, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    let raw = got(&pump, link);
    let r = parse(&raw, &[Method::Head]);
    assert_eq!(r[0].1.get("content-length"), Some("13"));
    assert!(raw.ends_with(b"\r\n\r\n"), "no body after a HEAD answer");
    pump.client_mut(link).got.clear();
    send(
        &mut pump,
        link,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(got(&pump, link), b"HTTP/1.1 100 Continue\r\n\r\n");
    send(&mut pump, link, b"ok");
    let r = parse(&got(&pump, link), &[]);
    assert_eq!((r[0].0, r[0].2.as_slice()), (200, &b"ok"[..]));
}

#[test]
fn http10_gets_no_chunking_and_a_close() {
    let server = HttpServer::new(app());
    let (mut pump, link) = start(&server);
    send(&mut pump, link, b"GET /big HTTP/1.0\r\n\r\n");
    let raw = got(&pump, link);
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.to_ascii_lowercase().contains("transfer-encoding"),
        "{text:.200}"
    );
    assert!(text.contains("Connection: close"));
    assert_eq!(
        raw.len() - raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4,
        100_000
    );
    assert!(pump.server_lost(link).is_some(), "closed after the body");
}

#[test]
fn chunked_stream_to_http11() {
    let server = HttpServer::new(app());
    let (mut pump, link) = start(&server);
    send(
        &mut pump,
        link,
        b"GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let r = parse(&got(&pump, link), &[]);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].1.get("transfer-encoding"), Some("chunked"));
    assert_eq!(r[0].2.len(), 100_000);
    assert_eq!(r[1].2, b"Hello, World!");
}

#[test]
fn a_panicking_handler_gets_500() {
    let server = HttpServer::new(app());
    let (mut pump, link) = start(&server);
    send(&mut pump, link, b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = parse(&got(&pump, link), &[]);
    assert_eq!(r[0].0, 500);
    assert_eq!(server.stats().panics, 1);
}

#[test]
fn slowloris_is_cut_off_by_the_header_timeout() {
    let server = HttpServer::new(app());
    let (mut pump, link) = start(&server);
    let (good_pump_link, _) = (link, ());
    // One header byte a second: never a complete head within 10 s.
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    for (i, b) in request.iter().enumerate() {
        if pump.server_lost(link).is_some() {
            assert!((9..=11).contains(&i), "closed after {i} s");
            break;
        }
        send(&mut pump, link, &[*b]);
        pump.advance(Duration::from_secs(1));
    }
    assert!(pump.server_lost(good_pump_link).is_some());
    let r = parse(&got(&pump, link), &[]);
    assert_eq!(r[0].0, 408);
    assert_eq!(server.stats().header_timeouts, 1);
}

#[test]
fn a_silent_client_is_closed_by_the_header_timeout_and_an_idle_one_by_the_idle_timeout() {
    let server = HttpServer::new(app());
    let (mut pump, silent) = start(&server);
    pump.advance(Duration::from_secs(9));
    assert!(pump.server_lost(silent).is_none());
    pump.advance(Duration::from_secs(2));
    assert!(
        pump.server_lost(silent).is_some(),
        "connected and said nothing"
    );

    let (mut pump, idle) = start(&server);
    send(&mut pump, idle, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    pump.advance(Duration::from_secs(30));
    assert!(
        pump.server_lost(idle).is_none(),
        "between requests the header clock is off"
    );
    pump.advance(Duration::from_secs(31));
    assert!(
        pump.server_lost(idle).is_some(),
        "idle keep-alive closed after 60 s"
    );
}

#[test]
fn errors_get_their_status_and_a_close() {
    for (input, status) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..], 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
        (b"GARBAGE\r\n\r\n", 400),
    ] {
        let server = HttpServer::new(app());
        let (mut pump, link) = start(&server);
        send(&mut pump, link, input);
        let r = parse(&got(&pump, link), &[]);
        assert_eq!(r[0].0, status, "{}", String::from_utf8_lossy(input));
        assert_eq!(r[0].1.get("connection"), Some("close"));
        assert!(pump.server_lost(link).is_some());
        assert_eq!(server.stats().rejected, 1);
    }
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let server = HttpServer::new(app());
    let (mut pump, link) = start(&server);
    send(&mut pump, link, big.as_bytes());
    assert_eq!(parse(&got(&pump, link), &[])[0].0, 431);
}

/// Streams the upload in and counts it.
struct Upload(Rc<RefCell<Vec<BodyPart>>>);

impl Handler for Upload {
    fn handle(&mut self, core: &mut Core, mut req: Request) -> Reply {
        let incoming = req.take_incoming().expect("streamed");
        let (d, t) = Deferred::<Response, Failure>::new();
        let parts = self.0.clone();
        let mut total = 0usize;
        incoming.on_data(core, move |_, part| {
            if let BodyPart::Data(b) = &part {
                total += b.len();
            }
            if part == BodyPart::End {
                let _ = t.callback(Response::ok(format!("{total}")));
            }
            parts.borrow_mut().push(part);
        });
        Reply::Later(d)
    }
    fn streams_body(&self, _req: &Request) -> bool {
        true
    }
}

#[test]
fn uploads_stream_in_as_they_arrive() {
    let parts = Rc::new(RefCell::new(Vec::new()));
    let server = HttpServer::new(Upload(parts.clone()));
    let (mut pump, link) = start(&server);
    send(
        &mut pump,
        link,
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
    assert_eq!(
        *parts.borrow(),
        [BodyPart::Data(Bytes::from_static(b"hello"))],
        "before the end"
    );
    send(&mut pump, link, b"3\r\nabc\r\n0\r\n\r\n");
    let r = parse(&got(&pump, link), &[]);
    assert_eq!(r[0].2, b"8");
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let server = HttpServer::new(app());
    let (mut pump, busy) = start(&server);
    let idle = pump
        .connect_factory(Raw::default(), &mut server.factory())
        .unwrap();
    settle(&mut pump);
    send(&mut pump, busy, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut done = server.shutdown(pump.core_mut());
    settle(&mut pump);
    assert!(
        pump.server_lost(idle).is_some(),
        "idle connection closed at once"
    );
    assert!(pump.server_lost(busy).is_none(), "busy one finishing");
    assert!(done.take_result().is_none());
    assert!(server
        .factory()
        .build_protocol(&crate::Address::Inet(([1, 2, 3, 4], 5).into()))
        .is_none());
    pump.advance(Duration::from_millis(60));
    settle(&mut pump);
    let r = parse(&got(&pump, busy), &[]);
    assert_eq!(r[0].2, b"slow");
    assert_eq!(r[0].1.get("connection"), Some("close"));
    assert!(pump.server_lost(busy).is_some());
    assert!(matches!(done.take_result(), Some(Ok(()))));
}

use crate::protocol::Factory;

#[test]
fn the_access_log_names_each_request() {
    let all = crate::test_logs::capture_logs(tracing::Level::INFO, || {
        let server = HttpServer::new(app());
        let (mut pump, link) = start(&server);
        send(
            &mut pump,
            link,
            b"GET /?a=1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert_eq!(
            parse(&got(&pump, link), &[Method::Get, Method::Head]).len(),
            2
        );
    });
    let text = all.join("\n");
    let lines: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|l| l.contains("torsion::http::access"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, want) in lines.iter().zip([
        r#"method=GET path="/?a=1" "#,
        r#"method=HEAD path="/nowhere" "#,
    ]) {
        assert!(line.contains(want), "{line}");
    }
    assert!(
        lines[0].contains("status=200 bytes=13 micros="),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("status=404 bytes=0 micros="),
        "{}",
        lines[1]
    );
}
