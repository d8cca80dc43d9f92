//! The chat example, through the pump (with and without faults) and over
//! real sockets.

#[path = "../examples/chat/mod.rs"]
mod chat_server;
mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use chat_server::ChatFactory;
use torsion::protocols::{LineHandler, LineReceiver, Lines};
use torsion::testing::{assert_no_panics, Direction, Faults, Link, Pump};
use torsion::Address;
use torsion::{ClientFactory, ConnectionHandle, Context, DisconnectReason, Reactor};

/// What a chat client saw.
#[derive(Debug, Default)]
struct Seen {
    lines: Vec<String>,
    handle: Option<ConnectionHandle>,
    lost: Option<DisconnectReason>,
}

type Shared = Rc<RefCell<Seen>>;

/// A chat client: records lines; the test makes it speak.
struct Client(Shared);

impl LineHandler for Client {
    fn connection_made(&mut self, lines: &mut Lines<'_, '_>) {
        self.0.borrow_mut().handle = Some(lines.handle());
    }
    fn line_received(&mut self, _: &mut Lines<'_, '_>, line: &[u8]) {
        self.0
            .borrow_mut()
            .lines
            .push(String::from_utf8(line.to_vec()).unwrap());
    }
    fn connection_lost(&mut self, _: &mut Context<'_>, reason: &DisconnectReason) {
        let mut s = self.0.borrow_mut();
        assert!(s.lost.is_none(), "connection_lost twice");
        s.lost = Some(reason.clone());
    }
}

type ChatLink = Link<LineReceiver<Client>, LineReceiver<chat_server::Chat>>;

fn join(pump: &mut Pump, factory: &mut ChatFactory) -> (ChatLink, Shared) {
    let seen = Shared::default();
    let link = pump
        .connect_factory(LineReceiver::new(Client(seen.clone())), factory)
        .unwrap();
    (link, seen)
}

fn say(pump: &mut Pump, link: ChatLink, line: &str) {
    pump.with_client(link, |c, ctx| c.send_line(ctx, line.as_bytes()).unwrap())
        .expect("client still connected");
}

fn lines(seen: &Shared) -> Vec<String> {
    seen.borrow().lines.clone()
}

/// The whole conversation; the same under every fault seed.
fn conversation(faults: Faults) {
    let mut pump = Pump::with_faults(faults);
    let mut factory = ChatFactory::default();
    let (alice, a) = join(&mut pump, &mut factory);
    pump.flush();
    assert_eq!(lines(&a), ["What's your name?"]);
    say(&mut pump, alice, "alice");
    pump.flush();
    let (bob, b) = join(&mut pump, &mut factory);
    pump.flush();
    say(&mut pump, bob, "alice");
    pump.flush();
    say(&mut pump, bob, "bob");
    pump.flush();
    say(&mut pump, bob, "hi alice");
    say(&mut pump, alice, "hi bob");
    say(&mut pump, alice, "how are you?");
    pump.flush();
    pump.with_client(bob, |_, ctx| ctx.lose_connection());
    pump.flush();

    assert_eq!(
        lines(&a),
        [
            "What's your name?",
            "Welcome, alice!",
            "* bob has joined.",
            "<bob> hi alice",
            "* bob has left."
        ]
    );
    assert_eq!(
        lines(&b),
        [
            "What's your name?",
            "Name taken, please choose another.",
            "Welcome, bob!",
            "<alice> hi bob",
            "<alice> how are you?"
        ]
    );
    assert_eq!(b.borrow().lost, Some(DisconnectReason::Done));
    assert_eq!(pump.server_lost(bob), Some(&DisconnectReason::Done));
    assert!(a.borrow().lost.is_none());
    assert_eq!(factory.users.borrow().keys().collect::<Vec<_>>(), ["alice"]);
    assert_no_panics(pump.core_mut());
}

#[test]
fn chat_through_the_pump() {
    conversation(Faults::none());
}

#[test]
fn chat_through_the_pump_under_split_and_delayed_delivery() {
    for seed in 0..200 {
        conversation(Faults::from_env(seed).split_writes().delay_delivery(5));
    }
}

