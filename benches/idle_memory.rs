//! Resident memory per idle connection: torsion against the hand-written `mio`
//! echo server.
//!
//! ```text
//! cargo bench --bench idle_memory
//! TORSION_IDLE_CONNS=100000 cargo bench --bench idle_memory   # needs root or a high fd limit
//! ```
//!
//! Both the server child and this process hold one descriptor per connection, so
//! each needs a `RLIMIT_NOFILE` above the connection count. The bench raises its
//! soft and, where allowed, hard limit itself; raising the hard limit needs
//! `CAP_SYS_RESOURCE` (root outside a container, or `ulimit -Hn` set higher by
//! whoever starts it) and `fs.nr_open` at least that high. Where it cannot, it
//! says why (the `setrlimit` error) and exits 1.
//!
//! Each server runs alone in a child process (this same binary, re-run with
//! `TORSION_IDLE_SERVER` set), so nothing else allocates there and its resident
//! set (`VmRSS` of `/proc/<pid>/status`) shows the server's own memory; socket
//! buffers live in the kernel and are not counted. The parent warms the server up
//! with one connection (so its read buffer is resident already), reads the
//! resident set, opens the connections and sends one 64-byte echo through each
//! (so each has been used and is known to be accepted), and reads it again.
//! Past about 20,000 connections the client side binds further source addresses
//! (127.0.0.2, 127.0.0.3, ...) so the ephemeral ports do not run out.

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{env_or, median, Kind, ServerThread};

const CHILD_ENV: &str = "TORSION_IDLE_SERVER";
/// Connections per client source address (`TORSION_IDLE_PER_SOURCE` changes it).
const PER_SOURCE: usize = 20_000;

fn main() {
    if let Ok(kind) = std::env::var(CHILD_ENV) {
        return serve(Kind::from_name(&kind).expect("unknown server kind"));
    }
    let conns: usize = env_or("TORSION_IDLE_CONNS", 10_000);
    let rounds: usize = env_or("TORSION_IDLE_ROUNDS", 3);
    let limit = support::raise_fd_limit(conns as u64 + 256);
    if limit < conns as u64 + 64 {
        eprintln!(
            "idle_memory: descriptor limit {limit} is too low for {conns} connections: {}",
            why_no_higher_limit(conns as u64 + 256)
        );
        std::process::exit(1);
    }
    println!("idle_memory: {conns} idle connections, {rounds} rounds, medians shown");
    let kinds = [Kind::Torsion, Kind::Mio];
    let mut per_conn = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let mut order = [0, 1];
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let bytes = measure(kinds[i], conns).expect("measurement failed");
            eprintln!(
                "  {:<8} round {round}: {bytes:.1} bytes per connection",
                kinds[i].name()
            );
            per_conn[i].push(bytes);
        }
    }
    let t = median(&per_conn[0]);
    let m = median(&per_conn[1]);
    println!("{:<10} {:>10.1} bytes/connection", "torsion", t);
    println!("{:<10} {:>10.1} bytes/connection", "mio", m);
    println!("torsion - mio: {:+.1} bytes/connection", t - m);
    println!("torsion / mio: {:.2}x", t / m);
}

/// Why the hard descriptor limit could not be raised to `want`: the error of
/// `setrlimit`, and the usual cause when it is a permission error.
fn why_no_higher_limit(want: u64) -> String {
    let lim = libc::rlimit {
        rlim_cur: want,
        rlim_max: want,
    };
    // SAFETY: setrlimit only reads the struct passed.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    if rc == 0 {
        return "setrlimit succeeded on a second try; run again".into();
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EPERM) {
        format!(
            "setrlimit(RLIMIT_NOFILE, {want}) failed: {err}; raising the hard limit needs \
             CAP_SYS_RESOURCE (containers often drop it: see CapBnd in /proc/self/status), \
             and fs.nr_open must be at least {want}"
        )
    } else {
        format!("setrlimit(RLIMIT_NOFILE, {want}) failed: {err}")
    }
}

/// The child: an echo server that runs until its stdin closes.
fn serve(kind: Kind) {
    support::raise_fd_limit(env_or("TORSION_IDLE_CONNS", 10_000u64) + 256);
    let server = ServerThread::spawn(kind, None);
    println!("{}", server.addr);
    io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    drop(server);
}

/// Server memory per idle connection, in bytes.
fn measure(kind: Kind, conns: usize) -> io::Result<f64> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, kind.name())
        .env("TORSION_IDLE_CONNS", conns.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    let addr: SocketAddr = line.trim().parse().expect("child printed its address");

    // Warm up: the read buffer and the event loop's first allocations.
    let mut warm = TcpStream::connect(addr)?;
    echo(&mut warm, &[7; 64 * 1024])?;
    drop(warm);
    std::thread::sleep(Duration::from_millis(100)); // let the server see the close
    let before = rss_bytes(&child)?;

    let per_source = env_or("TORSION_IDLE_PER_SOURCE", PER_SOURCE).max(1);
    let mut open = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut s = connect_from(addr, i / per_source)?;
        echo(&mut s, &[1; 64])?;
        open.push(s);
    }
    let after = rss_bytes(&child)?;
    drop(open);
    finish(child)?;
    Ok((after as f64 - before as f64) / conns as f64)
}

/// Connects to `addr` from 127.0.0.1 (`source` 0) or 127.0.0.`source + 1`.
fn connect_from(addr: SocketAddr, source: usize) -> io::Result<TcpStream> {
    if source == 0 {
        return TcpStream::connect(addr);
    }
    assert!(source < 254, "too many connections for 127.0.0.x sources");
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let from: SocketAddr = format!("127.0.0.{}:0", source + 1).parse().unwrap();
    sock.bind(&from.into())?;
    sock.connect(&addr.into())?;
    Ok(sock.into())
}

fn echo(s: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    s.write_all(data)?;
    let mut back = vec![0; data.len()];
    s.read_exact(&mut back)?;
    assert!(back == data, "the echo differs");
    Ok(())
}

/// The child's resident set size.
fn rss_bytes(child: &Child) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/<pid>/status"))?;
    Ok(kb * 1024)
}

fn finish(mut child: Child) -> io::Result<()> {
    drop(child.stdin.take()); // EOF: the child stops its server and exits
    let status = child.wait()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "server child exited with {status}"
        )));
    }
    Ok(())
}
