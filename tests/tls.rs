//! TLS over TCP: listen_tls, connect_tls, failures, reaching the protocol,
//! and interoperation with `openssl s_server` / `s_client` where installed.
#![cfg(feature = "tls")]

mod tls_util;
mod util;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tls_util::certs;
use torsion::tls;
use torsion::Address;
use torsion::{
    ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reactor, Reconnect,
};
use util::*;

/// A client factory that records the attempt's outcome.
struct TlsClientF {
    seen: Shared,
    payload: Vec<u8>,
    expect: usize,
    made: Rc<RefCell<Vec<torsion::ConnectionHandle>>>,
}

impl ClientFactory for TlsClientF {
    type Protocol = Client;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Client> {
        self.seen.borrow_mut().built += 1;
        Some(Client {
            seen: self.seen.clone(),
            payload: std::mem::take(&mut self.payload),
            expect: self.expect,
        })
    }
    fn client_connection_made(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        conn: torsion::ConnectionHandle,
    ) {
        self.made.borrow_mut().push(conn);
    }
    fn client_connection_failed(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        self.seen.borrow_mut().failed = Some(reason.clone());
        Reconnect::Never
    }
}

fn client_f(payload: &[u8], expect: usize) -> (TlsClientF, Shared) {
    let seen = Shared::default();
    (
        TlsClientF {
            seen: seen.clone(),
            payload: payload.to_vec(),
            expect,
            made: Rc::default(),
        },
        seen,
    )
}

#[test]
fn echo_over_tcp_and_clean_close() {
    let c = certs(&["localhost"]);
    let mut reactor = Reactor::new().unwrap();
    let port = reactor
        .listen_tls(localhost(), c.server(), EchoFactory)
        .unwrap();
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let (f, seen) = client_f(&payload, payload.len());
    let made = f.made.clone();
    reactor.connect_tls(
        port.local_addr(),
        tls::server_name("localhost").unwrap(),
        c.client(),
        f,
        DEADLINE,
    );
    run_until(&mut reactor, || seen.borrow().lost.is_some());
    let s = seen.borrow();
    assert!(
        s.received == payload,
        "echo differs ({} bytes)",
        s.received.len()
    );
    assert_eq!(s.lost, Some(DisconnectReason::Done));
    assert_eq!(
        made.borrow().len(),
        1,
        "client_connection_made after the handshake"
    );
    drop(s);
    // The server side closed too (close_notify, then FIN): nothing is left.
    let r = &mut reactor;
    let ok = r
        .run_until(DEADLINE, |r| r.connection_count() == 0)
        .unwrap();
    assert!(ok, "connections left open");
}

#[test]
fn a_failed_handshake_is_a_failed_connection_attempt() {
    let c = certs(&["localhost"]);
    let mut reactor = Reactor::new().unwrap();
    let port = reactor
        .listen_tls(localhost(), c.server(), EchoFactory)
        .unwrap();
    let (f, seen) = client_f(b"x", 1);
    // The certificate is for "localhost", not "example.org".
    reactor.connect_tls(
        port.local_addr(),
        tls::server_name("example.org").unwrap(),
        c.client(),
        f,
        DEADLINE,
    );
    run_until(&mut reactor, || seen.borrow().failed.is_some());
    let s = seen.borrow();
    assert!(
        matches!(&s.failed, Some(DisconnectReason::Tls(m)) if m.contains("not valid for name")),
        "{:?}",
        s.failed
    );
    assert_eq!(s.built, 0, "no protocol is built for a failed handshake");
}

