//! One client connection: writes a request, reads its response (whole, or
//! streamed to a [`ResponseBody`](super::ResponseBody)), then goes back to
//! the pool or closes.

use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::client::{Answer, ClientError, ClientShared, Job};
use super::client_body::{self as stream, BodyChunk, ResponseBody, StreamingResponse};
use super::codec::{Event, ResponseDecoder, ResponseHead};
use super::message::Method;
use super::pool::PoolKey;
use super::response::{Body, Response};
use super::stream::{Framed, Wire};
use super::write::{
    valid_name, valid_value, write_content_length, write_fields, write_request_line,
};
use crate::context::DelayedCall;
use crate::error::DisconnectReason;
use crate::protocol::Protocol;
use crate::Context;

/// The protocol of one client connection (internal to [`HttpClient`](super::HttpClient)).
pub(crate) struct ClientConnection {
    shared: Rc<ClientShared>,
    key: PoolKey,
    job: Option<Job>,
    buf: BytesMut,
    decoder: ResponseDecoder,
    head: Option<ResponseHead>,
    body: BytesMut,
    /// The current response's body goes to a consumer as it arrives.
    stream: Option<stream::Shared>,
    /// The current response is a redirect to follow: its body is skipped.
    discard: bool,
    /// A streamed request body is still being sent.
    uploading: bool,
    /// Whether any byte of the current response arrived.
    got_bytes: bool,
    /// Whether the current request went out on a connection used before.
    reused: bool,
    sent: u64,
    timer: Option<DelayedCall>,
    idle: bool,
    closing: bool,
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

impl ClientConnection {
    pub(crate) fn new(shared: Rc<ClientShared>, job: Job) -> ClientConnection {
        let limits = shared.config.limits;
        ClientConnection {
            key: job.key(),
            shared,
            job: Some(job),
            buf: BytesMut::new(),
            decoder: ResponseDecoder::new(limits),
            head: None,
            body: BytesMut::new(),
            stream: None,
            discard: false,
            uploading: false,
            got_bytes: false,
            reused: false,
            sent: 0,
            timer: None,
            idle: false,
            closing: false,
        }
    }

    /// The pool handed this idle connection a job.
    pub(crate) fn take_job(&mut self, ctx: &mut Context<'_>) {
        let Some(job) = self.shared.pool.borrow_mut().take_assigned(ctx.handle()) else {
            return;
        };
        if self.closing {
            // Closed meanwhile: `connection_lost` will not see it, so start over.
            self.shared.clone().start(ctx.core(), job, true);
            return;
        }
        self.idle = false;
        self.reused = true;
        self.job = Some(job);
        self.send(ctx);
    }

