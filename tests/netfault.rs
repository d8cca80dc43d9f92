//! Real network faults, on a network this suite builds for itself: network
//! namespaces joined by veth pairs (`ip netns`, iproute2), outages made with
//! `ip link set down` and nftables drop rules, loss and delay made by a
//! small frame forwarder of our own (this kernel has no `netem`).
//!
//! Every address is inside a namespace created here; every namespace (and
//! with it its veths and rules) is deleted when its test ends, pass or fail.
//! Where namespaces cannot be created (not root, no iproute2) each test
//! prints `SKIP netfault::<name>: <why>` and returns: it is not a pass of
//! the scenario. The tests take a lock so they run one at a time, and every
//! wait has a deadline.
//!
//! Scenarios:
//! * `lossy_link_delivers_every_byte_of_100_mib`: 2% of frames dropped and
//!   20 ms added each way, by a forwarder between two veth pairs; 100 MiB
//!   arrive intact.
//! * `link_down_for_5s_survives_without_idle_timeout_and_times_out_with_one`:
//!   the link goes down 5 s in the middle of two transfers; the one without
//!   an idle timeout completes intact, the one with a 2 s idle timeout ends
//!   with `TimedOut`.
//! * `blackhole_is_detected_by_idle_timeout_and_by_keepalive`: a drop rule
//!   swallows everything; an idle timeout and TCP keepalive each end their
//!   connection with `TimedOut`, a connection with neither stays up.
//! * `reconnecting_client_recovers_within_its_backoff_after_the_link_returns`.

#![cfg(target_os = "linux")]

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use torsion::reconnect::{BackoffPolicy, ReconnectingClientFactory};
use torsion::{Context, DisconnectReason, Keepalive, Protocol, Reactor, TcpOptions};

/// One test at a time: they measure outages in seconds and share 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

fn server_addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(SERVER_IP, port))
}

/// Writes past the test harness's capture, so a skip is seen in CI logs.
fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP netfault::{test}: {why}");
}

/// Runs a command; its stderr on failure.
fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

