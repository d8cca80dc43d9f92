//! Frames behind a big-endian length prefix of 1, 2 or 4 bytes (Twisted's
//! `Int8StringReceiver`, `Int16StringReceiver`, `Int32StringReceiver`).

use bytes::{Buf, Bytes, BytesMut};

use super::Codec;

/// The default maximum frame length of 4-byte prefixes: 1 MiB. One- and
/// two-byte prefixes default to their own maximum (255 and 65,535 bytes).
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 1024 * 1024;

/// The size of the length prefix.
///
/// ```
/// use torsion::protocols::{LengthPrefixed, PrefixLen};
///
/// // Twisted's Int16StringReceiver: two-byte big-endian prefixes.
/// let codec = LengthPrefixed::new(PrefixLen::U16);
/// assert_eq!(PrefixLen::U16.size(), 2);
/// # let _ = codec;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrefixLen {
    /// One byte: frames up to 255 bytes.
    U8,
    /// Two bytes, big-endian: frames up to 65,535 bytes.
    U16,
    /// Four bytes, big-endian: frames up to 4 GiB - 1 (subject to the limit).
    U32,
}

impl PrefixLen {
    /// The prefix's size in bytes.
    pub fn size(self) -> usize {
        match self {
            PrefixLen::U8 => 1,
            PrefixLen::U16 => 2,
            PrefixLen::U32 => 4,
        }
    }

    /// The longest frame the prefix can announce.
    pub fn max_len(self) -> usize {
        match self {
            PrefixLen::U8 => u8::MAX as usize,
            PrefixLen::U16 => u16::MAX as usize,
            PrefixLen::U32 => u32::MAX as usize,
        }
    }
}

/// Errors of the [`LengthPrefixed`] codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LengthPrefixedError {
    /// The peer announced a frame longer than the limit.
    #[error("frame of {len} bytes announced, the limit is {max}")]
    FrameTooLong {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame to send is longer than the prefix can announce.
    #[error("frame of {len} bytes is too long for a {prefix}-byte length prefix")]
    TooLongForPrefix {
        /// The frame's length.
        len: usize,
        /// The prefix size in bytes.
        prefix: usize,
    },
    /// A frame to send is longer than the limit the peer would enforce.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    SendTooLong {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Frames behind a big-endian length prefix.
///
/// ```
/// use bytes::BytesMut;
/// use torsion::protocols::{Codec, LengthPrefixed, LengthPrefixedError, PrefixLen};
///
/// let mut codec = LengthPrefixed::new(PrefixLen::U8);
/// let mut wire = BytesMut::new();
/// codec.encode(b"hi", &mut wire).unwrap();
/// assert_eq!(&wire[..], b"\x02hi");
/// assert!(matches!(
///     codec.encode(&[0; 256], &mut wire),
///     Err(LengthPrefixedError::TooLongForPrefix { len: 256, prefix: 1 })
/// ));
/// assert_eq!(codec.decode(&mut wire).unwrap().as_deref(), Some(&b"hi"[..]));
/// ```
#[derive(Debug, Clone)]
pub struct LengthPrefixed {
    prefix: PrefixLen,
    max: usize,
}

impl LengthPrefixed {
    /// A codec with `prefix`-sized lengths and the default limit.
    pub fn new(prefix: PrefixLen) -> Self {
        LengthPrefixed {
            prefix,
            max: prefix.max_len().min(DEFAULT_MAX_FRAME_LENGTH),
        }
    }

    /// Sets the maximum frame length (capped at what the prefix can announce).
    pub fn max_frame_len(mut self, max: usize) -> Self {
        self.max = max.min(self.prefix.max_len());
        self
    }

    /// The maximum frame length.
    pub fn frame_limit(&self) -> usize {
        self.max
    }

    /// The prefix size.
    pub fn prefix(&self) -> PrefixLen {
        self.prefix
    }
}

impl Codec for LengthPrefixed {
    type Frame = Bytes;
    type Item = [u8];
    type Error = LengthPrefixedError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, LengthPrefixedError> {
        let n = self.prefix.size();
        if buf.len() < n {
            return Ok(None);
        }
        let len = match self.prefix {
            PrefixLen::U8 => buf[0] as usize,
            PrefixLen::U16 => u16::from_be_bytes([buf[0], buf[1]]) as usize,
            PrefixLen::U32 => u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize,
        };
        if len > self.max {
            return Err(LengthPrefixedError::FrameTooLong { len, max: self.max });
        }
        if buf.len() < n + len {
            buf.reserve(n + len - buf.len());
            return Ok(None);
        }
        buf.advance(n);
        Ok(Some(buf.split_to(len).freeze()))
    }

    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), LengthPrefixedError> {
        let len = item.len();
        if len > self.prefix.max_len() {
            return Err(LengthPrefixedError::TooLongForPrefix {
                len,
                prefix: self.prefix.size(),
            });
        }
        if len > self.max {
            return Err(LengthPrefixedError::SendTooLong { len, max: self.max });
        }
        dst.reserve(self.prefix.size() + len);
        match self.prefix {
            PrefixLen::U8 => dst.extend_from_slice(&[len as u8]),
            PrefixLen::U16 => dst.extend_from_slice(&(len as u16).to_be_bytes()),
            PrefixLen::U32 => dst.extend_from_slice(&(len as u32).to_be_bytes()),
        }
        dst.extend_from_slice(item);
        Ok(())
    }

    fn max_buffered(&self) -> usize {
        self.prefix.size().saturating_add(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_round_trips_at_its_bounds() {
        for (prefix, sizes) in [
            (PrefixLen::U8, vec![0, 1, 255]),
            (PrefixLen::U16, vec![0, 256, 65535]),
            (PrefixLen::U32, vec![0, 65536, DEFAULT_MAX_FRAME_LENGTH]),
        ] {
            let mut c = LengthPrefixed::new(prefix);
            let mut wire = BytesMut::new();
            for &s in &sizes {
                c.encode(&vec![7u8; s], &mut wire).unwrap();
            }
            for &s in &sizes {
                assert_eq!(c.decode(&mut wire).unwrap().unwrap().len(), s);
            }
            assert_eq!(c.decode(&mut wire).unwrap(), None);
        }
    }

    #[test]
    fn too_long_to_send_is_an_error_value_and_writes_nothing() {
        let mut c = LengthPrefixed::new(PrefixLen::U16);
        let mut wire = BytesMut::new();
        assert_eq!(
            c.encode(&vec![0; 65536], &mut wire),
            Err(LengthPrefixedError::TooLongForPrefix {
                len: 65536,
                prefix: 2
            })
        );
        let mut c = LengthPrefixed::new(PrefixLen::U32).max_frame_len(10);
        assert_eq!(
            c.encode(&[0; 11], &mut wire),
            Err(LengthPrefixedError::SendTooLong { len: 11, max: 10 })
        );
        assert!(wire.is_empty());
    }

    #[test]
    fn an_announced_length_over_the_limit_fails_before_buffering() {
        let mut c = LengthPrefixed::new(PrefixLen::U32);
        let mut buf = BytesMut::from(&b"\xff\xff\xff\xff"[..]);
        assert_eq!(
            c.decode(&mut buf),
            Err(LengthPrefixedError::FrameTooLong {
                len: u32::MAX as usize,
                max: DEFAULT_MAX_FRAME_LENGTH
            })
        );
        assert!(buf.capacity() < 1024);
    }
}
