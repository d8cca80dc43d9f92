//! One client connection: writes a request, reads its response, then goes
//! back to the pool or closes.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::client::{ClientError, ClientShared, Job};
use super::codec::{Event, ResponseDecoder, ResponseHead};
use super::message::Method;
use super::pool::PoolKey;
use super::response::{Body, Response};
use super::write::{valid_name, valid_value, write_decimal, write_fields, write_request_line};
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
        if wants_length {
            out.extend_from_slice(b"Content-Length: ");
            write_decimal(&mut out, job.body.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&job.body);
        self.decoder.expect(job.method.clone());
        self.got_bytes = false;
        self.head = None;
        self.body.clear();
        ctx.write(&out);
        ctx.reset_idle_timeout();
        self.sent += 1;
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
        if let Some(job) = self.job.take() {
            job.fail(e);
        }
        self.closing = true;
        ctx.abort_connection();
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
            Event::Head(h) => self.head = Some(h),
            Event::Data(d) => self.body.extend_from_slice(&d),
            Event::End => self.complete(ctx),
        }
    }

    fn complete(&mut self, ctx: &mut Context<'_>) {
        self.cancel_timer(ctx);
        let (Some(head), Some(job)) = (self.head.take(), self.job.take()) else {
            return;
        };
        let body = std::mem::take(&mut self.body).freeze();
        let keep = head.keep_alive && self.buf.is_empty() && !self.closing;
        if keep && self.shared.keep(self.key.clone(), ctx.handle()) {
            self.idle = true;
            ctx.set_idle_timeout(Some(self.shared.config.pool_idle_timeout));
        } else {
            self.close(ctx);
        }
        let response = Response {
            status: head.status,
            reason: head.reason,
            version: head.version,
            headers: head.headers,
            body: Body::Full(body),
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
                if !keep_method && job.method != Method::Head {
                    job.method = Method::Get;
                    job.body = Bytes::new();
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
            _ => {
                let _ = job.trigger.callback(response);
            }
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
        self.got_bytes = true;
        self.buf.extend_from_slice(data);
        while self.job.is_some() && !self.closing {
            match self.decoder.decode(&mut self.buf) {
                Ok(None) => break,
                Ok(Some(ev)) => self.on_event(ctx, ev),
                Err(e) => {
                    self.cancel_timer(ctx);
                    self.fail(ctx, ClientError::Http(e));
                }
            }
        }
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
        if self.reused && !self.got_bytes && !job.retried && job.method.is_idempotent() {
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
        job.fail(e);
    }

    fn idle_timeout(&mut self, ctx: &mut Context<'_>) {
        if self.idle {
            self.close(ctx);
        } else {
            ctx.reset_idle_timeout();
        }
    }
}