/// The namespaces of one test, deleted on drop (their veths go with them).
struct Net {
    prefix: String,
    namespaces: Vec<String>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Net {
    /// A fresh, unique prefix for names (interface names are 15 bytes at most).
    fn new() -> Net {
        static N: AtomicU64 = AtomicU64::new(0);
        Net {
            prefix: format!(
                "tf{}{}",
                std::process::id() % 100_000,
                N.fetch_add(1, Ordering::Relaxed)
            ),
            namespaces: Vec::new(),
        }
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    fn add_ns(&mut self, suffix: &str) -> Result<String, String> {
        let ns = self.name(suffix);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A veth pair `a` in `ns_a`, `b` in `ns_b`, both up, one frame per
    /// segment (no GSO), jumbo frames so a lossy link still moves megabytes.
    fn veth(&self, ns_a: &str, a: &str, ns_b: &str, b: &str) -> Result<(), String> {
        ip(&[
            "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b,
        ])?;
        for (ns, dev) in [(ns_a, a), (ns_b, b)] {
            ip(&[
                "-n",
                ns,
                "link",
                "set",
                dev,
                "mtu",
                "9000",
                "gso_max_size",
                "9000",
                "gso_max_segs",
                "1",
                "up",
            ])?;
        }
        Ok(())
    }

    /// Server namespace `s` and client namespace `c` on one veth pair.
    fn pair() -> Result<Net, String> {
        let mut net = Net::new();
        let s = net.add_ns("s")?;
        let c = net.add_ns("c")?;
        let (vs, vc) = (net.name("vs"), net.name("vc"));
        net.veth(&s, &vs, &c, &vc)?;
        ip(&["-n", &s, "addr", "add", "10.77.0.1/24", "dev", &vs])?;
        ip(&["-n", &c, "addr", "add", "10.77.0.2/24", "dev", &vc])?;
        Ok(net)
    }

    /// Server `s` and client `c`, each linked to forwarder namespace `f`,
    /// which has no address: its frames cross only through [`Forwarder`].
    fn forwarded() -> Result<Net, String> {
        let mut net = Net::new();
        let s = net.add_ns("s")?;
        let c = net.add_ns("c")?;
        let f = net.add_ns("f")?;
        let (vs, fs, vc, fc) = (
            net.name("vs"),
            net.name("fs"),
            net.name("vc"),
            net.name("fc"),
        );
        net.veth(&s, &vs, &f, &fs)?;
        net.veth(&c, &vc, &f, &fc)?;
        ip(&["-n", &s, "addr", "add", "10.77.0.1/24", "dev", &vs])?;
        ip(&["-n", &c, "addr", "add", "10.77.0.2/24", "dev", &vc])?;
        Ok(net)
    }

    fn ns(&self, suffix: &str) -> String {
        self.name(suffix)
    }
}

/// Builds the network or says why this test is skipped.
fn build(test: &str, f: fn() -> Result<Net, String>) -> Option<Net> {
    match f() {
        Ok(n) => Some(n),
        Err(e) => {
            skip(
                test,
                &format!("cannot build the test network ({e}); needs root and iproute2"),
            );
            None
        }
    }
}

/// Runs `f` on a new thread inside network namespace `ns`: sockets it
/// makes live there.
fn spawn_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: a valid descriptor of a network namespace; only this
        // thread moves.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// Waits (bounded) for a condition another thread makes true.
fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Protocols.

/// The byte at offset `i` of every transfer (position-dependent, so a lost,
/// repeated or reordered chunk shows).
fn pattern(i: u64) -> u8 {
    ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8 ^ (i >> 20) as u8
}

/// What a receiving or sending end saw, shared with the test thread.
#[derive(Debug, Default)]
struct Seen {
    made: AtomicU64,
    bytes: AtomicU64,
    corrupt_at: Mutex<Option<u64>>,
    lost: Mutex<Option<(DisconnectReason, Instant)>>,
}

impl Seen {
    fn lost(&self) -> Option<DisconnectReason> {
        self.lost.lock().unwrap().as_ref().map(|(r, _)| r.clone())
    }
    fn lost_at(&self) -> Option<Instant> {
        self.lost.lock().unwrap().as_ref().map(|(_, t)| *t)
    }
    fn record_lost(&self, reason: &DisconnectReason) {
        let mut l = self.lost.lock().unwrap();
        assert!(l.is_none(), "connection_lost twice");
        *l = Some((reason.clone(), Instant::now()));
    }
}

/// Receives and checks the pattern; optionally with an idle timeout.
struct Verify {
    seen: Arc<Seen>,
    idle: Option<Duration>,
}

impl Protocol for Verify {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.seen.made.fetch_add(1, Ordering::SeqCst);
        ctx.set_idle_timeout(self.idle);
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
        let start = self.seen.bytes.load(Ordering::Relaxed);
        if let Some(i) = (0..data.len()).find(|&i| data[i] != pattern(start + i as u64)) {
            self.seen
                .corrupt_at
                .lock()
                .unwrap()
                .get_or_insert(start + i as u64);
        }
        self.seen
            .bytes
            .fetch_add(data.len() as u64, Ordering::SeqCst);
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.seen.record_lost(reason);
    }
}

/// Sends `total` bytes of the pattern (pulled by the transport while its
/// buffer is below the water mark), at most `rate` bytes a second if given,
/// then closes gracefully.
struct Sender {
    seen: Arc<Seen>,
    total: u64,
    rate: Option<u64>,
}

const CHUNK: u64 = 64 * 1024;

impl Sender {
    fn new(seen: Arc<Seen>, total: u64, rate: Option<u64>) -> Sender {
        Sender { seen, total, rate }
    }
}

impl Protocol for Sender {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.seen.made.fetch_add(1, Ordering::SeqCst);
        if let Some(r) = self.rate {
            ctx.set_write_rate(Some(r));
        }
        let (total, seen) = (self.total, self.seen.clone());
        let chunks = (0..total.div_ceil(CHUNK)).map(move |k| {
            let start = k * CHUNK;
            let end = (start + CHUNK).min(total);
            seen.bytes.store(end, Ordering::SeqCst);
            Ok(bytes::Bytes::from(
                (start..end).map(pattern).collect::<Vec<u8>>(),
            ))
        });
        ctx.stream_from(chunks);
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
        assert!(result.is_ok(), "the pattern cannot fail");
        ctx.lose_connection();
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.seen.record_lost(reason);
    }
}

/// A reactor thread in `ns` with `setup` run first, turning until `stop`.
fn reactor_in(
    ns: &str,
    stop: Arc<AtomicBool>,
    limit: Duration,
    setup: impl FnOnce(&mut Reactor) + Send + 'static,
) -> JoinHandle<()> {
    spawn_in(ns, move || {
        let mut reactor = Reactor::new().expect("a reactor");
        setup(&mut reactor);
        let _ = reactor
            .run_until(limit, |_| stop.load(Ordering::SeqCst))
            .expect("the reactor runs");
    })
}

/// Stops the reactor threads and joins them, even when the test failed.
struct Threads {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Threads {
    fn new() -> Threads {
        Threads {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }
    fn reactor(
        &mut self,
        ns: &str,
        limit: Duration,
        setup: impl FnOnce(&mut Reactor) + Send + 'static,
    ) {
        self.threads
            .push(reactor_in(ns, self.stop.clone(), limit, setup));
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let r = t.join();
            if r.is_err() && !std::thread::panicking() {
                panic!("a reactor thread panicked");
            }
        }
    }
}

fn listen(
    reactor: &mut Reactor,
    port: u16,
    options: TcpOptions,
    mut build: impl FnMut() -> Verify + 'static,
) {
    reactor
        .listen_tcp_with(
            server_addr(port),
            torsion::factory(move |_| build()),
            options,
        )
        .expect("listen in the server namespace");
}

// ---------------------------------------------------------------------------
// The forwarder: frames between two interfaces, some dropped, all delayed.

const SOL_PACKET: libc::c_int = 263;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_OUTGOING: u8 = 4;

/// A raw packet socket on `ifname` that carries the offload header
/// (`virtio_net_hdr`) with each frame, so checksums left to the hardware
/// are still completed on the far side.
fn packet_socket(ifname: &str) -> std::io::Result<OwnedFd> {
    let name = std::ffi::CString::new(ifname).expect("an interface name");
    // SAFETY: plain socket calls on a descriptor we own.
    unsafe {
        let idx = libc::if_nametoindex(name.as_ptr());
        if idx == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(proto),
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        if libc::setsockopt(
            fd.as_raw_fd(),
            SOL_PACKET,
            PACKET_VNET_HDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = idx as i32;
        if libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// What the forwarder did.
#[derive(Debug, Default, Clone, Copy)]
struct Forwarded {
    passed: u64,
    dropped: u64,
    send_errors: u64,
    largest: usize,
}

/// Forwards frames between interfaces `a` and `b` of the current namespace
/// until `stop` (or `limit`): each is dropped with probability
/// `loss_per_mille / 1000`, the rest are delayed by `delay`.
fn forward(
    a: &str,
    b: &str,
    loss_per_mille: u64,
    delay: Duration,
    stop: &AtomicBool,
    limit: Duration,
) -> Forwarded {
    use std::collections::VecDeque;
    let socks = [
        packet_socket(a).expect("packet socket"),
        packet_socket(b).expect("packet socket"),
    ];
    // Frames waiting, per direction (0: from a to b), with their due time.
    let mut queues: [VecDeque<(Instant, Vec<u8>)>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut stats = Forwarded::default();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 70_000];
    let end = Instant::now() + limit;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let now = Instant::now();
        let next = queues
            .iter()
            .filter_map(|q| q.front().map(|(t, _)| *t))
            .min()
            .map_or(10, |t| {
                t.saturating_duration_since(now).as_millis().clamp(0, 10) as i32
            });
        let mut fds = [
            libc::pollfd {
                fd: socks[0].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: socks[1].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, next) };
        for (dir, sock) in socks.iter().enumerate() {
            // A bounded batch per turn, so both directions move.
            for _ in 0..256 {
                let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: `buf` and `sll` outlive the call.
                let n = unsafe {
                    libc::recvfrom(
                        sock.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut sll as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    )
                };
                if n <= 0 {
                    break;
                }
                if sll.sll_pkttype == PACKET_OUTGOING {
                    continue;
                }
                stats.largest = stats.largest.max(n as usize);
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if rng % 1000 < loss_per_mille {
                    stats.dropped += 1;
                    continue;
                }
                if queues[dir].len() < 20_000 {
                    queues[dir].push_back((Instant::now() + delay, buf[..n as usize].to_vec()));
                } else {
                    stats.dropped += 1;
                }
            }
        }
        let now = Instant::now();
        for (dir, q) in queues.iter_mut().enumerate() {
            let out = &socks[1 - dir];
            while q.front().is_some_and(|(t, _)| *t <= now) {
                let (_, frame) = q.pop_front().expect("checked");
                // SAFETY: `frame` outlives the call.
                let n =
                    unsafe { libc::send(out.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
                if n < 0 {
                    stats.dropped += 1;
                    stats.send_errors += 1;
                } else {
                    stats.passed += 1;
                }
            }
        }
    }
    stats
}

// ---------------------------------------------------------------------------
// Scenarios.

#[test]
fn lossy_link_delivers_every_byte_of_100_mib() {
    const TEST: &str = "lossy_link_delivers_every_byte_of_100_mib";
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(net) = build(TEST, Net::forwarded) else {
        return;
    };
    const TOTAL: u64 = 100 << 20;
    let stop_fwd = Arc::new(AtomicBool::new(false));
    let forwarder = {
        let (fs, fc, stop) = (net.name("fs"), net.name("fc"), stop_fwd.clone());
        spawn_in(&net.ns("f"), move || {
            forward(
                &fs,
                &fc,
                20,
                Duration::from_millis(20),
                &stop,
                Duration::from_secs(300),
            )
        })
    };
    let received = Arc::new(Seen::default());
    let sent = Arc::new(Seen::default());
    let mut threads = Threads::new();
    let r = received.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    threads.reactor(&net.ns("s"), Duration::from_secs(300), move |reactor| {
        listen(reactor, 7000, TcpOptions::default(), move || Verify {
            seen: r.clone(),
            idle: Some(Duration::from_secs(10)),
        });
        ready_tx.send(()).expect("the test waits");
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server listens");
    let s = sent.clone();
    let started = Instant::now();
    threads.reactor(&net.ns("c"), Duration::from_secs(300), move |reactor| {
        // A SYN may be lost too: the kernel retransmits it within the timeout.
        let sender = Sender::new(s, TOTAL, None);
        drop(reactor.connect_protocol(server_addr(7000), sender, Duration::from_secs(30)));
    });
    let mut last_report = Instant::now();
    wait_for("the 100 MiB transfer", Duration::from_secs(280), || {
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let _ = writeln!(
                std::io::stderr(),
                "netfault: {} MiB of 100 received after {:.0} s (made {})",
                received.bytes.load(Ordering::SeqCst) >> 20,
                started.elapsed().as_secs_f64(),
                received.made.load(Ordering::SeqCst),
            );
        }
        received.lost().is_some()
    });
    let took = started.elapsed();
    stop_fwd.store(true, Ordering::SeqCst);
    let stats = forwarder.join().expect("the forwarder");
    drop(threads);
    let _ = writeln!(
        std::io::stderr(),
        "netfault: 100 MiB over 2% loss, 20 ms each way: {:.1} s ({:.1} MiB/s); forwarder {:?}",
        took.as_secs_f64(),
        100.0 / took.as_secs_f64(),
        stats
    );
    assert_eq!(received.lost(), Some(DisconnectReason::Done));
    assert_eq!(*received.corrupt_at.lock().unwrap(), None, "corrupt stream");
    assert_eq!(received.bytes.load(Ordering::SeqCst), TOTAL);
    assert_eq!(received.made.load(Ordering::SeqCst), 1);
    assert_eq!(sent.lost(), Some(DisconnectReason::Done));
    let ratio = stats.dropped as f64 / (stats.passed + stats.dropped) as f64;
    assert!(
        (0.01..0.03).contains(&ratio),
        "the forwarder dropped {:.2}% of frames, not about 2%",
        ratio * 100.0
    );
}

#[test]
fn link_down_for_5s_survives_without_idle_timeout_and_times_out_with_one() {
    const TEST: &str = "link_down_for_5s_survives_without_idle_timeout_and_times_out_with_one";
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(net) = build(TEST, Net::pair) else {
        return;
    };
    const TOTAL: u64 = 16 << 20;
    const RATE: u64 = 2 << 20;
    let patient = Arc::new(Seen::default());
    let impatient = Arc::new(Seen::default());
    let senders = [Arc::new(Seen::default()), Arc::new(Seen::default())];
    let mut threads = Threads::new();
    let (p, i) = (patient.clone(), impatient.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    threads.reactor(&net.ns("s"), Duration::from_secs(60), move |reactor| {
        listen(reactor, 7001, TcpOptions::default(), move || Verify {
            seen: p.clone(),
            idle: None,
        });
        listen(reactor, 7002, TcpOptions::default(), move || Verify {
            seen: i.clone(),
            idle: Some(Duration::from_secs(2)),
        });
        ready_tx.send(()).expect("the test waits");
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server listens");
    let [s1, s2] = senders.clone();
    threads.reactor(&net.ns("c"), Duration::from_secs(60), move |reactor| {
        // The Deferreds are not needed: the protocols report.
        let timeout = Duration::from_secs(5);
        drop(reactor.connect_protocol(
            server_addr(7001),
            Sender::new(s1, TOTAL, Some(RATE)),
            timeout,
        ));
        drop(reactor.connect_protocol(
            server_addr(7002),
            Sender::new(s2, TOTAL, Some(RATE)),
            timeout,
        ));
    });
    wait_for("2 MiB on both connections", Duration::from_secs(20), || {
        patient.bytes.load(Ordering::SeqCst) >= 2 << 20
            && impatient.bytes.load(Ordering::SeqCst) >= 2 << 20
    });
    let (c, vc) = (net.ns("c"), net.name("vc"));
    ip(&["-n", &c, "link", "set", &vc, "down"]).expect("link down");
    let down = Instant::now();
    // The outage itself lasts 5 s: this sleep is the scenario, not a wait.
    std::thread::sleep(Duration::from_secs(5));
    ip(&["-n", &c, "link", "set", &vc, "up"]).expect("link up");
    wait_for("the patient transfer", Duration::from_secs(40), || {
        patient.lost().is_some()
    });
    wait_for("the impatient end", Duration::from_secs(10), || {
        impatient.lost().is_some()
    });
    let _ = writeln!(
        std::io::stderr(),
        "netfault: link down 5 s; patient transfer done after {:.1} s; idle-timeout end lost {:.1} s after the link went down",
        down.elapsed().as_secs_f64(),
        impatient.lost_at().map_or(f64::NAN, |t| (t - down).as_secs_f64())
    );
    assert_eq!(patient.lost(), Some(DisconnectReason::Done));
    assert_eq!(
        patient.bytes.load(Ordering::SeqCst),
        TOTAL,
        "bytes lost in the outage"
    );
    assert_eq!(*patient.corrupt_at.lock().unwrap(), None);
    assert_eq!(senders[0].lost(), Some(DisconnectReason::Done));
    assert_eq!(impatient.lost(), Some(DisconnectReason::TimedOut));
    assert!(impatient.bytes.load(Ordering::SeqCst) < TOTAL);
    let lost_at = impatient.lost_at().expect("lost");
    assert!(
        lost_at < down + Duration::from_secs(5),
        "the 2 s idle timeout did not end the connection during the 5 s outage"
    );
}

#[test]
fn blackhole_is_detected_by_idle_timeout_and_by_keepalive() {
    const TEST: &str = "blackhole_is_detected_by_idle_timeout_and_by_keepalive";
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if run("nft", &["--version"]).is_err() {
        skip(TEST, "nft is not installed (apt-get install nftables)");
        return;
    }
    let Some(net) = build(TEST, Net::pair) else {
        return;
    };
    let ends: [Arc<Seen>; 3] = Default::default();
    let mut threads = Threads::new();
    let e = ends.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    threads.reactor(&net.ns("s"), Duration::from_secs(60), move |reactor| {
        let [idle, ka, neither] = e;
        listen(reactor, 7001, TcpOptions::default(), move || Verify {
            seen: idle.clone(),
            idle: Some(Duration::from_secs(2)),
        });
        let keepalive = Keepalive::new(Duration::from_secs(1))
            .interval(Duration::from_secs(1))
            .count(2);
        listen(
            reactor,
            7002,
            TcpOptions::default().keepalive(keepalive),
            move || Verify {
                seen: ka.clone(),
                idle: None,
            },
        );
        listen(reactor, 7003, TcpOptions::default(), move || Verify {
            seen: neither.clone(),
            idle: None,
        });
        ready_tx.send(()).expect("the test waits");
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server listens");
    let clients: [Arc<Seen>; 3] = Default::default();
    let cl = clients.clone();
    threads.reactor(&net.ns("c"), Duration::from_secs(60), move |reactor| {
        for (port, seen) in [7001, 7002, 7003].into_iter().zip(cl) {
            // A few bytes, then silence (the connection stays open).
            let quiet = Quiet(Sender::new(seen, 16, None));
            drop(reactor.connect_protocol(server_addr(port), quiet, Duration::from_secs(5)));
        }
    });
    wait_for("three connections", Duration::from_secs(10), || {
        ends.iter().all(|e| e.bytes.load(Ordering::SeqCst) == 16)
    });
    // Everything to and from the client is now swallowed.
    let c = net.ns("c");
    let rules = "add table inet blackhole; \
        add chain inet blackhole input { type filter hook input priority 0; policy drop; }; \
        add chain inet blackhole output { type filter hook output priority 0; policy drop; }";
    run("ip", &["netns", "exec", &c, "nft", rules]).expect("the drop rules");
    let holed = Instant::now();
    let [idle, ka, neither] = &ends;
    wait_for("the idle timeout", Duration::from_secs(10), || {
        idle.lost().is_some()
    });
    wait_for("keepalive", Duration::from_secs(15), || ka.lost().is_some());
    // Twice the keepalive's time (1 s + 2 × 1 s) later, the connection with
    // neither is still up: the others were ended by their settings.
    let settle = holed + Duration::from_secs(6);
    std::thread::sleep(settle.saturating_duration_since(Instant::now()));
    let _ = writeln!(
        std::io::stderr(),
        "netfault: blackhole; idle timeout (2 s) fired after {:.1} s, keepalive (1 s + 2 x 1 s) after {:.1} s",
        (idle.lost_at().expect("lost") - holed).as_secs_f64(),
        (ka.lost_at().expect("lost") - holed).as_secs_f64()
    );
    assert_eq!(idle.lost(), Some(DisconnectReason::TimedOut));
    assert_eq!(ka.lost(), Some(DisconnectReason::TimedOut));
    assert_eq!(
        neither.lost(),
        None,
        "a connection without keepalive or idle timeout ended"
    );
    assert!(ends.iter().all(|e| e.made.load(Ordering::SeqCst) == 1));
}

/// Sends a few bytes, then stays open and quiet (no close).
struct Quiet(Sender);

impl Protocol for Quiet {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.0.seen.made.fetch_add(1, Ordering::SeqCst);
        let data: Vec<u8> = (0..self.0.total).map(pattern).collect();
        ctx.write(&data);
        self.0.seen.bytes.store(self.0.total, Ordering::SeqCst);
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        self.0.seen.record_lost(reason);
    }
}

/// Server side of the reconnect scenario: a heartbeat byte every 200 ms.
struct Beat;

impl Beat {
    fn beat(ctx: &mut Context<'_>) {
        ctx.write(b".");
        ctx.call_later_self(Duration::from_millis(200), |_: &mut Beat, ctx| {
            Beat::beat(ctx)
        });
    }
}

impl Protocol for Beat {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        Beat::beat(ctx);
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

/// Client side: hangs up when the heartbeat stops for a second.
struct Listen {
    made: Arc<Mutex<Vec<Instant>>>,
}

impl Protocol for Listen {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.made.lock().unwrap().push(Instant::now());
        ctx.set_idle_timeout(Some(Duration::from_secs(1)));
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

#[test]
fn reconnecting_client_recovers_within_its_backoff_after_the_link_returns() {
    const TEST: &str = "reconnecting_client_recovers_within_its_backoff_after_the_link_returns";
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(net) = build(TEST, Net::pair) else {
        return;
    };
    const MAX_DELAY: Duration = Duration::from_secs(1);
    let mut threads = Threads::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    threads.reactor(&net.ns("s"), Duration::from_secs(60), move |reactor| {
        reactor
            .listen_tcp(server_addr(7000), torsion::factory(|_| Beat))
            .expect("listen");
        ready_tx.send(()).expect("the test waits");
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server listens");
    let made = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(AtomicU64::new(0));
    let (m, a) = (made.clone(), attempts.clone());
    threads.reactor(&net.ns("c"), Duration::from_secs(60), move |reactor| {
        let policy = BackoffPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(MAX_DELAY);
        let factory =
            ReconnectingClientFactory::from_fn(policy, move |_| Some(Listen { made: m.clone() }))
                .expect("a valid policy");
        let handle = factory.handle();
        reactor.connect_tcp(server_addr(7000), factory, Duration::from_secs(2));
        // Publish the attempt count as it changes (bounded by the reactor's run).
        fn publish(
            core: &mut torsion::Core,
            h: torsion::reconnect::ReconnectHandle,
            a: Arc<AtomicU64>,
        ) {
            a.store(h.attempts(), Ordering::SeqCst);
            core.call_later(Duration::from_millis(20), move |core| publish(core, h, a));
        }
        publish(reactor, handle, a);
    });
    wait_for("the first connection", Duration::from_secs(10), || {
        !made.lock().unwrap().is_empty()
    });
    let (c, vc) = (net.ns("c"), net.name("vc"));
    ip(&["-n", &c, "link", "set", &vc, "down"]).expect("link down");
    // The outage lasts 5 s: longer than the client's 1 s idle timeout and
    // several back-off delays.
    std::thread::sleep(Duration::from_secs(5));
    let attempts_before_up = attempts.load(Ordering::SeqCst);
    ip(&["-n", &c, "link", "set", &vc, "up"]).expect("link up");
    let up = Instant::now();
    wait_for("the reconnection", Duration::from_secs(15), || {
        made.lock().unwrap().len() >= 2
    });
    let made = made.lock().unwrap().clone();
    let after = made[1] - up;
    let _ = writeln!(
        std::io::stderr(),
        "netfault: reconnected {:.2} s after the link returned ({} attempts during the outage)",
        after.as_secs_f64(),
        attempts_before_up
    );
    assert!(
        attempts_before_up >= 3,
        "only {attempts_before_up} attempts: the outage was not noticed"
    );
    // The next attempt after the link returned succeeded: it came at most one
    // maximum back-off (1 s, jitter never exceeds it) after the link did,
    // plus a connect round trip and scheduling slack on a loaded machine.
    assert!(
        after <= MAX_DELAY + Duration::from_secs(2),
        "reconnected {after:?} after the link returned, past the 1 s back-off"
    );
}
