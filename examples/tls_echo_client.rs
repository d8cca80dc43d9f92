//! A TLS echo client: sends one message, waits for the whole echo, prints it and
//! the round-trip time, closes (with `close_notify`).
//!
//! ```text
//! cargo run --example tls_echo_client -- --ca /tmp/torsion-tls-echo-cert.pem
//! cargo run --example tls_echo_client -- 127.0.0.1:9443 --insecure any words you like
//! cargo run --example tls_echo_client -- example.org:443 --servername example.org hi
//! ```
//!
//! The server's certificate is checked against the system's roots, or only the
//! CA of `--ca FILE`; `--insecure` skips the check (encrypted, but anyone can
//! impersonate the server). The name checked is the host given (or
//! `--servername`). Exits 0 once the echo has arrived intact; otherwise prints
//! why (refused, handshake failure, timed out, closed early, echo differs) and
//! exits 1.

use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use torsion::tls;
use torsion::{
    ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reactor, Reconnect,
};

/// Where the client connects when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8443";
/// What it sends when no message is given.
pub const DEFAULT_MESSAGE: &str = "Hello, torsion!";
/// How long connecting, and then the handshake, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the whole exchange may take.
pub const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

/// How the exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// As many bytes as were sent came back.
    Echoed {
        /// What came back.
        data: Vec<u8>,
        /// From the write (after the handshake) to the last byte of the echo.
        rtt: Duration,
    },
    /// The connection or the handshake failed.
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

type Slot = Rc<RefCell<Option<Outcome>>>;

fn settle(slot: &Slot, outcome: Outcome) {
    slot.borrow_mut().get_or_insert(outcome);
}

/// Sends the message once the handshake is done; closes when it came back.
struct EchoClient {
    message: Vec<u8>,
    received: Vec<u8>,
    sent_at: Instant,
    slot: Slot,
}

impl Protocol for EchoClient {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        if let Some(info) = ctx.tls_info() {
            if let (Some(v), Some(c)) = (info.protocol_version(), info.cipher_suite()) {
                eprintln!("TLS: {v:?}, {c:?}");
            }
        }
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

struct EchoClientFactory {
    message: Vec<u8>,
    slot: Slot,
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
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        settle(&self.slot, Outcome::Failed(reason.clone()));
        let _ = core.stop();
        Reconnect::Never
    }

    fn client_connection_lost(
        &mut self,
        core: &mut Core,
        _c: Connector,
        _reason: &DisconnectReason,
    ) -> Reconnect {
        let _ = core.stop();
        Reconnect::Never
    }
}

struct Args {
    target: String,
    message: String,
    ca: Option<String>,
    insecure: bool,
    server_name: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut target = None;
    let mut words = Vec::new();
    let (mut ca, mut insecure, mut server_name) = (None, false, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ca" => ca = Some(it.next().ok_or("--ca needs a file")?),
            "--insecure" => insecure = true,
            "--servername" => server_name = Some(it.next().ok_or("--servername needs a name")?),
            _ if a.starts_with("--") => return Err(format!("unknown option {a:?}")),
            _ if target.is_none() => target = Some(a),
            _ => words.push(a),
        }
    }
    if insecure && ca.is_some() {
        return Err("--ca and --insecure exclude each other".into());
    }
    Ok(Args {
        target: target.unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
        message: if words.is_empty() {
            DEFAULT_MESSAGE.to_owned()
        } else {
            words.join(" ")
        },
        ca,
        insecure,
        server_name,
    })
}

fn client_config(args: &Args) -> Result<tls::ClientConfig, String> {
    if args.insecure {
        return tls::insecure_client_config().map_err(|e| e.to_string());
    }
    match &args.ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            tls::client_config_with_ca(&pem).map_err(|e| e.to_string())
        }
        None => tls::client_config().map_err(|e| e.to_string()),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("usage: tls_echo_client [HOST:PORT [MESSAGE...]] [--ca FILE | --insecure] [--servername NAME]   ({e})");
            return ExitCode::from(2);
        }
    };
    let addr = match args.target.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => {
            eprintln!(
                "usage: tls_echo_client [HOST:PORT [MESSAGE...]]   (cannot resolve {:?})",
                args.target
            );
            return ExitCode::from(2);
        }
    };
    let host = args
        .target
        .rsplit_once(':')
        .map_or(args.target.as_str(), |(h, _)| h);
    let name = match tls::server_name(args.server_name.as_deref().unwrap_or(host)) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let config = match client_config(&args) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("TLS setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Could not start the reactor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let slot = Slot::default();
    let factory = EchoClientFactory {
        message: args.message.as_bytes().to_vec(),
        slot: slot.clone(),
    };
    reactor.connect_tls(addr, name, config, factory, CONNECT_TIMEOUT);
    let timeout_slot = slot.clone();
    reactor.call_later(ECHO_TIMEOUT, move |core| {
        settle(&timeout_slot, Outcome::TimedOut);
        let _ = core.stop();
    });
    if let Err(e) = reactor.run() {
        eprintln!("The reactor failed: {e}");
        return ExitCode::FAILURE;
    }
    let outcome = slot.borrow_mut().take().unwrap_or(Outcome::TimedOut);
    match outcome {
        Outcome::Echoed { data, rtt } => {
            println!("Received: {}", String::from_utf8_lossy(&data));
            println!("Round trip: {rtt:?}");
            if data == args.message.as_bytes() {
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
                args.message.len()
            );
            ExitCode::FAILURE
        }
        Outcome::TimedOut => {
            eprintln!("Timed out: no complete echo within {ECHO_TIMEOUT:?} ({addr})");
            ExitCode::FAILURE
        }
    }
}
