//! The sans-IO codec: message heads parsed with `httparse`, framing decided
//! by RFC 9112's rules (with its defences against request smuggling), and
//! [`RequestDecoder`] / [`ResponseDecoder`], which turn bytes into
//! [`Event`]s. "Need more bytes" is `Ok(None)`, never an error.
//!
//! These are the entry points a fuzz target drives: feed any bytes, in any
//! split, and the decoder yields events or a typed [`HttpError`]; it never
//! panics and never buffers more than the [`Limits`] allow.
//!
//! ```
//! use bytes::BytesMut;
//! use torsion::http::codec::{Event, RequestDecoder};
//! use torsion::http::Limits;
//!
//! let mut decoder = RequestDecoder::new(Limits::default());
//! let mut buf = BytesMut::from(&b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"[..]);
//! let Some(Event::Head(head)) = decoder.decode(&mut buf)? else { panic!() };
//! assert_eq!(head.target(), "/echo");
//! assert!(matches!(decoder.decode(&mut buf)?, Some(Event::Data(d)) if &d[..] == b"hi"));
//! assert!(matches!(decoder.decode(&mut buf)?, Some(Event::End)));
//! assert!(decoder.decode(&mut buf)?.is_none()); // need more bytes
//! # Ok::<(), torsion::http::HttpError>(())
//! ```

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};

use super::body::{BodyDecoder, BodyEvent};
use super::error::{HttpError, Limits};
use super::message::{status_has_no_body, Headers, Method, Version};
use super::request::Request;
use crate::address::Address;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the peer closes (responses only).
    UntilClose,
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target: UTF-8 (httparse's check), a range of the head's
    /// bytes (no copy); see [`target`](Self::target).
    pub(crate) target: Bytes,
    /// The version.
    pub version: Version,
    /// The header fields.
    pub headers: Headers,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// Whether the client sent `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The request target as sent (`/path?query`, or an absolute URL).
    pub fn target(&self) -> &str {
        utf8(&self.target)
    }
}

/// What a request head says about its message and connection (besides
/// its method, target and fields): the server's part of a head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadFacts {
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub(crate) keep_alive: bool,
    /// Whether the client sent `Expect: 100-continue`.
    pub(crate) expect_continue: bool,
}

/// A parsed head but its fields (which [`parse_request_at`] writes into
/// the caller's [`Headers`], in place: a large value not moved around).
struct HeadLine {
    method: Method,
    /// The target's span in the fields' block.
    target: (u32, u32),
    version: Version,
    facts: HeadFacts,
}

impl HeadLine {
    /// The public [`RequestHead`], with the fields parsed with it.
    fn into_head(self, headers: Headers) -> RequestHead {
        RequestHead {
            method: self.method,
            target: headers.received(self.target),
            version: self.version,
            headers,
            framing: self.facts.framing,
            keep_alive: self.facts.keep_alive,
            expect_continue: self.facts.expect_continue,
        }
    }
}

/// Bytes known to be UTF-8 (a request target) as text.
pub(crate) fn utf8(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase as sent.
    pub reason: String,
    /// The version.
    pub version: Version,
    /// The header fields.
    pub headers: Headers,
    /// How the body is delimited (given the request's method).
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
}

/// What a decoder produced.
#[derive(Debug, Clone)]
pub enum Event<H> {
    /// A message head; body events follow (or `End` at once).
    Head(H),
    /// A piece of the body, in order.
    Data(Bytes),
    /// The message is complete.
    End,
}

/// Where a head ends: the index just past the blank line, searching from
/// `from` (an earlier search's stop, so that a head trickling in one byte at
/// a time costs linear, not quadratic, work).
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut i = start;
    while let Some(p) = buf
        .get(i..)
        .and_then(|s| s.iter().position(|&b| b == b'\n'))
    {
        let nl = i + p;
        if buf.get(nl + 1) == Some(&b'\n') {
            return Some(nl + 2);
        }
        if buf.get(nl + 1) == Some(&b'\r') && buf.get(nl + 2) == Some(&b'\n') {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

/// Drops empty lines before a head (RFC 9112 §2.2: a server should ignore
/// at least one, sent after a body by some clients); whether any were.
fn skip_empty_lines(buf: &mut BytesMut) -> bool {
    let mut n = 0;
    loop {
        if buf[n..].starts_with(b"\r\n") {
            n += 2;
        } else if buf[n..].starts_with(b"\n") {
            n += 1;
        } else {
            break;
        }
    }
    if n > 0 {
        buf.advance(n);
    }
    n > 0
}

fn map_parse_error(e: httparse::Error, buf: &[u8], limits: &Limits) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders(limits.max_headers),
        httparse::Error::Version => {
            // A well-formed `HTTP/x.y` we do not speak, or no version at all.
            let line = buf.split(|&b| b == b'\n').next().unwrap_or(buf);
            let named = line.starts_with(b"HTTP/") || line.windows(6).any(|w| w == b" HTTP/");
            if named {
                HttpError::UnsupportedVersion
            } else {
                HttpError::BadHead("invalid version")
            }
        }
        httparse::Error::HeaderName => HttpError::BadHead("invalid header name or line folding"),
        httparse::Error::HeaderValue => HttpError::BadHead("invalid header value"),
        httparse::Error::Token => HttpError::BadHead("invalid method or request line"),
        httparse::Error::Status => HttpError::BadHead("invalid status line"),
        httparse::Error::NewLine => HttpError::BadHead("invalid line ending"),
    }
}

