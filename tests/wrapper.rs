//! Wrappers are open: a protocol a user writes around another one takes part
//! in `with_protocol`, `call_later_self`, operations by handle and the testing
//! tools, as TLS and `policies::Policed` do; asking for a protocol the
//! connection does not run is an error value.

use std::time::Duration;

use torsion::policies::Policed;
use torsion::testing::Pump;
use torsion::{factory, Context, DisconnectReason, Error, Protocol, Wrapper};

/// The user's protocol: records what it gets.
#[derive(Default)]
struct Inner {
    got: Vec<u8>,
}

impl Protocol for Inner {
    fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
    }
}

/// A user-written wrapper: counts the bytes, forwards every callback.
struct Counted<P> {
    inner: P,
    bytes: usize,
}

impl<P: Protocol> Protocol for Counted<P> {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.inner.connection_made(ctx);
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        self.bytes += data.len();
        self.inner.data_received(ctx, data);
    }
    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.inner.connection_lost(ctx, reason);
    }
    fn as_wrapper(&mut self) -> Option<&mut dyn Wrapper> {
        Some(self)
    }
    fn as_wrapper_ref(&self) -> Option<&dyn Wrapper> {
        Some(self)
    }
}

impl<P: Protocol> Wrapper for Counted<P> {
    fn inner(&self) -> &dyn Protocol {
        &self.inner
    }
    fn inner_mut(&mut self) -> &mut dyn Protocol {
        &mut self.inner
    }
}

/// Something no connection here runs.
struct Stranger;
impl Protocol for Stranger {
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

fn counted() -> Counted<Inner> {
    Counted {
        inner: Inner::default(),
        bytes: 0,
    }
}

#[test]
fn with_protocol_reaches_through_a_user_written_wrapper() {
    let mut pump = Pump::new();
    let link = pump.connect(Inner::default(), counted());
    pump.flush();
    let h = pump.server_handle(link);
    // The protocol inside, with the connection's context: it can write.
    let mut inner = pump
        .core_mut()
        .connection(h)
        .with_protocol(|p: &mut Inner, ctx| {
            ctx.write(b"from inside");
            p.got.len()
        });
    // The wrapper itself.
    let mut outer = pump
        .core_mut()
        .connection(h)
        .with_protocol(|w: &mut Counted<Inner>, _ctx| w.bytes);
    // Neither.
    let mut wrong = pump
        .core_mut()
        .connection(h)
        .with_protocol(|_: &mut Stranger, _ctx| ());
    pump.core_mut().connection(h).write(b" by handle");
    pump.flush();
    assert_eq!(inner.take_result().unwrap().unwrap(), 0);
    assert_eq!(outer.take_result().unwrap().unwrap(), 0);
    match wrong.take_result().unwrap() {
        Err(Error::WrongProtocol { expected }) => assert!(expected.ends_with("Stranger")),
        other => panic!("expected WrongProtocol, got {other:?}"),
    }
    assert_eq!(pump.client(link).got, b"from inside by handle");
    pump.with_client(link, |_, ctx| ctx.write(b"12345"));
    pump.flush();
    assert_eq!(pump.server(link).inner.got, b"12345");
    assert_eq!(pump.server(link).bytes, 5);
}

#[test]
fn call_later_self_reaches_the_protocol_inside_a_user_written_wrapper() {
    /// Sets a timer on itself; it runs inside `Counted`.
    #[derive(Default)]
    struct Ticker {
        ticks: u32,
    }
    impl Protocol for Ticker {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            ctx.call_later_self(Duration::from_secs(1), |p: &mut Ticker, ctx| {
                p.ticks += 1;
                ctx.write(b"tick");
            });
        }
        fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    }
    let mut pump = Pump::new();
    let server = Counted {
        inner: Ticker::default(),
        bytes: 0,
    };
    let link = pump.connect(Inner::default(), server);
    pump.flush();
    pump.advance(Duration::from_millis(999));
    pump.flush();
    assert_eq!(pump.server(link).inner.ticks, 0);
    pump.advance(Duration::from_millis(1));
    pump.flush();
    assert_eq!(pump.server(link).inner.ticks, 1);
    assert_eq!(pump.client(link).got, b"tick");
    // `ConnectionRef::call_later` is the same timer, set from outside.
    let h = pump.server_handle(link);
    pump.core_mut()
        .connection(h)
        .call_later(Duration::from_secs(1), |p: &mut Ticker, _ctx| p.ticks += 1);
    pump.advance(Duration::from_secs(1));
    pump.flush();
    assert_eq!(pump.server(link).inner.ticks, 2);
}

#[test]
fn with_protocol_on_a_closed_connection_says_so() {
    let mut pump = Pump::new();
    let link = pump.connect(Inner::default(), counted());
    pump.flush();
    let h = pump.server_handle(link);
    pump.core_mut().connection(h).lose_connection();
    pump.flush();
    assert!(pump.server_lost(link).is_some());
    let mut gone = pump
        .core_mut()
        .connection(h)
        .with_protocol(|_: &mut Inner, _ctx| ());
    pump.flush();
    assert!(matches!(
        gone.take_result().unwrap(),
        Err(Error::NoSuchHandle)
    ));
}

#[test]
fn with_protocol_reaches_the_protocol_inside_policed() {
    let mut policed = Policed::new(factory(|_peer| Inner::default())).max_connections(10);
    let mut pump = Pump::new();
    let link = pump
        .connect_factory(Inner::default(), &mut policed)
        .unwrap();
    pump.flush();
    let h = pump.server_handle(link);
    let mut reached = pump
        .core_mut()
        .connection(h)
        .with_protocol(|p: &mut Inner, ctx| {
            ctx.write(b"policed");
            p.got.len()
        });
    pump.flush();
    assert_eq!(reached.take_result().unwrap().unwrap(), 0);
    assert_eq!(pump.client(link).got, b"policed");
}

#[test]
fn a_panicking_with_protocol_closure_fails_its_deferred_and_costs_the_connection() {
    let mut pump = Pump::new();
    pump.core_mut()
        .set_panic_policy(torsion::PanicPolicy::Record);
    let link = pump.connect(Inner::default(), counted());
    pump.flush();
    let h = pump.server_handle(link);
    let mut d = pump
        .core_mut()
        .connection(h)
        .with_protocol(|_: &mut Inner, _ctx| -> u32 { panic!("boom") });
    pump.flush();
    assert!(matches!(d.take_result().unwrap(), Err(Error::Panicked(_))));
    assert!(matches!(
        pump.server_lost(link),
        Some(DisconnectReason::Panicked(_))
    ));
    assert_eq!(pump.core_mut().take_panics().len(), 1);
}
