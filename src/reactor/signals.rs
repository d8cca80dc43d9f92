//! SIGINT/SIGTERM as a `mio` source: signal-hook writes a byte to one end of a
//! socket pair per signal (async-signal-safe), the reactor watches the other.

use std::io::{self, Read};

use mio::event::Source;
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};
use signal_hook::low_level::pipe;
use signal_hook::SigId;

/// The read ends, one per signal; the handlers are removed on drop.
pub(crate) struct Signals {
    watched: Vec<(i32, SigId, UnixStream)>,
}

impl Signals {
    /// Installs a handler for each of `signals`.
    pub(crate) fn new(signals: &[i32]) -> io::Result<Signals> {
        let mut s = Signals {
            watched: Vec::with_capacity(signals.len()),
        };
        for &sig in signals {
            let (read, write) = UnixStream::pair()?;
            // The write end now belongs to the handler (closed when it is removed).
            let id = pipe::register(sig, write)?;
            s.watched.push((sig, id, read));
        }
        Ok(s)
    }

    /// The signals that arrived since the last call (each once, however often
    /// it arrived), draining the pipes.
    pub(crate) fn pending(&mut self) -> Vec<i32> {
        let mut arrived = Vec::new();
        let mut buf = [0u8; 64];
        for (sig, _, read) in &mut self.watched {
            let mut got = false;
            loop {
                match read.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => got = true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if got {
                arrived.push(*sig);
            }
        }
        arrived
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for (_, id, _) in self.watched.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

impl Source for Signals {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        for (_, _, read) in &mut self.watched {
            registry.register(read, token, interests)?;
        }
        Ok(())
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        for (_, _, read) in &mut self.watched {
            registry.reregister(read, token, interests)?;
        }
        Ok(())
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        for (_, _, read) in &mut self.watched {
            registry.deregister(read)?;
        }
        Ok(())
    }
}
