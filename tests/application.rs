//! The application runner: SIGTERM shuts down gracefully. One test per
//! process, since it raises a real signal.

mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use torsion::defer::Deferred;
use torsion::service::{Application, ServerService, Service, ServiceError};
use torsion::Core;
use util::EchoFactory;

/// Starts the client thread once the services before it (the listener) run.
struct SpawnClient {
    addr: SocketAddr,
    tx: std::sync::mpsc::Sender<std::thread::JoinHandle<()>>,
}

impl Service for SpawnClient {
    fn name(&self) -> &str {
        "client thread"
    }
    fn start(&mut self, _core: &mut Core) -> Result<(), ServiceError> {
        let addr = self.addr;
        let t = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.write_all(b"before the signal").unwrap();
            let mut buf = [0u8; 17];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"before the signal");
            assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
            // The server closes our connection cleanly: EOF, not a reset.
            let mut rest = Vec::new();
            assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
            // And it no longer listens.
            assert!(std::net::TcpStream::connect(addr).is_err());
        });
        self.tx.send(t).unwrap();
        Ok(())
    }
    fn stop(&mut self, _core: &mut Core) -> Deferred<(), ServiceError> {
        let (d, t) = Deferred::new();
        let _ = t.callback(());
        d
    }
    fn is_running(&self) -> bool {
        true
    }
}

#[test]
fn sigterm_stops_listening_flushes_and_closes_connections_then_returns() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut app = Application::new().unwrap();
    app.add(
        ServerService::new(&format!("tcp:{}:interface=127.0.0.1", addr.port()), || {
            EchoFactory
        })
        .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    app.add(SpawnClient { addr, tx });
    app.set_shutdown_timeout(Duration::from_secs(20));
    let started = std::time::Instant::now();
    app.run().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited for the deadline"
    );
    rx.recv().unwrap().join().unwrap();
}
