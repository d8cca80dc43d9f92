//! The codec, fed every input in every chunk size down to one byte.

use bytes::BytesMut;

use super::codec::{Event, Framing, RequestDecoder, ResponseDecoder};
use super::{HttpError, Limits, Method, Version};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    method: Method,
    target: String,
    version: Version,
    keep_alive: bool,
    body: Vec<u8>,
}

/// Decodes `input` fed `chunk` bytes at a time: the complete requests, and
/// the error that stopped decoding, if any.
fn requests(input: &[u8], chunk: usize, limits: Limits) -> (Vec<Msg>, Option<HttpError>) {
    let mut d = RequestDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut cur: Option<Msg> = None;
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(Event::Head(h))) => {
                    assert!(cur.is_none(), "head inside a message");
                    cur = Some(Msg {
                        target: h.target().to_owned(),
                        method: h.method,
                        version: h.version,
                        keep_alive: h.keep_alive,
                        body: Vec::new(),
                    });
                }
                Ok(Some(Event::Data(b))) => cur
                    .as_mut()
                    .expect("data after a head")
                    .body
                    .extend_from_slice(&b),
                Ok(Some(Event::End)) => out.push(cur.take().expect("end after a head")),
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// The same outcome for every chunk size.
fn every_split(input: &[u8], limits: Limits) -> (Vec<Msg>, Option<HttpError>) {
    let whole = requests(input, input.len().max(1), limits);
    for chunk in 1..input.len() {
        assert_eq!(requests(input, chunk, limits), whole, "chunk size {chunk}");
    }
    whole
}

fn ok(input: &[u8]) -> Vec<Msg> {
    let (msgs, err) = every_split(input, Limits::default());
    assert_eq!(err, None);
    msgs
}

fn err(input: &[u8], limits: Limits) -> HttpError {
    every_split(input, limits).1.expect("an error")
}

fn bad(input: &[u8]) -> u16 {
    err(input, Limits::default()).status()
}

#[test]
fn pipelined_requests_in_order() {
    let msgs = ok(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
        GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let targets: Vec<&str> = msgs.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(targets, ["/a", "/b", "/c"]);
    assert_eq!(msgs[1].body, b"hello");
    assert!(msgs[0].keep_alive && !msgs[2].keep_alive);
}

#[test]
fn chunked_bodies_with_extensions_and_trailers() {
    let msgs = ok(
        b"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: ignored\r\nOther: too\r\n\r\n\
        GET /next HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].body, b"hello, world");
    assert_eq!(msgs[1].target, "/next");
}

#[test]
fn http10_and_empty_lines() {
    let msgs =
        ok(b"\r\nGET / HTTP/1.0\r\n\r\n\r\nGET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].version, Version::Http10);
    assert!(!msgs[0].keep_alive);
    assert!(msgs[1].keep_alive);
}

#[test]
fn identical_content_lengths_are_one() {
    let msgs =
        ok(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc");
    assert_eq!(msgs[0].body, b"abc");
}

#[test]
fn head_limits_are_431() {
    let limits = Limits {
        max_head_size: 200,
        ..Limits::default()
    };
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(300)
    );
    assert_eq!(err(big.as_bytes(), limits), HttpError::HeadTooLarge(200));
    // Never terminated: refused once the buffer passes the limit.
    let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(300));
    assert_eq!(err(endless.as_bytes(), limits).status(), 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..101 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        err(many.as_bytes(), Limits::default()),
        HttpError::TooManyHeaders(100)
    );
}

#[test]
fn body_limits_are_413() {
    let limits = Limits {
        max_body_size: 10,
        ..Limits::default()
    };
    let declared = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n";
    assert_eq!(err(declared, limits), HttpError::BodyTooLarge(10));
    let chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n";
    assert_eq!(err(chunked, limits), HttpError::BodyTooLarge(10));
    let at_limit = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n5\r\nabcde\r\n0\r\n\r\n";
    assert_eq!(every_split(at_limit, limits).1, None);
}

#[test]
fn smuggling_defences() {
    let cases: &[(&[u8], HttpError)] = &[
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", HttpError::LengthAndChunked),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", HttpError::LengthAndChunked),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", HttpError::BadContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n", HttpError::BadContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", HttpError::BadContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\n", HttpError::BadContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", HttpError::BadContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", HttpError::BadTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", HttpError::BadTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", HttpError::BadTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", HttpError::BadTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", HttpError::BadTransferEncoding),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HttpError::BadTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HttpError::UnsupportedTransferCoding),
        (b"GET / HTTP/1.1\r\n\r\n", HttpError::BadHost),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HttpError::BadHost),
        (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n", HttpError::UnsupportedExpectation),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", HttpError::UnsupportedVersion),
    ];
    for (input, want) in cases {
        assert_eq!(
            &err(input, Limits::default()),
            want,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    // Each of these is answered 400 (or 501 for the unsupported coding).
    assert_eq!(HttpError::LengthAndChunked.status(), 400);
    assert_eq!(HttpError::BadTransferEncoding.status(), 400);
}

#[test]
fn malformed_heads_are_400() {
    for input in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  continued\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\tfolded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
        b"GET\x01 / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n",
    ] {
        let status = bad(input);
        assert!(
            status == 400 || status == 505,
            "{status} for {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn malformed_chunks_are_400() {
    for input in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad\n\r\n",
    ] {
        let e = err(input, Limits::default());
        assert!(
            matches!(e, HttpError::BadChunk(_) | HttpError::BodyTooLarge(_)),
            "{e:?}"
        );
    }
    // An endless chunk-size line is cut off.
    let mut long = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    long.extend(std::iter::repeat_n(b'a', 5000));
    assert!(matches!(
        requests(&long, long.len(), Limits::default()).1,
        Some(HttpError::BadChunk(_))
    ));
}

#[test]
fn the_decoder_stays_failed() {
    let mut d = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
    assert!(d.decode(&mut buf).is_err());
    let mut good = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
    assert!(d.decode(&mut good).is_err());
}

/// Responses for `method`, fed `chunk` bytes at a time, with the close at the end.
fn responses(input: &[u8], chunk: usize, method: Method) -> Result<Vec<(u16, Vec<u8>)>, HttpError> {
    let mut d = ResponseDecoder::new(Limits::default());
    d.expect(method);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut cur: Option<(u16, Vec<u8>)> = None;
    let on = |ev: Event<super::codec::ResponseHead>,
              cur: &mut Option<(u16, Vec<u8>)>,
              out: &mut Vec<(u16, Vec<u8>)>| match ev {
        Event::Head(h) => *cur = Some((h.status, Vec::new())),
        Event::Data(b) => cur.as_mut().unwrap().1.extend_from_slice(&b),
        Event::End => out.push(cur.take().unwrap()),
    };
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(ev) = d.decode(&mut buf)? {
            on(ev, &mut cur, &mut out);
        }
    }
    while let Some(ev) = d.decode_eof(&buf)? {
        on(ev, &mut cur, &mut out);
    }
    Ok(out)
}

