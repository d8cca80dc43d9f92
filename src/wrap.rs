//! Protocols that wrap other protocols (TLS): how operations addressed to a
//! connection by handle find the protocol they mean.
//!
//! A wrapper (such as [`TlsProtocol`](crate::tls::TlsProtocol)) sits between
//! the transport and the user's protocol and gives the inner protocol its own
//! [`Context`]. Writes, closes and pauses made by handle (`Core::write_to`,
//! `Core::lose_connection`, ...) belong to the innermost protocol (they must be
//! encrypted); [`Core::with_protocol`](crate::Core::with_protocol) looks for the
//! first protocol of the requested type from the outside in, so both the user's
//! protocol and the wrapper itself can be reached.

use std::any::Any;
use std::time::Duration;

use crate::context::{ConnectionHandle, Core, DelayedCall};
use crate::protocol::Protocol;
use crate::transport::Context;

/// By-handle operations that reach a connection's protocol (through its
/// wrappers).
impl Core {
    /// Resumes reading on a connection by handle.
    pub fn resume_reading(&mut self, conn: ConnectionHandle) {
        // Through the connection's own context, so the flag is cleared in
        // order with any pause the protocol makes afterwards.
        self.call_on(
            conn,
            Box::new(|p, ctx| innermost(p, ctx, |_, ctx| ctx.resume_reading())),
        );
    }

    /// Runs `f` with the protocol of `conn`, if it still exists and is a `P`, once
    /// the current callback has returned. This is how a timer or another
    /// connection calls into a protocol.
    pub fn with_protocol<P: Protocol>(
        &mut self,
        conn: ConnectionHandle,
        f: impl FnOnce(&mut P, &mut Context<'_>) + 'static,
    ) {
        self.call_on(
            conn,
            Box::new(move |p: &mut dyn Protocol, ctx: &mut Context<'_>| {
                // The first `P` from the outside in: a protocol wrapped in TLS
                // is reached through its wrapper, with its own context.
                let found = reach(p, ctx, &is::<P>, |p, ctx| {
                    let any: &mut dyn std::any::Any = p;
                    if let Some(p) = any.downcast_mut::<P>() {
                        f(p, ctx);
                    }
                });
                if !found {
                    tracing::warn!(
                        "with_protocol: connection {:?} does not run a {}",
                        ctx.handle(),
                        std::any::type_name::<P>()
                    );
                }
            }),
        );
    }

    /// Schedules `f` to run with the protocol of `conn` after `delay` (nothing
    /// happens if the connection is gone by then).
    pub fn call_later_on<P: Protocol>(
        &mut self,
        conn: ConnectionHandle,
        delay: Duration,
        f: impl FnOnce(&mut P, &mut Context<'_>) + 'static,
    ) -> DelayedCall {
        self.call_later(delay, move |core| core.with_protocol(conn, f))
    }
}

/// A protocol that runs another one over its own context.
pub(crate) trait Wrapper {
    /// Runs `f` with the inner protocol and its context, then settles what it
    /// did (its writes go through the wrapper). Does nothing once the inner
    /// protocol's connection is lost.
    fn call_inner(
        &mut self,
        ctx: &mut Context<'_>,
        f: &mut dyn FnMut(&mut dyn Protocol, &mut Context<'_>),
    );

    /// The inner protocol, to look at (testing tools).
    fn inner_dyn(&self) -> &dyn Protocol;

    /// The inner protocol, to change (testing tools).
    fn inner_dyn_mut(&mut self) -> &mut dyn Protocol;
}

/// `p` as a wrapper, if it is one.
pub(crate) fn as_wrapper(p: &mut dyn Protocol) -> Option<&mut dyn Wrapper> {
    let any: &mut dyn Any = p;
    if any.is::<crate::service::Watched>() {
        return any
            .downcast_mut::<crate::service::Watched>()
            .map(|w| w as &mut dyn Wrapper);
    }
    #[cfg(feature = "tls")]
    if let Some(t) = any.downcast_mut::<crate::tls::TlsProtocol>() {
        return Some(t);
    }
    None
}

/// `p` as a wrapper, if it is one (shared).
pub(crate) fn as_wrapper_ref(p: &dyn Protocol) -> Option<&dyn Wrapper> {
    let any: &dyn Any = p;
    if let Some(w) = any.downcast_ref::<crate::service::Watched>() {
        return Some(w);
    }
    #[cfg(feature = "tls")]
    if let Some(t) = any.downcast_ref::<crate::tls::TlsProtocol>() {
        return Some(t);
    }
    None
}

/// Runs `f` on the first protocol, from the outside in, that `pick` accepts.
/// Returns whether one did.
pub(crate) fn reach(
    p: &mut dyn Protocol,
    ctx: &mut Context<'_>,
    pick: &dyn Fn(&mut dyn Protocol) -> bool,
    f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
) -> bool {
    if pick(p) {
        f(p, ctx);
        return true;
    }
    let Some(w) = as_wrapper(p) else {
        return false;
    };
    let mut f = Some(f);
    let mut found = false;
    w.call_inner(ctx, &mut |p, ctx| {
        if let Some(f) = f.take() {
            found = reach(p, ctx, pick, f);
        }
    });
    found
}

/// Runs `f` on the innermost protocol (the user's), through every wrapper.
/// Free when the connection is not wrapped.
pub(crate) fn innermost(
    p: &mut dyn Protocol,
    ctx: &mut Context<'_>,
    f: impl FnOnce(&mut dyn Protocol, &mut Context<'_>),
) {
    if as_wrapper(p).is_none() {
        return f(p, ctx);
    }
    reach(p, ctx, &|p| as_wrapper(p).is_none(), f);
}

/// Whether `p` is a `P`.
pub(crate) fn is<P: Protocol>(p: &mut dyn Protocol) -> bool {
    let any: &mut dyn Any = p;
    any.is::<P>()
}

/// The first protocol of type `P` from the outside in (testing tools).
pub(crate) fn find_ref<P: Protocol>(mut p: &dyn Protocol) -> Option<&P> {
    loop {
        let any: &dyn Any = p;
        if let Some(found) = any.downcast_ref::<P>() {
            return Some(found);
        }
        p = as_wrapper_ref(p)?.inner_dyn();
    }
}

/// The first protocol of type `P` from the outside in, to change (testing tools).
pub(crate) fn find_mut<P: Protocol>(p: &mut dyn Protocol) -> Option<&mut P> {
    if is::<P>(p) {
        let any: &mut dyn Any = p;
        return any.downcast_mut::<P>();
    }
    find_mut(as_wrapper(p)?.inner_dyn_mut())
}

/// Stands in for a protocol for the moment it is moved into its wrapper.
pub(crate) struct Unwrapped;

impl Protocol for Unwrapped {
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}
