//! [`Request`]: what a handler is given.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use bytes::Bytes;

use super::codec::utf8;
use super::handler::RouteHint;
use super::message::{Headers, Method, Version};
use crate::address::Address;
use crate::context::{ConnectionHandle, Core};

/// A request, as a server's handler sees it. Its body is [`body`](Self::body)
/// (read whole before the handler runs), or, for a handler that asked to
/// stream ([`Handler::streams_body`](super::Handler::streams_body)), arrives
/// through [`take_incoming`](Self::take_incoming).
///
/// A handler can be tried without a server on a request built by hand:
///
/// ```
/// use torsion::http::{Method, Request, Response};
/// use torsion::Core;
///
/// fn greet(_core: &mut Core, req: Request) -> Response {
///     match req.query() {
///         Some(name) => Response::text(200, format!("hello, {name}")),
///         None => Response::text(400, "who?"),
///     }
/// }
///
/// let req = Request::new(Method::Get, "/greet?ada");
/// assert_eq!(req.target(), "/greet?ada");
/// assert_eq!(req.path(), "/greet");
/// assert_eq!(req.query(), Some("ada"));
/// # let _ = greet;
/// ```
pub struct Request {
    /// The method.
    pub method: Method,
    /// The request target as sent: see [`target`](Self::target).
    target: Target,
    /// The version.
    pub version: Version,
    /// The header fields: [`headers`](Self::headers) (the received target
    /// is a range of their bytes).
    pub(crate) headers: Headers,
    /// The whole body (empty when streamed).
    pub body: Bytes,
    /// Who sent it.
    pub peer: Address,
    pub(crate) incoming: Option<IncomingBody>,
    /// The route a [`Router`](super::Router) found for this request in
    /// `streams_body`, for its `handle` (one search per request, not two).
    pub(crate) route: Cell<RouteHint>,
}

/// Where a [`Request`]'s target is.
enum Target {
    /// A range (start, length) of the received head's bytes, which its
    /// fields keep ([`Headers::received_slice`]): no handle of its own.
    Received(u32, u32),
    /// Its own bytes (UTF-8): set by hand, or taken out of the head before
    /// the fields could be changed.
    Own(Bytes),
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &self.target())
            .field("version", &self.version)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("peer", &self.peer)
            .field("streaming", &self.incoming.is_some())
            .finish()
    }
}

impl Request {
    /// An empty request for the decoder to parse a head into (see
    /// [`RequestDecoder::decode_request`](super::codec::RequestDecoder::decode_request)).
    #[inline]
    pub(crate) fn received(peer: Address) -> Request {
        Request {
            method: Method::Get,
            target: Target::Received(0, 0),
            version: Version::Http11,
            headers: Headers::new(),
            body: Bytes::new(),
            peer,
            incoming: None,
            route: Cell::new(0),
        }
    }

    /// The target: a range (start, length) of the received head's bytes.
    #[inline]
    pub(crate) fn set_received_target(&mut self, (start, len): (u32, u32)) {
        self.target = Target::Received(start, len);
    }

