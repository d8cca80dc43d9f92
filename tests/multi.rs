//! A reactor per core: `ReactorPool` shares one port over several reactors,
//! reports setup failures, and leaves nothing running when it stops.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use torsion::multi::ReactorPool;
use torsion::Address;
use torsion::{Context, Error, Factory, Protocol, Reactor, TcpOptions};

/// Generous: only catches hangs.
const DEADLINE: Duration = Duration::from_secs(60);

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        ctx.write(data);
    }
}

/// Counts the connections its reactor accepted.
struct CountingFactory(Arc<AtomicUsize>);

impl Factory for CountingFactory {
    type Protocol = Echo;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Echo> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Some(Echo)
    }
}

/// Listens on the port the first reactor was given (any free port for it).
fn listen_shared(
    bound: &OnceLock<SocketAddr>,
    reactor: &mut Reactor,
    factory: CountingFactory,
) -> torsion::Result<()> {
    let addr = bound
        .get()
        .copied()
        .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
    let port = reactor.listen_tcp_with(addr, factory, TcpOptions::default().reuse_port(true))?;
    let _ = bound.set(port.local_addr());
    Ok(())
}

fn echo_once(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"ping").unwrap();
    let mut back = [0; 4];
    s.read_exact(&mut back).expect("echo");
    assert_eq!(&back, b"ping");
    s
}

fn refused(addr: SocketAddr) -> bool {
    matches!(TcpStream::connect(addr), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

#[test]
fn two_reactors_share_one_port_and_both_serve() {
    let counts: Arc<Vec<Arc<AtomicUsize>>> =
        Arc::new((0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect());
    let bound = Arc::new(OnceLock::new());
    let (c, b) = (counts.clone(), bound.clone());
    let pool = ReactorPool::spawn(2, move |i, reactor| {
        listen_shared(&b, reactor, CountingFactory(c[i].clone()))
    })
    .expect("spawn");
    assert_eq!(pool.len(), 2);
    let addr = *bound.get().expect("the first setup published its port");

    // The kernel hashes each connection to one listener; keep connecting until
    // both reactors have served one (two hundred misses in a row would be a
    // 1 in 2^200 chance if the listeners were really shared).
    let mut open = Vec::new();
    let end = Instant::now() + DEADLINE;
    while counts.iter().any(|c| c.load(Ordering::Relaxed) == 0) {
        assert!(open.len() < 200, "one reactor never accepted: {counts:?}");
        assert!(Instant::now() < end, "timed out");
        open.push(echo_once(addr));
    }
    let total: usize = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    assert_eq!(total, open.len());

    pool.shutdown(Duration::from_secs(5));
    // Graceful: each open connection sees its end of stream.
    for mut s in open {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("clean close");
        assert!(rest.is_empty());
    }
    pool.join().expect("reactors stopped cleanly");
    assert!(refused(addr), "a listener outlived the pool");
}

#[test]
fn setups_run_one_at_a_time_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let pool = ReactorPool::spawn(3, move |i, _reactor| {
        s.lock().unwrap().push(i);
        Ok(())
    })
    .expect("spawn");
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
    pool.stop();
    pool.join().expect("stopped cleanly");
}

#[test]
fn zero_threads_means_one_reactor() {
    let pool = ReactorPool::spawn(0, |_, _| Ok(())).expect("spawn");
    assert_eq!(pool.len(), 1);
    assert!(!pool.is_empty());
    pool.stop();
    pool.join().expect("stopped cleanly");
}

#[test]
fn a_failed_setup_is_returned_and_stops_the_reactors_already_started() {
    let bound = Arc::new(OnceLock::new());
    let b = bound.clone();
    let err = ReactorPool::spawn(2, move |i, reactor| {
        if i == 0 {
            return listen_shared(&b, reactor, CountingFactory(Arc::default()));
        }
        // Without SO_REUSEPORT the second listen on the port must fail.
        let addr = *b.get().unwrap();
        reactor.listen_tcp(addr, CountingFactory(Arc::default()))?;
        Ok(())
    })
    .expect_err("the second listen should fail");
    match err {
        Error::Io(e) => assert_eq!(e.kind(), ErrorKind::AddrInUse),
        other => panic!("unexpected error {other:?}"),
    }
    let addr = *bound.get().unwrap();
    assert!(
        refused(addr),
        "the first reactor's listener was left running"
    );
}

#[test]
fn a_panicking_setup_is_reported() {
    let err = ReactorPool::spawn(2, |i, _| {
        assert!(i == 0, "setup {i} gives up");
        Ok(())
    })
    .expect_err("the second setup panics");
    match err {
        Error::Panicked(msg) => assert!(msg.contains("setup 1 gives up"), "{msg}"),
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn dropping_the_pool_stops_its_reactors() {
    let bound = Arc::new(OnceLock::new());
    let b = bound.clone();
    let pool = ReactorPool::spawn(2, move |_, reactor| {
        listen_shared(&b, reactor, CountingFactory(Arc::default()))
    })
    .expect("spawn");
    let addr = *bound.get().unwrap();
    drop(echo_once(addr));
    drop(pool);
    assert!(refused(addr), "a listener outlived the pool");
}
