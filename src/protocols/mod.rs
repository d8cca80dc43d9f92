//! Framing: turning a byte stream into messages and back.
//!
//! TCP delivers bytes, not messages: one `data_received` can hold half a
//! message or ten of them, and how the bytes are cut changes from run to run.
//! The codecs here are *sans-IO* state machines: a [`Codec`] decodes frames from
//! a buffer, returning `Ok(None)` ("need more bytes": a normal value, not an
//! error) until a whole frame is there, and encodes frames into bytes. They
//! never see a socket, so they are tested by feeding them bytes, and
//! [`Framed`] turns any codec plus a [`FrameHandler`] into a
//! [`Protocol`].
//!
//! * [`LineReceiver`] (Twisted's `LineReceiver`): delimited lines, raw mode;
//! * [`LengthPrefixed`] (Twisted's `Int8/16/32StringReceiver`): frames behind a
//!   1, 2 or 4-byte big-endian length;
//! * [`Netstring`] (djb's netstrings, `5:hello,`).
//!
//! # Limits, and why they exist
//!
//! Every codec has a maximum frame length, checked **before** the frame is
//! buffered: a length prefix announcing 4 GiB is refused as soon as the prefix
//! arrives, an unterminated line as soon as it outgrows the limit. Without a
//! limit, one peer sending an endless line or a huge announced length makes
//! the server buffer without bound, and a handful of such peers exhausts its
//! memory; with it, the memory a connection can pin is the limit plus one
//! read (at most 64 KiB). The defaults are sized for protocols carrying
//! commands and small messages ([`line::DEFAULT_MAX_LINE_LENGTH`] is 16 KiB,
//! [`length_prefixed::DEFAULT_MAX_FRAME_LENGTH`] and
//! [`netstring::DEFAULT_MAX_FRAME_LENGTH`] 1 MiB); raise them for bulk
//! transfers, or better, stream bulk data in raw mode. A peer that breaks the
//! limit or the syntax gets its connection closed with
//! [`DisconnectReason::Protocol`] naming the problem (override
//! [`FrameHandler::invalid_frame`] or
//! [`LineHandler::line_length_exceeded`] to do otherwise); other connections
//! are not affected. Sending a frame the codec cannot represent (too long for
//! its prefix, a line containing the delimiter) is an error value from `send`,
//! never a corrupt stream.
//!
//! # Pausing
//!
//! A handler that calls `pause_reading` from inside `frame_received` gets no
//! more frames, even those already buffered, until it resumes. Resume with
//! [`Framing::resume_reading`] from a callback of the handler or, from a timer
//! or another connection, with [`Framed::resume_reading`] (reachable through
//! [`Context::call_later_self`] or
//! [`ConnectionRef::with_protocol`](crate::ConnectionRef::with_protocol)):
//! both deliver the frames already buffered at once. A bare
//! `Context::resume_reading` resumes the socket only, so buffered frames then
//! wait for the next bytes.

pub mod length_prefixed;
pub mod line;
mod line_codec;
pub mod netstring;

use std::fmt;
use std::ops::{Deref, DerefMut};

use bytes::BytesMut;

use crate::error::DisconnectReason;
use crate::protocol::Protocol;
use crate::transport::{flags, Context};

pub use length_prefixed::{LengthPrefixed, LengthPrefixedError, PrefixLen};
pub use line::{LineCodec, LineError, LineHandler, LineReceiver, Lines};
pub use netstring::{Netstring, NetstringError};

/// A sans-IO framing codec: bytes to frames and frames to bytes.
///
/// ```
/// use bytes::BytesMut;
/// use torsion::protocols::{Codec, Netstring};
///
/// let mut codec = Netstring::new();
/// let mut wire = BytesMut::new();
/// codec.encode(b"hello", &mut wire).unwrap();
/// assert_eq!(&wire[..], b"5:hello,");
///
/// let mut buf = BytesMut::from(&b"5:hel"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap(), None); // need more
/// buf.extend_from_slice(b"lo,");
/// assert_eq!(codec.decode(&mut buf).unwrap().as_deref(), Some(&b"hello"[..]));
/// assert!(buf.is_empty());
/// ```
pub trait Codec: 'static {
    /// What [`decode`](Self::decode) produces.
    type Frame;
    /// What [`encode`](Self::encode) takes.
    type Item: ?Sized;
    /// Malformed input, or a frame that cannot be encoded.
    type Error: std::error::Error + 'static;

    /// Takes one frame off the front of `buf`. `Ok(None)` means "need more
    /// bytes": `buf` is left for the next call, with at most
    /// [`max_buffered`](Self::max_buffered) bytes in it.
    ///
    /// # Errors
    /// The input cannot be a valid stream (bad syntax, a frame over the
    /// limit). The stream cannot be resynchronised in general: the connection
    /// should be closed.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, Self::Error>;

    /// Appends the encoding of `item` to `dst`.
    ///
    /// # Errors
    /// `item` cannot be represented (too long for the length prefix or the
    /// limit, contains the delimiter...). Nothing is appended then.
    fn encode(&mut self, item: &Self::Item, dst: &mut BytesMut) -> Result<(), Self::Error>;

    /// The most bytes an incomplete frame can occupy before `decode` must
    /// report an error: the memory bound of a decoder.
    fn max_buffered(&self) -> usize;
}

