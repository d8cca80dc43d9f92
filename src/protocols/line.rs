//! Lines: [`LineCodec`] (sans-IO) and [`LineReceiver`] (Twisted's
//! `LineReceiver`: lines, raw mode, an over-long-line hook, pausing).

use std::fmt;
use std::ops::{Deref, DerefMut};

use bytes::{Buf, Bytes, BytesMut};

use super::line_codec::find;
pub use super::line_codec::{LineCodec, LineError};
use super::{stop_delivering, Codec};
use crate::error::DisconnectReason;
use crate::protocol::Protocol;
use crate::transport::Context;

/// The default maximum line length, delimiter excluded: 16 KiB (Twisted's).
pub const DEFAULT_MAX_LINE_LENGTH: usize = 16 * 1024;
/// The default delimiter, the one lines are sent with. Received lines end at
/// `\n` or `\r\n` unless a delimiter is set
/// ([`LineReceiver::with_delimiter`]).
pub const DEFAULT_DELIMITER: &[u8] = b"\r\n";

/// What a [`LineReceiver`] does with lines. Only
/// [`line_received`](Self::line_received) is required.
///
/// ```
/// use torsion::protocols::{LineHandler, LineReceiver, Lines};
/// use torsion::testing::RecordingTransport;
/// use torsion::DisconnectReason;
///
/// /// A tiny command protocol: `PING` gets `PONG`, `QUIT` closes, anything else
/// /// an error line; a line over 64 bytes is answered and closed.
/// struct Commands;
///
/// impl LineHandler for Commands {
///     fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]) {
///         match line {
///             b"PING" => drop(lines.send_line(b"PONG")),
///             b"QUIT" => lines.lose_connection(),
///             _ => drop(lines.send_line(b"ERR unknown command")),
///         }
///     }
///
///     fn line_length_exceeded(&mut self, lines: &mut Lines<'_, '_>, _data: &[u8]) {
///         let _ = lines.send_line(b"ERR line too long");
///         lines.lose_connection_with(DisconnectReason::protocol("line too long"));
///     }
/// }
///
/// let mut t = RecordingTransport::new(LineReceiver::new(Commands).with_max_line_length(64));
/// // `\n` (nc) and `\r\n` (telnet) both end a line; replies end in `\r\n`.
/// t.receive(b"PING\nHELLO\r\nQUIT\r\n");
/// assert_eq!(t.written(), b"PONG\r\nERR unknown command\r\n");
/// assert_eq!(t.lost(), Some(&DisconnectReason::Done));
/// ```
pub trait LineHandler: 'static {
    /// The connection is established.
    fn connection_made(&mut self, lines: &mut Lines<'_, '_>) {
        let _ = lines;
    }

    /// A line arrived, without its delimiter.
    fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]);

    /// Bytes arrived in raw mode (see [`Lines::set_raw_mode`]). Default: close
    /// the connection with a protocol error, since the handler asked for raw
    /// mode without handling it.
    fn raw_data_received(&mut self, lines: &mut Lines<'_, '_>, data: &[u8]) {
        let _ = data;
        lines.lose_connection_with(DisconnectReason::protocol(
            "raw data received but the line handler does not take it",
        ));
    }

    /// A line longer than the limit arrived. `data` is the line, or, when it
    /// is detected before its delimiter, the part of it buffered so far (at
    /// most the limit plus the delimiter's length). Default: close the
    /// connection with [`DisconnectReason::Protocol`] ("line longer than N
    /// bytes"). A handler that keeps the connection open gets the next line
    /// next: the rest of the over-long one is skipped up to its delimiter
    /// (Twisted drops everything buffered instead, cutting later lines).
    fn line_length_exceeded(&mut self, lines: &mut Lines<'_, '_>, data: &[u8]) {
        tracing::debug!(peer = %lines.peer_addr(), buffered = data.len(), "line too long: closing");
        let max = lines.max_line_length();
        lines.lose_connection_with(DisconnectReason::protocol(format!(
            "line longer than {max} bytes"
        )));
    }

    /// The connection ended (exactly once).
    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let _ = (ctx, reason);
    }

    /// See [`Protocol::read_connection_lost`].
    fn read_connection_lost(&mut self, lines: &mut Lines<'_, '_>) {
        let _ = lines;
    }

    /// See [`Protocol::write_connection_lost`].
    fn write_connection_lost(&mut self, lines: &mut Lines<'_, '_>) {
        let _ = lines;
    }

    /// See [`Protocol::pause_writing`].
    fn pause_writing(&mut self, lines: &mut Lines<'_, '_>) {
        let _ = lines;
    }

    /// See [`Protocol::resume_writing`].
    fn resume_writing(&mut self, lines: &mut Lines<'_, '_>) {
        let _ = lines;
    }
}

