//! The introspection surfaces as a user meets them, on example processes over
//! 127.0.0.1: the SIGUSR1 table of `service::Application`, `echo_server
//! --metrics` scraped with a real HTTP client (Python's `http.client`) and
//! parsed by an independent parser (`prometheus_client`), and the blocking
//! command of `stuck_server` showing up as a slow callback.
//!
//! Without `prometheus_client` the scraping tests print SKIP, except under
//! `CI=true`, where they fail (`.ci/run` installs it).

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use torsion::prometheus::{Exposition, MetricType};
use util::DEADLINE;

/// A running example server, killed if the test fails before it exits.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts example `name` on a free port and waits for its "listening on
    /// ADDR" line; its stderr (log and tables) is collected.
    fn start(name: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(util::example_binary(name))
            .args(extra)
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut early = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{name} exited before listening: {early:?}"))
                .unwrap();
            early.push(line.clone());
            if let Some(at) = line.find("listening on ") {
                break line[at + "listening on ".len()..].trim().parse().unwrap();
            }
        };
        let log = Arc::new(Mutex::new(early));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Server { child, addr, log }
    }

    /// The metrics page's address, from its "metrics on http://ADDR/metrics" line.
    fn metrics_addr(&self) -> SocketAddr {
        let line = self.wait_for_line("metrics on http://");
        let at = line.find("http://").unwrap() + "http://".len();
        let rest = &line[at..];
        rest[..rest.find('/').unwrap()].parse().unwrap()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit (polling its status until the deadline).
    fn wait(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "the server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The first line containing `needle`, waiting for it until the deadline.
    fn wait_for_line(&self, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            assert!(
                Instant::now() < end,
                "no {needle:?} in the log: {:#?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The lines from the `n`-th table (counting from 1) to its last line
    /// (`callbacks: ...`), waiting for it until the deadline.
    fn table(&self, n: usize) -> Vec<String> {
        let end = Instant::now() + DEADLINE;
        loop {
            let lines = self.lines();
            let starts: Vec<usize> = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.starts_with("torsion reactor snapshot"))
                .map(|(i, _)| i)
                .collect();
            if let Some(&start) = starts.get(n - 1) {
                if let Some(len) = lines[start..]
                    .iter()
                    .position(|l| l.starts_with("callbacks: "))
                {
                    return lines[start..=start + len].to_vec();
                }
            }
            assert!(Instant::now() < end, "no table {n} in {lines:#?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects, sends `data`, reads its echo in full.
fn echo(addr: SocketAddr, data: &[u8]) -> TcpStream {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    conn.write_all(data).unwrap();
    let mut got = vec![0; data.len()];
    conn.read_exact(&mut got).unwrap();
    assert!(got == data, "the echo differs from what was sent");
    conn
}

/// What the independent parser made of a page.
#[derive(Debug, Default)]
struct Page {
    status: u16,
    content_type: String,
    /// Family name -> type (prometheus_client's names: a counter's without
    /// `_total`).
    families: BTreeMap<String, String>,
    /// Family name -> help text.
    help: BTreeMap<String, String>,
    /// (sample name, sorted `k=v` labels) -> value.
    samples: BTreeMap<(String, String), f64>,
}

impl Page {
    /// The sum of a sample over every label set containing all of `labels`
    /// (`k=v` each).
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|want| l.split(',').any(|have| have == *want))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    fn reactors(&self) -> BTreeSet<String> {
        self.samples
            .keys()
            .filter(|(n, _)| n == "torsion_reactor_up")
            .map(|(_, l)| l.clone())
            .collect()
    }
}

/// Scrapes `http://addr{path}` with `tests/util/scrape_metrics.py`; `None`
/// (after printing SKIP) when prometheus_client is missing outside CI.
fn scrape(addr: SocketAddr, path: &str) -> Option<Page> {
    let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
    run_parser(&[&ip, &port, path])
}

/// Runs the independent parser with `args` and reads what it printed.
fn run_parser(args: &[&str]) -> Option<Page> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/util/scrape_metrics.py");
    let out = match Command::new("python3").arg(&script).args(args).output() {
        Ok(o) => o,
        Err(e) => return missing(&format!("python3: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.code() == Some(3) {
        return missing(stdout.trim());
    }
    assert!(
        out.status.success(),
        "the page did not parse: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut page = Page::default();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f[0] {
            "STATUS" => {
                page.status = f[1].parse().unwrap();
                page.content_type = f[2].to_owned();
            }
            "FAMILY" => {
                let again = page.families.insert(f[1].to_owned(), f[2].to_owned());
                assert!(again.is_none(), "family {} twice", f[1]);
                page.help.insert(f[1].to_owned(), f[3].to_owned());
            }
            "SAMPLE" => {
                let again = page
                    .samples
                    .insert((f[1].to_owned(), f[2].to_owned()), f[3].parse().unwrap());
                assert!(again.is_none(), "series {}{{{}}} twice", f[1], f[2]);
            }
            other => panic!("unexpected line {other:?} from the parser"),
        }
    }
    Some(page)
}

fn missing(why: &str) -> Option<Page> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}: CI must have python3 and prometheus_client (.ci/run installs them)");
    }
    eprintln!("SKIP: {why}");
    None
}

/// Scrapes until `done` holds for the page (the server counts a close once it
/// has seen it; the scrape that follows the client's close may come first).
fn scrape_until(addr: SocketAddr, mut done: impl FnMut(&Page) -> bool) -> Option<Page> {
    let end = Instant::now() + DEADLINE;
    loop {
        let page = scrape(addr, "/metrics")?;
        if done(&page) {
            return Some(page);
        }
        assert!(Instant::now() < end, "the page never got there: {page:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
