//! [`render_snapshots`]: the reactors' snapshots as a `/metrics` page.

use super::{Exposition, Family, MetricType, PrometheusError, Value};
use crate::introspect::{ListenerInfo, Snapshot};

/// A family's name (after `torsion_`), its help, and how to read its value.
type Figure<T> = (&'static str, &'static str, fn(&T) -> u64);

/// The `Content-Type` of a page in the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes the reactors' snapshots as a page in the text exposition format.
///
/// `snapshots` has one entry per reactor; its index is the `reactor` label
/// (`reactor="0"`, `"1"`...), on every series, even with one reactor, so
/// that a dashboard does not change when `--threads` does (sum with
/// `sum without (reactor) (...)`). An entry is `None` for a reactor that did
/// not answer in time (blocked in a callback, which is what this page helps
/// to find): it is reported as `torsion_reactor_up{reactor="N"} 0` and has
/// no other series.
///
/// The families, all prefixed `torsion_`:
///
/// | name | type | meaning |
/// |---|---|---|
/// | `reactor_up` | gauge | 1 if the reactor answered the scrape |
/// | `uptime_seconds` | gauge | time since the reactor was made |
/// | `connections_accepted_total` | counter | accepted by listeners (the factory's refusals included) |
/// | `connections_refused_total` | counter | accepted, then refused by the factory (`build_protocol` gave `None`) |
/// | `connections_shed_total` | counter | closed at once: the process was out of descriptors |
/// | `connections_closed_total{reason}` | counter | ended, by `DisconnectReason` kind (`done`, `reset`, `timed_out`, ...) |
/// | `bytes_read_total`, `bytes_written_total` | counter | bytes read from, and taken by, the transports |
/// | `callbacks_panicked_total` | counter | callbacks that panicked (and were caught) |
/// | `slow_callbacks_total` | counter | callbacks over the slow-callback threshold |
/// | `deferreds_created_total` | counter | Deferreds created on the reactor's thread |
/// | `listener_accepted_total{address}`, `listener_shed_total{address}` | counter | per listening port |
/// | `connections_open` | gauge | connections open now |
/// | `write_buffered_bytes` | gauge | bytes written by protocols and not yet taken by the kernel, all connections |
/// | `connections_paused` | gauge | connections whose reading is paused |
/// | `timers_pending` | gauge | timers in the queue |
/// | `timer_next_seconds` | gauge | time to the next timer (0: overdue); absent with no timer |
/// | `cross_thread_queued` | gauge | closures queued from other threads, not yet run |
/// | `thread_pool_queued`, `thread_pool_busy`, `thread_pool_workers` | gauge | the reactor's thread pool |
/// | `deferreds_pending` | gauge | Deferreds not yet fired, cancelled or dropped |
/// | `callback_duration_seconds` | summary | callback durations: quantiles 0.5, 0.99 and 1 (the max), `_sum`, `_count` |
///
/// ```
/// use torsion::prometheus::render_snapshots;
/// use torsion::Reactor;
///
/// let reactor = Reactor::new()?;
/// let page = render_snapshots(&[Some(reactor.snapshot()), None]);
/// assert!(page.contains("torsion_reactor_up{reactor=\"0\"} 1\n"));
/// assert!(page.contains("torsion_reactor_up{reactor=\"1\"} 0\n"));
/// assert!(page.contains("torsion_connections_open{reactor=\"0\"} 0\n"));
/// # Ok::<(), torsion::Error>(())
/// ```
pub fn render_snapshots(snapshots: &[Option<Snapshot>]) -> String {
    let mut page = Exposition::new();
    let labels: Vec<String> = (0..snapshots.len()).map(|i| i.to_string()).collect();
    let answered: Vec<(&str, &Snapshot)> = snapshots
        .iter()
        .zip(&labels)
        .filter_map(|(s, l)| s.as_ref().map(|s| (l.as_str(), s)))
        .collect();

    if let Some(mut f) = family(
        &mut page,
        "reactor_up",
        MetricType::Gauge,
        "1 if the reactor answered the scrape in time, 0 if it did not (blocked in a callback?).",
    ) {
        for (s, l) in snapshots.iter().zip(&labels) {
            put(&mut f, &[("reactor", l)], u64::from(s.is_some()));
        }
    }
    gauge_f(
        &mut page,
        &answered,
        "uptime_seconds",
        "Time since the reactor was made.",
        |s| Some(s.uptime.as_secs_f64()),
    );

    let counters: [Figure<Snapshot>; 8] = [
        (
            "connections_accepted",
            "Connections accepted by listeners, those the factory refused included.",
            |s| s.counters.accepted,
        ),
        (
            "connections_refused",
            "Accepted connections the factory refused (build_protocol returned None).",
            |s| s.counters.refused_by_factory,
        ),
        (
            "connections_shed",
            "Connections closed at once because the process was out of descriptors.",
            |s| s.counters.shed_fd_exhaustion,
        ),
        (
            "bytes_read",
            "Bytes read from connections' transports.",
            |s| s.counters.bytes_read,
        ),
        (
            "bytes_written",
            "Bytes connections' transports took for sending.",
            |s| s.counters.bytes_written,
        ),
        (
            "callbacks_panicked",
            "Callbacks that panicked (caught; the connection was aborted).",
            |s| s.counters.callbacks_panicked,
        ),
        (
            "slow_callbacks",
            "Callbacks that ran longer than the slow-callback threshold.",
            |s| s.counters.slow_callbacks,
        ),
        (
            "deferreds_created",
            "Deferreds created on the reactor's thread.",
            |s| s.deferreds.created,
        ),
    ];
    for (name, help, get) in counters {
        if let Some(mut f) = family(&mut page, name, MetricType::Counter, help) {
            for (l, s) in &answered {
                put(&mut f, &[("reactor", l)], get(s));
            }
        }
    }
    if let Some(mut f) = family(
        &mut page,
        "connections_closed",
        MetricType::Counter,
        "Connections that ended, by reason (the kind of DisconnectReason).",
    ) {
        for (l, s) in &answered {
            for (reason, n) in s.counters.closed.iter() {
                put(&mut f, &[("reactor", l), ("reason", reason)], n);
            }
        }
    }
    let listener: [Figure<ListenerInfo>; 2] = [
        (
            "listener_accepted",
            "Connections a listening port accepted.",
            |p| p.accepted,
        ),
        (
            "listener_shed",
            "Connections a listening port closed at once, out of descriptors.",
            |p| p.shed,
        ),
    ];
    for (name, help, get) in listener {
        if let Some(mut f) = family(&mut page, name, MetricType::Counter, help) {
            for (l, s) in &answered {
                for p in &s.listeners {
                    let address = p.address.to_string();
                    put(&mut f, &[("reactor", l), ("address", &address)], get(p));
                }
            }
        }
    }

    let gauges: [Figure<Snapshot>; 8] = [
        ("connections_open", "Connections open now.", |s| {
            s.connections.len() as u64
        }),
        (
            "write_buffered_bytes",
            "Bytes written by protocols and not yet taken by the kernel, over all connections.",
            |s| s.connections.iter().map(|c| c.write_buffered as u64).sum(),
        ),
        (
            "connections_paused",
            "Connections whose reading is paused.",
            |s| s.connections.iter().filter(|c| c.paused).count() as u64,
        ),
        ("timers_pending", "Timers in the reactor's queue.", |s| {
            s.timers.pending as u64
        }),
        (
            "cross_thread_queued",
            "Closures queued from other threads and not yet run.",
            |s| s.cross_thread_queued as u64,
        ),
        (
            "thread_pool_queued",
            "Jobs waiting for a thread-pool worker.",
            |s| s.thread_pool.queued as u64,
        ),
        (
            "thread_pool_busy",
            "Thread-pool workers running a job.",
            |s| s.thread_pool.busy as u64,
        ),
        ("thread_pool_workers", "Thread-pool workers started.", |s| {
            s.thread_pool.workers as u64
        }),
    ];
    for (name, help, get) in gauges {
        if let Some(mut f) = family(&mut page, name, MetricType::Gauge, help) {
            for (l, s) in &answered {
                put(&mut f, &[("reactor", l)], get(s));
            }
        }
    }
    gauge_f(
        &mut page,
        &answered,
        "timer_next_seconds",
        "Time to the next timer (0 if it is overdue); absent when no timer is pending.",
        |s| s.timers.next_deadline.map(|d| d.as_secs_f64()),
    );
    if let Some(mut f) = family(
        &mut page,
        "deferreds_pending",
        MetricType::Gauge,
        "Deferreds created and not yet fired, cancelled or dropped.",
    ) {
        for (l, s) in &answered {
            put(&mut f, &[("reactor", l)], s.deferreds.pending);
        }
    }

    if let Some(mut f) = family(&mut page, "callback_duration_seconds", MetricType::Summary,
        "Durations of the protocol, timer and cross-thread callbacks the reactor timed (quantile 1 is the longest).")
    {
        for (l, s) in &answered {
            let c = &s.callbacks;
            let quantiles = [
                (0.5, c.p50.as_secs_f64()),
                (0.99, c.p99.as_secs_f64()),
                (1.0, c.max.as_secs_f64()),
            ];
            let done = f.summary(&[("reactor", l)], &quantiles, c.total.as_secs_f64(), c.count);
            report(done.map(|_| ()));
        }
    }
    page.finish()
}

