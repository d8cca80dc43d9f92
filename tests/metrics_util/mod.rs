//! What tests/metrics_examples.rs shares: an example server process with
//! its stderr collected (log lines and snapshot tables), echo traffic, and
//! the independent parser of /metrics pages (`scrape_metrics.py`, Python's
//! `http.client` and `prometheus_client`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::util::{self, DEADLINE};

/// A running example server, killed if the test fails before it exits.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts example `name` on a free port and waits for its "listening on
    /// ADDR" line; its stderr (log and tables) is collected.
    pub fn start(name: &str, extra: &[&str]) -> Server {
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
    pub fn metrics_addr(&self) -> SocketAddr {
        let line = self.wait_for_line("metrics on http://");
        let at = line.find("http://").unwrap() + "http://".len();
        let rest = &line[at..];
        rest[..rest.find('/').unwrap()].parse().unwrap()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit (polling its status until the deadline).
    pub fn wait(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "the server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The first line containing `needle`, waiting for it until the deadline.
    pub fn wait_for_line(&self, needle: &str) -> String {
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
    pub fn table(&self, n: usize) -> Vec<String> {
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
pub fn echo(addr: SocketAddr, data: &[u8]) -> TcpStream {
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
pub struct Page {
    pub status: u16,
    pub content_type: String,
    /// Family name -> type (prometheus_client's names: a counter's without
    /// `_total`).
    pub families: BTreeMap<String, String>,
    /// Family name -> help text.
    pub help: BTreeMap<String, String>,
    /// (sample name, sorted `k=v` labels) -> value.
    pub samples: BTreeMap<(String, String), f64>,
}

impl Page {
    /// The sum of a sample over every label set containing all of `labels`
    /// (`k=v` each).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
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

    pub fn reactors(&self) -> BTreeSet<String> {
        self.samples
            .keys()
            .filter(|(n, _)| n == "torsion_reactor_up")
            .map(|(_, l)| l.clone())
            .collect()
    }
}

/// Scrapes `http://addr{path}` with `tests/metrics_util/scrape_metrics.py`; `None`
/// (after printing SKIP) when prometheus_client is missing outside CI.
pub fn scrape(addr: SocketAddr, path: &str) -> Option<Page> {
    let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
    run_parser(&[&ip, &port, path])
}

/// Runs the independent parser with `args` and reads what it printed.
pub fn run_parser(args: &[&str]) -> Option<Page> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metrics_util/scrape_metrics.py");
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

pub fn missing(why: &str) -> Option<Page> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}: CI must have python3 and prometheus_client (.ci/run installs them)");
    }
    eprintln!("SKIP: {why}");
    None
}

/// Scrapes until `done` holds for the page (the server counts a close once it
/// has seen it; the scrape that follows the client's close may come first).
pub fn scrape_until(addr: SocketAddr, mut done: impl FnMut(&Page) -> bool) -> Option<Page> {
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