#[test]
fn a_server_that_never_answers_the_handshake_times_out() {
    let mut reactor = Reactor::new().unwrap();
    // Plain TCP that accepts and says nothing.
    struct Mute;
    impl Protocol for Mute {
        fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    }
    struct MuteF;
    impl torsion::Factory for MuteF {
        type Protocol = Mute;
        fn build_protocol(&mut self, _peer: &Address) -> Option<Mute> {
            Some(Mute)
        }
    }
    let port = reactor.listen_tcp(localhost(), MuteF).unwrap();
    let c = certs(&["localhost"]);
    let (f, seen) = client_f(b"x", 1);
    reactor.connect_tls(
        port.local_addr(),
        tls::server_name("localhost").unwrap(),
        c.client(),
        f,
        Duration::from_millis(300),
    );
    run_until(&mut reactor, || seen.borrow().failed.is_some());
    assert_eq!(seen.borrow().failed, Some(DisconnectReason::TimedOut));
    assert_eq!(seen.borrow().built, 0);
}

#[test]
fn with_protocol_and_call_later_self_reach_the_wrapped_protocol() {
    #[derive(Default)]
    struct Counter {
        hits: u32,
    }
    impl Protocol for Counter {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            ctx.call_later_self::<Counter>(Duration::from_millis(1), |c, ctx| {
                c.hits += 1;
                ctx.write(b"timer ");
            });
        }
        fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    }
    struct CounterF(Rc<RefCell<Option<torsion::ConnectionHandle>>>);
    impl ClientFactory for CounterF {
        type Protocol = Counter;
        fn build_protocol(&mut self, _peer: &Address) -> Option<Counter> {
            Some(Counter::default())
        }
        fn client_connection_made(
            &mut self,
            _core: &mut Core,
            _c: Connector,
            conn: torsion::ConnectionHandle,
        ) {
            *self.0.borrow_mut() = Some(conn);
        }
    }
    let c = certs(&["localhost"]);
    let mut reactor = Reactor::new().unwrap();
    // The server records what it receives.
    let got = Rc::new(RefCell::new(Vec::new()));
    struct Sink(Rc<RefCell<Vec<u8>>>);
    impl Protocol for Sink {
        fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
            self.0.borrow_mut().extend_from_slice(data);
        }
    }
    struct SinkF(Rc<RefCell<Vec<u8>>>);
    impl torsion::Factory for SinkF {
        type Protocol = Sink;
        fn build_protocol(&mut self, _peer: &Address) -> Option<Sink> {
            Some(Sink(self.0.clone()))
        }
    }
    let port = reactor
        .listen_tls(localhost(), c.server(), SinkF(got.clone()))
        .unwrap();
    let conn = Rc::new(RefCell::new(None));
    reactor.connect_tls(
        port.local_addr(),
        tls::server_name("localhost").unwrap(),
        c.client(),
        CounterF(conn.clone()),
        DEADLINE,
    );
    run_until(&mut reactor, || got.borrow().len() >= 6);
    let h = conn.borrow().unwrap();
    let reached = reactor.connection(h).with_protocol(|c: &mut Counter, ctx| {
        ctx.write(b"with_protocol ");
        (c.hits, ctx.tls_info().is_some())
    });
    assert_eq!(
        reactor.run_until_complete(reached).unwrap().unwrap(),
        (1, true)
    );
    reactor.connection(h).write(b"write_to");
    run_until(&mut reactor, || got.borrow().len() >= 28);
    assert_eq!(&*got.borrow(), b"timer with_protocol write_to");
}

#[test]
fn an_idle_timeout_closes_with_close_notify_and_the_peer_sees_a_clean_end() {
    struct Sleepy(Rc<RefCell<Option<DisconnectReason>>>);
    impl Protocol for Sleepy {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            ctx.set_idle_timeout(Some(Duration::from_millis(100)));
        }
        fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
        fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
            *self.0.borrow_mut() = Some(reason.clone());
        }
    }
    struct SleepyF(Rc<RefCell<Option<DisconnectReason>>>);
    impl torsion::Factory for SleepyF {
        type Protocol = Sleepy;
        fn build_protocol(&mut self, _peer: &Address) -> Option<Sleepy> {
            Some(Sleepy(self.0.clone()))
        }
    }
    let c = certs(&["localhost"]);
    let mut reactor = Reactor::new().unwrap();
    let server_lost = Rc::new(RefCell::new(None));
    let port = reactor
        .listen_tls(localhost(), c.server(), SleepyF(server_lost.clone()))
        .unwrap();
    let (f, seen) = client_f(b"", usize::MAX);
    reactor.connect_tls(
        port.local_addr(),
        tls::server_name("localhost").unwrap(),
        c.client(),
        f,
        DEADLINE,
    );
    run_until(&mut reactor, || seen.borrow().lost.is_some());
    assert_eq!(*server_lost.borrow(), Some(DisconnectReason::TimedOut));
    assert_eq!(seen.borrow().lost, Some(DisconnectReason::Done));
}

