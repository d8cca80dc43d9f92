//! A slow async consumer of 1 GiB over 127.0.0.1 keeps memory bounded: the
//! connection's input buffer stops the socket being read while it is full.
//! (Its own test binary, so the process's memory is this test's alone.)

mod util;

use std::time::Duration;

use bytes::Bytes;
use torsion::aio::{self, StreamError, DEFAULT_INPUT_BUFFER};
use torsion::{Address, Context, Protocol, Reactor};
use util::{localhost, DEADLINE};

const TOTAL: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

/// Streams `TOTAL` bytes to whoever connects, then closes.
struct Firehose;
impl Protocol for Firehose {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        let chunk = Bytes::from(vec![0x5a; CHUNK]);
        let n = TOTAL / CHUNK as u64;
        ctx.stream_from((0..n).map(move |_| Ok(chunk.clone())));
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
        result.unwrap();
        ctx.lose_connection();
    }
}
/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[test]
fn a_slow_async_consumer_of_1_gib_keeps_memory_bounded() {
    let mut reactor = Reactor::new().unwrap();
    let addr = reactor
        .listen_tcp(localhost(), torsion::factory(|_: &Address| Firehose))
        .unwrap()
        .local_addr();
    let local = reactor.local();
    let start_rss = rss();
    let task = reactor.spawn_local(async move {
        let mut conn = aio::connect_tcp(&local, addr).await?;
        // One transport read past the bound at most.
        let bound = DEFAULT_INPUT_BUFFER + 64 * 1024;
        let (mut total, mut peak, mut full, mut peak_rss) = (0u64, 0, 0u32, 0);
        let mut buf = vec![0; CHUNK];
        loop {
            let buffered = conn.input_buffered();
            assert!(buffered <= bound, "input buffer {buffered} over {bound}");
            peak = peak.max(buffered);
            if buffered >= DEFAULT_INPUT_BUFFER {
                full += 1;
            }
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|&b| b == 0x5a));
            total += n as u64;
            if total % (64 << 20) < n as u64 {
                peak_rss = peak_rss.max(rss());
            }
            // Slow: one read per reactor turn (a zero-delay timer), while the
            // reactor reads all the socket has.
            aio::sleep(&local, Duration::ZERO).await;
        }
        Ok::<_, StreamError>((total, peak, full, peak_rss))
    });
    let watchdog = DEADLINE * 5;
    let h = reactor.reactor_handle();
    std::thread::spawn(move || {
        std::thread::sleep(watchdog);
        let _ = h.stop(); // a hang fails below instead of blocking CI
    });
    let (total, peak, full, peak_rss) = reactor
        .run_until_complete(task)
        .expect("finished within the watchdog")
        .unwrap();
    assert_eq!(total, TOTAL, "every byte arrived");
    assert!(
        full > 0,
        "the consumer was slow enough to fill its buffer (peak {peak})"
    );
    let growth = peak_rss.saturating_sub(start_rss);
    eprintln!(
        "1 GiB: input buffer peak {peak} B (bound {}), full {full} times, RSS growth {growth} B",
        DEFAULT_INPUT_BUFFER + 64 * 1024
    );
    assert!(
        growth < 64 << 20,
        "resident memory grew by {growth} bytes while 1 GiB went through"
    );
}
