//! `netperf --server`: echo (or sink, or source) on TCP, echo on UDP at the same
//! address, and the control connection that tells a client this process's CPU
//! use. See [`super::wire`] for the headers and lines.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use torsion::{
    Address, Context, Core, DatagramContext, DatagramPort, DatagramProtocol, Factory,
    ListeningPort, Protocol,
};

use super::cpu::CpuSample;
use super::wire::{self, Role, ServerStats};

/// Counters over every connection of the server.
#[derive(Debug, Default)]
pub struct Totals {
    /// Bytes received by sinks.
    pub rx_bytes: u64,
    /// Bytes sent by sources.
    pub tx_bytes: u64,
    /// Bytes echoed (TCP and UDP).
    pub echoed: u64,
}

/// Shared by the server's connections.
pub type TotalsRef = Rc<RefCell<Totals>>;

#[derive(Debug)]
enum State {
    /// The first bytes, until they are or are not a header.
    Deciding(Vec<u8>),
    Data(Role),
    Control {
        line: Vec<u8>,
        cpu: CpuSample,
        rx: u64,
        tx: u64,
    },
}

/// One accepted connection.
#[derive(Debug)]
pub struct ServerConn {
    default: Role,
    totals: TotalsRef,
    chunk: Bytes,
    state: State,
}

impl ServerConn {
    fn start(&mut self, ctx: &mut Context<'_>, role: Role, rest: &[u8]) {
        tracing::debug!(peer = %ctx.peer_addr(), role = role.name(), "data connection");
        self.state = State::Data(role);
        if matches!(role, Role::Source | Role::Bidir) {
            self.produce(ctx);
        }
        if !rest.is_empty() {
            self.data(ctx, role, rest);
        }
    }

    fn data(&mut self, ctx: &mut Context<'_>, role: Role, data: &[u8]) {
        match role {
            Role::Echo => {
                self.totals.borrow_mut().echoed += data.len() as u64;
                ctx.write(data);
            }
            Role::Sink | Role::Bidir => self.totals.borrow_mut().rx_bytes += data.len() as u64,
            Role::Source => {}
        }
    }

    /// A source streams the pattern for as long as the connection lasts, as
    /// fast as the socket takes it.
    fn produce(&mut self, ctx: &mut Context<'_>) {
        let (chunk, totals) = (self.chunk.clone(), self.totals.clone());
        ctx.stream_from(std::iter::repeat_with(move || {
            totals.borrow_mut().tx_bytes += chunk.len() as u64;
            Ok(chunk.clone())
        }));
    }

    fn control(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        let State::Control { line, cpu, rx, tx } = &mut self.state else {
            return;
        };
        for &b in data {
            if b != b'\n' {
                line.push(b);
                if line.len() > wire::MAX_LINE {
                    tracing::debug!("control line too long");
                    return ctx.abort_connection();
                }
                continue;
            }
            let request = std::mem::take(line);
            if request == wire::STATS_REQUEST[..wire::STATS_REQUEST.len() - 1] {
                let used = cpu.until(&CpuSample::now());
                let t = self.totals.borrow();
                let stats = ServerStats {
                    cpu_user_s: used.user_s,
                    cpu_system_s: used.system_s,
                    wall_s: used.wall_s,
                    rx_bytes: t.rx_bytes - *rx,
                    tx_bytes: t.tx_bytes - *tx,
                };
                ctx.write(stats.line().as_bytes());
            } else {
                ctx.write(b"error unknown request\n");
            }
        }
    }
}

impl Protocol for ServerConn {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        match &mut self.state {
            State::Data(role) => {
                let role = *role;
                self.data(ctx, role, data)
            }
            State::Control { .. } => self.control(ctx, data),
            State::Deciding(seen) => {
                seen.extend_from_slice(data);
                let n = seen.len().min(wire::MAGIC.len());
                if seen[..n] != wire::MAGIC[..n] {
                    // Not a header: the default role, from the first byte.
                    let all = std::mem::take(seen);
                    return self.start(ctx, self.default, &all);
                }
                let Some(nl) = seen.iter().position(|&b| b == b'\n') else {
                    if seen.len() > wire::MAX_LINE {
                        let all = std::mem::take(seen);
                        return self.start(ctx, self.default, &all);
                    }
                    return;
                };
                let all = std::mem::take(seen);
                let name = String::from_utf8_lossy(&all[wire::MAGIC.len()..nl]).into_owned();
                let rest = &all[nl + 1..];
                if name == "control" {
                    ctx.write(wire::CONTROL_OK);
                    let t = self.totals.borrow();
                    self.state = State::Control {
                        line: Vec::new(),
                        cpu: CpuSample::now(),
                        rx: t.rx_bytes,
                        tx: t.tx_bytes,
                    };
                    drop(t);
                    return self.control(ctx, rest);
                }
                match Role::from_name(&name) {
                    Some(role) => self.start(ctx, role, rest),
                    None => {
                        ctx.write(format!("error unknown role {name:?}\n").as_bytes());
                        ctx.lose_connection();
                    }
                }
            }
        }
    }

    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        if matches!(self.state, State::Data(Role::Echo)) {
            ctx.pause_reading();
        }
    }

    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        if matches!(self.state, State::Data(Role::Echo)) {
            ctx.resume_reading();
        }
    }
}

/// Builds a [`ServerConn`] per accepted connection.
#[derive(Debug)]
pub struct ServerFactory {
    /// The role of connections that send no header.
    pub default: Role,
    /// Counters shared with the connections.
    pub totals: TotalsRef,
    chunk: Bytes,
}

impl ServerFactory {
    /// A factory whose headerless connections get `default`.
    pub fn new(default: Role, totals: TotalsRef) -> ServerFactory {
        ServerFactory {
            default,
            totals,
            chunk: Bytes::from(wire::stream_chunk()),
        }
    }
}

impl Factory for ServerFactory {
    type Protocol = ServerConn;

    fn build_protocol(&mut self, _peer: &Address) -> Option<ServerConn> {
        Some(ServerConn {
            default: self.default,
            totals: self.totals.clone(),
            chunk: self.chunk.clone(),
            state: State::Deciding(Vec::new()),
        })
    }
}

/// Echoes every datagram to its sender.
#[derive(Debug)]
pub struct UdpEcho {
    totals: TotalsRef,
}

impl DatagramProtocol for UdpEcho {
    fn datagram_received(&mut self, ctx: &mut DatagramContext<'_>, data: &[u8], from: &Address) {
        self.totals.borrow_mut().echoed += data.len() as u64;
        if let Err(e) = ctx.send_to(data, from.clone()) {
            tracing::debug!(error = %e, "udp echo not sent");
        }
    }
}

/// The server's ports.
#[derive(Debug)]
pub struct Listening {
    /// TCP: data and control connections.
    pub tcp: ListeningPort,
    /// UDP echo, on the same address.
    pub udp: DatagramPort,
}

/// Listens on `addr` (TCP and UDP; port 0 picks a TCP port and uses the same
/// number for UDP).
///
/// # Errors
/// The operating system's error when an address cannot be bound.
pub fn listen(core: &mut Core, addr: SocketAddr, default: Role) -> torsion::Result<Listening> {
    let totals = TotalsRef::default();
    let tcp = core.listen_tcp(addr, ServerFactory::new(default, totals.clone()))?;
    let udp = core.listen_udp(tcp.local_addr(), UdpEcho { totals })?;
    Ok(Listening { tcp, udp })
}
