//! The reactor's side of a [`Snapshot`]: its connections and listeners.

use std::time::Instant;

use super::stream::Stream;
use super::{Entry, Net, Reactor};
use crate::context::Core;
use crate::introspect::{ConnectionInfo, Snapshot, TransportKind};
use crate::protocol::Protocol;
use crate::transport::{flags, ConnState, HostAddr};

impl Reactor {
    /// A [`Snapshot`] of everything the reactor runs, now: its connections,
    /// listeners, timers, queues, counters and callback durations. Costs
    /// one `getsockname` per connection (the host address) and a few
    /// allocations; cheap enough to take every second with many thousands
    /// of connections. From inside a callback, use
    /// [`Core::request_snapshot`]; from another thread,
    /// [`ReactorHandle::request_snapshot`](crate::ReactorHandle::request_snapshot).
    pub fn snapshot(&self) -> Snapshot {
        self.net.snapshot(&self.core)
    }
}

impl Net {
    pub(crate) fn snapshot(&self, core: &Core) -> Snapshot {
        let mut snap = core.core_snapshot();
        let now = snap.taken;
        snap.connections.reserve(self.live_conns);
        for (_, e) in self.entries.iter() {
            match e {
                Entry::Conn(c) => snap.connections.push(connection_info(
                    core,
                    now,
                    &c.stream,
                    &c.state,
                    &*c.protocol,
                )),
                Entry::Listener(l) => snap.listeners.push(l.info()),
                _ => {}
            }
        }
        snap
    }
}

/// Whether TLS runs somewhere in `p`'s wrappers.
fn has_tls(p: &dyn Protocol) -> bool {
    #[cfg(feature = "tls")]
    {
        let mut p = p;
        loop {
            let any: &dyn std::any::Any = p;
            if any.is::<crate::tls::TlsProtocol>() {
                return true;
            }
            match p.as_wrapper_ref() {
                Some(w) => p = w.inner(),
                None => return false,
            }
        }
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = p;
        false
    }
}

fn connection_info(
    core: &Core,
    now: Instant,
    stream: &Stream,
    state: &ConnState,
    protocol: &dyn Protocol,
) -> ConnectionInfo {
    let kind = match stream {
        _ if has_tls(protocol) => TransportKind::Tls,
        Stream::Tcp(_) => TransportKind::Tcp,
        Stream::Unix(_) => TransportKind::Unix,
        Stream::Pipe(_) => TransportKind::Pipe,
    };
    let host = match stream {
        Stream::Pipe(_) => None,
        s => s.host().ok(),
    };
    state.info(core, now, kind, host, crate::wrap::protocol_name(protocol))
}

impl ConnState {
    /// What a snapshot shows of a connection (any transport).
    pub(crate) fn info(
        &self,
        core: &Core,
        now: Instant,
        kind: TransportKind,
        host: Option<crate::Address>,
        protocol: &'static str,
    ) -> ConnectionInfo {
        let idle = self.extra.as_ref().and_then(|x| x.idle);
        let idle_deadline = idle.filter(|i| i.timer.is_some()).map(|i| {
            crate::context::later(core.instant_of(i.last_activity), i.timeout)
                .saturating_duration_since(now)
        });
        ConnectionInfo {
            handle: self.handle,
            kind,
            peer: self.peer(),
            host,
            protocol,
            age: core.age_since(self.born_ms, now),
            bytes_in: self.bytes_in(),
            bytes_out: self.bytes_out(),
            write_buffered: self.pending_len(),
            paused: self.has(flags::READ_PAUSED | flags::READ_THROTTLED),
            half_closed: self.has(flags::READ_EOF | flags::WRITE_SHUT | flags::WRITE_CLOSING),
            closing: self.has(flags::CLOSING),
            idle_deadline,
        }
    }
}

#[cfg(test)]
mod size_tests {
    use std::mem::size_of;

    /// An idle connection costs its slab entry: the engine's state, the
    /// socket and the protocol's box. Keep it at 64 bytes (issue #12: at
    /// most 64 bytes of resident memory per idle connection).
    #[test]
    fn an_idle_connection_record_is_64_bytes() {
        assert!(size_of::<crate::transport::ConnState>() <= 40);
        assert_eq!(size_of::<Box<dyn crate::Protocol>>(), 16);
        // The slab's own entry keeps its free-list link beside the niche of
        // ours, adding nothing (slab::Entry is private: the same shape).
        #[allow(dead_code)]
        enum SlabEntry<T> {
            Vacant(usize),
            Occupied(T),
        }
        assert_eq!(
            size_of::<SlabEntry<super::Entry>>(),
            size_of::<super::Entry>()
        );
        // mio adds a selector id to every socket in debug builds only.
        if !cfg!(debug_assertions) {
            assert_eq!(size_of::<super::Stream>(), 8);
            assert!(
                size_of::<super::Entry>() <= 64,
                "{}",
                size_of::<super::Entry>()
            );
        }
    }
}
