//! Running out of descriptors: the listener sheds connections instead of
//! spinning or stalling, and serves again once descriptors are free.
//! Its own test binary: it lowers the process's RLIMIT_NOFILE.
mod util;

use std::io::{Read, Write};
use std::time::Duration;

use torsion::Reactor;
use util::*;

fn set_nofile(limit: u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls with valid pointers.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        rl.rlim_cur = limit.min(rl.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
    }
}

/// Thread CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer; RUSAGE_THREAD is Linux's per-thread usage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
fn emfile_listener_sheds_then_recovers() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    r.run_once(Some(Duration::ZERO)).unwrap();
    set_nofile(fd_count() as u64 + 64);
    // Client sockets made while descriptors are still available.
    let clients: Vec<socket2::Socket> = (0..4)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect();
    // Exhaust the table.
    let mut hogs = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hogs.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
                break;
            }
        }
    }
    let mut clients = clients.into_iter();

    // 1. A connection while out of descriptors is shed: the peer sees it closed.
    let c1: std::net::TcpStream = clients.next().unwrap().into();
    c1.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    socket2::SockRef::from(&c1)
        .connect(&port.local_addr().into())
        .unwrap();
    let mut c1 = c1;
    let mut closed = false;
    run_until(&mut r, || {
        let mut b = [0u8; 8];
        closed = match c1.read(&mut b) {
            Ok(0) => true,
            Err(e) => {
                e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut
            }
            Ok(_) => panic!("a shed connection got data"),
        };
        closed
    });
    assert_eq!(r.connection_count(), 0);
    // The snapshot and the counters tell: one shed, nothing accepted.
    let snap = r.snapshot();
    assert_eq!(snap.listeners.len(), 1);
    assert_eq!((snap.listeners[0].accepted, snap.listeners[0].shed), (0, 1));
    assert_eq!(snap.counters.shed_fd_exhaustion, 1);
    assert_eq!(snap.counters.accepted, 0);

    // 2. While exhausted and idle, the reactor thread does not spin.
    let cpu0 = thread_cpu();
    let wall = std::time::Instant::now();
    while wall.elapsed() < Duration::from_secs(1) {
        r.run_once(Some(Duration::from_millis(100))).unwrap();
    }
    let cpu = thread_cpu() - cpu0;
    // Well under 5% of the second (a spinning accept loop would use ~100%).
    assert!(
        cpu < Duration::from_millis(50),
        "reactor spun while out of descriptors: {cpu:?} CPU in 1 s"
    );
    eprintln!("reactor CPU while out of descriptors: {cpu:?} in 1 s");

    // 3. Free descriptors: the next connection is served.
    hogs.clear();
    let c2: std::net::TcpStream = clients.next().unwrap().into();
    socket2::SockRef::from(&c2)
        .connect(&port.local_addr().into())
        .unwrap();
    let mut c2 = c2;
    c2.write_all(b"alive?").unwrap();
    c2.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    run_until(&mut r, || {
        let mut b = [0u8; 16];
        if let Ok(n) = c2.read(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        got == b"alive?"
    });
    assert_eq!(r.connection_count(), 1);
    let snap = r.snapshot();
    assert_eq!((snap.listeners[0].accepted, snap.listeners[0].shed), (1, 1));
    assert_eq!(snap.counters.accepted, 1);
    assert_eq!(snap.connections.len(), 1);
    assert_eq!(snap.connections[0].bytes_in, 6);
}