/// What a [`Framed`] protocol does with frames.
///
/// Every method but [`frame_received`](Self::frame_received) has a default.
///
/// ```
/// use torsion::protocols::{Framed, FrameHandler, Framing, LengthPrefixed, PrefixLen};
/// use torsion::testing::RecordingTransport;
///
/// /// Answers each length-prefixed frame with its reverse.
/// struct Reverse;
///
/// impl FrameHandler<LengthPrefixed> for Reverse {
///     fn frame_received(&mut self, ctx: &mut Framing<'_, '_, LengthPrefixed>, frame: bytes::Bytes) {
///         let mut back = frame.to_vec();
///         back.reverse();
///         ctx.send(&back).unwrap();
///     }
/// }
///
/// let codec = LengthPrefixed::new(PrefixLen::U16);
/// let mut t = RecordingTransport::new(Framed::new(codec, Reverse));
/// t.receive(&[0, 3, b'a', b'b']); // half a frame: nothing yet
/// t.receive(b"c");
/// assert_eq!(t.written(), &[0, 3, b'c', b'b', b'a']);
/// ```
pub trait FrameHandler<C: Codec>: 'static {
    /// The connection is established.
    fn connection_made(&mut self, ctx: &mut Framing<'_, '_, C>) {
        let _ = ctx;
    }

    /// A whole frame arrived.
    fn frame_received(&mut self, ctx: &mut Framing<'_, '_, C>, frame: C::Frame);

    /// The input is malformed. Default: close the connection with
    /// [`DisconnectReason::Protocol`] carrying the error's text. Nothing more
    /// is decoded from this connection afterwards.
    fn invalid_frame(&mut self, ctx: &mut Framing<'_, '_, C>, error: C::Error) {
        tracing::debug!(peer = %ctx.peer_addr(), %error, "invalid frame: closing");
        ctx.lose_connection_with(DisconnectReason::protocol(error.to_string()));
    }

    /// The connection ended (exactly once).
    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let _ = (ctx, reason);
    }

    /// See [`Protocol::read_connection_lost`].
    fn read_connection_lost(&mut self, ctx: &mut Framing<'_, '_, C>) {
        let _ = ctx;
    }

    /// See [`Protocol::write_connection_lost`].
    fn write_connection_lost(&mut self, ctx: &mut Framing<'_, '_, C>) {
        let _ = ctx;
    }

    /// See [`Protocol::pause_writing`].
    fn pause_writing(&mut self, ctx: &mut Framing<'_, '_, C>) {
        let _ = ctx;
    }

    /// See [`Protocol::resume_writing`].
    fn resume_writing(&mut self, ctx: &mut Framing<'_, '_, C>) {
        let _ = ctx;
    }
}

/// A codec plus a frame handler, as a [`Protocol`].
///
/// ```
/// use torsion::protocols::{FrameHandler, Framed, Framing, LengthPrefixed, PrefixLen};
/// use torsion::testing::RecordingTransport;
///
/// /// Answers every frame with its length, as a frame.
/// struct Lengths;
/// impl FrameHandler<LengthPrefixed> for Lengths {
///     fn frame_received(&mut self, ctx: &mut Framing<'_, '_, LengthPrefixed>, frame: bytes::Bytes) {
///         let answer = frame.len().to_string();
///         ctx.send(answer.as_bytes()).unwrap();
///     }
/// }
///
/// let codec = LengthPrefixed::new(PrefixLen::U16).max_frame_len(100);
/// let mut t = RecordingTransport::new(Framed::new(codec, Lengths));
/// t.receive(b"\x00\x03abc\x00");
/// t.receive(b"\x00");
/// assert_eq!(t.written(), b"\x00\x013\x00\x010");
/// // An announced length over the limit closes the connection at once.
/// t.receive(b"\x01\x00");
/// assert_eq!(
///     t.lost().unwrap().to_string(),
///     "protocol error: frame of 256 bytes announced, the limit is 100"
/// );
/// ```
pub struct Framed<C: Codec, H> {
    codec: C,
    handler: H,
    buf: BytesMut,
    scratch: BytesMut,
    /// The codec reported an error: decode nothing more.
    broken: bool,
}

impl<C: Codec, H> fmt::Debug for Framed<C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framed")
            .field("codec", &std::any::type_name::<C>())
            .field("buffered", &self.buf.len())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// The context a [`FrameHandler`] sees: the connection's [`Context`] (through