/// Copies httparse's fields into [`Headers`].
fn collect(raw: &[httparse::Header<'_>]) -> Headers {
    let mut headers = Headers::with_capacity(raw.len());
    for h in raw {
        headers.append(h.name.to_owned(), Bytes::copy_from_slice(h.value));
    }
    headers
}

/// Gathers `Content-Length` values: every field and every comma-separated
/// element must be the same decimal number.
#[derive(Debug, Default)]
struct Lengths {
    found: Option<u64>,
    bad: bool,
}

impl Lengths {
    fn add(&mut self, value: &[u8]) {
        if self.bad {
            return;
        }
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            let n = (!part.is_empty() && part.len() <= 19 && part.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                .flatten();
            match n {
                Some(n) if self.found.is_none_or(|f| f == n) => self.found = Some(n),
                _ => {
                    self.bad = true;
                    return;
                }
            }
        }
    }

    /// The one `Content-Length` value, if any.
    fn finish(&self) -> Result<Option<u64>, HttpError> {
        if self.bad {
            return Err(HttpError::BadContentLength);
        }
        Ok(self.found)
    }
}

/// Gathers the codings of `Transfer-Encoding` fields, in order.
#[derive(Debug, Default)]
struct Codings {
    /// Whether a `Transfer-Encoding` field was seen.
    present: bool,
    count: usize,
    last_chunked: bool,
    /// Whether a coding before the last one is `chunked`.
    chunked_before_last: bool,
    /// An empty element.
    bad: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) {
        self.present = true;
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() {
                self.bad = true;
            }
            self.chunked_before_last |= self.last_chunked;
            self.last_chunked = part.eq_ignore_ascii_case(b"chunked");
            self.count += 1;
        }
    }

    /// Whether a `Transfer-Encoding` is present and, if so, whether it ends
    /// in `chunked` (`Ok(Some(true))`) or in something else
    /// (`Ok(Some(false))`); an error for an empty element, `chunked` twice,
    /// or a coding we cannot decode before `chunked`.
    fn finish(&self) -> Result<Option<bool>, HttpError> {
        if self.bad || (self.present && self.count == 0) {
            return Err(HttpError::BadTransferEncoding);
        }
        if !self.present {
            return Ok(None);
        }
        if !self.last_chunked {
            return Ok(Some(false));
        }
        if self.count > 1 {
            // `chunked` twice is malformed; anything else before it is a
            // coding (gzip, deflate) this implementation does not undo.
            if self.chunked_before_last {
                return Err(HttpError::BadTransferEncoding);
            }
            return Err(HttpError::UnsupportedTransferCoding);
        }
        Ok(Some(true))
    }
}

/// `close` and `keep-alive` in `Connection` fields.
#[derive(Debug, Default)]
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
}

impl ConnectionTokens {
    fn add(&mut self, value: &[u8]) {
        for t in value.split(|&b| b == b',') {
            let t = t.trim_ascii();
            self.close |= t.eq_ignore_ascii_case(b"close");
            self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
        }
    }

    fn persistent(&self, version: Version) -> bool {
        match version {
            Version::Http11 => !self.close,
            Version::Http10 => self.keep_alive,
        }
    }
}

/// What RFC 9112's rules need from a request's fields, gathered in one pass
/// over them.
#[derive(Debug, Default)]
struct Facts {
    hosts: usize,
    lengths: Lengths,
    codings: Codings,
    connection: ConnectionTokens,
    /// The first `Expect` field: `Some(true)` for `100-continue`.
    expect: Option<bool>,
}

/// Whether a field's `name` (a token) is `lower` (lower-case letters and
/// `-`) in any case: a token's byte that differs from one of those only in
/// bit 0x20 is that letter's other case (`-` has no token twin).
#[inline(always)]
fn is_name<const N: usize>(name: &[u8], lower: &[u8; N]) -> bool {
    name.first_chunk::<N>().is_some_and(|n| {
        n.iter()
            .zip(lower)
            .fold(0, |d, (a, b)| d | ((a | 0x20) ^ b))
            == 0
    })
}

impl Facts {
    #[inline]
    fn add(&mut self, name: &[u8], value: &[u8]) {
        // The length picks the one name worth comparing.
        match name.len() {
            4 if is_name(name, b"host") => self.hosts += 1,
            6 if self.expect.is_none() && is_name(name, b"expect") => {
                self.expect = Some(value.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
            }
            10 if is_name(name, b"connection") => self.connection.add(value),
            14 if is_name(name, b"content-length") => self.lengths.add(value),
            17 if is_name(name, b"transfer-encoding") => self.codings.add(value),
            _ => {}
        }
    }
}

fn content_length(headers: &Headers) -> Result<Option<u64>, HttpError> {
    let mut l = Lengths::default();
    headers.get_all("content-length").for_each(|v| l.add(v));
    l.finish()
}

fn transfer_encoding(headers: &Headers) -> Result<Option<bool>, HttpError> {
    let mut c = Codings::default();
    headers.get_all("transfer-encoding").for_each(|v| c.add(v));
    c.finish()
}

fn persistent(version: Version, headers: &Headers) -> bool {
    let mut t = ConnectionTokens::default();
    headers.get_all("connection").for_each(|v| t.add(v));
    t.persistent(version)
}

fn version_of(v: Option<u8>) -> Result<Version, HttpError> {
    match v {
        Some(0) => Ok(Version::Http10),
        Some(1) => Ok(Version::Http11),
        _ => Err(HttpError::UnsupportedVersion),
    }
}

/// Parses a complete request head at the start of `buf`: `Ok(None)` if more
/// bytes are needed, else the head and its length in bytes. Applies the
/// limits and RFC 9112's framing rules: both `Content-Length` and
/// `Transfer-Encoding`, differing lengths, a final coding other than
/// `chunked`, `Transfer-Encoding` in HTTP/1.0, obsolete line folding, and a
/// missing or repeated `Host` in HTTP/1.1 are errors.
///
/// # Errors
/// The [`HttpError`] that makes the head unacceptable.
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let Some(end) = find_head_end(buf, 0) else {
        if buf.len() > limits.max_head_size {
            return Err(HttpError::HeadTooLarge(limits.max_head_size));
        }
        return Ok(None);
    };
    let mut head = BytesMut::from(&buf[..end]);
    let mut headers = Headers::new();
    let parsed = parse_request_at(&mut head, HeadEnd::At(end), limits, &mut headers)?;
    Ok(parsed.map(|line| (line.into_head(headers), end - head.len())))
}

