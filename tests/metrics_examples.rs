//! The introspection surfaces as a user meets them, on example processes over
//! 127.0.0.1: the SIGUSR1 table of `service::Application`, `echo_server
//! --metrics` scraped with a real HTTP client (Python's `http.client`) and
//! parsed by an independent parser (`prometheus_client`), and the blocking
//! command of `stuck_server` showing up as a slow callback.
//!
//! Without `prometheus_client` the scraping tests print SKIP, except under
//! `CI=true`, where they fail (`.ci/run` installs it).

mod metrics_util;
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use metrics_util::{echo, run_parser, scrape, scrape_until, Server};
use torsion::prometheus::{Exposition, MetricType};
use util::DEADLINE;

/// Echo traffic on `threads` reactors, then the page: counters that match it.
fn metrics_match_the_traffic(threads: &str) {
    let mut server = Server::start(
        "echo_server",
        &["--threads", threads, "--metrics", "127.0.0.1:0"],
    );
    let metrics = server.metrics_addr();
    const CONNS: usize = 12;
    let mut sent = 0u64;
    for i in 0..CONNS {
        let data = vec![i as u8; 1000 + 137 * i];
        sent += data.len() as u64;
        let conn = echo(server.addr, &data);
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        (&conn).read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    let Some(page) = scrape_until(metrics, |p| {
        p.sum("torsion_connections_closed_total", &[]) == CONNS as f64
    }) else {
        return;
    };
    assert_eq!(page.status, 200);
    assert!(
        page.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        page.content_type
    );
    let reactors: usize = threads.parse().unwrap();
    assert_eq!(page.reactors().len(), reactors, "{:?}", page.reactors());
    assert_eq!(page.sum("torsion_reactor_up", &[]), reactors as f64);
    assert_eq!(
        page.families
            .get("torsion_connections_accepted")
            .map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        page.families
            .get("torsion_connections_open")
            .map(String::as_str),
        Some("gauge")
    );
    assert_eq!(
        page.families
            .get("torsion_callback_duration_seconds")
            .map(String::as_str),
        Some("summary")
    );
    assert_eq!(
        page.sum("torsion_connections_accepted_total", &[]),
        CONNS as f64
    );
    assert_eq!(
        page.sum("torsion_listener_accepted_total", &[]),
        CONNS as f64
    );
    assert_eq!(page.sum("torsion_bytes_read_total", &[]), sent as f64);
    assert_eq!(page.sum("torsion_bytes_written_total", &[]), sent as f64);
    assert_eq!(
        page.sum("torsion_connections_closed_total", &["reason=done"]),
        CONNS as f64
    );
    assert_eq!(page.sum("torsion_connections_open", &[]), 0.0);
    assert_eq!(page.sum("torsion_write_buffered_bytes", &[]), 0.0);
    assert_eq!(page.sum("torsion_connections_refused_total", &[]), 0.0);
    assert_eq!(page.sum("torsion_callbacks_panicked_total", &[]), 0.0);
    // The callbacks of the traffic were timed: at least a connection_made,
    // a data_received and a connection_lost each.
    assert!(page.sum("torsion_callback_duration_seconds_count", &[]) >= 3.0 * CONNS as f64);
    assert_eq!(
        page.samples
            .keys()
            .filter(|(n, _)| n == "torsion_callback_duration_seconds")
            .count(),
        3 * reactors,
        "quantiles 0.5, 0.99 and 1 per reactor"
    );

    // One open connection shows as a gauge.
    let open = echo(server.addr, b"still here");
    let Some(page) = scrape_until(metrics, |p| p.sum("torsion_connections_open", &[]) == 1.0)
    else {
        return;
    };
    assert_eq!(
        page.sum("torsion_connections_accepted_total", &[]),
        CONNS as f64 + 1.0
    );
    drop(open);

    // Other paths are not found; the page is GET only.
    let other = scrape(metrics, "/other").unwrap();
    assert_eq!(other.status, 404);

    server.signal(libc::SIGTERM);
    let status = server.wait();
    assert!(status.success(), "echo_server exited with {status}");
}

#[test]
fn echo_server_metrics_count_the_traffic_of_one_reactor() {
    metrics_match_the_traffic("1");
}

#[test]
fn echo_server_metrics_label_each_of_two_reactors() {
    metrics_match_the_traffic("2");
}

#[test]
fn sigusr1_prints_the_snapshot_table_and_the_service_goes_on() {
    let mut server = Server::start("echo_server", &[]);
    let a = echo(server.addr, &[7; 3000]);
    let b = echo(server.addr, b"hello");
    server.signal(libc::SIGUSR1);
    let table = server.table(1);
    let text = table.join("\n");
    assert!(
        text.contains("connections: 2 open, 0 B buffered for writing"),
        "{text}"
    );
    let rows: Vec<&String> = table.iter().filter(|l| l.contains(" Echo ")).collect();
    assert_eq!(rows.len(), 2, "a row per connection: {text}");
    assert!(
        rows.iter().any(|r| r.contains("2.9 KiB")),
        "bytes in and out: {text}"
    );
    assert!(
        table[2].contains("CONN") && table[2].contains("BUFFERED"),
        "{text}"
    );
    assert!(text.contains("2 accepted"), "{text}");
    assert!(text.contains("callbacks: "), "{text}");

    // Still serving, and a second signal gives a second table.
    drop(a);
    let c = echo(server.addr, b"after the table");
    server.signal(libc::SIGUSR1);
    let second = server.table(2).join("\n");
    assert!(second.contains("3 accepted"), "{second}");
    drop((b, c));
    server.signal(libc::SIGTERM);
    let status = server.wait();
    assert!(status.success(), "echo_server exited with {status}");
}

#[test]
fn sigusr1_with_two_reactors_prints_a_table_each_and_the_service_goes_on() {
    let mut server = Server::start("echo_server", &["--threads", "2"]);
    let conns: Vec<TcpStream> = (0..6u8).map(|i| echo(server.addr, &[i; 10])).collect();
    server.signal(libc::SIGUSR1);
    let first = server.table(1);
    let second = server.table(2);
    let mut names: Vec<&str> = [&first[0], &second[0]]
        .iter()
        .map(|l| l.split(" (uptime").next().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "torsion reactor snapshot: reactor 0",
            "torsion reactor snapshot: reactor 1"
        ]
    );
    // Every connection is in one of the two tables.
    let rows = first
        .iter()
        .chain(&second)
        .filter(|l| l.contains(" Echo "))
        .count();
    assert_eq!(rows, conns.len(), "{first:#?} {second:#?}");
    drop(echo(server.addr, b"still serving"));
    drop(conns);
    server.signal(libc::SIGTERM);
    let status = server.wait();
    assert!(status.success(), "echo_server exited with {status}");
}

