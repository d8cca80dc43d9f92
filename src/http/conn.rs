//! One server connection: reads requests in order, runs the handler, writes
//! each response before reading the next request (so pipelined requests are
//! answered in order), and enforces the timeouts.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::codec::{utf8, Event, Framing, HeadFacts, RequestDecoder};
use super::handler::Reply;
use super::message::{Method, Version};
use super::request::{BodyPart, IncomingBody, Request};
use super::response::{Body, Response};
use super::server::Shared;
use super::stream::{Framed, Wire};
use super::write::{
    write_content_length, write_date, write_fields, write_ok_and_date, write_status_line,
};
use crate::address::Address;
use crate::defer::{Deferred, Failure};
use crate::error::DisconnectReason;
use crate::protocol::Protocol;
use crate::Context;

/// Full bodies at least this large are written without a copy.
const COPY_MAX: usize = 4096;

/// The least room the read buffer is given when it must grow.
const READ_ROOM: usize = 512;

/// What is known of the request being answered.
struct Info {
    id: u64,
    /// Whether the method is `HEAD` (the answer has no body).
    head: bool,
    version: Version,
    keep_alive: bool,
    /// What the access log says besides the answer: only while it is
    /// written (boxed: `Current` stays small enough to move cheaply).
    logged: Option<Box<Logged>>,
}

/// The request's part of its access log line.
struct Logged {
    method: Method,
    target: Bytes,
    /// When the head arrived.
    started: Instant,
}

enum BodyIn {
    /// Collecting the body for a handler not called yet (boxed: a whole
    /// `Request` inline would make every move of `Current` a large copy,
    /// and bodiless requests, the common case, never come here).
    Buffering(Box<Request>, Vec<Bytes>),
    /// Handing it to the handler's reader as it comes.
    Streaming(IncomingBody),
    /// Read completely.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The handler has not been called (the body is being read).
    NotYet,
    /// The handler returned a Deferred that has not fired.
    Pending,
    /// A streamed body is being sent.
    Sending,
    /// Written.
    Sent,
}

struct Current {
    info: Info,
    body: BodyIn,
    answer: Answer,
    status: u16,
    bytes: u64,
    /// Whether the connection closes after this answer.
    close: bool,
}

/// The protocol of one server connection (built by
/// [`HttpFactory`](super::HttpFactory)).
pub struct ServerConnection {
    shared: Rc<Shared>,
    peer: Address,
    buf: BytesMut,
    decoder: RequestDecoder,
    current: Option<Current>,
    served: u64,
    /// When the head being waited for must be complete.
    header_deadline: Option<Instant>,
    /// Whether a header timer is scheduled.
    timer_armed: bool,
    /// Reading paused because too much was read ahead.
    read_ahead_paused: bool,
    closing: bool,
    shutdown: bool,
}

