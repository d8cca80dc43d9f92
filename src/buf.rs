//! The write buffer shared by every stream transport.
//!
//! Small writes are copied into one contiguous tail, so ten small writes leave as
//! one buffer; a large [`Bytes`] is queued as it is, without a copy. The reactor
//! hands the chunks to the kernel with one vectored write and keeps only what the
//! kernel refused.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};

/// `Bytes` at least this long are queued by reference instead of copied.
const QUEUE_BY_REF: usize = 1024;
/// At most this many slices go to one `writev` call.
const MAX_IOVECS: usize = 64;

/// Ordered bytes waiting to be written.
#[derive(Debug, Default)]
pub(crate) struct WriteBuf {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
    /// (offset, length) of bytes gathered by reference to the input of the
    /// current `data_received` call (see `Context::write`); counted in `len`.
    /// Only ever the sole content of the buffer.
    input_ref: Option<(usize, usize)>,
}

impl WriteBuf {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push_slice(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
        self.len += data.len();
    }

    pub(crate) fn push_bytes(&mut self, data: Bytes) {
        if data.len() < QUEUE_BY_REF {
            return self.push_slice(&data);
        }
        self.seal_tail();
        self.len += data.len();
        self.chunks.push_back(data);
    }

    /// Appends what `fill` writes to the tail, in place (a message built
    /// piece by piece needs no buffer of its own, nor a copy from it).
    #[inline]
    pub(crate) fn fill_tail<R>(&mut self, fill: impl FnOnce(&mut BytesMut) -> R) -> R {
        let before = self.tail.len();
        let r = fill(&mut self.tail);
        self.len += self.tail.len() - before;
        r
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }

    /// Moves all of `other` behind what is already here.
    pub(crate) fn append(&mut self, other: &mut WriteBuf) {
        if other.is_empty() {
            return;
        }
        if other.chunks.is_empty() && self.chunks.is_empty() {
            self.tail.extend_from_slice(&other.tail);
            self.len += other.len;
            other.clear();
            return;
        }
        self.seal_tail();
        other.seal_tail();
        self.len += other.len;
        self.chunks.append(&mut other.chunks);
        other.len = 0;
    }

    /// Gathers `len` bytes at `off` of the current input by reference.
    #[inline]
    pub(crate) fn set_input_ref(&mut self, off: usize, len: usize) {
        debug_assert!(self.is_empty());
        self.input_ref = Some((off, len));
        self.len = len;
    }

    /// Takes the input reference out (the caller sends or copies those bytes).
    #[inline]
    pub(crate) fn take_input_ref(&mut self) -> Option<(usize, usize)> {
        let r = self.input_ref.take()?;
        self.len -= r.1;
        Some(r)
    }

    /// Drops everything, keeping the tail's capacity for reuse.
    pub(crate) fn clear(&mut self) {
        if self.len == 0 {
            return; // the common case after a full write: nothing to drop
        }
        self.input_ref = None;
        self.chunks.clear();
        self.tail.clear();
        self.len = 0;
    }

