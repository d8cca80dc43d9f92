//! What can go wrong reading a message, and the limits that bound it.

/// Limits on what a peer may send, on both the server and the client side.
/// Every one of them is a defence: past a limit the message is refused with a
/// typed [`HttpError`] instead of growing memory.
///
/// ```
/// use torsion::http::{ClientConfig, Limits, ServerConfig};
///
/// // Small requests only: 8 KiB of head, 20 fields, 64 KiB of body.
/// let limits = Limits {
///     max_head_size: 8 * 1024,
///     max_headers: 20,
///     max_body_size: 64 * 1024,
/// };
/// let server = ServerConfig { limits, ..ServerConfig::default() };
/// let client = ClientConfig { limits, ..ClientConfig::default() };
/// # let _ = (server, client);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest header block (request or status line and every field), in
    /// bytes. Default 64 KiB; past it: `431`.
    pub max_head_size: usize,
    /// The most header fields. Default 100; past it: `431`.
    pub max_headers: usize,
    /// The largest body, in bytes. Default 16 MiB; past it: `413`.
    pub max_body_size: u64,
}

/// The default [`Limits::max_head_size`]: 64 KiB.
pub const DEFAULT_MAX_HEAD_SIZE: usize = 64 * 1024;
/// The default [`Limits::max_headers`]: 100.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// The default [`Limits::max_body_size`]: 16 MiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 16 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_size: DEFAULT_MAX_HEAD_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }
}

/// Why a message was refused. [`status`](HttpError::status) is the answer a
/// server gives; the connection is closed after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The header block is larger than [`Limits::max_head_size`].
    #[error("header block larger than {0} bytes")]
    HeadTooLarge(usize),
    /// More header fields than [`Limits::max_headers`].
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    /// The body is larger than [`Limits::max_body_size`].
    #[error("body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The request or status line, or a header field, is malformed
    /// (obsolete line folding included).
    #[error("malformed message head: {0}")]
    BadHead(&'static str),
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1: a
    /// smuggling attempt or a broken intermediary).
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    /// A `Content-Length` that is not a number, or several that differ.
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    /// A `Transfer-Encoding` whose final coding is not `chunked`, or one in
    /// an HTTP/1.0 message.
    #[error("Transfer-Encoding other than a final chunked")]
    BadTransferEncoding,
    /// A transfer coding this implementation does not decode (`gzip, chunked`).
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// A malformed chunk-size line or chunk terminator.
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
    /// An HTTP/1.1 request without a `Host` field, or with several.
    #[error("missing or repeated Host field")]
    BadHost,
    /// An HTTP version other than 1.0 and 1.1.
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    /// An `Expect` other than `100-continue`.
    #[error("unsupported expectation")]
    UnsupportedExpectation,
    /// The peer closed before the message was complete.
    #[error("connection closed before the message was complete")]
    Incomplete,
}

impl HttpError {
    /// The status a server answers this error with: `431` for the head
    /// limits, `413` for the body limit, `417`, `501`, `505`, and `400` for
    /// everything malformed or ambiguous.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge(_) | HttpError::TooManyHeaders(_) => 431,
            HttpError::BodyTooLarge(_) => 413,
            HttpError::UnsupportedTransferCoding => 501,
            HttpError::UnsupportedVersion => 505,
            HttpError::UnsupportedExpectation => 417,
            _ => 400,
        }
    }
}
