//! Timer benchmarks on the real reactor's `Core`, compared with Twisted's
//! figures on this machine kind (shared/reference/twisted.md §4).
//!
//! Run: `cargo bench --bench timers` (release profile; median of several runs).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::Reactor;

const N: usize = 1_000_000;
const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(name: &str, per_sec: f64, twisted: Option<f64>) {
    match twisted {
        Some(tw) => println!(
            "{name:<52} {:>7.2} M/s   Twisted {:>4.0} k/s   ratio {:>5.1}x",
            per_sec / 1e6,
            tw / 1e3,
            per_sec / tw
        ),
        None => println!("{name:<52} {:>7.2} M/s", per_sec / 1e6),
    }
}

fn main() {
    let mut r = Reactor::new().unwrap();

    // 1,000,000 timers scheduled, then all cancelled.
    let cancel = median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                let calls: Vec<_> = (0..N)
                    .map(|i| {
                        r.call_later(
                            Duration::from_secs(10 + (i % 1000) as u64),
                            |_| unreachable!(),
                        )
                    })
                    .collect();
                for c in calls {
                    c.cancel(&mut r).unwrap();
                }
                N as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    report(
        "1M call_later(10 s) + cancel (per timer)",
        cancel,
        Some(305e3),
    );

    // One call_later + cancel at a time, 1M times (Twisted's measurement).
    let one = median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..N {
                    let c = r.call_later(Duration::from_secs(10), |_| unreachable!());
                    c.cancel(&mut r).unwrap();
                }
                N as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    report("call_later(10 s) + cancel, one at a time", one, Some(305e3));

    // 1,000,000 timers scheduled, then all fired by the reactor.
    let fired = Rc::new(Cell::new(0usize));
    let fire = median(
        (0..RUNS)
            .map(|_| {
                fired.set(0);
                let t = Instant::now();
                for _ in 0..N {
                    let f = fired.clone();
                    r.call_later(Duration::ZERO, move |_| f.set(f.get() + 1));
                }
                while fired.get() < N {
                    r.run_once(Some(Duration::ZERO)).unwrap();
                }
                N as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    report(
        "1M call_later(0) fired by the reactor (per timer)",
        fire,
        Some(149e3),
    );
}
