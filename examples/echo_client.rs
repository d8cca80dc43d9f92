//! An echo client: sends one message, waits for the whole echo, prints it and the
//! round-trip time, closes.
//!
//! ```text
//! cargo run --example echo_client                               # 127.0.0.1:8000, "Hello, torsion!"
//! cargo run --example echo_client -- 127.0.0.1:9000 any words you like
//! ```
//!
//! Exits 0 once the echo has arrived intact; otherwise prints why (connection
//! refused, timed out, closed early, echo differs) and exits 1.

use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::Reconnect;
use torsion::{ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reactor};

/// Where the client connects when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8000";
/// What it sends when no message is given.
pub const DEFAULT_MESSAGE: &str = "Hello, torsion!";
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the whole exchange may take, connecting included.
pub const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

/// How the exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// As many bytes as were sent came back.
    Echoed {
        /// What came back.
        data: Vec<u8>,
        /// From the write to the last byte of the echo.
        rtt: Duration,
    },
    /// The connection could not be made.
    Failed(DisconnectReason),
    /// The connection ended before the whole echo arrived.
    LostEarly {
        /// Why it ended.
        reason: DisconnectReason,
        /// Bytes of echo that did arrive.
        got: usize,
    },
    /// [`ECHO_TIMEOUT`] passed first.
    TimedOut,
}

/// Where the protocol and the factory leave the [`Outcome`].
pub type Slot = Rc<RefCell<Option<Outcome>>>;

fn settle(slot: &Slot, outcome: Outcome) {
    slot.borrow_mut().get_or_insert(outcome);
}

/// Sends `message` once connected and closes when as many bytes came back.
#[derive(Debug)]
pub struct EchoClient {
    message: Vec<u8>,
    received: Vec<u8>,
    sent_at: Instant,
    slot: Slot,
}

impl Protocol for EchoClient {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.sent_at = Instant::now();
        ctx.write(&self.message);
        if self.message.is_empty() {
            self.data_received(ctx, &[]);
        }
    }

    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        self.received.extend_from_slice(data);
        if self.received.len() >= self.message.len() {
            let outcome = Outcome::Echoed {
                data: std::mem::take(&mut self.received),
                rtt: self.sent_at.elapsed(),
            };
            settle(&self.slot, outcome);
            ctx.lose_connection();
        }
    }

    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let got = self.received.len();
        settle(
            &self.slot,
            Outcome::LostEarly {
                reason: reason.clone(),
                got,
            },
        );
    }
}

/// Makes one [`EchoClient`] and stops the reactor when its connection is over.
#[derive(Debug)]
pub struct EchoClientFactory {
    /// What to send.
    pub message: Vec<u8>,
    /// Where the outcome goes.
    pub slot: Slot,
}

impl ClientFactory for EchoClientFactory {
    type Protocol = EchoClient;

    fn build_protocol(&mut self, _peer: SocketAddr) -> Option<EchoClient> {
        Some(EchoClient {
            message: self.message.clone(),
            received: Vec::new(),
            sent_at: Instant::now(),
            slot: self.slot.clone(),
        })
    }

    fn client_connection_failed(
        &mut self,
        core: &mut Core,
        _connector: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        settle(&self.slot, Outcome::Failed(reason.clone()));
        let _ = core.stop();
        Reconnect::Never
    }

    fn client_connection_lost(
        &mut self,
        core: &mut Core,
        _connector: Connector,
        _reason: &DisconnectReason,
    ) -> Reconnect {
        let _ = core.stop();
        Reconnect::Never
    }
}

/// Connects to `addr`, sends `message`, and runs `reactor` until the exchange is
/// over or [`ECHO_TIMEOUT`] passes.
///
/// # Errors
/// The reactor's own failure (not the exchange's: that is the [`Outcome`]).
pub fn exchange(
    reactor: &mut Reactor,
    addr: SocketAddr,
    message: &[u8],
) -> torsion::Result<Outcome> {
    let slot = Slot::default();
    let factory = EchoClientFactory {
        message: message.to_vec(),
        slot: slot.clone(),
    };
    reactor.connect_tcp(addr, factory, CONNECT_TIMEOUT);
    let timeout_slot = slot.clone();
    let timer = reactor.call_later(ECHO_TIMEOUT, move |core| {
        settle(&timeout_slot, Outcome::TimedOut);
        let _ = core.stop();
    });
    reactor.run()?;
    let _ = timer.cancel(reactor);
    let outcome = slot.borrow_mut().take();
    Ok(outcome.unwrap_or(Outcome::TimedOut))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let words: Vec<String> = args.collect();
    let message = if words.is_empty() {
        DEFAULT_MESSAGE.to_owned()
    } else {
        words.join(" ")
    };
    let addr = match target.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => {
            eprintln!("usage: echo_client [HOST:PORT [MESSAGE...]]   (cannot resolve {target:?})");
            return ExitCode::from(2);
        }
    };

    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Could not start the reactor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match exchange(&mut reactor, addr, message.as_bytes()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("The reactor failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match outcome {
        Outcome::Echoed { data, rtt } => {
            println!("Received: {}", String::from_utf8_lossy(&data));
            println!("Round trip: {rtt:?}");
            if data == message.as_bytes() {
                ExitCode::SUCCESS
            } else {
                eprintln!("The echo differs from the message sent");
                ExitCode::FAILURE
            }
        }
        Outcome::Failed(reason) => {
            eprintln!("Connection failed: {reason} ({addr})");
            ExitCode::FAILURE
        }
        Outcome::LostEarly { reason, got } => {
            eprintln!(
                "Connection lost after {got} of {} bytes of echo: {reason} ({addr})",
                message.len()
            );
            ExitCode::FAILURE
        }
        Outcome::TimedOut => {
            eprintln!("Timed out: no complete echo within {ECHO_TIMEOUT:?} ({addr})");
            ExitCode::FAILURE
        }
    }
}
