//! Deferred micro-benchmarks, compared with Twisted's figures on this machine
//! kind (shared/reference/twisted.md §4).
//!
//! Run: `cargo bench --bench defer` (release profile; prints the median of
//! several runs).

use std::hint::black_box;
use std::time::Instant;

use torsion::defer::{succeed, Deferred, Failure, LocalExecutor};

const N: u64 = 1_000_000;
const RUNS: usize = 7;

/// Runs `f` N times per run, `RUNS` runs; returns the median rate per second.
fn rate(mut f: impl FnMut(u64)) -> f64 {
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for i in 0..N {
                f(i);
            }
            N as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

fn report(name: &str, per_sec: f64, twisted: Option<f64>) {
    match twisted {
        Some(tw) => println!(
            "{name:<48} {:>8.2} M/s   Twisted {:>6.0} k/s   ratio {:>5.1}x",
            per_sec / 1e6,
            tw / 1e3,
            per_sec / tw
        ),
        None => println!("{name:<48} {:>8.2} M/s", per_sec / 1e6),
    }
}

fn main() {
    let chains = rate(|i| {
        let (d, t) = Deferred::<u64, Failure>::new();
        let mut d = d
            .add_callback(|n| Ok(n + 1))
            .add_callback(|n| Ok(n * 2))
            .add_callback(|n| Ok(n ^ 1));
        t.callback(black_box(i)).unwrap();
        black_box(d.take_result());
    });
    report(
        "Deferred::new + 3 callbacks + callback",
        chains,
        Some(470e3),
    );

    let ready = rate(|i| {
        let mut d = succeed::<u64, Failure>(black_box(i)).add_callback(|n| Ok(n + 1));
        black_box(d.take_result());
    });
    report("succeed(x).add_callback(f)", ready, Some(1.06e6));

    let nested = rate(|i| {
        let (inner, ti) = Deferred::<u64, Failure>::new();
        let mut d = succeed::<u64, Failure>(i).add_callback(move |_| inner);
        ti.callback(black_box(i)).unwrap();
        black_box(d.take_result());
    });
    report("callback returning a pending Deferred, fired", nested, None);

    let exec = LocalExecutor::new();
    let awaited = rate(|i| {
        let d = succeed::<u64, Failure>(black_box(i));
        let mut out = exec.spawn(async move { Ok::<_, Failure>(d.await? + 1) });
        exec.run_ready();
        black_box(out.take_result());
    });
    report(
        "spawn(async { fired_deferred.await? + 1 }) + run",
        awaited,
        Some(534e3),
    );
}
