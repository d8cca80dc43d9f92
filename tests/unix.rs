//! Unix-domain sockets beyond the behaviour suite (which runs the stream
//! scenarios over them): socket files (stale removal, mode, cleanup), failed
//! connects, addresses, descriptor leaks, Unix datagrams.
mod suite;
mod util;

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::rc::Rc;
use std::time::Duration;

use suite::temp_socket_path;
use torsion::address::NO_IP;
use torsion::{
    Address, DatagramContext, DatagramError, DatagramProtocol, DisconnectReason, PanicPolicy,
    Reactor, UnixAddr, UnixOptions,
};
use util::*;

#[test]
fn binding_an_existing_path_fails_unless_a_stale_socket_may_be_removed() {
    let path = temp_socket_path("stale");
    // A socket file whose listener is gone: stale.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut r = Reactor::new().unwrap();
    let err = r.listen_unix(&path, EchoFactory).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    let port = r
        .listen_unix_with(
            &path,
            EchoFactory,
            UnixOptions::default().remove_stale(true),
        )
        .expect("the stale file is replaced");
    // Served: an echo through the new listener.
    let seen = Shared::default();
    r.connect_unix(
        port.path(),
        ClientF {
            seen: seen.clone(),
            payload: b"fresh".to_vec(),
            expect: 5,
        },
        Duration::from_secs(5),
    );
    run_until(&mut r, || seen.borrow().lost.is_some());
    assert_eq!(seen.borrow().received, b"fresh");

    // A live socket is never removed, even with the option.
    let mut r2 = Reactor::new().unwrap();
    let err = r2
        .listen_unix_with(
            &path,
            EchoFactory,
            UnixOptions::default().remove_stale(true),
        )
        .unwrap_err();
    assert!(err.to_string().contains("live socket"), "{err}");

    // Nor is a file that is not a socket.
    let file = temp_socket_path("plain");
    std::fs::write(&file, b"precious").unwrap();
    let err = r2
        .listen_unix_with(
            &file,
            EchoFactory,
            UnixOptions::default().remove_stale(true),
        )
        .unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    std::fs::remove_file(&file).unwrap();

    port.stop_listening(&mut r);
    r.run_once(Some(Duration::ZERO)).unwrap();
    assert!(!path.exists(), "the socket file is removed on stop");
}

#[test]
fn the_socket_file_gets_the_mode_asked_for() {
    let mut r = Reactor::new().unwrap();
    for mode in [0o600, 0o660, 0o666] {
        let path = temp_socket_path("mode");
        let _port = r
            .listen_unix_with(&path, EchoFactory, UnixOptions::default().mode(mode))
            .unwrap();
        let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "{path:?}");
    }
}