/// Settings and requests a handler can change from its callbacks.
#[derive(Debug)]
struct Ctl {
    codec: LineCodec,
    raw: bool,
    clear: bool,
    extra: Option<Vec<u8>>,
    scratch: BytesMut,
}

/// What a [`LineHandler`] sees: the connection's [`Context`] (through `Deref`)
/// plus line operations.
pub struct Lines<'a, 'b> {
    ctx: &'a mut Context<'b>,
    ctl: &'a mut Ctl,
}

impl fmt::Debug for Lines<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lines")
            .field("ctx", &self.ctx)
            .field("raw", &self.ctl.raw)
            .finish_non_exhaustive()
    }
}

impl<'b> Deref for Lines<'_, 'b> {
    type Target = Context<'b>;
    fn deref(&self) -> &Context<'b> {
        self.ctx
    }
}

impl<'b> DerefMut for Lines<'_, 'b> {
    fn deref_mut(&mut self) -> &mut Context<'b> {
        self.ctx
    }
}

impl Lines<'_, '_> {
    /// Writes `line` and the delimiter. Dropped silently once the connection
    /// is closing, like [`Context::write`].
    ///
    /// # Errors
    /// [`LineError::LineTooLong`] over the limit, [`LineError::ContainsDelimiter`]
    /// if the peer would see two lines. Nothing is written then.
    pub fn send_line(&mut self, line: &[u8]) -> Result<(), LineError> {
        self.ctl.send(self.ctx, line)
    }

    /// From now on, bytes go to
    /// [`raw_data_received`](LineHandler::raw_data_received), starting with
    /// those after the current line.
    pub fn set_raw_mode(&mut self) {
        self.ctl.raw = true;
    }

    /// Back to lines; `extra` is parsed first, before any byte not yet
    /// delivered (pass the unused tail of a raw chunk here).
    pub fn set_line_mode(&mut self, extra: &[u8]) {
        self.ctl.raw = false;
        if !extra.is_empty() {
            self.ctl
                .extra
                .get_or_insert_with(Vec::new)
                .extend_from_slice(extra);
        }
    }

    /// Whether raw mode is on.
    pub fn is_raw_mode(&self) -> bool {
        self.ctl.raw
    }

    /// Drops every byte received and not yet delivered.
    pub fn clear_line_buffer(&mut self) {
        self.ctl.clear = true;
        self.ctl.extra = None;
    }

    /// The maximum line length.
    pub fn max_line_length(&self) -> usize {
        self.ctl.codec.max
    }

