//! A UDP echo client: sends one datagram, waits for the echo, prints it and the
//! round-trip time.
//!
//! ```text
//! cargo run --example udp_echo_client                          # 127.0.0.1:8000, "Hello, torsion!"
//! cargo run --example udp_echo_client -- 127.0.0.1:9000 any words you like
//! ```
//!
//! The socket is connected to the server, so a port nobody listens on is
//! reported (`Connection refused`) instead of waited for. Exits 0 once the echo
//! has arrived intact; otherwise prints why (refused, no reply within
//! [`REPLY_TIMEOUT`], echo differs) and exits 1.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use torsion::{Address, DatagramContext, DatagramProtocol, Reactor};
use tracing_subscriber::filter::LevelFilter;

#[path = "cli/mod.rs"]
mod cli;

/// Where the client sends when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8000";
/// What it sends when no message is given.
pub const DEFAULT_MESSAGE: &str = "Hello, torsion!";
/// How long to wait for the echo.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How the exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A datagram came back.
    Echoed {
        /// What came back.
        data: Vec<u8>,
        /// From the send to the echo.
        rtt: Duration,
    },
    /// The server's host said nothing listens on that port.
    Refused,
    /// The datagram could not be sent.
    SendFailed(String),
    /// [`REPLY_TIMEOUT`] passed first.
    TimedOut,
}

/// Where the protocol leaves the [`Outcome`].
pub type Slot = Rc<RefCell<Option<Outcome>>>;

/// Connects to the server, sends the message, stops the reactor on the answer.
#[derive(Debug)]
pub struct EchoClient {
    server: SocketAddr,
    message: Vec<u8>,
    sent_at: Instant,
    slot: Slot,
}

impl EchoClient {
    fn settle(&self, ctx: &mut DatagramContext<'_>, outcome: Outcome) {
        self.slot.borrow_mut().get_or_insert(outcome);
        let _ = ctx.stop();
    }
}

impl DatagramProtocol for EchoClient {
    fn start_protocol(&mut self, ctx: &mut DatagramContext<'_>) {
        self.sent_at = Instant::now();
        let sent = ctx
            .connect(self.server)
            .and_then(|()| ctx.write(&self.message));
        if let Err(e) = sent {
            self.settle(ctx, Outcome::SendFailed(e.to_string()));
        }
    }

    fn datagram_received(&mut self, ctx: &mut DatagramContext<'_>, data: &[u8], _from: &Address) {
        let rtt = self.sent_at.elapsed();
        self.settle(
            ctx,
            Outcome::Echoed {
                data: data.to_vec(),
                rtt,
            },
        );
    }

    fn connection_refused(&mut self, ctx: &mut DatagramContext<'_>) {
        self.settle(ctx, Outcome::Refused);
    }
}

/// Sends `message` to `addr` from a fresh port and runs `reactor` until the echo
/// arrives, the port is refused, or [`REPLY_TIMEOUT`] passes.
///
/// # Errors
/// The reactor's or the socket's own failure (not the exchange's: that is the
/// [`Outcome`]).
pub fn exchange(
    reactor: &mut Reactor,
    addr: SocketAddr,
    message: &[u8],
) -> torsion::Result<Outcome> {
    let slot = Slot::default();
    let local: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().unwrap()
    } else {
        "0.0.0.0:0".parse().unwrap()
    };
    let client = EchoClient {
        server: addr,
        message: message.to_vec(),
        sent_at: Instant::now(),
        slot: slot.clone(),
    };
    let port = reactor.listen_udp(local, client)?;
    let timeout_slot = slot.clone();
    let timer = reactor.call_later(REPLY_TIMEOUT, move |core| {
        timeout_slot.borrow_mut().get_or_insert(Outcome::TimedOut);
        let _ = core.stop();
    });
    reactor.run()?;
    let _ = timer.cancel(reactor);
    port.stop_listening(reactor);
    let outcome = slot.borrow_mut().take();
    Ok(outcome.unwrap_or(Outcome::TimedOut))
}

/// Sends one datagram to a UDP echo server, waits for the echo, prints it and
/// the round-trip time.
#[derive(Debug, Parser)]
#[command(name = "udp_echo_client", version)]
struct Args {
    /// The echo server, as HOST:PORT.
    #[arg(default_value = DEFAULT_ADDR, value_parser = cli::host_port)]
    address: String,

    /// The message (the words joined by spaces) [default: "Hello, torsion!"].
    message: Vec<String>,

    #[command(flatten)]
    log: cli::Verbosity,
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::WARN);
    let message = if args.message.is_empty() {
        DEFAULT_MESSAGE.to_owned()
    } else {
        args.message.join(" ")
    };
    let addr = match cli::resolve(&args.address) {
        Ok(a) => a,
        Err(e) => return cli::fail(e),
    };
    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => return cli::fail(format!("cannot start the reactor: {}", cli::plain(e))),
    };
    let outcome = match exchange(&mut reactor, addr, message.as_bytes()) {
        Ok(o) => o,
        Err(e) => return cli::fail(format!("cannot send to {addr}: {}", cli::plain(e))),
    };
    match outcome {
        Outcome::Echoed { data, rtt } => {
            println!("Received: {}", String::from_utf8_lossy(&data));
            println!("Round trip: {rtt:?}");
            if data == message.as_bytes() {
                ExitCode::SUCCESS
            } else {
                cli::fail("the echo differs from the message sent")
            }
        }
        Outcome::Refused => cli::fail(format!("Connection refused: nothing listens on {addr}")),
        Outcome::SendFailed(e) => cli::fail(format!("cannot send to {addr}: {}", cli::plain(e))),
        Outcome::TimedOut => cli::fail(format!(
            "Timed out: no reply within {REPLY_TIMEOUT:?} ({addr})"
        )),
    }
}