    fn send(&mut self, ctx: &mut Context<'_>) {
        let Some(job) = &self.job else { return };
        let invalid = job
            .headers
            .iter()
            .find(|(name, value)| !valid_name(name) || !valid_value(value))
            .map(|(name, _)| name.to_owned());
        if let Some(name) = invalid {
            if let Some(job) = self.job.take() {
                job.fail(ClientError::BadRequest(format!("header field {name:?}")));
            }
            self.close(ctx);
            return;
        }
        let Some(job) = &self.job else { return };
        let mut out = Vec::with_capacity(256 + job.body.len());
        write_request_line(&mut out, &job.method, &job.url.path);
        if !job.headers.contains("host") {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(job.url.authority().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !job.headers.contains("user-agent") {
            out.extend_from_slice(b"User-Agent: torsion/");
            out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        write_fields(&mut out, &job.headers, true);
        let wants_length = !job.body.is_empty()
            || matches!(job.method, Method::Post | Method::Put | Method::Patch);
        let wire = job.upload.as_ref().map(|u| match u.length {
            Some(n) => Wire::Length(n),
            None => Wire::Chunked,
        });
        if let Some(wire) = wire {
            match wire {
                Wire::Length(n) => write_content_length(&mut out, n),
                _ => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            }
        } else if wants_length {
            write_content_length(&mut out, job.body.len() as u64);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&job.body);
        self.decoder.expect(job.method.clone());
        let config = &self.shared.config;
        self.decoder.set_max_body_size(if job.streams() {
            config.max_streamed_body.unwrap_or(u64::MAX)
        } else {
            config.limits.max_body_size
        });
        self.got_bytes = false;
        self.head = None;
        self.body.clear();
        self.stream = None;
        self.discard = false;
        ctx.write(&out);
        if let Some(job) = &mut self.job {
            job.marks.reused = self.reused;
            match (job.upload.take(), wire) {
                (Some(up), Some(wire)) => {
                    // Written once the source is done (`streaming_finished`).
                    self.uploading = true;
                    ctx.stream_from(Framed::new(up.source, wire));
                }
                _ => job.marks.written = Some(Instant::now()),
            }
        }
        ctx.reset_idle_timeout();
        self.sent += 1;
        if self.uploading {
            // The response timeout starts once the body is out; meanwhile it
            // is the longest the connection may take nothing of it.
            ctx.set_idle_timeout(Some(self.shared.config.response_timeout));
        } else {
            self.arm_response_timer(ctx);
        }
    }

    fn arm_response_timer(&mut self, ctx: &mut Context<'_>) {
        let seq = self.sent;
        let timeout = self.shared.config.response_timeout;
        self.timer = Some(
            ctx.call_later_self(timeout, move |p: &mut ClientConnection, ctx| {
                if p.sent == seq && p.job.is_some() {
                    p.timer = None;
                    p.fail(ctx, ClientError::Timeout(timeout));
                }
            }),
        );
    }

    fn fail(&mut self, ctx: &mut Context<'_>, e: ClientError) {
        if let Some(st) = self.stream.take() {
            stream::push(&st, ctx.core(), BodyChunk::Failed(e.clone()));
        }
        if let Some(job) = self.job.take() {
            job.fail(e);
        }
        self.closing = true;
        ctx.abort_connection();
    }

    /// The consumer of request `seq`'s streamed body can take more.
    pub(crate) fn resume_body(&mut self, ctx: &mut Context<'_>, seq: u64) {
        if self.sent != seq || self.stream.is_none() || self.closing {
            return;
        }
        ctx.resume_reading();
        self.pump(ctx);
    }

    /// The consumer of request `seq`'s streamed body gave up on it.
    pub(crate) fn abandon_body(&mut self, ctx: &mut Context<'_>, seq: u64) {
        if self.sent != seq || self.stream.is_none() || self.closing {
            return;
        }
        tracing::debug!("a streamed HTTP response body was abandoned: closing its connection");
        self.stream = None;
        self.job = None;
        self.cancel_timer(ctx);
        self.closing = true;
        ctx.abort_connection();
    }

    /// Decodes what was received, as far as a streamed body's consumer
    /// keeps up (`all`: regardless, the peer closed).
    fn decode(&mut self, ctx: &mut Context<'_>, all: bool) {
        while self.job.is_some() && (all || !self.closing) {
            if let Some(st) = &self.stream {
                if !all && stream::should_stall(st) {
                    ctx.pause_reading();
                    break;
                }
            }
            match self.decoder.decode(&mut self.buf) {
                Ok(None) => break,
                Ok(Some(ev)) => self.on_event(ctx, ev),
                Err(e) => {
                    self.cancel_timer(ctx);
                    self.fail(ctx, ClientError::Http(e));
                }
            }
        }
        if let Some(st) = &self.stream {
            stream::note_undecoded(st, self.buf.len());
        }
    }

    fn pump(&mut self, ctx: &mut Context<'_>) {
        self.decode(ctx, false);
    }

    fn close(&mut self, ctx: &mut Context<'_>) {
        self.closing = true;
        ctx.lose_connection();
    }

    fn cancel_timer(&mut self, ctx: &mut Context<'_>) {
        if let Some(t) = self.timer.take() {
            let _ = t.cancel(ctx.core());
        }
    }

    fn on_event(&mut self, ctx: &mut Context<'_>, ev: Event<ResponseHead>) {
        match ev {
            Event::Head(h) => self.on_head(ctx, h),
            Event::Data(_) if self.discard => {}
            Event::Data(d) => match &self.stream {
                Some(st) => stream::push(st, ctx.core(), BodyChunk::Data(d)),
                None => self.body.extend_from_slice(&d),
            },
            Event::End => self.complete(ctx),
        }
    }

    fn on_head(&mut self, ctx: &mut Context<'_>, head: ResponseHead) {
        let Some(job) = &mut self.job else { return };
        let follow = self.shared.config.follow_redirects > 0
            && is_redirect(head.status)
            && head.headers.contains("location");
        if follow {
            self.discard = true;
        } else if job.streams() {
            let Some(Answer::Stream(trigger)) = job.answer.take() else {
                return;
            };
            // From here the body's consumer sets the pace; the response
            // timeout becomes the longest silence while it reads.
            if let Some(t) = self.timer.take() {
                let _ = t.cancel(ctx.core());
            }
            ctx.set_idle_timeout(Some(self.shared.config.response_timeout));
            let st = stream::new_stream(ctx.handle(), self.sent, ctx.local());
            let mut response = Response {
                status: head.status,
                reason: head.reason.clone(),
                version: head.version,
                headers: head.headers.clone(),
                body: Body::Empty,
                timings: None,
            };
            response.timings = Some(Box::new(job.marks.timings()));
            self.stream = Some(st.clone());
            let _ = trigger.callback(StreamingResponse {
                head: response,
                body: ResponseBody::new(st),
            });
        }
        self.head = Some(head);
    }

    fn complete(&mut self, ctx: &mut Context<'_>) {
        self.cancel_timer(ctx);
        let (Some(head), Some(mut job)) = (self.head.take(), self.job.take()) else {
            return;
        };
        job.marks.complete = Some(Instant::now());
        let body = std::mem::take(&mut self.body).freeze();
        if self.uploading {
            // Answered before the whole body went out (a 413, say): the rest
            // is not sent, and the connection cannot carry another request.
            self.uploading = false;
            self.closing = true;
            ctx.abort_connection();
        }
        let keep = head.keep_alive && self.buf.is_empty() && !self.closing;
        if keep && self.shared.keep(self.key.clone(), ctx.handle()) {
            self.idle = true;
            ctx.set_idle_timeout(Some(self.shared.config.pool_idle_timeout));
        } else {
            self.close(ctx);
        }
        if let Some(st) = self.stream.take() {
            stream::push(&st, ctx.core(), BodyChunk::End(job.marks.timings()));
            return;
        }
        let response = Response {
            status: head.status,
            reason: head.reason,
            version: head.version,
            headers: head.headers,
            body: Body::Full(body),
            timings: Some(Box::new(job.marks.timings())),
        };
        self.deliver(ctx, job, response);
    }

    /// Hands the response over, or follows its redirect.
    fn deliver(&mut self, ctx: &mut Context<'_>, mut job: Job, response: Response) {
        let limit = self.shared.config.follow_redirects;
        let location = response.headers.get("location").map(str::to_owned);
        match location {
            Some(loc) if limit > 0 && is_redirect(response.status) => {
                if job.redirects >= limit {
                    return job.fail(ClientError::TooManyRedirects);
                }
                let url = match job.url.join(&loc) {
                    Ok(u) => u,
                    Err(e) => return job.fail(e),
                };
                tracing::debug!(from = %job.url, to = %url, status = response.status, "following a redirect");
                let keep_method = matches!(response.status, 307 | 308);
                if keep_method && job.streamed_body {
                    // The body cannot be sent again: the redirect is the answer.
                    return self.answer(ctx, job, response);
                }
                if !keep_method && job.method != Method::Head {
                    job.method = Method::Get;
                    job.body = Bytes::new();
                    job.streamed_body = false;
                }
                if url.host != job.url.host || url.https != job.url.https {
                    // Credentials are not for another origin.
                    job.headers.remove("authorization");
                    job.headers.remove("cookie");
                }
                job.headers.remove("host");
                job.url = url;
                job.redirects += 1;
                job.retried = false;
                self.shared.clone().start(ctx.core(), job, false);
            }
            _ => self.answer(ctx, job, response),
        }
    }

    /// Hands the response to whoever asked.
    fn answer(&mut self, ctx: &mut Context<'_>, job: Job, response: Response) {
        match job.answer {
            Some(Answer::Whole(t)) => drop(t.callback(response)),
            Some(Answer::Stream(t)) => {
                // A streamed response's head is handed over when it arrives,
                // unless it is a redirect to follow (its body skipped): one
                // not followed after all ends here, empty.
                let st = stream::new_stream(ctx.handle(), self.sent, ctx.local());
                let timings = response.timings().unwrap_or_default();
                let head = Response {
                    body: Body::Empty,
                    ..response
                };
                stream::push(&st, ctx.core(), BodyChunk::End(timings));
                let _ = t.callback(StreamingResponse {
                    head,
                    body: ResponseBody::new(st),
                });
            }
            None => {}
        }
    }
}

impl Protocol for ClientConnection {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.send(ctx);
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        if self.closing {
            return;
        }
        if self.job.is_none() {
            // Nothing was asked: a server talking out of turn.
            tracing::debug!("unexpected bytes on an idle HTTP client connection: closing");
            self.close(ctx);
            return;
        }
        if !self.got_bytes {
            self.got_bytes = true;
            if let Some(job) = &mut self.job {
                job.marks.first_byte = Some(Instant::now());
            }
        }
        self.buf.extend_from_slice(data);
        self.pump(ctx);
    }

    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.closing = true;
        self.shared
            .pool
            .borrow_mut()
            .remove(&self.key, ctx.handle());
        if let Some(job) = self.shared.pool.borrow_mut().take_assigned(ctx.handle()) {
            self.job = Some(job);
            self.reused = true;
            self.got_bytes = false;
            self.sent = 0;
        }
        if self.job.is_some() {
            // What was received but held back for a slow consumer is not lost.
            self.decode(ctx, true);
        }
        if self.job.is_some() {
            // A response delimited by the close ends here.
            match self.decoder.decode_eof(&self.buf) {
                Ok(Some(ev)) => {
                    self.on_event(ctx, ev);
                    if let Some(Event::End) = self.decoder.decode_eof(&self.buf).ok().flatten() {
                        self.complete(ctx);
                    }
                }
                Ok(None) => {}
                Err(_) => {}
            }
        }
        let Some(mut job) = self.job.take() else {
            return;
        };
        if self.reused
            && !self.got_bytes
            && !job.retried
            && (!job.streamed_body || job.upload.is_some())
            && job.method.is_idempotent()
        {
            // The server closed a kept-alive connection as we reused it: the
            // request was not processed, so send it again on a new one.
            job.retried = true;
            self.shared.clone().start(ctx.core(), job, true);
            return;
        }
        let e = if self.head.is_some() || self.got_bytes {
            ClientError::Http(super::HttpError::Incomplete)
        } else {
            ClientError::Closed(reason.clone())
        };
        if let Some(st) = self.stream.take() {
            stream::push(&st, ctx.core(), BodyChunk::Failed(e.clone()));
        }
        job.fail(e);
    }

    fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
        if !self.uploading {
            return;
        }
        self.uploading = false;
        match result {
            Ok(()) => {
                if let Some(job) = &mut self.job {
                    job.marks.written = Some(Instant::now());
                    self.arm_response_timer(ctx);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "a streamed HTTP request body failed: aborting");
                self.cancel_timer(ctx);
                self.fail(ctx, ClientError::RequestBody(e.to_string()));
            }
        }
    }

    fn idle_timeout(&mut self, ctx: &mut Context<'_>) {
        if self.idle {
            self.close(ctx);
            return;
        }
        let silent = self.uploading || self.stream.as_ref().is_some_and(|st| !stream::is_held(st));
        if silent {
            let timeout = self.shared.config.response_timeout;
            self.fail(ctx, ClientError::Timeout(timeout));
        } else {
            ctx.reset_idle_timeout();
        }
    }
}
