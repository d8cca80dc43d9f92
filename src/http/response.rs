//! [`Response`]: what a handler returns and what the client gets.

use std::fmt;
use std::io;

use bytes::Bytes;

use super::message::{known_field, reason_phrase, Headers, KnownField, Version};
use super::timings::Timings;

/// The `Content-Type` of [`Response::text`].
static TEXT_PLAIN: KnownField = known_field!("Content-Type", "text/plain; charset=utf-8");

/// A source of body pieces pulled as the connection can take them.
pub type BodyStream = Box<dyn Iterator<Item = io::Result<Bytes>>>;

/// A response body.
///
/// ```
/// use bytes::Bytes;
/// use torsion::http::{Body, Response};
///
/// // Ten pieces of 1 KiB, pulled one at a time as the client takes them.
/// let pieces = (0..10).map(|_| Ok(Bytes::from(vec![b'x'; 1024])));
/// let download = Response::new(200).with_stream(pieces, Some(10 * 1024));
/// assert!(matches!(download.body, Body::Stream { length: Some(10240), .. }));
/// assert!(matches!(Response::new(204).body, Body::Empty));
/// ```
#[derive(Default)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// The whole body.
    Full(Bytes),
    /// A body pulled piece by piece while the client keeps up (Twisted's
    /// producer): the server asks for the next piece only while its write
    /// buffer is below the high water mark, so a body of any size goes to a
    /// slow client in bounded memory. Sent with `Content-Length` when the
    /// length is known, else chunked (HTTP/1.1) or delimited by closing
    /// (HTTP/1.0). A piece that fails aborts the connection.
    Stream {
        /// The pieces.
        source: BodyStream,
        /// The total length, if known in advance.
        length: Option<u64>,
    },
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Full(b) => f.debug_tuple("Full").field(&b.len()).finish(),
            Body::Stream { length, .. } => {
                f.debug_struct("Stream").field("length", length).finish()
            }
        }
    }
}

/// A response. The server adds `Date`, `Content-Length` or
/// `Transfer-Encoding` and, when it closes, `Connection: close`; framing
/// fields a handler set are replaced (except a `Content-Length` on a bodiless
/// answer to `HEAD`).
///
/// ```
/// use torsion::http::Response;
///
/// let page = Response::new(200)
///     .with_header("Content-Type", "text/html; charset=utf-8")
///     .with_body("<h1>hi</h1>");
/// assert_eq!(page.reason(), "OK");
/// assert_eq!(page.body_text(), "<h1>hi</h1>");
/// assert_eq!(Response::not_found().status, 404);
/// ```
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase (the standard one when empty).
    pub reason: String,
    /// The version (what a server received, for a client).
    pub version: Version,
    /// The header fields.
    pub headers: Headers,
    /// The body.
    pub body: Body,
    /// A client's response: when each phase ended (boxed: a server's
    /// responses never have them, and every move of a `Response` would
    /// copy them inline).
    pub(crate) timings: Option<Box<Timings>>,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            reason: String::new(),
            version: Version::Http11,
            headers: Headers::new(),
            body: Body::Empty,
            timings: None,
        }
    }

    /// `200 OK` with a body.
    pub fn ok(body: impl Into<Bytes>) -> Response {
        Response::new(200).with_body(body)
    }

    /// A plain-text response (`Content-Type: text/plain; charset=utf-8`):
    /// a `&'static str` (kept without a copy), a `String`, or [`Bytes`].
    pub fn text(status: u16, text: impl Into<Bytes>) -> Response {
        // Built in place: through `new` and the `with_` steps, each step
        // moves the whole response (two copies per answer in a hot handler).
        Response {
            status,
            reason: String::new(),
            version: Version::Http11,
            headers: Headers::known(&TEXT_PLAIN),
            body: Body::Full(text.into()),
            timings: None,
        }
    }

    /// `404 Not Found` with a short text body.
    pub fn not_found() -> Response {
        Response::text(404, "Not Found\n")
    }

    /// A response whose body is a text message naming the status.
    pub fn error(status: u16) -> Response {
        Response::text(status, format!("{status} {}\n", reason_phrase(status)))
    }

    /// Adds a header field.
    pub fn with_header(
        mut self,
        name: impl Into<std::borrow::Cow<'static, str>>,
        value: impl Into<Bytes>,
    ) -> Response {
        self.headers.append(name, value);
        self
    }

    /// Sets the whole body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Response {
        self.body = Body::Full(body.into());
        self
    }

    /// Sets a streamed body (see [`Body::Stream`]).
    pub fn with_stream(
        mut self,
        source: impl Iterator<Item = io::Result<Bytes>> + 'static,
        length: Option<u64>,
    ) -> Response {
        self.body = Body::Stream {
            source: Box::new(source),
            length,
        };
        self
    }

    /// For a response the [`HttpClient`](super::HttpClient) received: when
    /// each phase of its exchange ended (connect, TLS, first byte, body
    /// complete...) and whether its connection was reused; `None` for a
    /// response built by hand.
    ///
    /// ```
    /// use torsion::http::{HttpClient, HttpServer, Request, Response, Router};
    /// use torsion::{Core, Reactor};
    ///
    /// let mut reactor = Reactor::new()?;
    /// let server = HttpServer::new(Router::new().get("/", |_: &mut Core, _: Request| Response::ok("hi")));
    /// let port = server.listen_tcp(&mut reactor, "127.0.0.1:0".parse().unwrap())?;
    /// let client = HttpClient::new();
    /// let url = format!("http://{}/", port.local_addr());
    /// let d = client.get(&mut reactor, &url);
    /// let first = reactor.run_until_complete(d)?.expect("a response");
    /// let t = first.timings().expect("a client's response");
    /// assert!(!t.reused && t.tls().is_none() && t.total() >= Some(t.first_byte));
    /// let d = client.get(&mut reactor, &url);
    /// let second = reactor.run_until_complete(d)?.expect("a response");
    /// assert!(second.timings().expect("timings").reused);
    /// # Ok::<(), torsion::Error>(())
    /// ```
    pub fn timings(&self) -> Option<Timings> {
        self.timings.as_deref().copied()
    }

    /// The reason phrase: the one set, or the standard one.
    pub fn reason(&self) -> &str {
        if self.reason.is_empty() {
            reason_phrase(self.status)
        } else {
            &self.reason
        }
    }

    /// The whole body's bytes (empty for a stream): what a client response
    /// holds.
    pub fn body_bytes(&self) -> &[u8] {
        match &self.body {
            Body::Full(b) => b,
            _ => &[],
        }
    }

    /// The body as text, lossily.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(self.body_bytes()).into_owned()
    }
}
