//! Response bodies pulled through the transport's producer
//! ([`Context::stream_from`](crate::Context::stream_from)), framed on the way:
//! chunked, or counted against a declared `Content-Length`.

use std::collections::VecDeque;
use std::io;

use bytes::Bytes;

use super::body::{chunk_header, CHUNK_END, LAST_CHUNK};
use super::response::BodyStream;

/// How a streamed body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// Exactly this many bytes must come.
    Length(u64),
    /// Chunked.
    Chunked,
    /// As they come; the connection closes after.
    Raw,
}

/// The body's pieces with their framing.
pub(crate) struct Framed {
    source: BodyStream,
    wire: Wire,
    sent: u64,
    pending: VecDeque<Bytes>,
    done: bool,
}

impl Framed {
    pub(crate) fn new(source: BodyStream, wire: Wire) -> Framed {
        Framed {
            source,
            wire,
            sent: 0,
            pending: VecDeque::new(),
            done: false,
        }
    }
}

impl Iterator for Framed {
    type Item = io::Result<Bytes>;

    fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(Ok(b));
            }
            if self.done {
                return None;
            }
            match self.source.next() {
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    self.sent += chunk.len() as u64;
                    match self.wire {
                        Wire::Length(n) if self.sent > n => {
                            self.done = true;
                            return Some(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("body longer than its Content-Length {n}"),
                            )));
                        }
                        Wire::Chunked => {
                            self.pending.push_back(chunk_header(chunk.len()));
                            self.pending.push_back(chunk);
                            self.pending.push_back(Bytes::from_static(CHUNK_END));
                        }
                        _ => return Some(Ok(chunk)),
                    }
                }
                None => {
                    self.done = true;
                    match self.wire {
                        Wire::Length(n) if self.sent != n => {
                            return Some(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!("body ended after {} of {n} bytes", self.sent),
                            )));
                        }
                        Wire::Chunked => return Some(Ok(Bytes::from_static(LAST_CHUNK))),
                        _ => return None,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: Framed) -> Result<Vec<u8>, io::Error> {
        let mut out = Vec::new();
        for p in f {
            out.extend_from_slice(&p?);
        }
        Ok(out)
    }

    fn src(parts: &[&'static str]) -> BodyStream {
        Box::new(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p.as_bytes())))
                .collect::<Vec<_>>()
                .into_iter(),
        )
    }

    #[test]
    fn chunked_framing() {
        let out = collect(Framed::new(src(&["hello", "", "world!"]), Wire::Chunked)).unwrap();
        assert_eq!(out, b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n");
    }

    #[test]
    fn declared_length_is_enforced() {
        assert!(collect(Framed::new(src(&["abc"]), Wire::Length(3))).is_ok());
        assert!(collect(Framed::new(src(&["abc"]), Wire::Length(2))).is_err());
        assert!(collect(Framed::new(src(&["abc"]), Wire::Length(4))).is_err());
    }
}
