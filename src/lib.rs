//! torsion: a Twisted-style event-loop networking library on mio.
#![deny(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

mod buf;
mod context;
mod drive;
pub mod error;
pub mod protocol;
pub mod protocols;
pub mod reactor;
pub mod testing;

pub use context::{
    ConnectionHandle, Context, Core, DelayedCall, PanicPolicy, ReactorHandle, DEFAULT_HIGH_WATER,
    DEFAULT_LOW_WATER, DEFAULT_WRITE_CAP,
};
pub use error::{DisconnectReason, Error, Result};
pub use protocol::{ClientFactory, Factory, Protocol, Reconnect};
pub use reactor::{Connector, ListeningPort, Reactor, TcpOptions};
