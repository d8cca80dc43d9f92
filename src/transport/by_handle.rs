//! Operations on another connection by handle ([`Core::connection`]): they
//! reach the connection's protocol, so they live with the protocol traits,
//! above the core whose queue carries them.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use super::Context;
use crate::context::{ConnectionHandle, Core, DelayedCall, Op};
use crate::defer::Deferred;
use crate::error::{Error, Result};
use crate::protocol::Protocol;

impl Core {
    /// Another connection (or this one), by handle: write to it, close it,
    /// pause it, or call into its protocol. Each operation is carried out
    /// once the current callback returns; a handle of a connection that is
    /// gone is ignored (see each method).
    ///
    /// ```
    /// use torsion::{ConnectionHandle, Context, Protocol};
    ///
    /// /// Forwards what it reads to another connection.
    /// struct Relay {
    ///     to: ConnectionHandle,
    /// }
    /// impl Protocol for Relay {
    ///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
    ///         ctx.connection(self.to).write(data);
    ///     }
    ///     fn connection_lost(&mut self, ctx: &mut Context<'_>, _: &torsion::DisconnectReason) {
    ///         ctx.connection(self.to).lose_connection();
    ///     }
    /// }
    /// ```
    pub fn connection(&mut self, conn: ConnectionHandle) -> ConnectionRef<'_> {
        ConnectionRef { core: self, conn }
    }

    /// Queues `f` to run with the first `P` of `conn` (through wrappers), and
    /// `done` with the outcome. `done` hears [`Error::NoSuchHandle`] when the
    /// connection is gone and [`Error::WrongProtocol`] when it runs no `P`.
    pub(crate) fn call_protocol<P: Protocol, R: 'static>(
        &mut self,
        conn: ConnectionHandle,
        f: impl FnOnce(&mut P, &mut Context<'_>) -> R + 'static,
        done: impl FnOnce(Result<R>) + 'static,
    ) {
        let mut guard = Settle(Some(done), std::marker::PhantomData);
        self.call_on(
            conn,
            Box::new(move |p: &mut dyn Protocol, ctx: &mut Context<'_>| {
                let mut out = None;
                // The first `P` from the outside in: a protocol wrapped in TLS
                // is reached through its wrapper, with its own context.
                let call = std::panic::AssertUnwindSafe(|| {
                    crate::wrap::reach(p, ctx, &crate::wrap::is::<P>, |p, ctx| {
                        let any: &mut dyn std::any::Any = p;
                        if let Some(p) = any.downcast_mut::<P>() {
                            out = Some(f(p, ctx));
                        }
                    })
                });
                let panic = std::panic::catch_unwind(call).err();
                let result = match (&panic, out) {
                    (Some(_), _) => {
                        Err(Error::Panicked("the with_protocol closure panicked".into()))
                    }
                    (None, Some(r)) => Ok(r),
                    (None, None) => Err(Error::WrongProtocol {
                        expected: std::any::type_name::<P>(),
                    }),
                };
                if let Some(done) = guard.0.take() {
                    done(result);
                }
                if let Some(payload) = panic {
                    // On to the reactor, which aborts this connection.
                    std::panic::resume_unwind(payload);
                }
            }),
        );
    }
}

/// Settles a queued call with [`Error::NoSuchHandle`] if it is dropped unrun
/// (its connection was gone).
struct Settle<R, F: FnOnce(Result<R>)>(Option<F>, std::marker::PhantomData<fn(R)>);

impl<R, F: FnOnce(Result<R>)> Drop for Settle<R, F> {
    fn drop(&mut self) {
        let Some(done) = self.0.take() else {
            return;
        };
        if std::thread::panicking() {
            // Dropped while something else unwinds: running the Deferred's
            // callbacks now could panic again, which aborts the process.
            return;
        }
        // Dropped unrun, outside any callback: a stage that panics costs
        // that chain only.
        let run = std::panic::AssertUnwindSafe(|| done(Err(Error::NoSuchHandle)));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!("a callback on a with_protocol Deferred panicked");
        }
    }
}

/// Another connection, by handle: what [`Core::connection`] returns.
///
/// Every operation is queued and carried out once the current callback
/// returns, on the innermost protocol's transport (through TLS, a write is
/// encrypted). Operations on a connection that is gone are ignored, except
/// [`with_protocol`](Self::with_protocol), whose result says so.
pub struct ConnectionRef<'a> {
    core: &'a mut Core,
    conn: ConnectionHandle,
}

impl fmt::Debug for ConnectionRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnectionRef").field(&self.conn).finish()
    }
}

