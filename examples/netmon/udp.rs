//! The udp probe: one datagram (`--send`) to the target, a reply that starts
//! with `--expect` (any reply without it) within the timeout.

use std::rc::Rc;
use std::time::Instant;

use torsion::{Address, Core, DatagramContext, DatagramProtocol};

use super::monitor::{Monitor, Origin};
use super::status::{Reason, Status, Up};
use super::target::Spec;

/// One udp check.
#[derive(Debug)]
pub struct UdpCheck {
    target: usize,
    addr: std::net::SocketAddr,
    monitor: Monitor,
    spec: Rc<Spec>,
    started: Instant,
    done: bool,
}

/// Starts a udp check of target `target`.
pub fn start(
    core: &mut Core,
    target: usize,
    addr: std::net::SocketAddr,
    monitor: Monitor,
    spec: Rc<Spec>,
) {
    let started = Instant::now();
    let any = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let check = UdpCheck {
        target,
        addr,
        monitor: monitor.clone(),
        spec,
        started,
        done: false,
    };
    let bound = any
        .parse()
        .map_err(|_| "bad constant".to_string())
        .and_then(|a| core.listen_udp(a, check).map_err(|e| e.to_string()));
    if let Err(e) = bound {
        monitor.report(core, target, Origin::Check, started, Err(Reason::Error(e)));
    }
}

impl UdpCheck {
    fn finish(&mut self, ctx: &mut DatagramContext<'_>, status: Status) {
        if self.done {
            return;
        }
        self.done = true;
        self.monitor
            .report(ctx, self.target, Origin::Check, self.started, status);
        ctx.stop_listening();
    }
}

impl DatagramProtocol for UdpCheck {
    fn start_protocol(&mut self, ctx: &mut DatagramContext<'_>) {
        let sent = ctx
            .connect(self.addr)
            .and_then(|()| ctx.write(self.spec.send.as_deref().unwrap_or_default()));
        if let Err(e) = sent {
            return self.finish(ctx, Err(Reason::Error(e.to_string())));
        }
        let port = ctx.port();
        ctx.call_later(self.spec.timeout, move |core| {
            port.with_protocol(core, |c: &mut UdpCheck, ctx| {
                c.finish(ctx, Err(Reason::TimedOut))
            });
        });
    }

    fn datagram_received(&mut self, ctx: &mut DatagramContext<'_>, data: &[u8], _from: &Address) {
        let status = match self.spec.expect.as_deref() {
            Some(e) if !data.starts_with(e) => {
                let n = data.len().min(40);
                Err(Reason::WrongBanner(
                    String::from_utf8_lossy(&data[..n]).into_owned(),
                ))
            }
            _ => Ok(Up::new(self.started.elapsed())),
        };
        self.finish(ctx, status);
    }

    fn connection_refused(&mut self, ctx: &mut DatagramContext<'_>) {
        self.finish(ctx, Err(Reason::Refused));
    }

    fn stop_protocol(&mut self, ctx: &mut DatagramContext<'_>) {
        if !self.done {
            self.done = true;
            self.monitor.report(
                ctx,
                self.target,
                Origin::Check,
                self.started,
                Err(Reason::Error("stopped".into())),
            );
        }
    }
}
