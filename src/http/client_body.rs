//! Client response bodies that stream in ([`ResponseBody`], with
//! back-pressure, as a callback or a [`futures_io::AsyncRead`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};

use bytes::{Buf, Bytes};

use super::client::ClientError;
use super::client_conn::ClientConnection;
use super::response::Response;
use super::timings::Timings;
use crate::context::{ConnectionHandle, Core};
use crate::local::LocalHandle;

/// How many body bytes a [`ResponseBody`] keeps for a consumer that is not
/// reading (no reader set yet, or an async reader between reads) before the
/// connection stops reading from the server: 64 KiB.
pub const STREAM_QUEUE_MAX: usize = 64 * 1024;

/// What a [`ResponseBody`]'s reader hears, in order: pieces of the body,
/// then exactly one `End` or `Failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyChunk {
    /// The next bytes of the body.
    Data(Bytes),
    /// The body is complete; the response's final timings.
    End(Timings),
    /// The body was cut short: the server closed early, broke the framing
    /// or a limit, or went quiet for the response timeout.
    Failed(ClientError),
}

/// A response whose body streams in: what
/// [`HttpClient::request_streaming`](super::HttpClient::request_streaming)
/// gives once the response's head has arrived.
#[derive(Debug)]
pub struct StreamingResponse {
    /// Status, version and header fields; its body is
    /// [`Body::Empty`](super::Body::Empty) and its [`Response::timings`] end
    /// at the first byte.
    pub head: Response,
    /// The body, as it arrives.
    pub body: ResponseBody,
}

type Reader = Box<dyn FnMut(&mut Core, BodyChunk)>;

pub(crate) struct StreamState {
    conn: ConnectionHandle,
    /// The request on the connection this body belongs to.
    seq: u64,
    local: LocalHandle,
    queue: VecDeque<BodyChunk>,
    queued_bytes: usize,
    reader: Option<Reader>,
    /// The consumer asked for a pause.
    paused: bool,
    /// The connection stopped reading because the consumer did not keep up.
    stalled: bool,
    /// `End` or `Failed` was queued.
    finished: bool,
    /// The consumer gave up: the connection is closed.
    abandoned: bool,
    /// Live [`ResponseBody`] and [`BodyReader`] handles.
    handles: usize,
    waker: Option<Waker>,
    /// Received bytes not decoded yet, as the connection last said.
    undecoded: usize,
    peak: usize,
    received: u64,
}

pub(crate) type Shared = Rc<RefCell<StreamState>>;

pub(crate) fn new_stream(conn: ConnectionHandle, seq: u64, local: LocalHandle) -> Shared {
    Rc::new(RefCell::new(StreamState {
        conn,
        seq,
        local,
        queue: VecDeque::new(),
        queued_bytes: 0,
        reader: None,
        paused: false,
        stalled: false,
        finished: false,
        abandoned: false,
        handles: 0,
        waker: None,
        undecoded: 0,
        peak: 0,
        received: 0,
    }))
}

impl StreamState {
    fn note_peak(&mut self) {
        self.peak = self.peak.max(self.queued_bytes + self.undecoded);
    }

    /// Whether the connection may decode more of the body now.
    fn wants_more(&self) -> bool {
        !self.paused && !self.abandoned && self.queued_bytes < STREAM_QUEUE_MAX
    }

    /// Nobody can read or resume this body any more.
    fn orphaned(&self) -> bool {
        self.handles == 0 && !self.finished && (self.reader.is_none() || self.paused)
    }
}

