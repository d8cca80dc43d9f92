//! Twisted's classic line chat, over TCP.
//!
//! ```text
//! cargo run --example chat_server [ADDRESS]     # default 127.0.0.1:8123
//! telnet 127.0.0.1 8123
//! ```
//!
//! Lines end in `\r\n`. A new client is asked `What's your name?`; a name in use
//! gets `Name taken, please choose another.`, a free one `Welcome, NAME!`. From
//! then on every line the client sends reaches every other named client as
//! `<NAME> line`, and the others hear `* NAME has joined.` and `* NAME has left.`.
//!
//! The protocol is a [`LineHandler`]; clients reach each other through the
//! reactor by [`ConnectionHandle`], so no protocol holds another one.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use torsion::protocols::{LineHandler, LineReceiver, Lines};
use torsion::Address;
use torsion::{ConnectionHandle, Context, Core, DisconnectReason, Factory};

/// Named clients, by name (sorted, so broadcasts go out in a fixed order).
pub type Users = Rc<RefCell<BTreeMap<String, ConnectionHandle>>>;

/// One chat client's connection.
#[derive(Debug)]
pub struct Chat {
    users: Users,
    name: Option<String>,
}

impl Chat {
    /// Sends `line` (plus `\r\n`) to every named client but `except`.
    fn broadcast(users: &Users, core: &mut Core, except: &str, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let bytes = bytes::Bytes::from(bytes);
        for (name, handle) in users.borrow().iter() {
            if name != except {
                core.connection(*handle).write_bytes(bytes.clone());
            }
        }
    }

    fn handle_name(&mut self, lines: &mut Lines<'_, '_>, name: String) {
        if name.is_empty() {
            let _ = lines.send_line(b"What's your name?");
            return;
        }
        if self.users.borrow().contains_key(&name) {
            let _ = lines.send_line(b"Name taken, please choose another.");
            return;
        }
        let _ = lines.send_line(format!("Welcome, {name}!").as_bytes());
        Chat::broadcast(&self.users, lines, &name, &format!("* {name} has joined."));
        let handle = lines.handle();
        self.users.borrow_mut().insert(name.clone(), handle);
        self.name = Some(name);
    }
}

impl LineHandler for Chat {
    fn connection_made(&mut self, lines: &mut Lines<'_, '_>) {
        let _ = lines.send_line(b"What's your name?");
    }

    fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        match &self.name {
            None => self.handle_name(lines, text.trim().to_string()),
            Some(name) => {
                Chat::broadcast(&self.users, lines, name, &format!("<{name}> {text}"));
            }
        }
    }

    fn connection_lost(&mut self, ctx: &mut Context<'_>, _reason: &DisconnectReason) {
        if let Some(name) = self.name.take() {
            self.users.borrow_mut().remove(&name);
            Chat::broadcast(&self.users, ctx, &name, &format!("* {name} has left."));
        }
    }
}

/// Builds a [`Chat`] (in a [`LineReceiver`]) per connection, sharing the users.
#[derive(Debug, Default)]
pub struct ChatFactory {
    /// Who is in the chat now.
    pub users: Users,
}

impl Factory for ChatFactory {
    type Protocol = LineReceiver<Chat>;

    fn build_protocol(&mut self, _peer: &Address) -> Option<LineReceiver<Chat>> {
        Some(LineReceiver::new(Chat {
            users: self.users.clone(),
            name: None,
        }))
    }
}

#[allow(dead_code)] // The tests include this file for `Chat` and `ChatFactory`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => "127.0.0.1:8123".parse()?,
    };
    let mut reactor = torsion::Reactor::new()?;
    let port = reactor.listen_tcp(addr, ChatFactory::default())?;
    println!("chat server listening on {}", port.local_addr());
    reactor.run()?;
    Ok(())
}
