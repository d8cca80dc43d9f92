//! Property tests of async connections over the faulty pump: whatever the
//! seed (how the bytes are split and delayed), the input buffer's size and
//! the mix of reads, the bytes come out as they went in, and the input buffer
//! never holds more than its bound (or what a waiting line needs).

use std::cell::Cell;
use std::rc::Rc;

use proptest::prelude::*;
use torsion::aio::{self, StreamError, StreamOptions};
use torsion::testing::{Faults, Pump, PumpConfig};
use torsion::{Context, Protocol};

/// Sends `data` when connected, then closes.
struct Sender(Vec<u8>);
impl Protocol for Sender {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.write(&self.0);
        ctx.lose_connection();
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

/// One way of reading the next bytes.
#[derive(Debug, Clone)]
enum Read {
    Some(usize),
    Exact(usize),
    Line(usize),
}

fn reads() -> impl Strategy<Value = Vec<Read>> {
    prop::collection::vec(
        prop_oneof![
            (1usize..200).prop_map(Read::Some),
            (1usize..200).prop_map(Read::Exact),
            (0usize..200).prop_map(Read::Line),
        ],
        1..40,
    )
}

fn pump(seed: u64, wire: usize) -> Pump {
    Pump::with_config(PumpConfig {
        faults: Faults::chaos(seed),
        wire_capacity: wire,
        ..PumpConfig::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reads_give_back_the_stream(
        data in prop::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..3000),
        plan in reads(),
        buffer in 1usize..512,
        wire in 1usize..4096,
        seed in any::<u64>(),
    ) {
        let mut pump = pump(seed, wire);
        let (protocol, connecting) = aio::protocol_with(StreamOptions {
            input_buffer: buffer,
            ..StreamOptions::default()
        });
        pump.connect(protocol, Sender(data.clone()));
        let peak = Rc::new(Cell::new(0usize));
        let p = peak.clone();
        let mut task = pump.core_mut().spawn_local(async move {
            let mut conn = connecting.await?;
            let mut got = Vec::new();
            let mut lines_ok = true;
            for r in plan.iter().cycle().take(100_000) {
                // Before a read, the buffer holds what arrived meanwhile.
                p.set(p.get().max(conn.input_buffered()));
                let before = got.len();
                match r {
                    Read::Some(n) => {
                        let mut buf = vec![0; *n];
                        let k = conn.read(&mut buf).await?;
                        got.extend_from_slice(&buf[..k]);
                    }
                    Read::Exact(n) => {
                        let mut buf = vec![0; *n];
                        match conn.read_exact(&mut buf).await {
                            Ok(()) => got.extend_from_slice(&buf),
                            Err(StreamError::UnexpectedEof { missing }) => {
                                got.extend_from_slice(&buf[..n - missing]);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Read::Line(max) => match conn.read_until(b'\n', *max).await {
                        Ok(line) => {
                            let body = line.strip_suffix(b"\n").unwrap_or(&line);
                            lines_ok &= body.len() <= *max && !body.contains(&b'\n');
                            got.extend_from_slice(&line);
                        }
                        Err(StreamError::LineTooLong { max: m }) => {
                            // Nothing was consumed: take the bytes with `read`.
                            lines_ok &= conn.input_buffered() > m;
                            let mut buf = vec![0; m + 1];
                            let k = conn.read(&mut buf).await?;
                            got.extend_from_slice(&buf[..k]);
                        }
                        Err(e) => return Err(e),
                    },
                }
                if got.len() == before && conn.input_buffered() == 0 && conn.lost().is_some() {
                    break;
                }
            }
            Ok((got, lines_ok))
        });
        pump.flush();
        let (got, lines_ok) = task.take_result().expect("the task finished")?;
        prop_assert!(got == data, "{} bytes back of {}", got.len(), data.len());
        prop_assert!(lines_ok);
        // The bound, one transport delivery past it, or a line's need (< 200).
        prop_assert!(peak.get() <= buffer.max(201) + wire, "peak {}", peak.get());
    }
}