/// The connection's side of a stream.
pub(crate) fn push(state: &Shared, core: &mut Core, chunk: BodyChunk) {
    {
        let mut s = state.borrow_mut();
        if s.abandoned || s.finished {
            return;
        }
        match &chunk {
            BodyChunk::Data(d) => {
                s.queued_bytes += d.len();
                s.received += d.len() as u64;
            }
            BodyChunk::End(_) | BodyChunk::Failed(_) => s.finished = true,
        }
        s.queue.push_back(chunk);
        s.note_peak();
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
    drain(state, core);
}

/// Whether the connection should stop reading (and it is marked stalled,
/// so the consumer restarts it).
pub(crate) fn should_stall(state: &Shared) -> bool {
    let mut s = state.borrow_mut();
    if s.wants_more() {
        return false;
    }
    s.stalled = true;
    true
}

/// Whether the consumer holds the body back (paused, or not reading what
/// waits): silence is then no timeout.
pub(crate) fn is_held(state: &Shared) -> bool {
    let s = state.borrow();
    s.paused || s.stalled
}

/// The connection holds this many received bytes not decoded yet.
pub(crate) fn note_undecoded(state: &Shared, n: usize) {
    let mut s = state.borrow_mut();
    s.undecoded = n;
    s.note_peak();
}

/// Hands queued chunks to the reader while it is set and not paused.
fn drain(state: &Shared, core: &mut Core) {
    loop {
        let (mut reader, chunk) = {
            let mut s = state.borrow_mut();
            if s.paused || s.abandoned {
                return;
            }
            let Some(r) = s.reader.take() else { return };
            match s.queue.pop_front() {
                None => {
                    s.reader = Some(r);
                    return;
                }
                Some(c) => {
                    if let BodyChunk::Data(d) = &c {
                        s.queued_bytes -= d.len();
                    }
                    (r, c)
                }
            }
        };
        let last = !matches!(chunk, BodyChunk::Data(_));
        reader(core, chunk);
        if last {
            break; // the reader is dropped: nothing more comes
        }
        let mut s = state.borrow_mut();
        if s.reader.is_none() && !s.abandoned {
            s.reader = Some(reader);
        }
    }
}

/// Restarts the connection if it stopped for this consumer and may go on.
fn unstall(state: &Shared, core: &mut Core) {
    let (conn, seq) = {
        let mut s = state.borrow_mut();
        if !s.stalled || !s.wants_more() {
            return;
        }
        s.stalled = false;
        (s.conn, s.seq)
    };
    super::call_on(core, conn, move |p: &mut ClientConnection, ctx| {
        p.resume_body(ctx, seq)
    });
}

fn abandon(state: &Shared, core: &mut Core) {
    let (conn, seq) = {
        let mut s = state.borrow_mut();
        if s.abandoned || s.finished {
            return;
        }
        s.abandoned = true;
        s.queue.clear();
        s.queued_bytes = 0;
        s.reader = None;
        (s.conn, s.seq)
    };
    super::call_on(core, conn, move |p: &mut ClientConnection, ctx| {
        p.abandon_body(ctx, seq)
    });
}

/// Drops a handle; the last one of a body nobody reads abandons it.
fn release(state: &Shared) {
    let local = {
        let mut s = state.borrow_mut();
        s.handles -= 1;
        if !s.orphaned() {
            return;
        }
        s.local.clone()
    };
    let state = state.clone();
    local.call(move |core| abandon(&state, core));
}

/// A response body arriving from the server, read with back-pressure.
///
/// Set a reader with [`on_data`](Self::on_data) and it hears each
/// [`BodyChunk`] as it arrives; [`pause`](Self::pause) stops reading from the
/// server (its data waits in the kernel and TCP slows the server down) until
/// [`resume`](Self::resume). Or turn it into a [`BodyReader`]
/// ([`into_reader`](Self::into_reader)), a [`futures_io::AsyncRead`] for
/// `async` code. Either way at most [`STREAM_QUEUE_MAX`] bytes wait for the
/// consumer, so a body of any size is read in bounded memory. The client's
/// body size limit does not apply
/// ([`ClientConfig::max_streamed_body`](super::ClientConfig::max_streamed_body)
/// does).
///
/// The connection goes back to the pool once the body's last byte is read
/// from it. A consumer that gives up mid-body ([`close`](Self::close), or
/// every handle dropped with no reader set or while paused) gets the
/// connection closed, never returned to the pool.
///
/// Clones are handles to the same body.
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use bytes::Bytes;
/// use torsion::http::{BodyChunk, Headers, HttpClient, HttpServer, Method, Response, Router};
/// use torsion::{Core, Reactor};
///
/// let mut reactor = Reactor::new()?;
/// let server = HttpServer::new(Router::new().get("/big", |_: &mut Core, _| {
///     let pieces = (0..100).map(|_| Ok(Bytes::from(vec![b'x'; 10_000])));
///     Response::new(200).with_stream(pieces, None)
/// }));
/// let port = server.listen_tcp(&mut reactor, "127.0.0.1:0".parse().unwrap())?;
/// let url = format!("http://{}/big", port.local_addr());
/// let client = HttpClient::new();
/// let d = client.request_streaming(&mut reactor, Method::Get, &url, Headers::new(), Bytes::new());
/// let response = reactor.run_until_complete(d)?.expect("a head");
/// assert_eq!(response.head.status, 200);
/// let total = Rc::new(RefCell::new((0, false)));
/// let seen = total.clone();
/// response.body.on_data(&mut reactor, move |core: &mut Core, chunk| match chunk {
///     BodyChunk::Data(d) => seen.borrow_mut().0 += d.len(),
///     BodyChunk::End(_) => {
///         seen.borrow_mut().1 = true;
///         let _ = core.stop();
///     }
///     BodyChunk::Failed(e) => panic!("{e}"),
/// });
/// reactor.run()?;
/// assert_eq!(*total.borrow(), (1_000_000, true));
/// # Ok::<(), torsion::Error>(())
/// ```
pub struct ResponseBody {
    state: Shared,
}

impl ResponseBody {
    pub(crate) fn new(state: Shared) -> ResponseBody {
        state.borrow_mut().handles += 1;
        ResponseBody { state }
    }

    /// Sets the reader (replacing one set before); chunks that arrived
    /// already are handed to it now, unless paused.
    pub fn on_data(&self, core: &mut Core, reader: impl FnMut(&mut Core, BodyChunk) + 'static) {
        {
            let mut s = self.state.borrow_mut();
            if s.abandoned {
                return;
            }
            s.reader = Some(Box::new(reader));
        }
        drain(&self.state, core);
        unstall(&self.state, core);
    }

    /// Stops handing chunks to the reader and reading from the server until
    /// [`resume`](Self::resume). (While paused, the response timeout does not
    /// run.)
    pub fn pause(&self, core: &mut Core) {
        let conn = {
            let mut s = self.state.borrow_mut();
            if s.paused || s.finished || s.abandoned {
                s.paused = true;
                return;
            }
            s.paused = true;
            s.stalled = true;
            s.conn
        };
        core.connection(conn).pause_reading();
    }

    /// Hands on what waits, and reads from the server again.
    pub fn resume(&self, core: &mut Core) {
        self.state.borrow_mut().paused = false;
        drain(&self.state, core);
        unstall(&self.state, core);
    }

    /// Gives up on the rest of the body: the connection is closed (not
    /// returned to the pool), and the reader hears nothing more. Nothing
    /// happens once the body is complete.
    pub fn close(&self, core: &mut Core) {
        abandon(&self.state, core);
    }

    /// Whether the consumer paused.
    pub fn is_paused(&self) -> bool {
        self.state.borrow().paused
    }

    /// Whether `End` or `Failed` has arrived (it may still wait for the
    /// reader).
    pub fn is_finished(&self) -> bool {
        self.state.borrow().finished
    }

    /// Body bytes received from the server so far.
    pub fn received(&self) -> u64 {
        self.state.borrow().received
    }

    /// Body bytes waiting for the consumer now.
    pub fn buffered(&self) -> usize {
        self.state.borrow().queued_bytes
    }

    /// The most bytes this body held at once, waiting for the consumer or
    /// received and not decoded yet: what streaming costs in memory.
    pub fn peak_buffered(&self) -> usize {
        self.state.borrow().peak
    }

    /// The body as a [`futures_io::AsyncRead`] (any reader set is dropped).
    pub fn into_reader(self) -> BodyReader {
        self.state.borrow_mut().reader = None;
        BodyReader {
            body: self,
            current: Bytes::new(),
            done: false,
        }
    }
}

impl Clone for ResponseBody {
    fn clone(&self) -> Self {
        ResponseBody::new(self.state.clone())
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        release(&self.state);
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.borrow();
        f.debug_struct("ResponseBody")
            .field("received", &s.received)
            .field("buffered", &s.queued_bytes)
            .field("paused", &s.paused)
            .field("finished", &s.finished)
            .field("abandoned", &s.abandoned)
            .finish()
    }
}

/// A [`ResponseBody`] as a [`futures_io::AsyncRead`], for `async` code on
/// the reactor (see [`aio`](crate::aio)): a read returns what has arrived, or
/// waits; `Ok(0)` is the end of the body, and a body cut short is an error
/// of kind [`io::ErrorKind::UnexpectedEof`] (closed early) or
/// [`io::ErrorKind::InvalidData`] (broken framing, a limit), or
/// [`io::ErrorKind::TimedOut`]. The server is read only as fast as the task
/// reads (at most [`STREAM_QUEUE_MAX`] bytes wait). Dropping it before the
/// end closes the connection.
#[derive(Debug)]
pub struct BodyReader {
    body: ResponseBody,
    current: Bytes,
    done: bool,
}

impl BodyReader {
    /// The body handle behind this reader (for its counters).
    pub fn body(&self) -> &ResponseBody {
        &self.body
    }
}

fn io_error(e: &ClientError) -> io::Error {
    let kind = match e {
        ClientError::Timeout(_) => io::ErrorKind::TimedOut,
        ClientError::Http(super::HttpError::Incomplete) | ClientError::Closed(_) => {
            io::ErrorKind::UnexpectedEof
        }
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e.clone())
}

impl futures_io::AsyncRead for BodyReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if !this.current.is_empty() {
                let n = buf.len().min(this.current.len());
                buf[..n].copy_from_slice(&this.current[..n]);
                this.current.advance(n);
                return Poll::Ready(Ok(n));
            }
            if this.done {
                return Poll::Ready(Ok(0));
            }
            let state = &this.body.state;
            let next = state.borrow_mut().queue.pop_front();
            match next {
                Some(BodyChunk::Data(d)) => {
                    let restart = {
                        let mut s = state.borrow_mut();
                        s.queued_bytes -= d.len();
                        s.stalled && s.wants_more()
                    };
                    if restart {
                        let st = state.clone();
                        let local = state.borrow().local.clone();
                        local.call(move |core| unstall(&st, core));
                    }
                    this.current = d;
                }
                Some(BodyChunk::End(_)) => this.done = true,
                Some(BodyChunk::Failed(e)) => {
                    this.done = true;
                    return Poll::Ready(Err(io_error(&e)));
                }
                None => {
                    let mut s = state.borrow_mut();
                    if s.abandoned {
                        this.done = true;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "the body was closed",
                        )));
                    }
                    s.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }
}
