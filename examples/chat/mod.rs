//! Twisted's classic line chat: the protocol and its factory, shared by the
//! `chat_server` example and its tests (tests/chat.rs).
//!
//! A new client is asked `What's your name?`; a name in use gets `Name taken,
//! please choose another.`, a free one `Welcome, NAME!`. From then on every line
//! the client sends reaches every other named client as `<NAME> line`, and the
//! others hear `* NAME has joined.` and `* NAME has left.`. Lines may end in
//! `\n` (nc) or `\r\n` (telnet); the server sends `\r\n`. A line over
//! [`MAX_LINE_LENGTH`] gets `line too long ...` back and the connection closed.
//!
//! The protocol is a [`LineHandler`]; clients reach each other through the
//! reactor by [`ConnectionHandle`], so no protocol holds another one.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use torsion::protocols::{LineHandler, LineReceiver, Lines};
use torsion::{Address, ConnectionHandle, Context, Core, DisconnectReason, Factory};

/// Named clients, by name (sorted, so broadcasts go out in a fixed order).
pub type Users = Rc<RefCell<BTreeMap<String, ConnectionHandle>>>;

/// The longest line a client may send; a longer one closes its connection,
/// after telling it why.
pub const MAX_LINE_LENGTH: usize = 4096;

/// One chat client's connection.
#[derive(Debug)]
pub struct Chat {
    users: Users,
    name: Option<String>,
    idle_timeout: Option<Duration>,
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
        tracing::debug!(peer = %lines.peer_addr(), "client connected");
        lines.set_idle_timeout(self.idle_timeout);
        let _ = lines.send_line(b"What's your name?");
    }

    fn line_length_exceeded(&mut self, lines: &mut Lines<'_, '_>, _data: &[u8]) {
        let max = lines.max_line_length();
        tracing::info!(peer = %lines.peer_addr(), name = ?self.name, "line too long: closing");
        let _ = lines.send_line(format!("line too long (at most {max} bytes): closing").as_bytes());
        lines.lose_connection_with(DisconnectReason::protocol("line too long"));
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

    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        tracing::debug!(peer = %ctx.peer_addr(), %reason, "client disconnected");
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
    /// Connections silent for this long are closed (`None`: never).
    pub idle_timeout: Option<Duration>,
}

impl Factory for ChatFactory {
    type Protocol = LineReceiver<Chat>;

    fn build_protocol(&mut self, _peer: &Address) -> Option<LineReceiver<Chat>> {
        let chat = Chat {
            users: self.users.clone(),
            name: None,
            idle_timeout: self.idle_timeout,
        };
        Some(LineReceiver::new(chat).with_max_line_length(MAX_LINE_LENGTH))
    }
}