    /// The common case in one step: when everything is one contiguous tail, hand
    /// it to `w` in one call. `Some(Ok(()))`: all of it went and the buffer is
    /// empty. `None`: not that case, or the writer took only part (what it took
    /// is consumed); use the general path.
    #[inline]
    pub(crate) fn write_contiguous<W: io::Write>(&mut self, w: &mut W) -> Option<io::Result<()>> {
        if !self.chunks.is_empty() {
            return None;
        }
        match w.write(&self.tail) {
            Ok(n) if n == self.len => {
                self.tail.clear();
                self.len = 0;
                Some(Ok(()))
            }
            Ok(0) => Some(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                self.consume(n);
                None
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// Takes everything out as one `Bytes` list (used by in-memory transports).
    #[allow(dead_code)]
    pub(crate) fn take_all(&mut self) -> Vec<Bytes> {
        self.seal_tail();
        self.len = 0;
        self.chunks.drain(..).collect()
    }

    /// Writes as much as `w` takes, until it returns `WouldBlock` or everything is
    /// gone. Returns the number of bytes written; `Ok` with data left means the
    /// kernel refused the rest (`WouldBlock`).
    #[cfg(test)]
    pub(crate) fn write_to<W: io::Write>(&mut self, w: &mut W) -> io::Result<usize> {
        self.write_to_limited(w, usize::MAX)
    }

    /// Like `write_to`, but stops after `limit` bytes.
    pub(crate) fn write_to_limited<W: io::Write>(
        &mut self,
        w: &mut W,
        limit: usize,
    ) -> io::Result<usize> {
        let mut total = 0;
        while !self.is_empty() && total < limit {
            let left = limit - total;
            let res = if self.chunks.is_empty() {
                let n = self.tail.len().min(left);
                w.write(&self.tail[..n])
            } else if left < self.len {
                // Rate-limited: one chunk at a time is plenty.
                let c = &self.chunks[0];
                w.write(&c[..c.len().min(left)])
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut n = 0;
                for c in self.chunks.iter().take(MAX_IOVECS - 1) {
                    slices[n] = IoSlice::new(c);
                    n += 1;
                }
                if n < MAX_IOVECS - 1 || self.chunks.len() == n {
                    slices[n] = IoSlice::new(&self.tail);
                    n += 1;
                }
                w.write_vectored(&slices[..n])
            };
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.consume(n);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.tail.is_empty() && self.tail.capacity() > 64 * 1024 {
            // Do not pin a large allocation to a connection that went idle.
            self.tail = BytesMut::new();
        }
        Ok(total)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(c) if c.len() <= n => {
                    n -= c.len();
                    self.chunks.pop_front();
                }
                Some(c) => {
                    c.advance(n);
                    return;
                }
                None => {
                    if n == self.tail.len() {
                        // Everything went: keep the allocation's start, so the next
                        // write reuses it without `reserve` moving anything.
                        self.tail.clear();
                    } else {
                        self.tail.advance(n);
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `limit` bytes per call, then refuses.
    struct Stingy {
        got: Vec<u8>,
        per_call: usize,
        budget: usize,
        calls: usize,
    }

    impl io::Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.per_call - n).min(self.budget);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                self.budget -= take;
                if n == self.per_call || self.budget == 0 {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keeps_order_across_copies_and_references() {
        let mut b = WriteBuf::new();
        let mut expect = vec![];
        for i in 0..200u32 {
            let piece: Vec<u8> = (0..(i * 37 % 3000)).map(|j| (i + j) as u8).collect();
            expect.extend_from_slice(&piece);
            if i % 3 == 0 {
                b.push_bytes(Bytes::from(piece));
            } else {
                b.push_slice(&piece);
            }
        }
        assert_eq!(b.len(), expect.len());
        let mut w = Stingy {
            got: vec![],
            per_call: 7777,
            budget: 100_000,
            calls: 0,
        };
        let n = b.write_to(&mut w).unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(b.len(), expect.len() - 100_000);
        w.budget = usize::MAX;
        b.write_to(&mut w).unwrap();
        assert!(b.is_empty());
        assert_eq!(w.got, expect);
    }

    #[test]
    fn limited_writes_keep_the_rest() {
        let mut b = WriteBuf::new();
        b.push_slice(&vec![1u8; 100 * 1024]);
        b.push_bytes(Bytes::from(vec![2u8; 50 * 1024]));
        b.push_slice(&[3u8; 10]);
        let mut w = Stingy {
            got: vec![],
            per_call: usize::MAX,
            budget: usize::MAX,
            calls: 0,
        };
        while !b.is_empty() {
            assert!(b.write_to_limited(&mut w, 20_000).unwrap() <= 20_000);
        }
        assert_eq!(w.got.len(), 150 * 1024 + 10);
        assert!(w.got[..100 * 1024].iter().all(|&x| x == 1));
        assert!(w.got[100 * 1024..150 * 1024].iter().all(|&x| x == 2));
        assert_eq!(&w.got[150 * 1024..], &[3u8; 10]);
    }

    #[test]
    fn small_writes_gather_into_one_call() {
        let mut b = WriteBuf::new();
        for _ in 0..10 {
            b.push_slice(b"hello");
        }
        let mut w = Stingy {
            got: vec![],
            per_call: usize::MAX,
            budget: usize::MAX,
            calls: 0,
        };
        b.write_to(&mut w).unwrap();
        assert_eq!(w.calls, 1);
        assert_eq!(w.got.len(), 50);
    }

    #[test]
    fn append_preserves_order() {
        let mut a = WriteBuf::new();
        a.push_slice(b"ab");
        a.push_bytes(Bytes::from(vec![b'c'; 2000]));
        let mut o = WriteBuf::new();
        o.push_slice(b"de");
        a.append(&mut o);
        assert!(o.is_empty());
        let all: Vec<u8> = a.take_all().concat();
        assert_eq!(&all[..2], b"ab");
        assert_eq!(&all[2002..], b"de");
        assert_eq!(all.len(), 2004);
    }
}