/// Sends one command line to `stuck_server`, returns its answer line.
fn command(conn: &mut BufReader<TcpStream>, line: &str) -> String {
    conn.get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    conn.read_line(&mut answer).unwrap();
    answer.trim_end().to_owned()
}

#[test]
fn stuck_server_block_is_a_slow_callback_and_defer_is_not() {
    let mut server = Server::start(
        "stuck_server",
        &["--slow-callback", "500ms", "--metrics", "127.0.0.1:0"],
    );
    let metrics = server.metrics_addr();
    let stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut conn = BufReader::new(stream);
    assert_eq!(command(&mut conn, "ping"), "pong");
    assert_eq!(command(&mut conn, "defer 700"), "deferred 700 ms");
    assert_eq!(
        command(&mut conn, "nonsense"),
        "error: unknown command (ping, block MS, defer MS)"
    );
    let page = scrape(metrics, "/metrics");
    if let Some(page) = &page {
        assert_eq!(
            page.sum("torsion_slow_callbacks_total", &[]),
            0.0,
            "defer does not block"
        );
    }
    assert_eq!(command(&mut conn, "block 700"), "blocked 700 ms");
    // The warning names the protocol; the counter and the longest callback
    // (at least the 700 ms slept) say so too.
    let warning = server.wait_for_line("slow");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("Stuck"), "{warning}");
    if let Some(page) = scrape(metrics, "/metrics") {
        assert_eq!(page.sum("torsion_slow_callbacks_total", &[]), 1.0);
        let max = page.sum("torsion_callback_duration_seconds", &["quantile=1"]);
        assert!(max >= 0.7, "the longest callback took {max} s");
    }
    server.signal(libc::SIGUSR1);
    let table = server.table(1).join("\n");
    assert!(table.contains("1 slow callbacks"), "{table}");
    assert!(table.contains("LineReceiver<Stuck>"), "{table}");
    server.signal(libc::SIGTERM);
    let status = server.wait();
    assert!(status.success(), "stuck_server exited with {status}");
}