impl ConnectionRef<'_> {
    /// The handle this names.
    pub fn handle(&self) -> ConnectionHandle {
        self.conn
    }

    /// Writes (a copy of) `data` to the connection. Dropped, as
    /// [`Context::write`] drops it, if the connection is gone or closing.
    pub fn write(&mut self, data: &[u8]) {
        self.write_bytes(Bytes::copy_from_slice(data));
    }

    /// Writes a `Bytes` to the connection without copying it (one buffer
    /// sent to many connections is shared). Dropped like
    /// [`write`](Self::write).
    pub fn write_bytes(&mut self, data: Bytes) {
        self.core.ops.push(Op::Write(self.conn, data));
    }

    /// Closes the connection after flushing it (see [`Context::lose_connection`]).
    pub fn lose_connection(&mut self) {
        self.core.ops.push(Op::Lose(self.conn));
    }

    /// Aborts the connection (see [`Context::abort_connection`]).
    pub fn abort_connection(&mut self) {
        self.core.ops.push(Op::Abort(self.conn));
    }

    /// Stops delivering `data_received` to the connection (see
    /// [`Context::pause_reading`]).
    pub fn pause_reading(&mut self) {
        self.core.ops.push(Op::PauseReading(self.conn));
    }

    /// Delivers data to the connection again (see [`Context::resume_reading`]).
    pub fn resume_reading(&mut self) {
        // Through the connection's own context, so the flag is cleared in
        // order with any pause the protocol makes afterwards.
        self.core.call_on(
            self.conn,
            Box::new(|p, ctx| crate::wrap::innermost(p, ctx, |_, ctx| ctx.resume_reading())),
        );
    }

    /// Runs `f` with the connection's protocol, once the current callback has
    /// returned: how a timer or another connection calls into a protocol. The
    /// protocol asked for is the first `P` from the outside in, so a protocol
    /// inside a [`Wrapper`](crate::protocol::Wrapper) (TLS, policies, yours)
    /// is found, and so is the wrapper itself.
    ///
    /// The returned [`Deferred`] fires with what `f` returned, or with
    /// [`Error::NoSuchHandle`] if the connection is gone,
    /// [`Error::WrongProtocol`] if it runs no `P` (`f` is then not called), or
    /// [`Error::Panicked`] if `f` panicked (the connection is then aborted).
    /// Dropping the Deferred is fine; an error nobody looked at is logged.
    ///
    /// ```
    /// use torsion::testing::RecordingTransport;
    /// use torsion::{Context, Error, Protocol};
    ///
    /// #[derive(Default)]
    /// struct Counter(u32);
    /// impl Protocol for Counter {
    ///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    /// }
    /// struct Other;
    /// impl Protocol for Other {
    ///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    /// }
    ///
    /// let mut t = RecordingTransport::new(Counter::default());
    /// let h = t.handle();
    /// let mut n = t.core_mut().connection(h).with_protocol(|c: &mut Counter, _ctx| {
    ///     c.0 += 1;
    ///     c.0
    /// });
    /// let mut wrong = t.core_mut().connection(h).with_protocol(|_: &mut Other, _ctx| ());
    /// t.advance(std::time::Duration::ZERO); // carries out what was queued
    /// assert_eq!(n.take_result().unwrap().unwrap(), 1);
    /// assert!(matches!(wrong.take_result().unwrap(), Err(Error::WrongProtocol { .. })));
    /// ```
    pub fn with_protocol<P: Protocol, R: 'static>(
        &mut self,
        f: impl FnOnce(&mut P, &mut Context<'_>) -> R + 'static,
    ) -> Deferred<R, Error> {
        let (d, trigger) = Deferred::new();
        self.core.call_protocol(self.conn, f, move |r| {
            let _ = trigger.fire(r);
        });
        d
    }

    /// Runs `f` with the connection's protocol (found as by
    /// [`with_protocol`](Self::with_protocol)) after `delay`. Nothing happens
    /// if the connection is gone by then; a connection that runs no `P` is
    /// logged at `WARN`.
    pub fn call_later<P: Protocol>(
        &mut self,
        delay: Duration,
        f: impl FnOnce(&mut P, &mut Context<'_>) + 'static,
    ) -> DelayedCall {
        let conn = self.conn;
        self.core.call_later(delay, move |core| {
            core.call_protocol(conn, f, move |r| {
                if let Err(e @ Error::WrongProtocol { .. }) = r {
                    tracing::warn!(?conn, "call_later on a connection: {e}");
                }
            });
        })
    }
}