/// Echoes and closes after a newline.
struct LineEcho;
impl Protocol for LineEcho {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        ctx.write(data);
        if data.ends_with(b"\n") {
            ctx.lose_connection();
        }
    }
}
struct LineEchoF;
impl torsion::Factory for LineEchoF {
    type Protocol = LineEcho;
    fn build_protocol(&mut self, _peer: &Address) -> Option<LineEcho> {
        Some(LineEcho)
    }
}

#[test]
fn interoperates_with_openssl_s_client() {
    if !have_openssl() {
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let c = certs(&["localhost"]);
    let dir = tempdir();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &c.ca_pem).unwrap();
    let mut reactor = Reactor::new().unwrap();
    let port = reactor
        .listen_tls(localhost(), c.server(), LineEchoF)
        .unwrap();
    let addr = port.local_addr();
    // s_client verifies our certificate, sends the line, and (-ign_eof) reads
    // until we close.
    let child = std::thread::spawn(move || {
        use std::io::Write;
        let mut p = std::process::Command::new("openssl")
            .args(["s_client", "-quiet", "-verify_return_error", "-ign_eof"])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .arg("-connect")
            .arg(addr.to_string())
            .arg("-CAfile")
            .arg(&ca)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin
            .take()
            .unwrap()
            .write_all(b"hello from openssl\n")
            .unwrap();
        let out = p.wait_with_output().unwrap();
        (
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    });
    run_until(&mut reactor, || child.is_finished());
    let (stdout, stderr) = child.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        "hello from openssl\n",
        "stderr: {stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Retries refused connects (the server process is starting), records what
/// comes back.
struct Retry {
    seen: Shared,
    tries: u32,
}
impl ClientFactory for Retry {
    type Protocol = Client;
    fn build_protocol(&mut self, _peer: &Address) -> Option<Client> {
        Some(Client {
            seen: self.seen.clone(),
            payload: b"hello openssl\n".to_vec(),
            expect: usize::MAX,
        })
    }
    fn client_connection_failed(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        self.tries += 1;
        if *reason == DisconnectReason::Refused && self.tries < 400 {
            return Reconnect::After(Duration::from_millis(25));
        }
        self.seen.borrow_mut().failed = Some(reason.clone());
        Reconnect::Never
    }
}

#[test]
fn interoperates_with_openssl_s_server() {
    if !have_openssl() {
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let c = certs(&["localhost"]);
    let dir = tempdir();
    std::fs::write(dir.join("cert.pem"), &c.chain_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &c.key_pem).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // -rev: each line comes back reversed; serves one connection.
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-rev", "-naccept", "1"])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(dir.join("cert.pem"))
        .arg("-key")
        .arg(dir.join("key.pem"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut reactor = Reactor::new().unwrap();
    let seen = Shared::default();
    reactor.connect_tls(
        SocketAddr::from(([127, 0, 0, 1], port)),
        tls::server_name("localhost").unwrap(),
        c.client(),
        Retry {
            seen: seen.clone(),
            tries: 0,
        },
        DEADLINE,
    );
    let done = reactor
        .run_until(DEADLINE, |_| {
            let s = seen.borrow();
            s.received.ends_with(b"\n") || s.failed.is_some()
        })
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(dir);
    assert!(done, "no answer from openssl s_server");
    let s = seen.borrow();
    assert_eq!(s.failed, None);
    assert_eq!(String::from_utf8_lossy(&s.received), "lssnepo olleh\n");
}

fn have_openssl() -> bool {
    std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "torsion-tls-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
