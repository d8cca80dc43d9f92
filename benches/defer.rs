//! Deferred micro-benchmarks, compared with Twisted's figures on this machine
//! kind (shared/reference/twisted.md §4).
//!
//! Run: `cargo bench --bench defer` (release profile; prints the median of
//! several runs and the heap allocations per iteration of each case).
//!
//! For instruction counts, run one case a fixed number of times under
//! callgrind, twice with different counts, and divide the difference:
//!
//! ```text
//! cargo bench --bench defer --no-run
//! valgrind --tool=callgrind target/release/deps/defer-* --case chains --iters 100000
//! valgrind --tool=callgrind target/release/deps/defer-* --case chains --iters 200000
//! ```
//!
//! (`chains` was 1,232 instructions and 1 allocation per chain before the
//! in-place engine and the chain pool, 816 and 0 after; `ready` 811 -> 504,
//! `nested` 1,713 -> 1,228.) The allocations column counts the steady state:
//! freed chains are reused, so a case that frees what it makes allocates
//! nothing after its first iterations.
//!
//! Twisted's side, counted the same way (two N, the difference divided by
//! the difference in N; about 36,450 instructions per chain with Python 3.11
//! and Twisted 26.10, against 816 here):
//!
//! ```text
//! from twisted.internet.defer import Deferred
//! import sys
//! def one(i):
//!     d = Deferred()
//!     d.addCallback(lambda n: n + 1)
//!     d.addCallback(lambda n: n * 2)
//!     d.addCallback(lambda n: n ^ 1)
//!     d.callback(i)
//!     r = []
//!     d.addCallback(r.append)
//! for i in range(int(sys.argv[1])):
//!     one(i)
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use torsion::defer::{succeed, Deferred, Failure, LocalExecutor};

/// The system allocator, counting allocations (so each case can report how
/// many it makes per iteration).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: u64 = 1_000_000;
const RUNS: usize = 7;

/// Runs `f` N times per run, `RUNS` runs; returns the median rate per second
/// and the allocations per iteration.
fn rate(mut f: impl FnMut(u64)) -> (f64, f64) {
    let a0 = ALLOCS.load(Ordering::Relaxed);
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for i in 0..N {
                f(i);
            }
            N as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    // The Vec above allocates once.
    let allocs = (ALLOCS.load(Ordering::Relaxed) - a0 - 1) as f64 / (N as f64 * RUNS as f64);
    rates.sort_by(f64::total_cmp);
    (rates[RUNS / 2], allocs)
}

fn report(name: &str, (per_sec, allocs): (f64, f64), twisted: Option<f64>) {
    match twisted {
        Some(tw) => println!(
            "{name:<48} {:>8.2} M/s   {allocs:>4.1} allocs   Twisted {:>6.0} k/s   ratio {:>5.1}x",
            per_sec / 1e6,
            tw / 1e3,
            per_sec / tw
        ),
        None => println!(
            "{name:<48} {:>8.2} M/s   {allocs:>4.1} allocs",
            per_sec / 1e6
        ),
    }
}

fn chains(i: u64) {
    let (d, t) = Deferred::<u64, Failure>::new();
    let mut d = d
        .add_callback(|n| Ok(n + 1))
        .add_callback(|n| Ok(n * 2))
        .add_callback(|n| Ok(n ^ 1));
    t.callback(black_box(i)).unwrap();
    black_box(d.take_result());
}

fn ready(i: u64) {
    let mut d = succeed::<u64, Failure>(black_box(i)).add_callback(|n| Ok(n + 1));
    black_box(d.take_result());
}

fn nested(i: u64) {
    let (inner, ti) = Deferred::<u64, Failure>::new();
    let mut d = succeed::<u64, Failure>(i).add_callback(move |_| inner);
    ti.callback(black_box(i)).unwrap();
    black_box(d.take_result());
}

/// `--case NAME --iters N`: run one case N times and nothing else (for
/// callgrind). Returns false when those arguments are absent.
fn fixed_count() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(case), Some(iters)) = (get("--case"), get("--iters")) else {
        return false;
    };
    let iters: u64 = iters.parse().expect("--iters takes a number");
    let f: fn(u64) = match case.as_str() {
        "chains" => chains,
        "ready" => ready,
        "nested" => nested,
        other => panic!("unknown case {other} (chains, ready, nested)"),
    };
    let a0 = ALLOCS.load(Ordering::Relaxed);
    for i in 0..iters {
        f(i);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - a0;
    println!(
        "{case}: {iters} iterations, {:.2} allocs/iteration",
        allocs as f64 / iters as f64
    );
    true
}

fn main() {
    if fixed_count() {
        return;
    }
    report(
        "Deferred::new + 3 callbacks + callback",
        rate(chains),
        Some(470e3),
    );
    report("succeed(x).add_callback(f)", rate(ready), Some(1.06e6));
    report(
        "callback returning a pending Deferred, fired",
        rate(nested),
        None,
    );

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