/// A `torsion_` family, or `None` (logged) if the writer refused it.
fn family<'a>(
    page: &'a mut Exposition,
    name: &str,
    kind: MetricType,
    help: &str,
) -> Option<Family<'a>> {
    match page.family(&format!("torsion_{name}"), kind, help) {
        Ok(f) => Some(f),
        Err(e) => {
            report(Err(e));
            None
        }
    }
}

/// A gauge family with a float value per answering reactor (`None`: no sample).
fn gauge_f(
    page: &mut Exposition,
    answered: &[(&str, &Snapshot)],
    name: &str,
    help: &str,
    get: fn(&Snapshot) -> Option<f64>,
) {
    if let Some(mut f) = family(page, name, MetricType::Gauge, help) {
        for (l, s) in answered {
            if let Some(v) = get(s) {
                put(&mut f, &[("reactor", l)], v);
            }
        }
    }
}

fn put(f: &mut Family<'_>, labels: &[(&str, &str)], value: impl Into<Value>) {
    report(f.sample(labels, value).map(|_| ()));
}

/// The only refusal the fixed names here can meet is a duplicate series (two
/// listeners on one address in one reactor, with `SO_REUSEPORT`): the first
/// is kept, the page stays valid, and the rest is logged.
fn report(r: Result<(), PrometheusError>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "a metric left off the page");
    }
}
