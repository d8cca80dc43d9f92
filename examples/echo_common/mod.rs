//! What the echo clients (`echo_client`, `tls_echo_client`) share: the client
//! protocol and factory, the outcome of one exchange, and how it is reported.
//! TLS is a protocol wrapper in torsion, so the same protocol serves both.

#![allow(dead_code)]

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::Address;
use torsion::Reconnect;
use torsion::{ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reactor};

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
        print_tls_info(ctx);
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

    fn build_protocol(&mut self, _peer: &Address) -> Option<EchoClient> {
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

/// Runs `reactor` until the exchange the factory started (`connect` gets the
/// factory) is over or [`ECHO_TIMEOUT`] passes.
///
/// # Errors
/// The reactor's own failure (not the exchange's: that is the [`Outcome`]).
pub fn run_exchange(
    reactor: &mut Reactor,
    message: &[u8],
    connect: impl FnOnce(&mut Reactor, EchoClientFactory),
) -> torsion::Result<Outcome> {
    let slot = Slot::default();
    let factory = EchoClientFactory {
        message: message.to_vec(),
        slot: slot.clone(),
    };
    connect(reactor, factory);
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

/// Prints the outcome the way both clients do and gives the exit status.
pub fn report(outcome: Outcome, message: &[u8], target: &dyn std::fmt::Display) -> ExitCode {
    match outcome {
        Outcome::Echoed { data, rtt } => {
            println!("Received: {}", String::from_utf8_lossy(&data));
            println!("Round trip: {rtt:?}");
            if data == message {
                ExitCode::SUCCESS
            } else {
                eprintln!("The echo differs from the message sent");
                ExitCode::FAILURE
            }
        }
        Outcome::Failed(reason) => {
            eprintln!("Connection failed: {reason} ({target})");
            ExitCode::FAILURE
        }
        Outcome::LostEarly { reason, got } => {
            eprintln!(
                "Connection lost after {got} of {} bytes of echo: {reason} ({target})",
                message.len()
            );
            ExitCode::FAILURE
        }
        Outcome::TimedOut => {
            eprintln!("Timed out: no complete echo within {ECHO_TIMEOUT:?} ({target})");
            ExitCode::FAILURE
        }
    }
}

/// Says which TLS version and cipher suite were negotiated, on TLS connections.
/// (The examples' torsion has its default features, `tls` among them.)
fn print_tls_info(ctx: &mut Context<'_>) {
    if let Some(info) = ctx.tls_info() {
        if let (Some(v), Some(c)) = (info.protocol_version(), info.cipher_suite()) {
            eprintln!("TLS: {v:?}, {c:?}");
        }
    }
}