#[test]
fn chat_survives_resets_and_forgets_the_reset_client() {
    for seed in 0..300u64 {
        let faults = Faults::from_env(seed).split_writes().delay_delivery(2);
        let mut pump = Pump::with_faults(faults);
        let mut factory = ChatFactory::default();
        let (alice, a) = join(&mut pump, &mut factory);
        say(&mut pump, alice, "alice");
        pump.flush();
        let (bob, b) = join(&mut pump, &mut factory);
        // Bob's connection is reset somewhere in its first bytes, either way.
        let x = faults.seed().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33;
        // Bob sends 9 bytes and receives 34: reset strictly inside either.
        let (dir, byte) = if x % 2 == 0 {
            (Direction::ClientToServer, (x / 2) % 9)
        } else {
            (Direction::ServerToClient, (x / 2) % 34)
        };
        pump.reset_at(bob, dir, byte);
        pump.with_client(bob, |c, ctx| {
            c.send_line(ctx, b"bob").unwrap();
            c.send_line(ctx, b"hi").unwrap();
        });
        pump.flush();
        let seed = faults.seed();
        let got_a = lines(&a);
        let got_b = lines(&b);
        let reason = pump.client_lost(bob).expect("bob was reset");
        assert_eq!(reason, &DisconnectReason::Reset, "seed {seed}");
        assert_eq!(pump.server_lost(bob), Some(&DisconnectReason::Reset));
        assert_eq!(b.borrow().lost, Some(DisconnectReason::Reset));
        // The server forgot him: the name is free again.
        assert!(!factory.users.borrow().contains_key("bob"), "seed {seed}");
        // Alice heard a leave for every join.
        let joined = got_a.iter().any(|l| l == "* bob has joined.");
        assert_eq!(
            joined,
            got_a.last().map(String::as_str) == Some("* bob has left."),
            "seed {seed}: {got_a:?}"
        );
        let full_a = [
            "What's your name?",
            "Welcome, alice!",
            "* bob has joined.",
            "<bob> hi",
        ];
        let full_b = ["What's your name?", "Welcome, bob!"];
        let without_leave: Vec<&str> = got_a
            .iter()
            .map(String::as_str)
            .filter(|l| *l != "* bob has left.")
            .collect();
        assert!(full_a.starts_with(&without_leave), "seed {seed}: {got_a:?}");
        let got_b: Vec<&str> = got_b.iter().map(String::as_str).collect();
        assert!(full_b.starts_with(&got_b), "seed {seed}: {got_b:?}");
        assert!(a.borrow().lost.is_none());
        assert_no_panics(pump.core_mut());
    }
}

#[test]
fn chat_over_real_sockets() {
    let mut reactor = Reactor::new().unwrap();
    let factory = ChatFactory::default();
    let users = factory.users.clone();
    let port = reactor.listen_tcp(util::localhost(), factory).unwrap();

    struct Connect(Shared);
    impl ClientFactory for Connect {
        type Protocol = LineReceiver<Client>;
        fn build_protocol(&mut self, _: &Address) -> Option<LineReceiver<Client>> {
            Some(LineReceiver::new(Client(self.0.clone())))
        }
    }
    let connect = |r: &mut Reactor| {
        let seen = Shared::default();
        r.connect_tcp(
            port.local_addr(),
            Connect(seen.clone()),
            Duration::from_secs(5),
        );
        seen
    };
    let send = |r: &mut Reactor, seen: &Shared, line: &'static str| {
        let h = seen.borrow().handle.unwrap();
        drop(
            r.connection(h)
                .with_protocol(move |c: &mut LineReceiver<Client>, ctx| {
                    c.send_line(ctx, line.as_bytes()).unwrap()
                }),
        );
    };
    let has = |seen: &Shared, n: usize| {
        let s = seen.clone();
        move || s.borrow().lines.len() >= n
    };

    let a = connect(&mut reactor);
    util::run_until(&mut reactor, has(&a, 1));
    send(&mut reactor, &a, "alice");
    util::run_until(&mut reactor, has(&a, 2));
    let b = connect(&mut reactor);
    util::run_until(&mut reactor, has(&b, 1));
    send(&mut reactor, &b, "alice");
    util::run_until(&mut reactor, has(&b, 2));
    send(&mut reactor, &b, "bob");
    util::run_until(&mut reactor, has(&a, 3));
    send(&mut reactor, &b, "hello over TCP");
    util::run_until(&mut reactor, has(&a, 4));
    let h = b.borrow().handle.unwrap();
    reactor.connection(h).lose_connection();
    util::run_until(&mut reactor, has(&a, 5));

    assert_eq!(
        lines(&a),
        [
            "What's your name?",
            "Welcome, alice!",
            "* bob has joined.",
            "<bob> hello over TCP",
            "* bob has left."
        ]
    );
    assert_eq!(
        lines(&b),
        [
            "What's your name?",
            "Name taken, please choose another.",
            "Welcome, bob!"
        ]
    );
    util::run_until(&mut reactor, || b.borrow().lost.is_some());
    assert_eq!(b.borrow().lost, Some(DisconnectReason::Done));
    assert_eq!(users.borrow().keys().collect::<Vec<_>>(), ["alice"]);
}
