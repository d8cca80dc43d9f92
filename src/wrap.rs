//! Protocols that wrap other protocols: how operations addressed to a
//! connection by handle find the protocol they mean.
//!
//! A wrapper (TLS, [`PolicedProtocol`](crate::policies::PolicedProtocol), the
//! service watcher, or one of yours) sits between the transport and another
//! protocol. It says so through [`Protocol::as_wrapper`] and
//! [`Protocol::as_wrapper_ref`], returning itself as a [`Wrapper`]. Then:
//!
//! * [`ConnectionRef::with_protocol`](crate::ConnectionRef::with_protocol)
//!   and [`Context::call_later_self`] look for the first protocol of the
//!   requested type from the outside in, so both a wrapper and what it wraps
//!   can be reached;
//! * writes, closes and pauses made by handle
//!   ([`Core::connection`](crate::Core::connection)) belong to the innermost
//!   protocol (through TLS they must be encrypted);
//! * the testing tools (`Pump::server`, `RecordingTransport::protocol`...) find
//!   the protocol type they are asked for through every wrapper.

use std::any::Any;

use crate::protocol::Protocol;
use crate::transport::Context;

/// A protocol that runs another protocol: TLS,
/// [`PolicedProtocol`](crate::policies::PolicedProtocol), the service watcher,
/// or one of yours. A wrapper returns itself from [`Protocol::as_wrapper`] and
/// [`Protocol::as_wrapper_ref`]; then
/// [`ConnectionRef::with_protocol`](crate::ConnectionRef::with_protocol) and
/// [`Context::call_later_self`] find the first protocol of the requested type
/// from the outside in (the wrapper or what it wraps), operations by handle
/// ([`Core::connection`](crate::Core::connection)) reach the innermost
/// protocol, and the testing tools find protocols inside wrappers.
///
/// A wrapper that hands its inner protocol the connection's own [`Context`]
/// (it forwards callbacks, perhaps after looking at them) implements only
/// [`inner`](Self::inner) and [`inner_mut`](Self::inner_mut). One that gives
/// its inner protocol a context of its own (TLS does: the inner protocol's
/// writes must be encrypted) also overrides [`call_inner`](Self::call_inner).
///
/// ```
/// use torsion::protocol::Wrapper;
/// use torsion::{Context, Protocol};
///
/// /// Counts the bytes its inner protocol receives.
/// struct Counted<P> {
///     inner: P,
///     bytes: usize,
/// }
///
/// impl<P: Protocol> Protocol for Counted<P> {
///     fn connection_made(&mut self, ctx: &mut Context<'_>) {
///         self.inner.connection_made(ctx);
///     }
///     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
///         self.bytes += data.len();
///         self.inner.data_received(ctx, data);
///     }
///     // ... forward the other callbacks the same way ...
///     fn as_wrapper(&mut self) -> Option<&mut dyn Wrapper> {
///         Some(self)
///     }
///     fn as_wrapper_ref(&self) -> Option<&dyn Wrapper> {
///         Some(self)
///     }
/// }
///
/// impl<P: Protocol> Wrapper for Counted<P> {
///     fn inner(&self) -> &dyn Protocol {
///         &self.inner
///     }
///     fn inner_mut(&mut self) -> &mut dyn Protocol {
///         &mut self.inner
///     }
/// }
/// ```
pub trait Wrapper {
    /// The inner protocol, to look at.
    fn inner(&self) -> &dyn Protocol;

    /// The inner protocol, to change.
    fn inner_mut(&mut self) -> &mut dyn Protocol;

    /// Runs `f` with the inner protocol and the context it sees, then settles
    /// what `f` did (for TLS: encrypts its writes). The default hands over
    /// `ctx` itself. A wrapper whose inner protocol's connection is already
    /// lost does not call `f`.
    fn call_inner(
        &mut self,
        ctx: &mut Context<'_>,
        f: &mut dyn FnMut(&mut dyn Protocol, &mut Context<'_>),
    ) {
        f(self.inner_mut(), ctx);
    }
}

/// The innermost protocol under `p`'s wrappers (`p` itself if it wraps
/// nothing).
pub(crate) fn innermost_ref(mut p: &dyn Protocol) -> &dyn Protocol {
    while let Some(w) = p.as_wrapper_ref() {
        p = w.inner();
    }
    p
}

/// The name introspection shows for the protocol `p` (its innermost one's).
pub(crate) fn protocol_name(p: &dyn Protocol) -> &'static str {
    innermost_ref(p).protocol_name()
}

/// `p` as a wrapper, if it is one.
pub(crate) fn as_wrapper(p: &mut dyn Protocol) -> Option<&mut dyn Wrapper> {
    p.as_wrapper()
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
        p = p.as_wrapper_ref()?.inner();
    }
}

/// The first protocol of type `P` from the outside in, to change (testing tools).
pub(crate) fn find_mut<P: Protocol>(p: &mut dyn Protocol) -> Option<&mut P> {
    if is::<P>(p) {
        let any: &mut dyn Any = p;
        return any.downcast_mut::<P>();
    }
    find_mut(p.as_wrapper()?.inner_mut())
}

/// Stands in for a protocol for the moment it is moved into its wrapper.
pub(crate) struct Unwrapped;

impl Protocol for Unwrapped {
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}
