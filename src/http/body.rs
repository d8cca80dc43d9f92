//! Message bodies on the wire: [`BodyDecoder`] for `Content-Length`,
//! chunked (trailers read and dropped) and close-delimited bodies, and the
//! chunked encoding's framing pieces.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::Framing;
use super::error::{HttpError, Limits};

/// The longest chunk-size line accepted (size, extensions, CRLF).
pub const MAX_CHUNK_LINE: usize = 4096;

/// What a [`BodyDecoder`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEvent {
    /// The next piece of the body.
    Data(Bytes),
    /// The body is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// Decodes one body, in pieces as the bytes arrive, never holding more than
/// one chunk-size line or trailer line of its own. The total is bounded by
/// [`Limits::max_body_size`]; trailers by [`Limits::max_head_size`].
///
/// ```
/// use bytes::BytesMut;
/// use torsion::http::codec::Framing;
/// use torsion::http::{BodyDecoder, BodyEvent, Limits};
///
/// let mut body = BodyDecoder::new(Framing::Chunked, &Limits::default());
/// let mut buf = BytesMut::from(&b"5\r\nhel"[..]);
/// assert_eq!(body.decode(&mut buf)?, Some(BodyEvent::Data("hel".into())));
/// assert_eq!(body.decode(&mut buf)?, None); // more bytes needed
/// buf.extend_from_slice(b"lo\r\n0\r\n\r\n");
/// assert_eq!(body.decode(&mut buf)?, Some(BodyEvent::Data("lo".into())));
/// assert_eq!(body.decode(&mut buf)?, Some(BodyEvent::End));
/// assert_eq!(body.received(), 5);
/// # Ok::<(), torsion::http::HttpError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    kind: Kind,
    received: u64,
    max_body: u64,
    trailer_bytes: usize,
    max_trailers: usize,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing, limits: &Limits) -> BodyDecoder {
        let kind = match framing {
            Framing::None | Framing::Length(0) => Kind::Done,
            Framing::Length(n) => Kind::Length(n),
            Framing::Chunked => Kind::Chunked(Chunk::Size),
            Framing::UntilClose => Kind::UntilClose,
        };
        BodyDecoder {
            kind,
            received: 0,
            max_body: limits.max_body_size,
            trailer_bytes: 0,
            max_trailers: limits.max_head_size,
        }
    }

    /// Whether the body ends when the peer closes.
    pub fn ends_at_close(&self) -> bool {
        self.kind == Kind::UntilClose
    }

    /// Body bytes decoded so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    fn count(&mut self, n: usize) -> Result<(), HttpError> {
        self.received += n as u64;
        if self.received > self.max_body {
            return Err(HttpError::BodyTooLarge(self.max_body));
        }
        Ok(())
    }

    /// Takes what it can from the front of `buf`: `Ok(None)` when more bytes
    /// are needed. Data comes out without a copy (split off `buf`).
    ///
    /// # Errors
    /// [`HttpError::BadChunk`], [`HttpError::BodyTooLarge`], or
    /// [`HttpError::HeadTooLarge`] for trailers past the head limit.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BodyEvent>, HttpError> {
        loop {
            match self.kind {
                Kind::Done => return Ok(Some(BodyEvent::End)),
                Kind::Length(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    self.count(n)?;
                    let data = buf.split_to(n).freeze();
                    self.kind = if left == n as u64 {
                        Kind::Done
                    } else {
                        Kind::Length(left - n as u64)
                    };
                    return Ok(Some(BodyEvent::Data(data)));
                }
                Kind::UntilClose => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = buf.len();
                    self.count(n)?;
                    return Ok(Some(BodyEvent::Data(buf.split_to(n).freeze())));
                }
                Kind::Chunked(Chunk::Size) => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        if size > self.max_body.saturating_sub(self.received) {
                            return Err(HttpError::BodyTooLarge(self.max_body));
                        }
                        self.kind = Kind::Chunked(if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        });
                    }
                    Ok(httparse::Status::Partial) => {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(HttpError::BadChunk("chunk-size line too long"));
                        }
                        return Ok(None);
                    }
                    Err(_) => return Err(HttpError::BadChunk("invalid chunk size")),
                },
                Kind::Chunked(Chunk::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    self.count(n)?;
                    let data = buf.split_to(n).freeze();
                    self.kind = Kind::Chunked(if left == n as u64 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n as u64)
                    });
                    return Ok(Some(BodyEvent::Data(data)));
                }
                Kind::Chunked(Chunk::DataEnd) => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(HttpError::BadChunk("no CRLF after chunk data"));
                        }
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(HttpError::BadChunk("no CRLF after chunk data"));
                    }
                    buf.advance(2);
                    self.kind = Kind::Chunked(Chunk::Size);
                }
                Kind::Chunked(Chunk::Trailers) => {
                    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                        if self.trailer_bytes + buf.len() > self.max_trailers {
                            return Err(HttpError::HeadTooLarge(self.max_trailers));
                        }
                        return Ok(None);
                    };
                    if nl == 0 || buf[nl - 1] != b'\r' {
                        return Err(HttpError::BadChunk("trailer line without CRLF"));
                    }
                    self.trailer_bytes += nl + 1;
                    if self.trailer_bytes > self.max_trailers {
                        return Err(HttpError::HeadTooLarge(self.max_trailers));
                    }
                    let line_empty = nl == 1;
                    if !line_empty && matches!(buf[0], b' ' | b'\t') {
                        return Err(HttpError::BadChunk("folded trailer line"));
                    }
                    buf.advance(nl + 1);
                    if line_empty {
                        self.kind = Kind::Done;
                    }
                }
            }
        }
    }
}

/// The line that starts a chunk of `len` bytes (`len` must not be 0: that
/// is [`LAST_CHUNK`]).
pub fn chunk_header(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// What follows each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk and an empty trailer: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Encodes `data` as one chunk (empty data encodes to nothing, since an
/// empty chunk would end the body).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(CHUNK_END);
}
