//! # Debugging a stuck reactor
//!
//! An event loop fails in ways a log does not show. One callback that blocks
//! for 300 ms stalls every connection of its reactor for 300 ms; a connection
//! that never closes holds a descriptor and its buffer for ever; a timer that
//! keeps rescheduling itself keeps the process busy; a Deferred nobody fires
//! leaves a request hanging. torsion lets you look inside a running reactor
//! in four ways, all built on one plain-data value, the
//! [`Snapshot`](crate::introspect::Snapshot):
//!
//! | where | what | when to use it |
//! |---|---|---|
//! | the log | a WARN line per slow callback | always on (100 ms threshold) |
//! | SIGUSR1 | the snapshot as a table on stderr | a server run by [`Application`](crate::service::Application): `kill -USR1 PID` |
//! | `/metrics` | the snapshot and counters in the Prometheus format ([`prometheus`](crate::prometheus)) | a scraper, a dashboard, `curl` |
//! | code | [`Reactor::snapshot`](crate::Reactor::snapshot), [`Core::request_snapshot`](crate::Core::request_snapshot), [`ReactorHandle::request_snapshot`](crate::ReactorHandle::request_snapshot) | tests, your own surfaces |
//!
//! ## The worked example: a protocol that blocks
//!
//! `examples/stuck_server.rs` is a line server with one deliberate bug: its
//! `block MS` command calls `std::thread::sleep` inside `data_received`,
//! as a synchronous database driver or a heavy computation would. Its
//! `defer MS` command is the fix: the same wait through
//! [`Core::defer_to_thread`](crate::Core::defer_to_thread), answered when it
//! is done.
//!
//! ```ignore
//! fn line_received(&mut self, lines: &mut Lines<'_, '_>, line: &[u8]) {
//!     match parse(line) {
//!         Ok(Command::Ping) => drop(lines.send_line(b"pong")),
//!         Ok(Command::Block(ms)) => {
//!             // THE BUG: a blocking call on the reactor thread.
//!             std::thread::sleep(Duration::from_millis(ms));
//!             let _ = lines.send_line(format!("blocked {ms} ms").as_bytes());
//!         }
//!         Ok(Command::Defer(ms)) => {
//!             // The fix: the blocking call runs on a worker thread.
//!             let conn = lines.handle();
//!             let done = lines.defer_to_thread(move || {
//!                 std::thread::sleep(Duration::from_millis(ms));
//!                 Ok::<u64, Failure>(ms)
//!             });
//!             let local = lines.local();
//!             drop(done.add_callback(move |ms| {
//!                 local.call(move |core| {
//!                     core.connection(conn).write(format!("deferred {ms} ms\r\n").as_bytes());
//!                 });
//!                 Ok::<(), Failure>(())
//!             }));
//!         }
//!         Err(e) => drop(lines.send_line(format!("error: {e}").as_bytes())),
//!     }
//! }
//! ```
//!
//! Run it with a metrics page, and talk to it from two terminals. (The
//! output on this page is from one real run of a debug build on a loaded
//! machine, a small script playing the two `nc` terminals; a release
//! build's callback durations are smaller.)
//!
//! ```text
//! $ cargo run --example stuck_server -- --metrics 127.0.0.1:9100
//! 2026-12-02T02:49:33.809983Z  INFO stuck_server::metrics: metrics on http://127.0.0.1:9100/metrics
//! 2026-12-02T02:49:33.810808Z  INFO stuck_server: stuck server (pid 19580) listening on 127.0.0.1:8001
//! 2026-12-02T02:49:33.810828Z  INFO torsion::service::net: listening endpoint=stuck server on 127.0.0.1:8001 addr=127.0.0.1:8001
//! ```
//!
//! ## 1. The slow-callback warning
//!
//! Every protocol, timer, cross-thread and signal callback is timed while a
//! threshold is set (one clock read per callback; 100 ms by default,
//! [`Core::set_slow_callback_threshold`](crate::Core::set_slow_callback_threshold),
//! `stuck_server --slow-callback`). One that runs longer is logged once at
//! WARN with its kind (`protocol`, `timer`, `cross_thread`, `signal`), the protocol's
//! type name and how long it took, and counted in
//! [`Counters::slow_callbacks`](crate::introspect::Counters::slow_callbacks).
//! `block 1500` in one terminal, and a `ping` sent from a second one right
//! after it:
//!
//! ```text
//! $ nc 127.0.0.1 8001                     # terminal A
//! block 1500
//! blocked 1500 ms                         # 1.5 s later
//! $ nc 127.0.0.1 8001                     # terminal B, 0.2 s after A's line
//! ping
//! pong                                    # 1.30 s later: it waited for A's block
//!
//! 2026-12-02T02:49:36.890521Z  WARN torsion::core::timing: slow callback: protocol callback of torsion::protocols::line::LineReceiver<stuck_server::Stuck> took 1.504472951s, blocking the reactor kind="protocol" protocol="torsion::protocols::line::LineReceiver<stuck_server::Stuck>" took_ms=1504.472951 threshold_ms=100.0
//! ```
//!
//! The `ping` was answered only when the block ended: one reactor thread runs
//! every callback of its connections, so a callback that does not return
//! stalls them all. The warning names the culprit; the rest of this page
//! tells you what the stall did to everything else. `defer 1500` produces no
//! warning, and `ping` is answered at once meanwhile.
//!
//! ## 2. The SIGUSR1 table
//!
//! A server run by [`Application`](crate::service::Application) (every
//! example server with one reactor) prints its snapshot as a table on stderr
//! at SIGUSR1 and goes on running ([`SnapshotTable`](crate::service::SnapshotTable));
//! `echo_server --threads N` prints one per reactor, named `reactor 0`...
//! The table is taken when the reactor gets to the signal, so a reactor
//! blocked in a callback prints it once the callback returns: if `kill -USR1`
//! prints nothing, the reactor is stuck right now (see the `/metrics` page,
//! served from another thread, and a debugger: `gdb -p PID`, `thread apply
//! all bt`). After a `block 1500` and a `defer 300`, with one client still
//! connected:
//!
//! ```text
//! $ kill -USR1 $(pgrep stuck_server)
//! torsion reactor snapshot (uptime 3.65s)
//! connections: 1 open, 0 B buffered for writing, 0 paused, 0 closing
//!   CONN  KIND  PEER             PROTOCOL             AGE    IN    OUT   BUFFERED  STATE
//!   #2    tcp   127.0.0.1:48606  LineReceiver<Stuck>  2.04s  21 B  34 B  0 B       idle in 4m 59s
//! listener 127.0.0.1:8001: 2 accepted, 0 shed
//! timers: 1 pending, next in 4m 57s
//! queues: 0 cross-thread calls; thread pool 0 queued, 0 busy of 1 workers (max 4)
//! deferreds: 1 created, 0 pending
//! counters: 2 accepted, 0 refused by the factory, 0 shed, 1 closed (done 1)
//!           31 B read, 46 B written, 0 panicked, 1 slow callbacks
//! callbacks: 9 timed, p50 98us, p99 1.50s, max 1.50s
//! ```
//!
//! Line by line:
//!
//! * **connections**: how many are open, the bytes they hold written but
//!   not yet taken by the kernel (a peer that does not read makes this grow
//!   until the protocol hears `pause_writing`, then the write cap aborts it),
//!   how many have reading paused (by the protocol or by back-pressure) and
//!   how many are closing (`lose_connection` called, flushing).
//! * **the connection rows**, those holding the most buffered bytes first,
//!   then the oldest (at most 20): `CONN` is the handle's slot, `KIND` the
//!   transport (`tcp`, `tls`, `unix`, `pipe`, `memory`), `PROTOCOL` the
//!   protocol's type name, `AGE` since `connection_made`, `IN`/`OUT` the
//!   bytes read and taken for sending, `BUFFERED` the bytes still to send,
//!   `STATE` `paused`, `half-closed`, `closing` and when the idle timeout
//!   fires. An old connection with a growing `BUFFERED` is a peer that
//!   stopped reading; one with `IN` and `OUT` that do not move, an idle
//!   client that an idle timeout should close.
//! * **listener**: each listening port, with the connections it accepted and
//!   those it shed because the process was out of descriptors (`EMFILE`: raise
//!   the limit, or look for a leak).
//! * **timers**: how many are pending and when the next is due. A count that
//!   only grows is a timer rescheduled without being cancelled; "next
//!   overdue" in a table taken between turns means the reactor is behind.
//! * **queues**: closures queued by other threads (`call_from_thread`) and
//!   not yet run, and the thread pool (`defer_to_thread`, `resolve`): jobs
//!   waiting, workers busy, workers started and the most it may start. Jobs
//!   that wait with every worker busy mean the pool is too small for the
//!   blocking work sent to it.
//! * **deferreds**: Deferreds created on this thread, and those still
//!   pending (not fired, cancelled or dropped): a number that only grows is
//!   a Deferred nobody fires.
//! * **counters** (since the reactor was made): connections accepted, those
//!   the factory refused (`build_protocol` returned `None`), those shed,
//!   those closed with their reasons (`done`, `reset`, `timed_out`,
//!   `aborted`, `write_buffer_full`, `panicked`...); bytes read and written;
//!   callbacks that panicked (each cost its connection, not the reactor);
//!   slow callbacks.
//! * **callbacks**: how many were timed, and the median, 99th percentile and
//!   longest duration. A healthy reactor's p99 is in microseconds; a max in
//!   seconds is the stall the warning reported.
//!
//! ## 3. `/metrics`
//!
//! `--metrics ADDR` (`echo_server`, `stuck_server`) serves `GET /metrics`
//! in the Prometheus text format 0.0.4 on a reactor and thread of its own,
//! rendered by [`prometheus::render_snapshots`](crate::prometheus::render_snapshots)
//! (its documentation lists every metric). Every series has a `reactor`
//! label (`echo_server --threads 4` has four). Because the page is served
//! from another thread, it answers while a reactor is stuck: that reactor
//! is then `torsion_reactor_up{reactor="0"} 0`, after a two-second wait,
//! with no other series (the families' `# HELP` and `# TYPE` lines stay).
//! During a `block 5000` (the access log says the answer took 2.0 s):
//!
//! ```text
//! $ curl -s 127.0.0.1:9100/metrics | grep -v '^#'
//! torsion_reactor_up{reactor="0"} 0
//! ```
//!
//! And after it, an excerpt (`# HELP` and `# TYPE` lines are on the page
//! for every family): two slow callbacks now, the 1.5 s and the 5 s block,
//! which is also the summary's p99 and max, while the median stays at
//! 131 us:
//!
//! ```text
//! $ curl -s 127.0.0.1:9100/metrics
//! # HELP torsion_reactor_up 1 if the reactor answered the scrape in time, 0 if it did not (blocked in a callback?).
//! # TYPE torsion_reactor_up gauge
//! torsion_reactor_up{reactor="0"} 1
//! # HELP torsion_uptime_seconds Time since the reactor was made.
//! # TYPE torsion_uptime_seconds gauge
//! torsion_uptime_seconds{reactor="0"} 10.033414351
//! # HELP torsion_connections_accepted_total Connections accepted by listeners, those the factory refused included.
//! # TYPE torsion_connections_accepted_total counter
//! torsion_connections_accepted_total{reactor="0"} 3
//! ...
//! torsion_bytes_read_total{reactor="0"} 42
//! torsion_bytes_written_total{reactor="0"} 63
//! torsion_callbacks_panicked_total{reactor="0"} 0
//! torsion_slow_callbacks_total{reactor="0"} 2
//! torsion_deferreds_created_total{reactor="0"} 1
//! ...
//! torsion_connections_closed_total{reactor="0",reason="done"} 2
//! torsion_connections_closed_total{reactor="0",reason="reset"} 0
//! torsion_connections_closed_total{reactor="0",reason="timed_out"} 0
//! ...
//! torsion_listener_accepted_total{reactor="0",address="127.0.0.1:8001"} 3
//! torsion_connections_open{reactor="0"} 1
//! torsion_write_buffered_bytes{reactor="0"} 0
//! torsion_timers_pending{reactor="0"} 1
//! torsion_thread_pool_workers{reactor="0"} 1
//! torsion_timer_next_seconds{reactor="0"} 291.579976226
//! torsion_deferreds_pending{reactor="0"} 0
//! # HELP torsion_callback_duration_seconds Durations of the protocol, timer and cross-thread callbacks the reactor timed (quantile 1 is the longest).
//! # TYPE torsion_callback_duration_seconds summary
//! torsion_callback_duration_seconds{reactor="0",quantile="0.5"} 0.000131071
//! torsion_callback_duration_seconds{reactor="0",quantile="0.99"} 5.000501662
//! torsion_callback_duration_seconds{reactor="0",quantile="1"} 5.000501662
//! torsion_callback_duration_seconds_sum{reactor="0"} 6.507398439
//! torsion_callback_duration_seconds_count{reactor="0"} 16
//! ```
//!
//! Queries worth a dashboard: `rate(torsion_slow_callbacks_total[5m]) > 0`
//! (something blocks), `torsion_reactor_up == 0` (something blocks now),
//! `torsion_callback_duration_seconds{quantile="0.99"}` (latency added by
//! the loop itself), `torsion_write_buffered_bytes` (peers not keeping up),
//! `rate(torsion_connections_closed_total{reason!="done"}[5m])` (resets,
//! timeouts, aborts), `torsion_deferreds_pending` and
//! `torsion_timers_pending` growing without bound (leaks).
//!
//! ## 4. In code
//!
//! The same figures are plain data: take a snapshot in a test and assert on
//! it, or serve it your own way.
//!
//! ```
//! use std::time::Duration;
//! use torsion::{factory, Context, Protocol, Reactor};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         ctx.write(data);
//!     }
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), factory(|_peer| Echo))?;
//! let client = std::net::TcpStream::connect(port.local_addr())?;
//! reactor.run_until(Duration::from_secs(10), |r| r.connection_count() == 1)?;
//!
//! let snapshot = reactor.snapshot();
//! println!("{}", torsion::service::SnapshotTable::new(&snapshot));
//! let page = torsion::prometheus::render_snapshots(&[Some(snapshot)]);
//! assert!(page.contains("torsion_connections_open{reactor=\"0\"} 1\n"));
//! # drop(client);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Fixing what you found
//!
//! * **A slow protocol callback**: move the blocking call to
//!   [`Core::defer_to_thread`](crate::Core::defer_to_thread) (as `defer`
//!   does) or make it asynchronous; split a long computation over turns
//!   with `call_later(Duration::ZERO, ..)`.
//! * **A slow timer**: the same; a [`LoopingCall`](crate::task::LoopingCall)
//!   that overruns skips the intervals it missed and counts them.
//! * **Buffered bytes that grow**: honour `pause_writing` (stop producing
//!   until `resume_writing`), and keep the write cap.
//! * **Connections that never close**: set an idle timeout
//!   (`ctx.set_idle_timeout`, `--idle-timeout` in the examples).
//! * **A thread pool queue that grows**: fewer blocking jobs, or a larger
//!   pool.
