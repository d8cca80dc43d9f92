//! Idle timeouts on the pump's fake clock: a silent connection is closed at
//! its timeout, and traffic (reads and writes, through the engine's fused
//! and general paths alike) puts the close off until the timeout has passed
//! in silence, to the millisecond.

use std::time::Duration;

use torsion::testing::Pump;
use torsion::{Context, DisconnectReason, Protocol};

const TIMEOUT: Duration = Duration::from_millis(800);
const STEP: Duration = Duration::from_millis(1);

#[derive(Default)]
struct Peer;
impl Protocol for Peer {
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

/// Echoes, with an idle timeout set when the connection is made.
struct Server;
impl Protocol for Server {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.set_idle_timeout(Some(TIMEOUT));
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        ctx.write(data);
    }
}

/// Moves the clock a millisecond at a time until the server's side is lost;
/// returns the clock's time then.
fn time_of_close(pump: &mut Pump, link: torsion::testing::Link<Peer, Server>) -> Duration {
    let give_up = pump.clock().elapsed() + 4 * TIMEOUT;
    while pump.server_lost(link).is_none() {
        assert!(pump.clock().elapsed() < give_up, "never closed");
        pump.advance(STEP);
    }
    assert_eq!(pump.server_lost(link), Some(&DisconnectReason::TimedOut));
    pump.clock().elapsed()
}

#[test]
fn a_silent_connection_is_closed_at_its_timeout() {
    let mut pump = Pump::new();
    let link = pump.connect(Peer, Server);
    pump.flush();
    let set = pump.clock().elapsed();
    let closed = time_of_close(&mut pump, link);
    assert_eq!(closed - set, TIMEOUT);
}

#[test]
fn reads_and_writes_put_the_close_off_until_the_timeout_passed_in_silence() {
    for (i, gap) in [1u64, 37, 50, 333, 799].into_iter().enumerate() {
        let mut pump = Pump::new();
        let link = pump.connect(Peer, Server);
        pump.flush();
        // Traffic every `gap` ms for three timeouts' worth: each echo is a
        // read and a write on the server's side.
        let mut last = pump.clock().elapsed();
        while pump.clock().elapsed() < 3 * TIMEOUT {
            pump.advance(Duration::from_millis(gap));
            assert!(
                pump.server_lost(link).is_none(),
                "gap {gap} ms: closed while traffic flowed"
            );
            pump.with_client(link, |_, ctx| ctx.write(&[i as u8]));
            pump.flush();
            last = pump.clock().elapsed();
        }
        let closed = time_of_close(&mut pump, link);
        assert_eq!(closed - last, TIMEOUT, "gap {gap} ms");
    }
}

#[test]
fn traffic_the_server_only_writes_counts_too() {
    let mut pump = Pump::new();
    let link = pump.connect(Peer, Server);
    pump.flush();
    pump.advance(TIMEOUT / 2);
    pump.with_server(link, |_, ctx| ctx.write(b"still here"));
    pump.flush();
    let wrote = pump.clock().elapsed();
    let closed = time_of_close(&mut pump, link);
    assert_eq!(closed - wrote, TIMEOUT);
}

#[test]
fn reset_idle_timeout_restarts_the_count_without_traffic() {
    let mut pump = Pump::new();
    let link = pump.connect(Peer, Server);
    pump.flush();
    pump.advance(TIMEOUT - Duration::from_millis(100));
    pump.with_server(link, |_, ctx| ctx.reset_idle_timeout());
    let reset = pump.clock().elapsed();
    let closed = time_of_close(&mut pump, link);
    assert_eq!(closed - reset, TIMEOUT);
}