/// A head's length, version, method and target span, as parsed.
type Parsed = (usize, Version, Method, (u32, u32));

/// Parses `head` with httparse: its fields into `headers` and `facts`.
/// `Ok(None)` when more bytes are needed, or (when the head's end was not
/// `searched` for) when httparse refuses it.
#[inline(never)]
fn parse_general(
    head: &[u8],
    searched: bool,
    limits: &Limits,
    headers: &mut Headers,
    facts: &mut Facts,
) -> Result<Option<Parsed>, HttpError> {
    // Uninitialised slots: httparse fills only what it uses, so a request
    // does not pay for clearing a hundred headers it does not have.
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
    let mut heap;
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if limits.max_headers <= storage.len() {
        &mut storage[..limits.max_headers]
    } else {
        heap = Vec::with_capacity(limits.max_headers);
        heap.resize_with(limits.max_headers, MaybeUninit::uninit);
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(head, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) if !searched => return Ok(None),
        Err(e) => return Err(map_parse_error(e, head, limits)),
    };
    let version = version_of(req.version)?;
    let method = Method::from_token(req.method.ok_or(HttpError::BadHead("no method"))?);
    let base = head.as_ptr();
    let target = span(
        base,
        req.path.ok_or(HttpError::BadHead("no target"))?.as_bytes(),
    );
    take_fields(req.headers, base, headers, facts);
    Ok(Some((len, version, method, target)))
}

/// Whether a byte is a token character (RFC 9110 §5.6.2: a method or a
/// field name), as httparse decides.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = matches!(b as u8, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
            | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
            | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        b += 1;
    }
    t
};