/// `Deref`) plus the codec, to send frames.
pub struct Framing<'a, 'b, C> {
    ctx: &'a mut Context<'b>,
    codec: &'a mut C,
    scratch: &'a mut BytesMut,
}

impl<C> fmt::Debug for Framing<'_, '_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framing")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl<'b, C> Deref for Framing<'_, 'b, C> {
    type Target = Context<'b>;
    fn deref(&self) -> &Context<'b> {
        self.ctx
    }
}

impl<'b, C> DerefMut for Framing<'_, 'b, C> {
    fn deref_mut(&mut self) -> &mut Context<'b> {
        self.ctx
    }
}

impl<C: Codec> Framing<'_, '_, C> {
    /// Encodes `item` and writes it. Like [`Context::write`], the bytes are
    /// dropped silently once the connection is closing.
    ///
    /// # Errors
    /// The codec cannot encode `item`; nothing is written then.
    pub fn send(&mut self, item: &C::Item) -> Result<(), C::Error> {
        send(self.ctx, self.codec, self.scratch, item)
    }

    /// The codec (to change its settings mid-stream).
    pub fn codec(&mut self) -> &mut C {
        self.codec
    }

    /// Resumes reading; buffered frames are delivered as soon as the current
    /// callback returns to the adapter.
    pub fn resume_reading(&mut self) {
        self.ctx.resume_reading();
    }
}

fn send<C: Codec>(
    ctx: &mut Context<'_>,
    codec: &mut C,
    scratch: &mut BytesMut,
    item: &C::Item,
) -> Result<(), C::Error> {
    scratch.clear();
    codec.encode(item, scratch)?;
    ctx.write(scratch);
    Ok(())
}

/// Whether the adapter should stop handing input to the handler.
pub(crate) fn stop_delivering(ctx: &Context<'_>) -> bool {
    ctx.conn
        .has(flags::READ_PAUSED | flags::CLOSING | flags::ABORT | flags::DEAD)
}

impl<C: Codec, H: FrameHandler<C>> Framed<C, H> {
    /// The protocol for `codec` and `handler`.
    pub fn new(codec: C, handler: H) -> Self {
        Framed {
            codec,
            handler,
            buf: BytesMut::new(),
            scratch: BytesMut::new(),
            broken: false,
        }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// Bytes received but not yet decoded into a frame.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Encodes and writes `item` from outside a handler callback (a timer,
    /// another connection's `with_protocol`).
    ///
    /// # Errors
    /// As [`Framing::send`].
    pub fn send(&mut self, ctx: &mut Context<'_>, item: &C::Item) -> Result<(), C::Error> {
        send(ctx, &mut self.codec, &mut self.scratch, item)
    }

    /// Resumes reading and delivers the frames already buffered.
    pub fn resume_reading(&mut self, ctx: &mut Context<'_>) {
        ctx.resume_reading();
        self.drain(ctx);
    }

    fn with<R>(
        &mut self,
        ctx: &mut Context<'_>,
        f: impl FnOnce(&mut H, &mut Framing<'_, '_, C>) -> R,
    ) -> R {
        let mut framing = Framing {
            ctx,
            codec: &mut self.codec,
            scratch: &mut self.scratch,
        };
        f(&mut self.handler, &mut framing)
    }

    /// Decodes and delivers buffered frames until paused, closing, or empty.
    fn drain(&mut self, ctx: &mut Context<'_>) {
        while !self.broken && !stop_delivering(ctx) {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => self.with(ctx, |h, f| h.frame_received(f, frame)),
                Ok(None) => return,
                Err(e) => {
                    self.broken = true;
                    self.buf = BytesMut::new();
                    self.with(ctx, |h, f| h.invalid_frame(f, e));
                }
            }
        }
    }
}

impl<C: Codec, H: FrameHandler<C>> Protocol for Framed<C, H> {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.with(ctx, |h, f| h.connection_made(f));
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, mut data: &[u8]) {
        // Append no more than the decoder can need at a time, so a flood of
        // bytes never sits in the buffer beyond the codec's bound.
        while !data.is_empty() {
            if self.broken || stop_delivering(ctx) {
                if !self.broken && ctx.is_reading_paused() {
                    // Paused mid-read: keep the rest, in order.
                    self.buf.extend_from_slice(data);
                }
                return;
            }
            let room = self
                .codec
                .max_buffered()
                .saturating_add(1)
                .saturating_sub(self.buf.len());
            let take = room.max(1).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.drain(ctx);
        }
    }

    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.buf = BytesMut::new();
        self.handler.connection_lost(ctx, reason);
    }

    fn read_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.with(ctx, |h, f| h.read_connection_lost(f));
    }

    fn write_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.with(ctx, |h, f| h.write_connection_lost(f));
    }

    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        self.with(ctx, |h, f| h.pause_writing(f));
    }

    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        self.with(ctx, |h, f| h.resume_writing(f));
    }
}