    /// The target as its own handle (no copy), for the access log.
    pub(crate) fn target_bytes(&self) -> Bytes {
        match &self.target {
            Target::Received(start, len) => self.headers.received((*start, *len)),
            Target::Own(t) => t.clone(),
        }
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The header fields, to change (a middleware adding one, say).
    pub fn headers_mut(&mut self) -> &mut Headers {
        // The target stops being a range of bytes the fields may drop.
        if let Target::Received(..) = self.target {
            self.target = Target::Own(self.target_bytes());
        }
        &mut self.headers
    }

    /// A request built by hand (for testing a handler without a server).
    pub fn new(method: Method, target: impl Into<String>) -> Request {
        Request {
            method,
            target: Target::Own(Bytes::from(target.into())),
            version: Version::Http11,
            headers: Headers::new(),
            body: Bytes::new(),
            peer: Address::Inet(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            incoming: None,
            route: Cell::new(0),
        }
    }

    /// The request target as sent (`/path?query`).
    pub fn target(&self) -> &str {
        utf8(match &self.target {
            Target::Received(start, len) => self.headers.received_slice((*start, *len)),
            Target::Own(t) => t,
        })
    }

    /// Replaces the target (a router rewriting a path, say).
    pub fn set_target(&mut self, target: impl Into<String>) {
        self.target = Target::Own(Bytes::from(target.into()));
        // A route found for the old target is not this one's.
        self.route.set(0);
    }

    /// The path part of the target (before `?`), still percent-encoded.
    pub fn path(&self) -> &str {
        let t = self.target();
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    /// The body as it arrives, for a handler that streams
    /// ([`Handler::streams_body`](super::Handler::streams_body)); `None`
    /// otherwise or when taken already.
    pub fn take_incoming(&mut self) -> Option<IncomingBody> {
        self.incoming.take()
    }
}

/// What an [`IncomingBody`]'s reader hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPart {
    /// The next bytes of the body.
    Data(Bytes),
    /// The body is complete.
    End,
    /// The body was cut short (the client closed or sent malformed framing).
    Aborted,
}

type Reader = Box<dyn FnMut(&mut Core, BodyPart)>;

pub(crate) struct IncomingState {
    pub(crate) queued: Vec<BodyPart>,
    pub(crate) queued_bytes: usize,
    pub(crate) reader: Option<Reader>,
    pub(crate) paused: bool,
    pub(crate) conn: ConnectionHandle,
    pub(crate) finished: bool,
}

/// A request body that streams in: set a reader with
/// [`on_data`](Self::on_data) and it hears each piece as it arrives.
/// [`pause`](Self::pause) stops reading from the client (its kernel buffer
/// fills and TCP slows it down) until [`resume`](Self::resume): a large
/// upload is consumed at the reader's pace in bounded memory. Pieces that
/// arrive before a reader is set are kept, and reading from the client stops
/// while more than 64 KiB wait.
#[derive(Clone)]
pub struct IncomingBody {
    pub(crate) state: Rc<RefCell<IncomingState>>,
}

impl fmt::Debug for IncomingBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.borrow();
        f.debug_struct("IncomingBody")
            .field("queued_bytes", &s.queued_bytes)
            .field("paused", &s.paused)
            .field("finished", &s.finished)
            .finish()
    }
}

/// Pieces kept for a reader not set yet, before reading from the client stops.
pub(crate) const INCOMING_QUEUE_MAX: usize = 64 * 1024;

impl IncomingBody {
    pub(crate) fn new(conn: ConnectionHandle) -> IncomingBody {
        IncomingBody {
            state: Rc::new(RefCell::new(IncomingState {
                queued: Vec::new(),
                queued_bytes: 0,
                reader: None,
                paused: false,
                conn,
                finished: false,
            })),
        }
    }

    /// Sets the reader; pieces that arrived already are handed to it now.
    pub fn on_data(&self, core: &mut Core, reader: impl FnMut(&mut Core, BodyPart) + 'static) {
        let mut reader: Reader = Box::new(reader);
        let queued = {
            let mut s = self.state.borrow_mut();
            s.queued_bytes = 0;
            std::mem::take(&mut s.queued)
        };
        for part in queued {
            reader(core, part);
        }
        let conn = {
            let mut s = self.state.borrow_mut();
            s.reader = Some(reader);
            s.conn
        };
        if !self.state.borrow().paused {
            core.connection(conn).resume_reading();
        }
    }

    /// Stops reading from the client until [`resume`](Self::resume).
    pub fn pause(&self, core: &mut Core) {
        let conn = {
            let mut s = self.state.borrow_mut();
            s.paused = true;
            s.conn
        };
        core.connection(conn).pause_reading();
    }

    /// Reads from the client again.
    pub fn resume(&self, core: &mut Core) {
        let conn = {
            let mut s = self.state.borrow_mut();
            s.paused = false;
            s.conn
        };
        core.connection(conn).resume_reading();
    }

    /// Hands a piece to the reader, or keeps it; whether reading from the
    /// client should stop (nobody reads and too much waits, or paused).
    pub(crate) fn deliver(&self, core: &mut Core, part: BodyPart) -> bool {
        let reader = {
            let mut s = self.state.borrow_mut();
            if matches!(part, BodyPart::End | BodyPart::Aborted) {
                s.finished = true;
            }
            match s.reader.take() {
                Some(r) => Some(r),
                None => {
                    if let BodyPart::Data(d) = &part {
                        s.queued_bytes += d.len();
                    }
                    s.queued.push(part.clone());
                    None
                }
            }
        };
        if let Some(mut r) = reader {
            r(core, part);
            let mut s = self.state.borrow_mut();
            if s.reader.is_none() {
                s.reader = Some(r);
            }
        }
        let s = self.state.borrow();
        s.paused || s.queued_bytes > INCOMING_QUEUE_MAX
    }
}