impl std::fmt::Debug for ServerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConnection")
            .field("peer", &self.peer)
            .field("served", &self.served)
            .field("buffered", &self.buf.len())
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl ServerConnection {
    pub(crate) fn new(shared: Rc<Shared>, peer: Address) -> ServerConnection {
        let limits = shared.config.limits;
        ServerConnection {
            shared,
            peer,
            buf: BytesMut::new(),
            decoder: RequestDecoder::new(limits),
            current: None,
            served: 0,
            header_deadline: None,
            timer_armed: false,
            read_ahead_paused: false,
            closing: false,
            shutdown: false,
        }
    }

    /// Requests answered on this connection.
    pub fn served(&self) -> u64 {
        self.served
    }

    fn start_header_clock(&mut self, ctx: &mut Context<'_>) {
        if self.header_deadline.is_some() {
            return;
        }
        let timeout = self.shared.config.header_timeout;
        self.header_deadline = ctx.now().checked_add(timeout);
        if !self.timer_armed && self.header_deadline.is_some() {
            self.timer_armed = true;
            ctx.call_later_self(timeout, |p: &mut ServerConnection, ctx| p.header_timer(ctx));
        }
    }

    fn header_timer(&mut self, ctx: &mut Context<'_>) {
        self.timer_armed = false;
        let Some(deadline) = self.header_deadline else {
            return;
        };
        let now = ctx.now();
        if now < deadline {
            self.timer_armed = true;
            ctx.call_later_self(deadline - now, |p: &mut ServerConnection, ctx| {
                p.header_timer(ctx)
            });
            return;
        }
        if self.closing {
            return;
        }
        tracing::debug!(peer = %self.peer, "request head not complete in time: closing");
        self.shared.count(|s| s.header_timeouts += 1);
        self.reject(ctx, 408, "request head timeout");
    }

    /// Answers an unusable request with `status` and closes.
    fn reject(&mut self, ctx: &mut Context<'_>, status: u16, why: &str) {
        self.shared.count(|s| {
            s.rejected += 1;
            s.requests += 1;
        });
        tracing::debug!(peer = %self.peer, status, why, "refusing request");
        let started = self
            .current
            .as_ref()
            .is_some_and(|c| c.answer == Answer::Sending || c.answer == Answer::Sent);
        if !started {
            let mut out = Vec::with_capacity(128);
            write_status_line(&mut out, Version::Http11, status, "");
            write_date(&mut out, &self.shared.dates, turn_of(ctx));
            let text = format!("{status} {}\n", super::reason_phrase(status));
            out.extend_from_slice(
                b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n",
            );
            write_content_length(&mut out, text.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(text.as_bytes());
            ctx.write(&out);
        }
        self.close(ctx);
    }

    fn close(&mut self, ctx: &mut Context<'_>) {
        self.closing = true;
        self.header_deadline = None;
        self.buf = BytesMut::new();
        ctx.lose_connection();
    }

    /// Server shutdown: close now if idle, else after the current answer.
    pub(crate) fn shut_down(&mut self, ctx: &mut Context<'_>) {
        self.shutdown = true;
        if self.closing {
            return;
        }
        match &mut self.current {
            None => self.close(ctx),
            Some(c) => c.close = true,
        }
    }

    /// Decodes and answers what the buffer holds, as far as it can.
    fn process(&mut self, ctx: &mut Context<'_>) {
        while !self.closing {
            let Some(cur) = &mut self.current else {
                if self.buf.is_empty() {
                    break;
                }
                // The request is parsed into `slot`, where `dispatch` takes
                // it from (a large value not moved through results).
                let mut slot = None;
                match self
                    .decoder
                    .decode_request(&mut self.buf, &self.peer, &mut slot)
                {
                    Ok(None) => {
                        self.start_header_clock(ctx);
                        break;
                    }
                    Ok(Some(Event::Head(head))) => self.begin(ctx, head, &mut slot),
                    Ok(Some(_)) => unreachable_event(),
                    Err(e) => {
                        self.reject(ctx, e.status(), &e.to_string());
                        break;
                    }
                }
                continue;
            };
            if matches!(cur.body, BodyIn::Done) {
                if cur.answer != Answer::Sent {
                    break; // waiting for the answer; later requests wait in `buf`
                }
                self.finish(ctx);
                continue;
            }
            match self.decoder.decode(&mut self.buf) {
                Ok(None) => break,
                Ok(Some(Event::Data(data))) => self.body_data(ctx, data),
                Ok(Some(Event::End)) => self.body_end(ctx),
                Ok(Some(Event::Head(_))) => unreachable_event(),
                Err(e) => {
                    if let Some(Current {
                        body: BodyIn::Streaming(inc),
                        ..
                    }) = &self.current
                    {
                        inc.clone().deliver(ctx, BodyPart::Aborted);
                    }
                    self.reject(ctx, e.status(), &e.to_string());
                }
            }
        }
        self.regulate_reading(ctx);
    }

    fn regulate_reading(&mut self, ctx: &mut Context<'_>) {
        if self.closing {
            return;
        }
        let waiting = self
            .current
            .as_ref()
            .is_some_and(|c| matches!(c.body, BodyIn::Done));
        let over = waiting && self.buf.len() > self.shared.config.max_pipeline_buffer;
        if over && !self.read_ahead_paused {
            self.read_ahead_paused = true;
            ctx.pause_reading();
        } else if !over && self.read_ahead_paused {
            self.read_ahead_paused = false;
            ctx.resume_reading();
        }
    }

    fn begin(&mut self, ctx: &mut Context<'_>, head: HeadFacts, slot: &mut Option<Request>) {
        let Some(req) = slot else { return };
        self.header_deadline = None;
        let reused = self.served > 0;
        let framing = head.framing;
        let expect = head.expect_continue && framing != Framing::None;
        // The target is kept for the access log only when it is written.
        let logged = tracing::enabled!(target: "torsion::http::access", tracing::Level::INFO);
        let info = Info {
            id: self.served,
            head: req.method == Method::Head,
            version: req.version,
            keep_alive: head.keep_alive,
            logged: logged.then(|| {
                Box::new(Logged {
                    method: req.method.clone(),
                    target: req.target_bytes(),
                    started: ctx.now(),
                })
            }),
        };
        let close = !head.keep_alive || self.shutdown || self.shared.shutting_down.get();
        if reused {
            self.shared.count(|s| s.reused += 1);
        }
        if expect {
            ctx.write(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let streams = self.shared.handler.borrow().streams_body(req);
        // Made in place; the body's state is set below.
        let current = self.current.insert(Current {
            info,
            body: BodyIn::Done,
            answer: Answer::NotYet,
            status: 0,
            bytes: 0,
            close,
        });
        if streams {
            // A streaming handler gets its request at once; the body follows.
            let inc = IncomingBody::new(ctx.handle());
            req.incoming = Some(inc.clone());
            current.body = BodyIn::Streaming(inc);
            self.dispatch(ctx, slot);
        } else if framing == Framing::None && self.decoder.take_end() {
            // No body to wait for: the handler runs now (the decoder's `End`
            // for this request is taken here, not through `decode`).
            self.dispatch(ctx, slot);
        } else if let Some(req) = slot.take() {
            current.body = BodyIn::Buffering(Box::new(req), Vec::new());
        }
    }

    fn body_data(&mut self, ctx: &mut Context<'_>, data: Bytes) {
        let Some(cur) = &mut self.current else { return };
        match &mut cur.body {
            BodyIn::Buffering(_, parts) => parts.push(data),
            BodyIn::Streaming(inc) => {
                let inc = inc.clone();
                if inc.deliver(ctx, BodyPart::Data(data)) {
                    ctx.pause_reading();
                }
            }
            BodyIn::Done => {}
        }
    }

    fn body_end(&mut self, ctx: &mut Context<'_>) {
        let Some(cur) = &mut self.current else { return };
        match std::mem::replace(&mut cur.body, BodyIn::Done) {
            BodyIn::Buffering(mut req, parts) => {
                req.body = match parts.len() {
                    0 => Bytes::new(),
                    1 => parts.into_iter().next().unwrap_or_default(),
                    _ => {
                        let mut all = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                        for p in parts {
                            all.extend_from_slice(&p);
                        }
                        all.freeze()
                    }
                };
                self.dispatch(ctx, &mut Some(*req));
            }
            BodyIn::Streaming(inc) => {
                inc.deliver(ctx, BodyPart::End);
            }
            BodyIn::Done => {}
        }
    }

    /// Runs the handler on the request in `req` (taken) and answers with
    /// what it returns.
    fn dispatch(&mut self, ctx: &mut Context<'_>, req: &mut Option<Request>) {
        // The reply is answered inside the closure given to `catch_unwind`:
        // returned through it (and through an `Option` outside), the
        // response would be copied at each step. Only a panic in the
        // handler is answered 500; one after it returned goes on unwinding,
        // as it did outside.
        let mut returned = false;
        let result = catch_unwind(AssertUnwindSafe(|| {
            // Borrowed before the request is taken: nothing between the
            // take and the call may unwind, and the request is copied once.
            let mut handler = self.shared.handler.borrow_mut();
            let Some(req) = req.take() else { return };
            let mut reply = handler.handle(ctx.core(), req);
            // Released before the answer is written.
            drop(handler);
            returned = true;
            match reply {
                // By reference: binding the response by value (or passing
                // the reply on) would copy it.
                Reply::Now(ref mut resp) => self.respond(ctx, resp),
                Reply::Later(d) => self.wait_for(ctx, d),
            }
        }));
        if let Err(panic) = result {
            if returned {
                resume_unwind(panic);
            }
            self.panicked(ctx, panic);
        }
    }

    /// The handler returned a Deferred: answers when it fires.
    #[inline(never)]
    fn wait_for(&mut self, ctx: &mut Context<'_>, mut d: Deferred<Response, Failure>) {
        if let Some(res) = d.take_result() {
            return self.answered(ctx, res);
        }
        if let Some(c) = &mut self.current {
            c.answer = Answer::Pending;
        }
        let id = self.served;
        let conn = ctx.handle();
        let local = ctx.local();
        // A handler whose Deferred can never fire (every trigger
        // dropped) fails it with `Abandoned`: answered 500 below.
        drop(
            d.fail_if_abandoned()
                .add_both(move |res: Result<Response, Failure>| {
                    local.call(move |core| {
                        super::call_on(core, conn, move |p: &mut ServerConnection, ctx| {
                            if p.current
                                .as_ref()
                                .is_some_and(|c| c.info.id == id && c.answer == Answer::Pending)
                            {
                                p.answered(ctx, res);
                                p.process(ctx);
                            }
                        });
                    });
                    Ok::<(), Failure>(())
                }),
        );
    }

    /// The handler panicked: answers 500 and closes.
    #[cold]
    #[inline(never)]
    fn panicked(&mut self, ctx: &mut Context<'_>, panic: Box<dyn std::any::Any + Send>) {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        tracing::error!(peer = %self.peer, panic = %msg, "HTTP handler panicked: answering 500");
        self.shared.count(|s| s.panics += 1);
        if let Some(c) = &mut self.current {
            c.close = true;
        }
        self.respond(ctx, &mut Response::error(500));
    }

    fn answered(&mut self, ctx: &mut Context<'_>, res: Result<Response, Failure>) {
        match res {
            Ok(mut resp) => self.respond(ctx, &mut resp),
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "HTTP handler failed: answering 500");
                self.respond(ctx, &mut Response::error(500));
            }
        }
    }

    /// Writes the head and body of the current request's answer.
    fn respond(&mut self, ctx: &mut Context<'_>, resp: &mut Response) {
        let shutting = self.shutdown || self.shared.shutting_down.get();
        let Some(cur) = &mut self.current else { return };
        if cur.answer == Answer::Sending || cur.answer == Answer::Sent {
            return;
        }
        let status = resp.status;
        let head_only = cur.info.head;
        let bodiless_status = (100..200).contains(&status) || status == 204 || status == 304;
        // RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304.
        let no_body = head_only || bodiless_status;
        let turn = turn_of(ctx);
        let body = std::mem::take(&mut resp.body);
        let mut stream = None;
        // The head (and a small body) go straight into the connection's
        // write buffer: no buffer of the server's between, no copy.
        let large_body = ctx.write_with(
            #[inline(always)]
            |out| {
                if status == 200 && resp.reason.is_empty() {
                    write_ok_and_date(out, &self.shared.dates, turn);
                } else {
                    write_status_line(out, Version::Http11, status, &resp.reason);
                    write_date(out, &self.shared.dates, turn);
                }
                // A `Connection: close` the handler set is not written as is
                // (the server writes its own) but closes the connection all
                // the same.
                let asked_close = write_fields(out, &resp.headers, true);
                let mut close = cur.close || shutting || asked_close;
                let mut body_now: Option<Bytes> = None;
                match body {
                    Body::Empty => {
                        if head_only {
                            if let Some(v) = resp.headers.get_bytes("content-length") {
                                out.extend_from_slice(b"Content-Length: ");
                                out.extend_from_slice(v);
                                out.extend_from_slice(b"\r\n");
                            } else {
                                out.extend_from_slice(b"Content-Length: 0\r\n");
                            }
                        } else if !bodiless_status {
                            out.extend_from_slice(b"Content-Length: 0\r\n");
                        }
                    }
                    Body::Full(b) => {
                        if !bodiless_status {
                            write_content_length(out, b.len() as u64);
                        }
                        if !no_body {
                            body_now = Some(b);
                        }
                    }
                    Body::Stream { source, length } => {
                        let wire = match length {
                            Some(n) => Wire::Length(n),
                            None if cur.info.version == Version::Http11 => Wire::Chunked,
                            None => Wire::Raw,
                        };
                        match wire {
                            Wire::Length(n) if !bodiless_status => {
                                write_content_length(out, n);
                            }
                            Wire::Chunked if !bodiless_status => {
                                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                            }
                            Wire::Raw if !no_body => close = true,
                            _ => {}
                        }
                        if !no_body {
                            cur.bytes = length.unwrap_or(0);
                            stream = Some(Framed::new(source, wire));
                        }
                    }
                }
                if close {
                    out.extend_from_slice(b"Connection: close\r\n");
                } else if cur.info.version == Version::Http10 {
                    out.extend_from_slice(b"Connection: keep-alive\r\n");
                }
                out.extend_from_slice(b"\r\n");
                cur.close = close;
                cur.status = status;
                let b = body_now?;
                cur.bytes = b.len() as u64;
                if b.len() < COPY_MAX {
                    out.extend_from_slice(&b);
                    return None;
                }
                Some(b)
            },
        );
        if let Some(b) = large_body {
            ctx.write_bytes(b);
        }
        if let Some(s) = stream {
            cur.answer = Answer::Sending;
            ctx.stream_from(s);
        } else {
            cur.answer = Answer::Sent;
        }
    }

    /// The current request is answered and its body read: log it, then close
    /// or go on to the next one.
    fn finish(&mut self, ctx: &mut Context<'_>) {
        let Some(cur) = self.current.take() else {
            return;
        };
        let Current {
            info,
            body,
            status,
            bytes,
            close,
            ..
        } = cur;
        // The usual `Done` owns nothing: forgotten, not dropped (which
        // is a call into the drop glue of every kind of body).
        if matches!(body, BodyIn::Done) {
            std::mem::forget(body);
        }
        self.served += 1;
        self.shared.count(|s| s.requests += 1);
        // Logged when the log was on as the request began (the one check
        // per request; its line needs what was kept then).
        if let Some(l) = &info.logged {
            tracing::info!(
                target: "torsion::http::access",
                peer = %self.peer,
                method = %l.method,
                path = utf8(&l.target),
                version = %info.version,
                status = status,
                bytes = bytes,
                micros = ctx.now().saturating_duration_since(l.started).as_micros() as u64,
                "request"
            );
        }
        if close || !info.keep_alive {
            self.close(ctx);
        }
    }
}

/// The reactor turn a response is made in, for the `Date` cache (none under
/// the test tools' fake clock, whose time need not move with the wall clock).
fn turn_of(ctx: &mut Context<'_>) -> Option<std::time::Instant> {
    let core = ctx.core();
    (!core.is_simulated()).then(|| core.turn_time())
}

fn unreachable_event() {
    tracing::error!("HTTP decoder produced an event out of order");
}

impl Protocol for ServerConnection {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.shared.opened(ctx.handle());
        ctx.set_idle_timeout(Some(self.shared.config.idle_timeout));
        // A client that connects and sends nothing is on the header clock too.
        self.start_header_clock(ctx);
        tracing::debug!(peer = %self.peer, "HTTP connection");
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        if self.closing {
            return;
        }
        if self.buf.capacity() - self.buf.len() < data.len() {
            // Room for several small requests: each head is split off the
            // front and, once its request is dropped, its space comes back
            // with the next reservation; reserving only what each read
            // needs made every request pay for that reclaiming.
            self.buf.reserve(data.len().max(READ_ROOM));
        }
        self.buf.extend_from_slice(data);
        self.process(ctx);
    }

    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.closing = true;
        if let Some(Current {
            body: BodyIn::Streaming(inc),
            ..
        }) = &self.current
        {
            inc.clone().deliver(ctx, BodyPart::Aborted);
        }
        self.current = None;
        self.shared.closed(ctx.handle());
        tracing::debug!(peer = %self.peer, %reason, served = self.served, "HTTP connection closed");
    }

    fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
        let Some(cur) = &mut self.current else { return };
        if cur.answer != Answer::Sending {
            return;
        }
        match result {
            Ok(()) => {
                cur.answer = Answer::Sent;
                self.process(ctx);
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "response body failed: aborting the connection");
                self.closing = true;
                ctx.abort_connection();
            }
        }
    }

    fn idle_timeout(&mut self, ctx: &mut Context<'_>) {
        let busy = self
            .current
            .as_ref()
            .is_some_and(|c| c.answer == Answer::Pending);
        if busy {
            ctx.reset_idle_timeout();
            return;
        }
        tracing::debug!(peer = %self.peer, "idle HTTP connection: closing");
        self.closing = true;
        ctx.lose_connection_with(DisconnectReason::TimedOut);
    }
}