#[test]
fn a_replaced_socket_file_is_left_alone_on_stop() {
    let path = temp_socket_path("replaced");
    let mut r = Reactor::new().unwrap();
    let port = r.listen_unix(&path, EchoFactory).unwrap();
    r.run_once(Some(Duration::ZERO)).unwrap();
    std::fs::remove_file(&path).unwrap();
    let other = UnixListener::bind(&path).unwrap();
    port.stop_listening(&mut r);
    r.run_once(Some(Duration::ZERO)).unwrap();
    assert!(path.exists(), "another server's socket file was removed");
    drop(other);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn connecting_to_nothing_fails_without_building_a_protocol() {
    let mut r = Reactor::new().unwrap();
    // No file at all.
    let missing = Shared::default();
    r.connect_unix(
        temp_socket_path("missing"),
        ClientF {
            seen: missing.clone(),
            payload: vec![],
            expect: 0,
        },
        Duration::from_secs(5),
    );
    // A stale file: refused.
    let stale = temp_socket_path("refused");
    drop(UnixListener::bind(&stale).unwrap());
    let refused = Shared::default();
    r.connect_unix(
        &stale,
        ClientF {
            seen: refused.clone(),
            payload: vec![],
            expect: 0,
        },
        Duration::from_secs(5),
    );
    run_until(&mut r, || {
        missing.borrow().failed.is_some() && refused.borrow().failed.is_some()
    });
    assert!(matches!(
        missing.borrow().failed,
        Some(DisconnectReason::Io {
            kind: std::io::ErrorKind::NotFound,
            ..
        })
    ));
    assert_eq!(refused.borrow().failed, Some(DisconnectReason::Refused));
    assert_eq!(missing.borrow().built + refused.borrow().built, 0);
    std::fs::remove_file(&stale).unwrap();
}

/// Records the addresses a SocketAddr-only factory and protocol see.
#[derive(Default)]
struct Seen {
    factory_peer: Option<Address>,
    peer_addr: Option<std::net::SocketAddr>,
    peer: Option<Address>,
    host: Option<Address>,
    host_addr_err: Option<std::io::ErrorKind>,
}

struct Looker(Rc<RefCell<Seen>>);
impl torsion::Protocol for Looker {
    fn connection_made(&mut self, ctx: &mut torsion::Context<'_>) {
        let mut s = self.0.borrow_mut();
        s.peer_addr = Some(ctx.peer_addr());
        s.peer = Some(ctx.peer().clone());
        s.host = ctx.host().ok();
        s.host_addr_err = ctx.host_addr().err().map(|e| e.kind());
        assert_eq!(ctx.nodelay(), None);
    }
    fn data_received(&mut self, _: &mut torsion::Context<'_>, _: &[u8]) {}
}
struct LookerF(Rc<RefCell<Seen>>);
impl torsion::Factory for LookerF {
    type Protocol = Looker;
    fn build_protocol(&mut self, peer: &Address) -> Option<Looker> {
        self.0.borrow_mut().factory_peer = Some(peer.clone());
        Some(Looker(self.0.clone()))
    }
}

#[test]
fn unix_peers_through_the_tcp_shaped_api() {
    let path = temp_socket_path("addr");
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(PanicPolicy::Record);
    let seen = Rc::new(RefCell::new(Seen::default()));
    let port = r.listen_unix(&path, LookerF(seen.clone())).unwrap();
    assert_eq!(port.address(), Address::unix(&path));
    r.run_once(Some(Duration::ZERO)).unwrap();
    let _client = UnixStream::connect(&path).unwrap();
    run_until(&mut r, || seen.borrow().peer.is_some());
    let s = seen.borrow();
    assert_eq!(s.factory_peer, Some(Address::Unix(UnixAddr::Unnamed)));
    assert_eq!(s.peer_addr, Some(NO_IP));
    assert_eq!(s.peer, Some(Address::Unix(UnixAddr::Unnamed)));
    assert_eq!(s.host, Some(Address::unix(&path)));
    assert_eq!(s.host_addr_err, Some(std::io::ErrorKind::Unsupported));
    drop(s);
    r.assert_no_panics();
}

/// Datagrams received, with their senders.
type Got = Rc<RefCell<Vec<(Vec<u8>, Address)>>>;

/// Echoes datagrams to their sender's path; counts them.
struct DgEcho {
    got: Got,
    echo: bool,
}

impl DatagramProtocol for DgEcho {
    fn datagram_received(&mut self, ctx: &mut DatagramContext<'_>, data: &[u8], from: &Address) {
        self.got.borrow_mut().push((data.to_vec(), from.clone()));
        if self.echo {
            ctx.send_to(data, from).unwrap();
        }
    }
}

#[test]
fn unix_datagrams_by_path() {
    let (spath, cpath) = (temp_socket_path("dgs"), temp_socket_path("dgc"));
    let mut r = Reactor::new().unwrap();
    r.set_panic_policy(PanicPolicy::Record);
    let server_got = Rc::default();
    let server = r
        .listen_unix_datagram_with(
            &spath,
            DgEcho {
                got: Rc::clone(&server_got),
                echo: true,
            },
            UnixOptions::default().mode(0o600),
        )
        .unwrap();
    let client_got: Got = Rc::default();
    let client = r
        .listen_unix_datagram(
            &cpath,
            DgEcho {
                got: client_got.clone(),
                echo: false,
            },
        )
        .unwrap();
    assert_eq!(
        std::fs::metadata(&spath).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let errs = errors.clone();
    let to = spath.clone();
    client.with_protocol(&mut r, move |_: &mut DgEcho, ctx| {
        ctx.send_to(b"one", &to).unwrap();
        ctx.connect(&to).unwrap();
        ctx.write(b"two").unwrap();
        let v4: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        errs.borrow_mut()
            .push(format!("{:?}", ctx.send_to(b"x", v4)));
        errs.borrow_mut().push(format!(
            "{:?}",
            ctx.send_to(b"x", Address::unix("/nonexistent/torsion.sock"))
        ));
    });
    run_until(&mut r, || client_got.borrow().len() == 2);
    let got = client_got.borrow();
    assert_eq!(got[0], (b"one".to_vec(), Address::unix(&spath)));
    assert_eq!(got[1].0, b"two");
    assert_eq!(server_got.borrow()[0].1, Address::unix(&cpath));
    let errors = errors.borrow();
    assert!(errors[0].contains("WrongFamily"), "{}", errors[0]);
    assert!(errors[1].contains("Refused"), "{}", errors[1]);
    server.stop_listening(&mut r);
    client.stop_listening(&mut r);
    r.run_once(Some(Duration::ZERO)).unwrap();
    assert!(
        !spath.exists() && !cpath.exists(),
        "datagram socket files removed"
    );
    r.assert_no_panics();
}

#[test]
fn a_full_peer_queue_is_would_block_and_the_datagram_is_dropped() {
    let spath = temp_socket_path("full");
    // A peer that does not read.
    let sink = UnixDatagram::bind(&spath).unwrap();
    let mut r = Reactor::new().unwrap();
    let p = DgEcho {
        got: Rc::default(),
        echo: false,
    };
    let port = r
        .listen_unix_datagram(temp_socket_path("fullc"), p)
        .unwrap();
    let outcome: Rc<RefCell<Option<(usize, String)>>> = Rc::default();
    let out = outcome.clone();
    let to = spath.clone();
    port.with_protocol(&mut r, move |_: &mut DgEcho, ctx| {
        for sent in 0..100_000 {
            if let Err(e) = ctx.send_to(&[0u8; 512], &to) {
                *out.borrow_mut() = Some((sent, format!("{e:?}")));
                return;
            }
        }
    });
    run_until(&mut r, || outcome.borrow().is_some());
    let (sent, err) = outcome.borrow().clone().unwrap();
    assert!(err.contains("WouldBlock"), "{err}");
    // Exactly the datagrams that were accepted are there; the refused one is not.
    sink.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1024];
    let mut n = 0;
    while sink.recv(&mut buf).is_ok() {
        n += 1;
    }
    assert_eq!(n, sent);
    let _ = DatagramError::WouldBlock; // the variant the docs describe
    drop(sink);
    std::fs::remove_file(&spath).unwrap();
}