const ONES: u64 = u64::from_ne_bytes([1; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Where the run of bytes in `lo..=0x7E` (visible ASCII, and with `lo`
/// 0x20 the space) that starts at `i` ends: eight bytes at a time, then
/// one by one.
#[inline(always)]
fn visible_run(head: &[u8], mut i: usize, lo: u8) -> usize {
    while let Some(chunk) = head.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_ne_bytes(*chunk);
        // Some byte below `lo` (exact for lo <= 0x80), or some byte
        // of 0x7F and above (a carry only comes from a byte that is).
        let below = x.wrapping_sub(ONES * u64::from(lo)) & !x & HIGHS;
        let above = (x.wrapping_add(ONES) | x) & HIGHS;
        if below | above != 0 {
            break;
        }
        i += 8;
    }
    while head.get(i).is_some_and(|&b| (lo..=0x7e).contains(&b)) {
        i += 1;
    }
    i
}

/// The most bytes after the request line (the head's fields and what
/// follows it in the buffer) for which [`parse_plain`] reads the fields
/// itself; past that httparse reads them (its vector scan, faster on long
/// heads, costs more on short ones), with room for at most [`PLAIN_SLOTS`]
/// (more go to httparse whole: its slots are set before it parses).
const PLAIN_FIELD_BYTES: usize = 64;
const PLAIN_SLOTS: usize = 24;

/// Parses a plain head as httparse would: an upper-case method, a
/// visible-ASCII target, `HTTP/1.1` or `HTTP/1.0`, then (when at most
/// [`PLAIN_FIELD_BYTES`] follow) fields with token names and ASCII values
/// (spaces and tabs inside), every line ending in CRLF, at most `max`
/// fields; or, when more follow, the fields httparse's header parser reads.
/// Its fields go into `headers` and `facts`. `None` for any other head, or
/// one not whole: httparse's request parser then parses it (or refuses it)
/// from scratch, and `headers` and `facts` may be half filled meanwhile.
#[inline]
fn parse_plain(
    head: &[u8],
    max: usize,
    headers: &mut Headers,
    facts: &mut Facts,
) -> Option<Parsed> {
    let mut i = 0;
    while head.get(i)?.is_ascii_uppercase() {
        i += 1;
    }
    if i == 0 || head[i] != b' ' {
        return None;
    }
    let method = Method::from_ascii(&head[..i]);
    i += 1;
    let t = i;
    i = visible_run(head, i, 0x21);
    if i == t || *head.get(i)? != b' ' {
        return None;
    }
    let target = (t, i - t);
    i += 1;
    // `HTTP/1.x` as one word, then CRLF.
    let word = u64::from_ne_bytes(*head.get(i..)?.first_chunk::<8>()?);
    let version = if word == u64::from_ne_bytes(*b"HTTP/1.1") {
        Version::Http11
    } else if word == u64::from_ne_bytes(*b"HTTP/1.0") {
        Version::Http10
    } else {
        return None;
    };
    if head.get(i + 8..i + 10)? != b"\r\n" {
        return None;
    }
    i += 10;
    let target = (u32::try_from(target.0).ok()?, u32::try_from(target.1).ok()?);
    if head.len() - i > PLAIN_FIELD_BYTES {
        // A long head (or more than one in the buffer): httparse's vector
        // scan reads its fields faster.
        let len = fields_by_httparse(&head[i..], max, head.as_ptr(), headers, facts)?;
        return Some((i + len, version, method, target));
    }
    let base = head.as_ptr();
    let mut fields = 0;
    loop {
        let n = i;
        while TCHAR[usize::from(*head.get(i)?)] {
            i += 1;
        }
        if i == n {
            // Not a name: the blank line that ends the head, or not plain.
            if head.get(i..i + 2)? != b"\r\n" {
                return None;
            }
            return Some((i + 2, version, method, target));
        }
        // One more than httparse has room for is its error: not plain.
        if head[i] != b':' || fields == max {
            return None;
        }
        let name = n..i;
        i += 1;
        while matches!(*head.get(i)?, b' ' | b'\t') {
            i += 1;
        }
        let v = i;
        loop {
            i = visible_run(head, i, 0x20);
            match *head.get(i)? {
                b'\t' => i += 1,
                b'\r' => break,
                _ => return None,
            }
        }
        if *head.get(i + 1)? != b'\n' {
            return None;
        }
        // Trailing spaces and tabs are not the value's.
        let mut e = i;
        while e > v && matches!(head[e - 1], b' ' | b'\t') {
            e -= 1;
        }
        i += 2;
        let (name, value) = (&head[name], &head[v..e]);
        headers.push_received(span(base, name), span(base, value));
        facts.add(name, value);
        fields += 1;
    }
}

/// Parses `fields` (a head's from its second line on, in the buffer that
/// starts at `base`) with httparse, as its request parser would with room
/// for `max`: into `headers` and `facts`; their length. `None` when it
/// does not parse whole (the caller's httparse decides), or has more than
/// [`PLAIN_SLOTS`] fields.
fn fields_by_httparse(
    fields: &[u8],
    max: usize,
    base: *const u8,
    headers: &mut Headers,
    facts: &mut Facts,
) -> Option<usize> {
    // Room for as many as the request parser would have (its error for one
    // more is not for this path to make), or for fewer (too few: the same).
    let mut slots = [httparse::EMPTY_HEADER; PLAIN_SLOTS];
    let slots = &mut slots[..max.min(PLAIN_SLOTS)];
    let Ok(httparse::Status::Complete((len, parsed))) = httparse::parse_headers(fields, slots)
    else {
        return None;
    };
    take_fields(parsed, base, headers, facts);
    Some(len)
}

/// The fields httparse parsed (in the buffer that starts at `base`) into
/// `headers` (as spans of that buffer) and `facts`.
#[inline(always)]
fn take_fields(
    parsed: &[httparse::Header<'_>],
    base: *const u8,
    headers: &mut Headers,
    facts: &mut Facts,
) {
    headers.begin_received(parsed.len());
    for h in parsed {
        let (name, value) = (h.name.as_bytes(), h.value);
        headers.push_received(span(base, name), span(base, value));
        facts.add(name, value);
    }
}

/// Where `part` (a slice of the buffer starting at `base`) lies in it.
fn span(base: *const u8, part: &[u8]) -> (u32, u32) {
    let start = (part.as_ptr() as usize).wrapping_sub(base as usize);
    // Heads are at most `u32::MAX` bytes (checked before parsing); a slice
    // that is not in the buffer (an empty value) reads as empty.
    (
        u32::try_from(start).unwrap_or(u32::MAX),
        u32::try_from(part.len()).unwrap_or(0),
    )
}

/// How [`parse_request_at`] is told where the head is.
#[derive(Debug, Clone, Copy)]
enum HeadEnd {
    /// Just past the blank line, found by [`find_head_end`].
    At(usize),
    /// Not searched for yet: httparse looks for it in the first bytes of
    /// the buffer (as many as a head may have); a head it does not find
    /// complete, or finds malformed, is `Ok(None)` (the caller then
    /// searches, and decides as it would have without this attempt).
    Unsearched,
}

/// Parses the complete head at the front of `buf` (see [`HeadEnd`]) and,
/// when it is complete, takes it off the front of `buf`: the head's fields
/// are ranges of those bytes (no copy). `Ok(None)` if httparse wants more
/// bytes (`buf` untouched).
fn parse_request_at(
    buf: &mut BytesMut,
    end: HeadEnd,
    limits: &Limits,
    headers: &mut Headers,
) -> Result<Option<HeadLine>, HttpError> {
    let (end, searched) = match end {
        HeadEnd::At(end) => (end, true),
        HeadEnd::Unsearched => {
            let most = limits.max_head_size.min(u32::MAX as usize);
            (buf.len().min(most), false)
        }
    };
    if end > limits.max_head_size || u32::try_from(end).is_err() {
        return Err(HttpError::HeadTooLarge(limits.max_head_size));
    }
    let head = &buf[..end];
    let mut facts = Facts::default();
    let (len, version, method, target) =
        match parse_plain(head, limits.max_headers, headers, &mut facts) {
            Some(plain) => plain,
            None => {
                // Not a plain head (or not whole): httparse decides, from scratch.
                headers.clear();
                facts = Facts::default();
                match parse_general(head, searched, limits, headers, &mut facts)? {
                    Some(parsed) => parsed,
                    None => return Ok(None),
                }
            }
        };
    // The head's bytes become the fields' storage: shared with the read
    // buffer, which gets its space back once the request is dropped.
    headers.set_block(buf.split_to(len).freeze());
    if facts.hosts > 1 || (version == Version::Http11 && facts.hosts == 0) {
        return Err(HttpError::BadHost);
    }
    let length = facts.lengths.finish()?;
    let te = facts.codings.finish()?;
    let framing = match (te, length) {
        (Some(_), _) if version == Version::Http10 => return Err(HttpError::BadTransferEncoding),
        (Some(_), Some(_)) => return Err(HttpError::LengthAndChunked),
        (Some(true), None) => Framing::Chunked,
        (Some(false), None) => return Err(HttpError::BadTransferEncoding),
        (None, Some(0)) | (None, None) => Framing::None,
        (None, Some(n)) => Framing::Length(n),
    };
    if let Framing::Length(n) = framing {
        if n > limits.max_body_size {
            return Err(HttpError::BodyTooLarge(limits.max_body_size));
        }
    }
    let expect_continue = match facts.expect {
        None => false,
        Some(true) => version == Version::Http11,
        Some(false) => return Err(HttpError::UnsupportedExpectation),
    };
    let keep_alive = facts.connection.persistent(version);
    Ok(Some(HeadLine {
        method,
        target,
        version,
        facts: HeadFacts {
            framing,
            keep_alive,
            expect_continue,
        },
    }))
}

/// Parses a complete response head at the start of `buf`, for a request
/// made with `method` (a `HEAD` request's response has no body): `Ok(None)`
/// if more bytes are needed. `1xx` heads are returned too; the caller skips
/// them.
///
/// # Errors
/// The [`HttpError`] that makes the head unacceptable.
pub fn parse_response_head(
    buf: &[u8],
    method: &Method,
    limits: &Limits,
) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    let Some(end) = find_head_end(buf, 0) else {
        if buf.len() > limits.max_head_size {
            return Err(HttpError::HeadTooLarge(limits.max_head_size));
        }
        return Ok(None);
    };
    parse_response_at(buf, end, method, limits)
}

fn parse_response_at(
    buf: &[u8],
    end: usize,
    method: &Method,
    limits: &Limits,
) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    if end > limits.max_head_size {
        return Err(HttpError::HeadTooLarge(limits.max_head_size));
    }
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut res = httparse::Response::new(&mut slots);
    let len = match res.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(map_parse_error(e, buf, limits)),
    };
    let version = version_of(res.version)?;
    let status = res.code.ok_or(HttpError::BadHead("no status"))?;
    let reason = res.reason.unwrap_or("").to_owned();
    let headers = collect(res.headers);
    let length = content_length(&headers)?;
    let te = transfer_encoding(&headers)?;
    let mut keep_alive = persistent(version, &headers);
    let framing = if status_has_no_body(method, status) {
        Framing::None
    } else {
        match (te, length) {
            (Some(_), Some(_)) => return Err(HttpError::LengthAndChunked),
            (Some(true), None) => Framing::Chunked,
            (Some(false), None) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    if let Framing::Length(n) = framing {
        if n > limits.max_body_size {
            return Err(HttpError::BodyTooLarge(limits.max_body_size));
        }
    }
    Ok(Some((
        ResponseHead {
            status,
            reason,
            version,
            headers,
            framing,
            keep_alive,
        },
        len,
    )))
}

#[derive(Debug)]
enum State {
    Head { scanned: usize },
    Body(BodyDecoder),
    Failed(HttpError),
}

/// Turns a byte stream into requests: heads, body pieces and ends, for any
/// number of pipelined requests in a row.
///
/// ```
/// use bytes::BytesMut;
/// use torsion::http::codec::{Event, RequestDecoder};
/// use torsion::http::{Limits, Method};
///
/// let mut decoder = RequestDecoder::new(Limits::default());
/// let mut buf = BytesMut::from(&b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"[..]);
/// match decoder.decode(&mut buf)? {
///     Some(Event::Head(head)) => assert_eq!((&head.method, head.target()), (&Method::Post, "/echo")),
///     other => panic!("not a head: {other:?}"),
/// }
/// assert!(matches!(decoder.decode(&mut buf)?, Some(Event::Data(d)) if d == "hi"));
/// assert!(matches!(decoder.decode(&mut buf)?, Some(Event::End)));
/// assert!(decoder.decode(&mut buf)?.is_none()); // the next request: more bytes needed
/// # Ok::<(), torsion::http::HttpError>(())
/// ```
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
    end_pending: bool,
}

impl RequestDecoder {
    /// A decoder with these limits.
    pub fn new(limits: Limits) -> RequestDecoder {
        RequestDecoder {
            limits,
            state: State::Head { scanned: 0 },
            end_pending: false,
        }
    }

    /// Whether the decoder is between messages (no head begun in `buf`'s
    /// consumed part, no body pending).
    pub fn is_between_messages(&self) -> bool {
        !self.end_pending && matches!(self.state, State::Head { .. })
    }

    /// Takes the `End` that follows a bodiless head, for a caller that acts
    /// on it at once instead of asking [`decode`](Self::decode) for it;
    /// whether one was pending.
    pub(crate) fn take_end(&mut self) -> bool {
        std::mem::take(&mut self.end_pending)
    }

    /// Takes what it can from the front of `buf`: `Ok(None)` means more
    /// bytes are needed (what is left in `buf` must be kept and extended).
    /// After an error the decoder keeps returning it.
    ///
    /// # Errors
    /// The [`HttpError`] that makes the input unacceptable.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event<RequestHead>>, HttpError> {
        let r = self.step(buf);
        if let Err(e) = &r {
            self.state = State::Failed(e.clone());
        }
        r
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<Event<RequestHead>>, HttpError> {
        if self.end_pending {
            self.end_pending = false;
            return Ok(Some(Event::End));
        }
        match &mut self.state {
            State::Failed(e) => Err(e.clone()),
            State::Head { .. } => {
                let mut headers = Headers::new();
                Ok(self
                    .head(buf, &mut headers)?
                    .map(|line| Event::Head(line.into_head(headers))))
            }
            State::Body(body) => match body.decode(buf)? {
                None => Ok(None),
                Some(BodyEvent::End) => {
                    self.state = State::Head { scanned: 0 };
                    Ok(Some(Event::End))
                }
                Some(BodyEvent::Data(data)) => Ok(Some(Event::Data(data))),
            },
        }
    }

    /// As [`decode`](Self::decode), for the server: a head becomes the
    /// [`Request`] in `slot` (built there, not moved through the decoder's
    /// results: a large value), from `peer`, and the event says the rest.
    ///
    /// # Errors
    /// As `decode`.
    pub(crate) fn decode_request(
        &mut self,
        buf: &mut BytesMut,
        peer: &Address,
        slot: &mut Option<Request>,
    ) -> Result<Option<Event<HeadFacts>>, HttpError> {
        if self.end_pending || !matches!(self.state, State::Head { .. }) {
            // A body's events (or the error): as `decode` gives them.
            return Ok(match self.decode(buf)? {
                None | Some(Event::Head(_)) => None,
                Some(Event::Data(data)) => Some(Event::Data(data)),
                Some(Event::End) => Some(Event::End),
            });
        }
        let req = slot.insert(Request::received(peer.clone()));
        match self.head(buf, &mut req.headers) {
            Ok(Some(line)) => {
                req.method = line.method;
                req.set_received_target(line.target);
                req.version = line.version;
                Ok(Some(Event::Head(line.facts)))
            }
            Ok(None) => {
                *slot = None;
                Ok(None)
            }
            Err(e) => {
                *slot = None;
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// The next head, between messages: its fields parsed into `headers`.
    #[inline(always)]
    fn head(
        &mut self,
        buf: &mut BytesMut,
        headers: &mut Headers,
    ) -> Result<Option<HeadLine>, HttpError> {
        let State::Head { scanned } = &mut self.state else {
            return Ok(None);
        };
        if skip_empty_lines(buf) {
            *scanned = 0;
        }
        // A head that arrives whole (the usual case) is parsed at once,
        // without a search for its end first; one that does not is
        // searched for (linear work however it trickles in).
        let quick = match *scanned {
            0 if !buf.is_empty() => {
                parse_request_at(buf, HeadEnd::Unsearched, &self.limits, headers)?
            }
            _ => None,
        };
        let line = match quick {
            Some(line) => line,
            None => {
                let Some(end) = find_head_end(buf, *scanned) else {
                    *scanned = buf.len();
                    if buf.len() > self.limits.max_head_size {
                        return Err(HttpError::HeadTooLarge(self.limits.max_head_size));
                    }
                    return Ok(None);
                };
                match parse_request_at(buf, HeadEnd::At(end), &self.limits, headers)? {
                    None => {
                        *scanned = end;
                        return Ok(None);
                    }
                    Some(line) => line,
                }
            }
        };
        self.state = match line.facts.framing {
            Framing::None => {
                self.end_pending = true;
                State::Head { scanned: 0 }
            }
            f => State::Body(BodyDecoder::new(f, &self.limits)),
        };
        Ok(Some(line))
    }
}

/// Turns a byte stream into responses, each for the request whose method is
/// given with [`expect`](ResponseDecoder::expect). Interim (`1xx`) responses
/// are skipped.
///
/// ```
/// use bytes::BytesMut;
/// use torsion::http::codec::{Event, ResponseDecoder};
/// use torsion::http::{Limits, Method};
///
/// let mut decoder = ResponseDecoder::new(Limits::default());
/// // The answer to a HEAD has no body, whatever its Content-Length says.
/// decoder.expect(Method::Head);
/// let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..]);
/// assert!(matches!(decoder.decode(&mut buf)?, Some(Event::Head(head)) if head.status == 200));
/// assert!(matches!(decoder.decode(&mut buf)?, Some(Event::End)));
/// # Ok::<(), torsion::http::HttpError>(())
/// ```
#[derive(Debug)]
pub struct ResponseDecoder {
    limits: Limits,
    method: Method,
    state: State,
    end_pending: bool,
}

impl ResponseDecoder {
    /// A decoder with these limits, expecting the response to a `GET`.
    pub fn new(limits: Limits) -> ResponseDecoder {
        ResponseDecoder {
            limits,
            method: Method::Get,
            state: State::Head { scanned: 0 },
            end_pending: false,
        }
    }

    /// The method of the request the next response answers.
    pub fn expect(&mut self, method: Method) {
        self.method = method;
    }

    /// The largest body the next responses may have (instead of the
    /// limits' [`max_body_size`](Limits::max_body_size)), for a client that
    /// streams bodies to a consumer and so need not bound them by memory.
    pub fn set_max_body_size(&mut self, max: u64) {
        self.limits.max_body_size = max;
    }

    /// As [`RequestDecoder::decode`], for responses.
    ///
    /// # Errors
    /// The [`HttpError`] that makes the input unacceptable.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event<ResponseHead>>, HttpError> {
        let r = self.step(buf);
        if let Err(e) = &r {
            self.state = State::Failed(e.clone());
        }
        r
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<Event<ResponseHead>>, HttpError> {
        if self.end_pending {
            self.end_pending = false;
            return Ok(Some(Event::End));
        }
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Head { scanned } => {
                    if skip_empty_lines(buf) {
                        *scanned = 0;
                    }
                    let Some(end) = find_head_end(buf, *scanned) else {
                        *scanned = buf.len();
                        if buf.len() > self.limits.max_head_size {
                            return Err(HttpError::HeadTooLarge(self.limits.max_head_size));
                        }
                        return Ok(None);
                    };
                    let Some((head, len)) =
                        parse_response_at(buf, end, &self.method, &self.limits)?
                    else {
                        *scanned = end;
                        return Ok(None);
                    };
                    buf.advance(len);
                    self.state = State::Head { scanned: 0 };
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue; // 100 Continue and friends: the real answer follows
                    }
                    match head.framing {
                        Framing::None => self.end_pending = true,
                        f => self.state = State::Body(BodyDecoder::new(f, &self.limits)),
                    }
                    return Ok(Some(Event::Head(head)));
                }
                State::Body(body) => {
                    return match body.decode(buf)? {
                        None => Ok(None),
                        Some(BodyEvent::End) => {
                            self.state = State::Head { scanned: 0 };
                            Ok(Some(Event::End))
                        }
                        Some(BodyEvent::Data(data)) => Ok(Some(Event::Data(data))),
                    }
                }
            }
        }
    }

    /// The peer closed: ends a body delimited by the close, else reports an
    /// incomplete message (`Ok(None)` between messages).
    ///
    /// # Errors
    /// [`HttpError::Incomplete`] if a message was cut short.
    pub fn decode_eof(&mut self, buf: &BytesMut) -> Result<Option<Event<ResponseHead>>, HttpError> {
        if self.end_pending {
            self.end_pending = false;
            return Ok(Some(Event::End));
        }
        match &mut self.state {
            State::Head { .. } if buf.is_empty() => Ok(None),
            State::Body(body) if body.ends_at_close() => {
                self.state = State::Head { scanned: 0 };
                Ok(Some(Event::End))
            }
            State::Failed(e) => Err(e.clone()),
            _ => Err(HttpError::Incomplete),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A head's length, version, method, target and fields, owned.
    type Owned = (usize, Version, Method, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

    /// What httparse makes of `head` with room for `max` fields.
    fn by_httparse(head: &[u8], max: usize) -> Option<Owned> {
        let mut slots = vec![httparse::EMPTY_HEADER; max];
        let mut req = httparse::Request::new(&mut slots);
        let Ok(httparse::Status::Complete(len)) = req.parse(head) else {
            return None;
        };
        let fields = req.headers.iter();
        let fields = fields.map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()));
        Some((
            len,
            version_of(req.version).ok()?,
            Method::from_token(req.method?),
            req.path?.as_bytes().to_vec(),
            fields.collect(),
        ))
    }

    /// What [`parse_plain`] makes of `head`.
    fn by_plain(head: &[u8], max: usize) -> Option<Owned> {
        let mut headers = Headers::new();
        let (len, version, method, (start, n)) =
            parse_plain(head, max, &mut headers, &mut Facts::default())?;
        headers.set_block(Bytes::copy_from_slice(head));
        let target = headers.received((start, n)).to_vec();
        let fields = headers
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()));
        Some((len, version, method, target, fields.collect()))
    }

    #[test]
    fn plain_heads_skip_httparse_and_read_as_it_reads_them() {
        let heads: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n",
            b"POST /a?b=c HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
            b"PURGE /x HTTP/1.1\r\nHost:h\r\nX-Empty:\r\nX-Ws: \t \r\nX-In:  a \t b  \r\n\r\n",
            b"GET /0123456789abcdef0123456789 HTTP/1.1\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0\r\n\r\n",
        ];
        // A long head: its fields are httparse's header parser's.
        let long = [
            &b"GET /static/app.js?v=2 HTTP/1.1\r\nHost: www.example.com\r\n"[..],
            b"Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n",
            b"Cookie: a=1; b=2\r\nX-Tab:\tin\tside \r\n\r\n",
        ]
        .concat();
        let many: Vec<u8> = (0..PLAIN_SLOTS + 1)
            .flat_map(|i| format!("X-{i}: v\r\n").into_bytes())
            .collect();
        let many = [&b"GET / HTTP/1.1\r\n"[..], &many, b"\r\n"].concat();
        assert_eq!(by_plain(&many, 100), None);
        let heads = [heads, &[&long[..]]].concat();
        for head in heads {
            let plain = by_plain(head, 100);
            assert!(plain.is_some(), "{:?}", String::from_utf8_lossy(head));
            assert_eq!(plain, by_httparse(head, 100));
        }
        // Not plain (httparse decides): lower-case or odd methods, non-ASCII,
        // bare LF, folded lines, a space before the colon, too many fields,
        // an incomplete head.
        let others: &[(&[u8], usize)] = &[
            (b"get / HTTP/1.1\r\nHost: h\r\n\r\n", 100),
            (b"M-SEARCH * HTTP/1.1\r\nHost: h\r\n\r\n", 100),
            (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 100),
            (b"GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n", 100),
            (b"GET / HTTP/1.1\nHost: h\n\n", 100),
            (b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 100),
            (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 100),
            (b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", 1),
            (b"GET / HTTP/1.1\r\nHost: h\r\n", 100),
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r", 100),
            (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 100),
            (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 100),
        ];
        for (head, max) in others {
            assert_eq!(
                by_plain(head, *max),
                None,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn field_names_compare_as_ignoring_case() {
        // For every token byte and every byte of the names compared, the
        // bit test agrees with a case-insensitive comparison.
        for a in (0..=255u8).filter(|&a| TCHAR[usize::from(a)]) {
            for b in b"abcdefghijklmnopqrstuvwxyz-" {
                assert_eq!(is_name(&[a], &[*b]), a.eq_ignore_ascii_case(b), "{a} {b}");
            }
        }
        assert!(is_name(b"Content-LENGTH", b"content-length"));
        assert!(!is_name(b"Content_Length", b"content-length"));
        assert!(!is_name(b"hos", b"host"));
    }

    #[test]
    fn a_received_target_outlives_its_fields() {
        let mut d = RequestDecoder::new(Limits::default());
        let mut buf = BytesMut::from(&b"GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n"[..]);
        let (peer, mut slot) = (Address::Inet(([127, 0, 0, 1], 1).into()), None);
        let head = d.decode_request(&mut buf, &peer, &mut slot);
        assert!(matches!(head, Ok(Some(Event::Head(h))) if h.framing == Framing::None));
        let mut req = slot.expect("a request");
        assert_eq!((req.method.clone(), req.peer.clone()), (Method::Get, peer));
        assert_eq!((req.path(), req.query()), ("/a", Some("b")));
        assert_eq!(req.headers().get("host"), Some("h"));
        // The fields replaced, the target stays.
        *req.headers_mut() = Headers::new();
        assert_eq!((req.target(), req.headers().len()), ("/a?b", 0));
        assert!(buf.is_empty() && d.take_end());
    }

    /// Mostly one of `good`, sometimes one of `odd` or a few arbitrary bytes.
    fn piece(
        good: &'static [&'static [u8]],
        odd: &'static [&'static [u8]],
    ) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            40 => prop::sample::select(good).prop_map(<[u8]>::to_vec),
            2 => prop::sample::select(odd).prop_map(<[u8]>::to_vec),
            1 => prop::collection::vec(any::<u8>(), 0..4),
        ]
    }

    /// `n` bytes at most, mostly from `usual`, sometimes any.
    fn text(usual: &'static [u8], n: usize) -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            200 => prop::sample::select(usual),
            2 => Just(b'\t'),
            2 => Just(b' '),
            1 => any::<u8>(),
        ];
        prop::collection::vec(byte, 0..n)
    }

    const TOKEN: &[u8] = b"abcxyzABCXYZ0189!#$%&'*+-.^_`|~";
    const VISIBLE: &[u8] = b"/?=&%abcXYZ0189!\"#$'()*+,-.:;<>@[\\]^_`{|}~";

    fn heads() -> impl Strategy<Value = Vec<u8>> {
        let line = (
            piece(
                &[b"GET", b"POST", b"HEAD", b"PURGE"],
                &[b"get", b"M-X", b""],
            ),
            piece(&[b" "], &[b"  ", b"\t"]),
            text(VISIBLE, 24),
            piece(&[b" "], &[b"  ", b"\t"]),
            piece(
                &[b"HTTP/1.1", b"HTTP/1.0"],
                &[b"HTTP/2.0", b"HTTP/1.", b"HTTP/1.1 "],
            ),
            piece(&[b"\r\n"], &[b"\n", b"\r", b""]),
        );
        let field = (
            text(TOKEN, 8),
            piece(&[b":"], &[b" :", b"", b"::"]),
            piece(&[b"", b" ", b"\t ", b"  "], &[b"\r\n"]),
            text(VISIBLE, 24),
            piece(&[b"\r\n", b" \r\n"], &[b"\n", b"\r", b"\r\n ", b"\r\n\t"]),
        );
        let fields = prop::collection::vec(field, 0..6);
        let end = piece(&[b"\r\n", b"\r\nbody"], &[b"\n", b"", b"\r"]);
        let damage = (0..4u8, any::<usize>(), any::<u8>(), any::<usize>());
        (line, fields, end, damage).prop_map(|(l, fields, end, damage)| {
            let mut head = [l.0, l.1, l.2, l.3, l.4, l.5].concat();
            for f in fields {
                head.extend([f.0, f.1, f.2, f.3, f.4].concat());
            }
            head.extend(end);
            let (damaged, at, byte, cut) = damage;
            if damaged == 0 && !head.is_empty() {
                let at = at % head.len();
                head[at] = byte;
                head.truncate(at + 1 + cut % (head.len() - at));
            }
            head
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever the plain parser accepts, httparse parses alike.
        #[test]
        fn plain_parsing_agrees_with_httparse(head in heads(), max in 0usize..8) {
            if let Some(plain) = by_plain(&head, max) {
                prop_assert_eq!(Some(plain), by_httparse(&head, max));
            }
        }
    }
}