/// The hex of a string's UTF-8, as the parser prints label values read
/// from a file.
fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_writers_escaping_survives_an_independent_parser() {
    let tricky = "back\\slash \"quoted\"\nnew line, comma=equals {braces} é";
    let mut page = Exposition::new();
    page.family(
        "t_events",
        MetricType::Counter,
        "Help with \\ and\nnewline and \"quotes\".",
    )
    .unwrap()
    .sample(&[("path", tricky), ("code", "200")], 7u64)
    .unwrap()
    .sample(&[("path", ""), ("code", "500")], u64::MAX)
    .unwrap();
    page.family("t_temp", MetricType::Gauge, "")
        .unwrap()
        .sample(&[], -2.5)
        .unwrap()
        .sample(&[("x", "inf")], f64::INFINITY)
        .unwrap();
    page.family("t_latency_seconds", MetricType::Summary, "L.")
        .unwrap()
        .summary(&[("op", tricky)], &[(0.5, 0.001), (0.99, 0.25)], 1.5, 12)
        .unwrap();
    let file = std::env::temp_dir().join(format!("torsion-prom-{}.txt", std::process::id()));
    std::fs::write(&file, page.finish()).unwrap();
    let parsed = run_parser(&["--file", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    let Some(p) = parsed else { return };

    assert_eq!(
        p.families.get("t_events").map(String::as_str),
        Some("counter")
    );
    assert_eq!(p.families.get("t_temp").map(String::as_str), Some("gauge"));
    assert_eq!(
        p.families.get("t_latency_seconds").map(String::as_str),
        Some("summary")
    );
    assert_eq!(
        p.help["t_events"],
        hex("Help with \\ and\nnewline and \"quotes\".")
    );
    let key = |name: &str, labels: &[(&str, &str)]| {
        let mut l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", hex(v)))
            .collect();
        l.sort();
        (name.to_owned(), l.join(","))
    };
    let get = |name: &str, labels: &[(&str, &str)]| {
        *p.samples
            .get(&key(name, labels))
            .unwrap_or_else(|| panic!("no {:?} in {:#?}", key(name, labels), p.samples))
    };
    assert_eq!(
        get("t_events_total", &[("code", "200"), ("path", tricky)]),
        7.0
    );
    assert_eq!(
        get("t_events_total", &[("code", "500"), ("path", "")]),
        u64::MAX as f64
    );
    assert_eq!(get("t_temp", &[]), -2.5);
    assert_eq!(get("t_temp", &[("x", "inf")]), f64::INFINITY);
    assert_eq!(
        get("t_latency_seconds", &[("op", tricky), ("quantile", "0.5")]),
        0.001
    );
    assert_eq!(
        get("t_latency_seconds", &[("op", tricky), ("quantile", "0.99")]),
        0.25
    );
    assert_eq!(get("t_latency_seconds_sum", &[("op", tricky)]), 1.5);
    assert_eq!(get("t_latency_seconds_count", &[("op", tricky)]), 12.0);
    assert_eq!(p.samples.len(), 8);
}

#[test]
fn metrics_on_a_busy_port_is_one_sentence_and_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    for name in ["echo_server", "stuck_server"] {
        for threads in [&[][..], &["--threads", "2"][..]] {
            if name == "stuck_server" && !threads.is_empty() {
                continue;
            }
            let out = Command::new(util::example_binary(name))
                .args(threads)
                .args(["--metrics", &busy, "127.0.0.1:0"])
                .env("RUST_LOG", "off")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{name} {threads:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                stderr,
                format!("cannot listen on {busy}: address already in use\n"),
                "{name} {threads:?}"
            );
        }
        let help = Command::new(util::example_binary(name))
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("--metrics <ADDR>"),
            "{name}"
        );
        let bad = Command::new(util::example_binary(name))
            .args(["--metrics", "nowhere"])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2), "{name}: a usage error");
    }
}
