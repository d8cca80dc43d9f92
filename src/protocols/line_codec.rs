//! The sans-IO half of line framing, re-exported from [`line`](super::line).

use bytes::{Buf, Bytes, BytesMut};

use super::line::{DEFAULT_DELIMITER, DEFAULT_MAX_LINE_LENGTH};
use super::Codec;

/// Errors of line framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// A line (received or to send) is longer than the limit.
    #[error("line longer than {max} bytes")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// A line to send contains the delimiter (or, by default, a `\n`), so it
    /// would arrive as two lines.
    #[error("line to send contains the delimiter")]
    ContainsDelimiter,
}

/// Finds `delim` in `hay` at or after `from`.
pub(crate) fn find(hay: &[u8], from: usize, delim: &[u8]) -> Option<usize> {
    let n = delim.len();
    let first = delim[0];
    let mut i = from;
    while i + n <= hay.len() {
        let p = hay[i..=hay.len() - n].iter().position(|&b| b == first)?;
        let s = i + p;
        if &hay[s..s + n] == delim {
            return Some(s);
        }
        i = s + 1;
    }
    None
}

/// Delimited lines, sans-IO.
///
/// By default a received line ends at `\n`, and a `\r` just before it is
/// removed too, so lines ending in `\r\n` (telnet, most internet protocols)
/// and in `\n` (`nc`, Unix tools) both work; lines are sent with `\r\n`.
/// [`delimiter`](Self::delimiter) sets one exact delimiter for both directions
/// instead (`.delimiter(&b"\r\n"[..])` to accept `\r\n` only).
///
/// A received line longer than the limit is an error as soon as it is
/// certain: when its delimiter arrives, or when more than `max + delimiter
/// length - 1` bytes are buffered without one (a line of exactly the maximum
/// whose delimiter is split across reads is fine).
///
/// ```
/// use bytes::BytesMut;
/// use torsion::protocols::{Codec, LineCodec, LineError};
///
/// let mut codec = LineCodec::new().max_line_length(5);
/// let mut buf = BytesMut::from(&b"hello\r\nnc\nworld!\r\n"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap().as_deref(), Some(&b"hello"[..]));
/// assert_eq!(codec.decode(&mut buf).unwrap().as_deref(), Some(&b"nc"[..]));
/// assert_eq!(codec.decode(&mut buf), Err(LineError::LineTooLong { max: 5 }));
///
/// // Sending: the line and `\r\n`.
/// let mut out = BytesMut::new();
/// codec.encode(b"hi", &mut out).unwrap();
/// assert_eq!(&out[..], b"hi\r\n");
///
/// // One exact delimiter: a bare `\n` is then part of the line.
/// let mut strict = LineCodec::new().delimiter(&b"\r\n"[..]);
/// let mut buf = BytesMut::from(&b"a\nb\r\n"[..]);
/// assert_eq!(strict.decode(&mut buf).unwrap().as_deref(), Some(&b"a\nb"[..]));
/// ```
#[derive(Debug, Clone)]
pub struct LineCodec {
    pub(crate) delimiter: Bytes,
    pub(crate) max: usize,
    /// Receiving: a line ends at `\n`, a `\r` before it removed (the default,
    /// until a delimiter is set).
    pub(crate) lenient: bool,
    /// Bytes of the buffer already known to hold no delimiter start.
    scanned: usize,
}

impl Default for LineCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl LineCodec {
    /// Lines of at most [`DEFAULT_MAX_LINE_LENGTH`] bytes, received ending in
    /// `\n` or `\r\n`, sent ending in `\r\n`.
    pub fn new() -> Self {
        LineCodec {
            delimiter: Bytes::from_static(DEFAULT_DELIMITER),
            max: DEFAULT_MAX_LINE_LENGTH,
            lenient: true,
            scanned: 0,
        }
    }

    /// Sets one exact delimiter, for receiving and sending (so `\n` alone no
    /// longer ends a received line unless it is the delimiter).
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn delimiter(mut self, delimiter: impl Into<Bytes>) -> Self {
        let d = delimiter.into();
        assert!(!d.is_empty(), "the line delimiter must not be empty");
        self.delimiter = d;
        self.lenient = false;
        self
    }

    /// What ends a received line: `\n` by default, else the delimiter.
    pub(crate) fn recv_delimiter(&self) -> &[u8] {
        if self.lenient {
            b"\n"
        } else {
            &self.delimiter
        }
    }