    /// Changes the maximum line length, effective for the next line.
    pub fn set_max_line_length(&mut self, max: usize) {
        self.ctl.codec.max = max;
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &[u8] {
        &self.ctl.codec.delimiter
    }

    /// Resumes reading; buffered lines are delivered as soon as the current
    /// callback returns.
    pub fn resume_reading(&mut self) {
        self.ctx.resume_reading();
    }
}

impl Ctl {
    fn send(&mut self, ctx: &mut Context<'_>, line: &[u8]) -> Result<(), LineError> {
        self.scratch.clear();
        self.codec.encode(line, &mut self.scratch)?;
        ctx.write(&self.scratch);
        Ok(())
    }
}

/// A [`Protocol`] that splits its input into lines for a [`LineHandler`].
///
/// Lines are the same however the input is cut, down to one byte per read.
/// Raw mode can be switched on and off from any callback without losing or
/// reordering a byte. Pausing reading from `line_received` stops delivery of
/// the lines already buffered too, until [`Lines::resume_reading`] (inside a
/// callback) or [`LineReceiver::resume_reading`] (from a timer or another
/// connection). Lines stop once the connection is closing.
///
/// ```
/// use torsion::protocols::{LineHandler, LineReceiver, Lines};
/// use torsion::testing::RecordingTransport;
///
/// struct Upper;
/// impl LineHandler for Upper {
///     fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]) {
///         lines.send_line(&line.to_ascii_uppercase()).unwrap();
///     }
/// }
///
/// let mut t = RecordingTransport::new(LineReceiver::new(Upper));
/// t.receive(b"hello\r\nwor");
/// t.receive(b"ld\r\n");
/// assert_eq!(t.written(), b"HELLO\r\nWORLD\r\n");
/// ```
pub struct LineReceiver<H> {
    handler: H,
    ctl: Ctl,
    buf: BytesMut,
    scanned: usize,
    /// Skipping the rest of an over-long line, up to its delimiter.
    discarding: bool,
}

impl<H> fmt::Debug for LineReceiver<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineReceiver")
            .field("codec", &self.ctl.codec)
            .field("raw", &self.ctl.raw)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<H: LineHandler> LineReceiver<H> {
    /// A receiver with the default line endings (lines received ending in
    /// `\n` or `\r\n`, sent with `\r\n`) and limit (16 KiB).
    pub fn new(handler: H) -> Self {
        LineReceiver {
            handler,
            ctl: Ctl {
                codec: LineCodec::new(),
                raw: false,
                clear: false,
                extra: None,
                scratch: BytesMut::new(),
            },
            buf: BytesMut::new(),
            scanned: 0,
            discarding: false,
        }
    }

    /// Sets one exact delimiter, for receiving and sending: a received line
    /// then ends at it only (`with_delimiter(&b"\r\n"[..])` refuses a bare
    /// `\n` as an ending).
    ///
    /// # Panics
    /// If `delimiter` is empty.
    pub fn with_delimiter(mut self, delimiter: impl Into<Bytes>) -> Self {
        self.ctl.codec = self.ctl.codec.delimiter(delimiter);
        self
    }

    /// Sets the maximum line length (delimiter excluded).
    pub fn with_max_line_length(mut self, max: usize) -> Self {
        self.ctl.codec.max = max;
        self
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Bytes received and not yet delivered.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Sends a line from outside a handler callback.
    ///
    /// # Errors
    /// As [`Lines::send_line`].
    pub fn send_line(&mut self, ctx: &mut Context<'_>, line: &[u8]) -> Result<(), LineError> {
        self.ctl.send(ctx, line)
    }

    /// Resumes reading and delivers what is already buffered.
    pub fn resume_reading(&mut self, ctx: &mut Context<'_>) {
        ctx.resume_reading();
        self.drain(ctx);
    }

    fn call<R>(
        &mut self,
        ctx: &mut Context<'_>,
        f: impl FnOnce(&mut H, &mut Lines<'_, '_>) -> R,
    ) -> R {
        let mut lines = Lines {
            ctx,
            ctl: &mut self.ctl,
        };
        f(&mut self.handler, &mut lines)
    }

    /// Delivers buffered input until paused, closing, or out of whole lines.
    fn drain(&mut self, ctx: &mut Context<'_>) {
        let LineReceiver {
            handler,
            ctl,
            buf,
            scanned,
            discarding,
        } = self;
        let mut off = 0;
        loop {
            if let Some(extra) = ctl.extra.take() {
                let mut joined = BytesMut::with_capacity(extra.len() + buf.len() - off);
                joined.extend_from_slice(&extra);
                joined.extend_from_slice(&buf[off..]);
                *buf = joined;
                off = 0;
                *scanned = 0;
            }
            if stop_delivering(ctx) {
                break;
            }
            let rest = &buf[off..];
            if ctl.raw {
                if rest.is_empty() {
                    break;
                }
                off = buf.len();
                *scanned = 0;
                handler.raw_data_received(&mut Lines { ctx, ctl }, rest);
            } else {
                let dlen = ctl.codec.recv_delimiter().len();
                let slack = ctl.codec.ending_len();
                let max = ctl.codec.max;
                let found = find(rest, *scanned, ctl.codec.recv_delimiter());
                if *discarding {
                    // Skipping the tail of an over-long line.
                    match found {
                        Some(pos) => {
                            off += pos + dlen;
                            *scanned = 0;
                            *discarding = false;
                            continue;
                        }
                        None => {
                            // Keep what could be the start of a split delimiter.
                            off += rest.len().saturating_sub(dlen - 1);
                            *scanned = 0;
                            break;
                        }
                    }
                }
                match found.map(|pos| (pos, ctl.codec.line_end(rest, pos))) {
                    Some((pos, end)) if end <= max => {
                        off += pos + dlen;
                        *scanned = 0;
                        handler.line_received(&mut Lines { ctx, ctl }, &rest[..end]);
                    }
                    Some((pos, end)) => {
                        off += pos + dlen;
                        *scanned = 0;
                        handler.line_length_exceeded(&mut Lines { ctx, ctl }, &rest[..end]);
                    }
                    None if rest.len() < max.saturating_add(slack) => {
                        *scanned = rest.len().saturating_sub(dlen - 1);
                        break;
                    }
                    None => {
                        // Keep what could be the start of a split delimiter.
                        off += rest.len() - (dlen - 1);
                        *scanned = 0;
                        *discarding = true;
                        handler.line_length_exceeded(&mut Lines { ctx, ctl }, rest);
                    }
                }
            }
            if std::mem::take(&mut ctl.clear) {
                off = buf.len();
                *scanned = 0;
                *discarding = false;
            }
        }
        buf.advance(off);
        if buf.is_empty() && buf.capacity() > ctl.codec.max.saturating_add(64).saturating_mul(4) {
            // Do not pin a large allocation after a burst.
            *buf = BytesMut::new();
        }
    }
}

impl<H: LineHandler> Protocol for LineReceiver<H> {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.call(ctx, |h, l| h.connection_made(l));
        self.drain(ctx);
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, mut data: &[u8]) {
        if self.ctl.raw && self.buf.is_empty() && self.ctl.extra.is_none() && !stop_delivering(ctx)
        {
            // Raw fast path: no copy.
            self.call(ctx, |h, l| h.raw_data_received(l, data));
            self.ctl.clear = false;
            self.drain(ctx);
            return;
        }
        while !data.is_empty() {
            if stop_delivering(ctx) {
                if ctx.is_reading_paused() {
                    // Paused mid-read: keep the rest, in order.
                    self.buf.extend_from_slice(data);
                }
                return;
            }
            // Never buffer more than a maximal line plus its ending at once.
            let bound = self
                .ctl
                .codec
                .max
                .saturating_add(self.ctl.codec.ending_len());
            let take = bound.saturating_sub(self.buf.len()).max(1).min(data.len());
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
        self.call(ctx, |h, l| h.read_connection_lost(l));
    }

    fn write_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.call(ctx, |h, l| h.write_connection_lost(l));
    }

    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        self.call(ctx, |h, l| h.pause_writing(l));
    }

    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        self.call(ctx, |h, l| h.resume_writing(l));
    }
}
