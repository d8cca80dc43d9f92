//! HTTP/1.1, the `twisted.web` of torsion: a sans-IO [`codec`], a server
//! ([`HttpServer`], Twisted's `Site`, with [`Handler`]s for `Resource`s) and
//! a client ([`HttpClient`], Twisted's `Agent`), all on the public
//! [`Protocol`](crate::Protocol) / [`Factory`](crate::Factory) API, so they
//! run over TCP, Unix sockets, TLS and the in-memory test pump alike.
//!
//! What the server does for you: `Date`, `Content-Length` or chunked framing;
//! keep-alive, with pipelined requests answered in order; `HEAD`;
//! `Expect: 100-continue`; HTTP/1.0 clients; limits with typed errors
//! ([`Limits`]: header block 64 KiB and 100 fields -> `431`, body 16 MiB ->
//! `413`, malformed -> `400`); RFC 9112's request-smuggling defences (both
//! `Content-Length` and `Transfer-Encoding`, differing lengths, a final
//! coding other than `chunked`, line folding: `400` and close); a header-read
//! timeout (10 s, the slowloris defence) and an idle timeout (60 s);
//! streamed bodies both ways with back-pressure; graceful shutdown; a
//! panicking handler answered `500`; an access log through `tracing`
//! (target `torsion::http::access`, INFO).
//!
//! The client reads a response whole ([`HttpClient::request`]) or streams its
//! body with back-pressure ([`HttpClient::request_streaming`]: a
//! [`ResponseBody`] callback or an `AsyncRead` [`BodyReader`]), streams a
//! request body from a source ([`HttpClient::upload`]), and tells when each
//! phase of an exchange ended ([`Response::timings`]: connect, TLS, first
//! byte, body complete, and whether the connection was reused).
//!
//! ```
//! use torsion::http::{HttpClient, HttpServer, Request, Response, Router};
//! use torsion::{Core, Reactor};
//!
//! let mut reactor = Reactor::new()?;
//! let server = HttpServer::new(
//!     Router::new()
//!         .get("/", |_: &mut Core, _: Request| Response::ok("Hello, World!"))
//!         .post("/echo", |_: &mut Core, req: Request| Response::ok(req.body)),
//! );
//! let port = server.listen_tcp(&mut reactor, "127.0.0.1:0".parse().unwrap())?;
//! let client = HttpClient::new();
//! let url = format!("http://{}/", port.local_addr());
//! let response = client.get(&mut reactor, &url);
//! let response = reactor.run_until_complete(response)?.expect("a response");
//! assert_eq!(response.status, 200);
//! assert_eq!(response.body_bytes(), b"Hello, World!");
//! # Ok::<(), torsion::Error>(())
//! ```

mod body;
mod client;
mod client_body;
mod client_conn;
mod client_factory;
pub mod codec;
mod conn;
mod error;
mod handler;
mod message;
mod pool;
mod request;
mod response;
mod server;
mod service;
mod stream;
mod timings;
mod url;
mod write;

pub use body::{
    chunk_header, encode_chunk, BodyDecoder, BodyEvent, CHUNK_END, LAST_CHUNK, MAX_CHUNK_LINE,
};
pub use client::{ClientConfig, ClientError, ClientStats, HttpClient};
pub use client_body::{BodyChunk, BodyReader, ResponseBody, StreamingResponse, STREAM_QUEUE_MAX};
pub use error::{
    HttpError, Limits, DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_HEADERS, DEFAULT_MAX_HEAD_SIZE,
};
pub use handler::{Handler, Reply, Router};
pub use message::{
    percent_decode_path, reason_phrase, status_has_no_body, Headers, Method, Version,
};
pub use request::{BodyPart, IncomingBody, Request};
pub use response::{Body, BodyStream, Response};
pub use server::{
    HttpFactory, HttpServer, ServerConfig, ServerConnection, ServerStats, DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
};
pub use service::HttpService;
pub use timings::Timings;
pub use url::Url;
pub use write::{http_date, valid_name, valid_value};

/// Calls into the protocol of another connection (or this one) once the
/// current callback returns: the one by-handle path the module uses. A
/// connection that is gone by then is no error here (each caller copes: its
/// `connection_lost` ran), so the outcome is dropped quietly.
pub(crate) fn call_on<P: crate::Protocol>(
    core: &mut crate::Core,
    conn: crate::ConnectionHandle,
    f: impl FnOnce(&mut P, &mut crate::Context<'_>) + 'static,
) {
    drop(
        core.connection(conn)
            .with_protocol(f)
            .add_errback(|_| Ok::<(), crate::Error>(())),
    );
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod server_tests;