    /// Where the line that [`recv_delimiter`](Self::recv_delimiter) ends at
    /// `pos` of `rest` ends: before a `\r` there, by default.
    pub(crate) fn line_end(&self, rest: &[u8], pos: usize) -> usize {
        if self.lenient && pos > 0 && rest[pos - 1] == b'\r' {
            pos - 1
        } else {
            pos
        }
    }

    /// How many bytes past the limit a line may take in the buffer with its
    /// ending: the delimiter's length, or 2 (`\r\n`) by default.
    pub(crate) fn ending_len(&self) -> usize {
        if self.lenient {
            2
        } else {
            self.delimiter.len()
        }
    }

    /// Sets the maximum line length (delimiter excluded).
    pub fn max_line_length(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// The delimiter.
    pub fn delimiter_bytes(&self) -> &[u8] {
        &self.delimiter
    }

    /// The maximum line length.
    pub fn line_limit(&self) -> usize {
        self.max
    }
}

impl Codec for LineCodec {
    type Frame = Bytes;
    type Item = [u8];
    type Error = LineError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, LineError> {
        let dlen = self.recv_delimiter().len();
        match find(buf, self.scanned, self.recv_delimiter()) {
            Some(pos) => {
                self.scanned = 0;
                let end = self.line_end(buf, pos);
                if end > self.max {
                    return Err(LineError::LineTooLong { max: self.max });
                }
                let line = buf.split_to(end).freeze();
                buf.advance(pos - end + dlen);
                Ok(Some(line))
            }
            None if buf.len() >= self.max.saturating_add(self.ending_len()) => {
                Err(LineError::LineTooLong { max: self.max })
            }
            None => {
                self.scanned = buf.len().saturating_sub(dlen - 1);
                Ok(None)
            }
        }
    }

    fn encode(&mut self, line: &[u8], dst: &mut BytesMut) -> Result<(), LineError> {
        if line.len() > self.max {
            return Err(LineError::LineTooLong { max: self.max });
        }
        if find(line, 0, &self.delimiter).is_some() || (self.lenient && line.contains(&b'\n')) {
            return Err(LineError::ContainsDelimiter);
        }
        dst.reserve(line.len() + self.delimiter.len());
        dst.extend_from_slice(line);
        dst.extend_from_slice(&self.delimiter);
        Ok(())
    }

    fn max_buffered(&self) -> usize {
        self.max.saturating_add(self.ending_len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_handles_partial_and_multibyte_delimiters() {
        assert_eq!(find(b"ab\r\ncd", 0, b"\r\n"), Some(2));
        assert_eq!(find(b"a\rb\r", 0, b"\r\n"), None);
        assert_eq!(find(b"xxabab", 0, b"abab"), Some(2));
        assert_eq!(find(b"aab", 0, b"ab"), Some(1));
        assert_eq!(find(b"ab\nab\n", 3, b"\n"), Some(5));
        assert_eq!(find(b"", 0, b"\n"), None);
    }

    #[test]
    fn codec_limit_is_exact() {
        let mut c = LineCodec::new().max_line_length(3);
        // Exactly the maximum, delimiter split: fine.
        let mut buf = BytesMut::from(&b"abc\r"[..]);
        assert_eq!(c.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\n");
        assert_eq!(c.decode(&mut buf).unwrap().as_deref(), Some(&b"abc"[..]));
        // One over, unterminated: an error once it is certain.
        let mut buf = BytesMut::from(&b"abcd"[..]);
        assert_eq!(c.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"x");
        assert_eq!(c.decode(&mut buf), Err(LineError::LineTooLong { max: 3 }));
        assert_eq!(c.max_buffered(), 4);
    }

    #[test]
    fn encode_refuses_what_would_not_come_back_whole() {
        let mut c = LineCodec::new().max_line_length(4);
        let mut out = BytesMut::new();
        assert_eq!(
            c.encode(b"a\r\nb", &mut out),
            Err(LineError::ContainsDelimiter)
        );
        assert_eq!(
            c.encode(b"abcde", &mut out),
            Err(LineError::LineTooLong { max: 4 })
        );
        assert!(out.is_empty());
        c.encode(b"a\rb", &mut out).unwrap();
        assert_eq!(&out[..], b"a\rb\r\n");
    }
}
