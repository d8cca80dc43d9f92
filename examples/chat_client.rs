//! A chat client for `examples/chat_server.rs`: joins this process's stdin and
//! stdout to the room through `StandardIO`.
//!
//! ```text
//! cargo run --example chat_server &
//! cargo run --example chat_client            # 127.0.0.1:8123
//! What's your name?
//! alice                                      (typed)
//! Welcome, alice!
//! ```
//!
//! Each line typed (the first one is the name the server asks for) is sent as
//! a protocol line (`\r\n`); each line from the room is printed. On stdin's
//! EOF (Ctrl-D, or the end of a piped file) the client sends what was typed,
//! closes the connection, prints what the room still says until the server
//! closes, and exits 0. Ctrl-C (or SIGTERM) closes gracefully too. A refused
//! or lost connection is reported on stderr; the exit status is then 1.

#[path = "cli/mod.rs"]
mod cli;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use torsion::protocols::{LineHandler, LineReceiver, Lines};
use torsion::service::Application;
use torsion::{ClientFactory, ConnectionHandle, Context, DisconnectReason, Protocol};
use tracing_subscriber::filter::LevelFilter;

/// Chat with examples/chat_server from the terminal (or a pipe).
#[derive(Parser, Debug)]
#[command(name = "chat_client", version)]
struct Args {
    /// The chat server's address.
    #[arg(default_value = "127.0.0.1:8123")]
    address: SocketAddr,
    /// How long to wait for the connection (10s, 1m, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = cli::duration)]
    timeout: Duration,
    #[command(flatten)]
    log: cli::Verbosity,
}

/// What the two connections share.
#[derive(Default)]
struct State {
    /// The server connection, once made.
    server: Option<ConnectionHandle>,
    /// stdin/stdout, once registered.
    stdio: Option<ConnectionHandle>,
    /// Lines typed before the connection was made.
    pending: Vec<Vec<u8>>,
    /// stdin reached EOF: close the server connection after sending.
    stdin_done: bool,
    /// Why it ended badly, for the exit status.
    error: Option<String>,
}

type Shared = Rc<RefCell<State>>;

/// The terminal side: lines from stdin go to the server.
struct Keyboard {
    state: Shared,
    partial: Vec<u8>,
}

impl Keyboard {
    fn send(&self, core: &mut torsion::Core, mut line: Vec<u8>) {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let mut st = self.state.borrow_mut();
        match st.server {
            Some(h) => {
                line.extend_from_slice(b"\r\n");
                core.connection(h).write(&line);
            }
            None => st.pending.push(line),
        }
    }

    fn stdin_finished(&mut self, core: &mut torsion::Core) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.send(core, line);
        }
        let mut st = self.state.borrow_mut();
        st.stdin_done = true;
        if let Some(h) = st.server {
            finish_sending(core, h);
        }
    }
}

impl Protocol for Keyboard {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        // Keep printing the room after stdin's EOF, until the server closes.
        ctx.set_half_close(true);
        self.state.borrow_mut().stdio = Some(ctx.handle());
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        self.partial.extend_from_slice(data);
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.partial.drain(..=i).collect();
            line.pop();
            self.send(ctx, line);
        }
    }
    fn read_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.stdin_finished(ctx);
    }
    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let mut server = None;
        {
            let mut st = self.state.borrow_mut();
            st.stdio = None;
            if !reason.is_clean() && st.error.is_none() {
                st.error = Some(match reason {
                    DisconnectReason::Reset => {
                        "standard output closed: its reader went away".to_owned()
                    }
                    _ => format!("standard I/O failed: {reason}"),
                });
            }
            if !st.stdin_done {
                server = st.server;
            }
        }
        if let Some(h) = server {
            finish_sending(ctx, h);
        } else if self.state.borrow().server.is_none() {
            let _ = ctx.stop();
        }
    }
}

/// Nothing more to send: shut our sending side once what was typed is
/// flushed, and keep printing the room until the server closes.
fn finish_sending(core: &mut torsion::Core, server: ConnectionHandle) {
    drop(
        core.connection(server)
            .with_protocol(|_: &mut LineReceiver<Room>, ctx| ctx.lose_write_connection()),
    );
}

/// The server side: lines from the room go to stdout.
struct Room {
    state: Shared,
}

impl LineHandler for Room {
    fn connection_made(&mut self, lines: &mut Lines<'_, '_>) {
        let pending = {
            let mut st = self.state.borrow_mut();
            st.server = Some(lines.handle());
            std::mem::take(&mut st.pending)
        };
        for line in pending {
            let _ = lines.send_line(&line);
        }
        if self.state.borrow().stdin_done {
            lines.lose_write_connection();
        }
    }
    fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]) {
        if let Some(h) = self.state.borrow().stdio {
            let mut out = line.to_vec();
            out.push(b'\n');
            lines.core().connection(h).write(&out);
        }
    }
    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let stdio = {
            let mut st = self.state.borrow_mut();
            st.server = None;
            if !reason.is_clean() && st.error.is_none() {
                st.error = Some(format!("connection lost: {reason}"));
            }
            st.stdio
        };
        // Flush what the room said to stdout, then stop.
        match stdio {
            Some(h) => ctx.core().connection(h).lose_connection(),
            None => {
                let _ = ctx.stop();
            }
        }
    }
}

struct Connect {
    state: Shared,
    addr: SocketAddr,
}

impl ClientFactory for Connect {
    type Protocol = LineReceiver<Room>;
    fn build_protocol(&mut self, _peer: &torsion::Address) -> Option<Self::Protocol> {
        Some(LineReceiver::new(Room {
            state: self.state.clone(),
        }))
    }
    fn client_connection_failed(
        &mut self,
        core: &mut torsion::Core,
        _connector: torsion::Connector,
        reason: &DisconnectReason,
    ) -> torsion::Reconnect {
        self.state.borrow_mut().error = Some(format!("cannot connect to {}: {reason}", self.addr));
        let _ = core.stop();
        torsion::Reconnect::Never
    }
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::WARN);
    let mut app = match Application::new() {
        Ok(a) => a,
        Err(e) => return cli::fail(format!("cannot start the reactor: {}", cli::plain(e))),
    };
    let state = Shared::default();
    let reactor = app.reactor();
    let keyboard = Keyboard {
        state: state.clone(),
        partial: Vec::new(),
    };
    if let Err(e) = reactor.standard_io(keyboard) {
        return cli::fail(format!("cannot use standard I/O: {}", cli::plain(e)));
    }
    let factory = Connect {
        state: state.clone(),
        addr: args.address,
    };
    reactor.connect_tcp(args.address, factory, args.timeout);
    if let Err(e) = app.run() {
        return cli::fail(cli::plain(e));
    }
    let error = state.borrow_mut().error.take();
    match error {
        Some(e) => cli::fail(e),
        None => ExitCode::SUCCESS,
    }
}
