//! `StandardIO`: an ordinary protocol on the process's own stdin and stdout.

use std::fs::File;
use std::io::{self, IoSlice, Read};
use std::os::fd::{AsFd, OwnedFd};

use crate::context::{Core, Op};
use crate::error::{Error, Result};
use crate::protocol::Protocol;
use crate::reactor::{sys, PipeEndFd, PipeRequest, StdioFlags, StdoutMode};

impl Core {
    /// Attaches `protocol` to this process's stdin and stdout (Twisted's
    /// `StandardIO`): `data_received` gets what arrives on stdin, writes go
    /// to stdout with the usual gathering, write buffer, water marks and
    /// back-pressure, and `connection_lost` comes once stdin reaches EOF and
    /// what was written is flushed ([`DisconnectReason::Done`]), or when
    /// stdout breaks (a reader that went away:
    /// [`DisconnectReason::Reset`]). A closed stdin is an immediate EOF.
    ///
    /// stdin and stdout that are pipes or sockets are made non-blocking and
    /// registered with the reactor (their flags are restored when the
    /// connection ends). A stdin that cannot be polled — a regular file, a
    /// terminal, `/dev/null` — is read by a thread into a pipe the reactor
    /// polls, so the terminal's (shared) flags are never changed and a file
    /// does not spin; a stdout that is a file or terminal is written
    /// blocking. The connection's peer is an unnamed Unix address; half-close
    /// (`lose_write_connection`) is not available. Write to stdout through
    /// the context only: `print!` bypasses the buffer and, on a non-blocking
    /// pipe, may fail.
    ///
    /// [`DisconnectReason::Done`]: crate::DisconnectReason::Done
    /// [`DisconnectReason::Reset`]: crate::DisconnectReason::Reset
    ///
    /// ```no_run
    /// use torsion::{Context, Protocol, Reactor, DisconnectReason};
    ///
    /// /// Upper-cases stdin onto stdout.
    /// struct Upper;
    /// impl Protocol for Upper {
    ///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
    ///         ctx.write(&data.to_ascii_uppercase());
    ///     }
    ///     fn connection_lost(&mut self, ctx: &mut Context<'_>, _: &DisconnectReason) {
    ///         let _ = ctx.stop();
    ///     }
    /// }
    /// let mut reactor = Reactor::new()?;
    /// reactor.standard_io(Upper)?;
    /// reactor.run()?;
    /// # Ok::<(), torsion::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] if stdout is closed (`stdout is closed`), or
    /// descriptors or a thread cannot be had.
    pub fn standard_io(&mut self, protocol: impl Protocol) -> Result<()> {
        let out = stdout_mode()?;
        let (reader, restore_in) = stdin_reader()?;
        // `reader` is non-blocking: stdin itself (a copy of the descriptor),
        // or the read end of a pipe that a thread fills from it.
        let flags = StdioFlags { restore_in, out };
        let req = PipeRequest {
            pipes: vec![(PipeEndFd::Stdio(reader, flags), Box::new(protocol))],
            started: None,
            watch: None,
        };
        self.ops.push(Op::Pipes(Box::new(req)));
        Ok(())
    }
}

fn stdout_mode() -> Result<StdoutMode> {
    let fd = sys::stdout_fd();
    let copy = fd.try_clone_to_owned().map_err(|e| {
        if e.raw_os_error() == Some(libc::EBADF) {
            Error::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stdout is closed",
            ))
        } else {
            Error::Io(e)
        }
    })?;
    let kind = File::from(copy).metadata()?.file_type();
    use std::os::unix::fs::FileTypeExt;
    if !(kind.is_fifo() || kind.is_socket()) {
        return Ok(StdoutMode::Blocking);
    }
    if sys::nonblocking(fd)? {
        return Ok(StdoutMode::Polled);
    }
    sys::set_nonblocking(fd, true)?;
    Ok(StdoutMode::PolledRestore)
}

/// A non-blocking descriptor that yields stdin's bytes, and whether stdin's
/// own flags were changed (to restore).
fn stdin_reader() -> Result<(OwnedFd, bool)> {
    use std::os::unix::fs::FileTypeExt;
    let copy = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(c) => c,
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => {
            // Closed stdin: a pipe whose writer is gone reads EOF at once.
            let (r, _w) = sys::pipe()?;
            sys::set_nonblocking(r.as_fd(), true)?;
            return Ok((r, false));
        }
        Err(e) => return Err(e.into()),
    };
    let file = File::from(copy);
    let kind = file.metadata()?.file_type();
    if kind.is_fifo() || kind.is_socket() {
        let was = sys::nonblocking(file.as_fd())?;
        sys::set_nonblocking(file.as_fd(), true)?;
        return Ok((OwnedFd::from(file), !was));
    }
    // A file (epoll refuses it: always "ready"), a terminal or another
    // device: a thread reads it, blocking, into a pipe.
    let (r, w) = sys::pipe()?;
    sys::set_nonblocking(r.as_fd(), true)?;
    std::thread::Builder::new()
        .name("torsion-stdin".into())
        .spawn(move || relay(file, w))?;
    Ok((r, false))
}

/// Copies `from` into the pipe `to` until EOF, an error, or the reading side
/// is closed (`EPIPE`, without `SIGPIPE`).
fn relay(mut from: File, to: OwnedFd) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "stdin read failed");
                return;
            }
        };
        let mut sent = 0;
        while sent < n {
            match sys::write_vectored(to.as_fd(), &[IoSlice::new(&buf[sent..n])]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}
