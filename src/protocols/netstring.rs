//! Netstrings (<https://cr.yp.to/proto/netstrings.txt>): `5:hello,`.

use bytes::{Buf, Bytes, BytesMut};

use super::Codec;

/// The default maximum netstring length: 1 MiB.
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 1024 * 1024;

/// Errors of the [`Netstring`] codec. A decode error means the peer is broken:
/// the adapter closes the connection with the error's text as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetstringError {
    /// The length is not a decimal number (a non-digit, an empty length, or a
    /// leading zero).
    #[error("malformed netstring length: expected decimal digits and ':', got byte {byte:#04x} at offset {offset}")]
    BadLength {
        /// The offending byte.
        byte: u8,
        /// Its offset from the netstring's start.
        offset: usize,
    },
    /// The announced (or the sent) length is over the limit.
    #[error("netstring of {len} bytes or more, the limit is {max}")]
    TooLong {
        /// The length announced so far.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The byte after the data is not `,`.
    #[error("malformed netstring: expected ',' after {len} bytes of data, got byte {byte:#04x}")]
    MissingComma {
        /// The announced length.
        len: usize,
        /// The byte found instead.
        byte: u8,
    },
}

/// The netstring codec.
///
/// ```
/// use bytes::BytesMut;
/// use torsion::protocols::{Codec, Netstring, NetstringError};
///
/// let mut codec = Netstring::new();
/// let mut buf = BytesMut::from(&b"3:abc,0:,"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap().as_deref(), Some(&b"abc"[..]));
/// assert_eq!(codec.decode(&mut buf).unwrap().as_deref(), Some(&b""[..]));
/// let mut bad = BytesMut::from(&b"3:abc;"[..]);
/// assert_eq!(
///     codec.decode(&mut bad),
///     Err(NetstringError::MissingComma { len: 3, byte: b';' })
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Netstring {
    max: usize,
}

impl Default for Netstring {
    fn default() -> Self {
        Self::new()
    }
}

impl Netstring {
    /// A codec with the default limit.
    pub fn new() -> Self {
        Netstring {
            max: DEFAULT_MAX_FRAME_LENGTH,
        }
    }

    /// Sets the maximum netstring length.
    pub fn max_frame_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// The maximum netstring length.
    pub fn frame_limit(&self) -> usize {
        self.max
    }

    fn digits(&self) -> usize {
        self.max.checked_ilog10().map_or(1, |d| d as usize + 1)
    }
}

impl Codec for Netstring {
    type Frame = Bytes;
    type Item = [u8];
    type Error = NetstringError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, NetstringError> {
        let mut len: usize = 0;
        let mut colon = None;
        for (i, &b) in buf.iter().enumerate() {
            match b {
                b':' if i > 0 => {
                    colon = Some(i);
                    break;
                }
                b'0'..=b'9' if !(i == 1 && buf[0] == b'0') => {
                    len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(usize::from(b - b'0')))
                        .unwrap_or(usize::MAX);
                    if len > self.max {
                        return Err(NetstringError::TooLong { len, max: self.max });
                    }
                }
                _ => return Err(NetstringError::BadLength { byte: b, offset: i }),
            }
        }
        let Some(colon) = colon else {
            return Ok(None);
        };
        let total = len.saturating_add(colon + 2);
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let comma = buf[total - 1];
        if comma != b',' {
            return Err(NetstringError::MissingComma { len, byte: comma });
        }
        buf.advance(colon + 1);
        let frame = buf.split_to(len).freeze();
        buf.advance(1);
        Ok(Some(frame))
    }

    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), NetstringError> {
        if item.len() > self.max {
            return Err(NetstringError::TooLong {
                len: item.len(),
                max: self.max,
            });
        }
        let head = item.len().to_string();
        dst.reserve(head.len() + item.len() + 2);
        dst.extend_from_slice(head.as_bytes());
        dst.extend_from_slice(b":");
        dst.extend_from_slice(item);
        dst.extend_from_slice(b",");
        Ok(())
    }

    fn max_buffered(&self) -> usize {
        self.max.saturating_add(self.digits() + 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Bytes>, NetstringError> {
        let mut c = Netstring::new().max_frame_len(100);
        let mut buf = BytesMut::from(input);
        let mut out = vec![];
        while let Some(f) = c.decode(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn malformed_inputs_name_the_problem() {
        assert_eq!(
            decode_all(b":,"),
            Err(NetstringError::BadLength {
                byte: b':',
                offset: 0
            })
        );
        assert_eq!(
            decode_all(b"01:a,"),
            Err(NetstringError::BadLength {
                byte: b'1',
                offset: 1
            })
        );
        assert_eq!(
            decode_all(b"1x"),
            Err(NetstringError::BadLength {
                byte: b'x',
                offset: 1
            })
        );
        assert_eq!(
            decode_all(b"101"),
            Err(NetstringError::TooLong { len: 101, max: 100 })
        );
        assert_eq!(
            decode_all(b"99999999999999999999999"),
            Err(NetstringError::TooLong { len: 999, max: 100 })
        );
        assert_eq!(decode_all(b"100:"), Ok(vec![]));
        assert_eq!(
            decode_all(b"0:,1:a,2:"),
            Ok(vec![Bytes::new(), Bytes::from("a")])
        );
    }

    #[test]
    fn max_buffered_covers_the_longest_frame() {
        let c = Netstring::new().max_frame_len(100);
        assert_eq!(c.max_buffered(), b"100:".len() + 100 + 1);
        assert_eq!(Netstring::new().max_frame_len(0).max_buffered(), 3);
    }
}