fn every_response_split(input: &[u8], method: Method) -> Result<Vec<(u16, Vec<u8>)>, HttpError> {
    let whole = responses(input, input.len(), method.clone());
    for chunk in 1..input.len() {
        assert_eq!(
            responses(input, chunk, method.clone()),
            whole,
            "chunk size {chunk}"
        );
    }
    whole
}

#[test]
fn responses_in_every_framing() {
    let r = every_response_split(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi\
          HTTP/1.1 204 No Content\r\n\r\n\
          HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: x\r\n\r\n\
          HTTP/1.0 200 OK\r\n\r\nuntil the close",
        Method::Get,
    )
    .unwrap();
    assert_eq!(
        r,
        vec![
            (200, b"hi".to_vec()),
            (204, vec![]),
            (200, b"abc".to_vec()),
            (200, b"until the close".to_vec())
        ]
    );
    // A HEAD response has no body, whatever its Content-Length says.
    let r = every_response_split(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
        Method::Head,
    )
    .unwrap();
    assert_eq!(r, vec![(200, vec![])]);
    // Cut short.
    assert_eq!(
        every_response_split(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
            Method::Get
        ),
        Err(HttpError::Incomplete)
    );
    assert_eq!(
        every_response_split(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get
        ),
        Err(HttpError::LengthAndChunked)
    );
}

#[test]
fn framing_is_reported() {
    let input =
        b"PUT /x?y HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\nbody";
    let (head, len) = super::codec::parse_request_head(input, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(len, input.len() - 4);
    assert_eq!(head.framing, Framing::Length(4));
    assert!(head.expect_continue);
    assert_eq!(
        super::codec::parse_request_head(b"GET / HTTP/1.1\r\nHost: h\r\n", &Limits::default())
            .unwrap()
            .map(|_| ()),
        None
    );
}

#[test]
fn received_fields_read_like_added_ones() {
    // Fields come out of the decoder as ranges of the head's bytes; they
    // must behave exactly like fields added by hand, pipelined or not.
    let input = b"GET /a HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nConnection: Keep-Alive, Upgrade\r\n\
        x-two: 1\r\nX-Two: 2\r\n\r\nGET /b HTTP/1.1\r\nHost: other\r\n\r\n";
    let mut d = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::from(&input[..]);
    let Ok(Some(Event::Head(first))) = d.decode(&mut buf) else {
        panic!("no first head")
    };
    assert!(matches!(d.decode(&mut buf), Ok(Some(Event::End))));
    let Ok(Some(Event::Head(second))) = d.decode(&mut buf) else {
        panic!("no second head")
    };
    let mut by_hand = super::Headers::new();
    by_hand.append("Host", "h");
    by_hand.append("X-Empty", "");
    by_hand.append("Connection", "Keep-Alive, Upgrade");
    by_hand.append("x-two", "1");
    by_hand.append("X-Two", "2");
    let mut h = first.headers;
    assert_eq!(h, by_hand);
    assert_eq!(h.len(), 5);
    assert_eq!(h.get("HOST"), Some("h"));
    assert_eq!(h.get_bytes("x-empty"), Some(&b""[..]));
    assert!(h.has_token("connection", "upgrade"));
    assert_eq!(h.get_all("x-two").collect::<Vec<_>>(), [&b"1"[..], b"2"]);
    assert!(h.remove("X-TWO"));
    h.set("Host", "replaced");
    h.append("X-Added", "yes");
    let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["X-Empty", "Connection", "Host", "X-Added"]);
    assert_eq!(h.get("host"), Some("replaced"));
    assert_eq!(format!("{h:?}").matches("Connection").count(), 1);
    // The next request's fields are its own.
    assert_eq!(second.headers.get("host"), Some("other"));
    assert_eq!(second.headers.len(), 1);
}
