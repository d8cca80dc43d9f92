//! TCP keepalive options reach the sockets: accepted ones get the
//! listener's, connected ones the connector's, others none. Checked in the
//! kernel's own table (`/proc/net/tcp`: timer 2 is the keepalive timer,
//! with the time left in hundredths of a second). That a blackholed peer
//! is then found is `netfault::blackhole_is_detected_by_idle_timeout_and_by_keepalive`.
//! `TCP_USER_TIMEOUT`, which that table does not show, is read back from the
//! socket itself; over TLS and under the HTTP client too.

#![cfg(target_os = "linux")]

mod tls_util;
mod util;

use std::net::SocketAddr;
use std::time::Duration;

use torsion::{Context, Keepalive, Protocol, Reactor, TcpOptions};
use util::*;

struct Idle;
impl Protocol for Idle {
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

/// (timer, hundredths of a second left) of the IPv4 TCP socket from
/// `local` to `remote` port on 127.0.0.1, if it exists.
fn timer(local: u16, remote: u16) -> Option<(u8, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let want = (
        format!("0100007F:{local:04X}"),
        format!("0100007F:{remote:04X}"),
    );
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] != want.0 || f[2] != want.1 || f[3] != "01" {
            return None;
        }
        let (tr, when) = f[5].split_once(':')?;
        Some((
            u8::from_str_radix(tr, 16).ok()?,
            u64::from_str_radix(when, 16).ok()?,
        ))
    })
}

#[test]
fn keepalive_options_reach_accepted_and_connected_sockets() {
    let mut reactor = Reactor::new().unwrap();
    let server_ka = TcpOptions::default().keepalive(Keepalive::new(Duration::from_secs(70)));
    let with = reactor
        .listen_tcp_with(localhost(), EchoFactory, server_ka)
        .unwrap()
        .local_addr();
    let without = reactor
        .listen_tcp(localhost(), EchoFactory)
        .unwrap()
        .local_addr();
    let client_ka = TcpOptions::default().keepalive(
        Keepalive::new(Duration::from_secs(40))
            .interval(Duration::from_secs(2))
            .count(4),
    );
    let conns = std::rc::Rc::new(std::cell::RefCell::new(Vec::<SocketAddr>::new()));
    for (addr, options) in [(with, TcpOptions::default()), (without, client_ka)] {
        let c = conns.clone();
        reactor.connect_tcp_with(
            addr,
            torsion::client_factory(move |_: &torsion::Address| {
                c.borrow_mut().push(addr);
                Idle
            }),
            Duration::from_secs(5),
            options,
        );
    }
    // Both connected, and each server end accepted (its timer is set then).
    let (mut a, mut b) = (None, None);
    run_until(&mut reactor, || {
        let ports = |server: u16| {
            let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
            table.lines().skip(1).find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port = |s: &str| u16::from_str_radix(s.split_once(':')?.1, 16).ok();
                (f.len() > 3 && f[3] == "01" && port(f[2]) == Some(server))
                    .then(|| port(f[1]))
                    .flatten()
            })
        };
        a = ports(with.port());
        b = ports(without.port());
        conns.borrow().len() == 2 && a.is_some() && b.is_some()
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    // Server end of the first connection: the listener's 70 s keepalive.
    let (tr, when) = timer(with.port(), a).expect("the accepted socket");
    assert_eq!(tr, 2, "no keepalive timer on the accepted socket");
    assert!(
        (6_000..=7_000).contains(&when),
        "keepalive in {when}/100 s, not 70 s"
    );
    // Its client end: default options, no keepalive.
    assert_eq!(timer(a, with.port()).map(|t| t.0), Some(0));
    // Client end of the second: the connector's 40 s keepalive.
    let (tr, when) = timer(b, without.port()).expect("the connected socket");
    assert_eq!(tr, 2, "no keepalive timer on the connected socket");
    assert!(
        (3_000..=4_000).contains(&when),
        "keepalive in {when}/100 s, not 40 s"
    );
    // Its server end: a listener with default options.
    assert_eq!(timer(without.port(), b).map(|t| t.0), Some(0));
}

/// The socket of this process connected from `local` to `peer`: its
/// `TCP_USER_TIMEOUT` and its keepalive idle time (`None`: keepalive off).
fn socket_options(
    local: SocketAddr,
    peer: SocketAddr,
) -> Option<(Option<Duration>, Option<Duration>)> {
    use std::os::fd::{BorrowedFd, RawFd};
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor was listed just now and is only borrowed
        // for the queries below; one closed meanwhile answers EBADF.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let s = socket2::SockRef::from(&b);
        let is = |a: std::io::Result<socket2::SockAddr>, want| {
            a.ok().and_then(|a| a.as_socket()) == Some(want)
        };
        if is(s.local_addr(), local) && is(s.peer_addr(), peer) {
            let user = s.tcp_user_timeout().ok()?;
            let ka = if s.keepalive().ok()? {
                Some(s.tcp_keepalive_time().ok()?)
            } else {
                None
            };
            return Some((user, ka));
        }
    }
    None
}

#[test]
fn user_timeout_and_keepalive_reach_tcp_tls_and_http_client_sockets() {
    use std::cell::RefCell;
    use std::rc::Rc;
    use torsion::http::{ClientConfig, HttpClient, HttpServer, Request, Response, Router};

    let mut reactor = Reactor::new().unwrap();
    let options = TcpOptions::default()
        .keepalive(Keepalive::new(Duration::from_secs(33)))
        .user_timeout(Duration::from_millis(4_500));
    let want = Some((
        Some(Duration::from_millis(4_500)),
        Some(Duration::from_secs(33)),
    ));
    let plain = reactor
        .listen_tcp(localhost(), EchoFactory)
        .unwrap()
        .local_addr();
    let secure = tls_util::listen(&mut reactor, EchoFactory);
    // Each client records its (local, peer) once connected.
    let seen: Rc<RefCell<Vec<(SocketAddr, SocketAddr)>>> = Rc::default();
    struct Record(Rc<RefCell<Vec<(SocketAddr, SocketAddr)>>>);
    impl Protocol for Record {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            let local = ctx.host_addr().unwrap();
            self.0.borrow_mut().push((local, ctx.peer_addr()));
        }
        fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    }
    let s = seen.clone();
    reactor.connect_tcp_with(
        plain,
        torsion::client_factory(move |_: &torsion::Address| Record(s.clone())),
        Duration::from_secs(5),
        options,
    );
    let s = seen.clone();
    let certs = tls_util::shared_certs();
    reactor.connect_tls_with(
        secure,
        torsion::tls::server_name("localhost").unwrap(),
        certs.client(),
        torsion::client_factory(move |_: &torsion::Address| Record(s.clone())),
        Duration::from_secs(5),
        options,
    );
    // A default connect has neither.
    let s = seen.clone();
    reactor.connect_tcp(
        plain,
        torsion::client_factory(move |_: &torsion::Address| Record(s.clone())),
        Duration::from_secs(5),
    );
    run_until(&mut reactor, || seen.borrow().len() == 3);
    let got: Vec<_> = seen
        .borrow()
        .iter()
        .map(|&(l, p)| (p, socket_options(l, p)))
        .collect();
    for (peer, opts) in &got {
        if *peer == secure {
            assert_eq!(*opts, want, "the TLS connection's socket");
        }
    }
    let plain_opts: Vec<_> = got
        .iter()
        .filter(|(p, _)| *p == plain)
        .map(|(_, o)| *o)
        .collect();
    assert!(plain_opts.contains(&want), "{plain_opts:?}");
    assert!(plain_opts.contains(&Some((None, None))), "{plain_opts:?}");

    // The HTTP client over https passes its ClientConfig::tcp on.
    let peers: Rc<RefCell<Vec<SocketAddr>>> = Rc::default();
    let p = peers.clone();
    let server = HttpServer::new(Router::new().get(
        "/",
        move |_: &mut torsion::Core, req: Request| {
            if let torsion::Address::Inet(a) = req.peer {
                p.borrow_mut().push(a);
            }
            Response::ok("hi")
        },
    ));
    let port = server
        .listen_tls(&mut reactor, localhost(), certs.server())
        .unwrap()
        .local_addr();
    let client = HttpClient::with_config(ClientConfig {
        tls: Some(certs.client()),
        tcp: options,
        ..ClientConfig::default()
    });
    let d = client.get(&mut reactor, &format!("https://localhost:{}/", port.port()));
    let r = reactor.run_until_complete(d).unwrap().unwrap();
    assert_eq!(r.body_bytes(), b"hi");
    let local = peers.borrow()[0];
    assert_eq!(
        socket_options(local, port),
        want,
        "the HTTP client's socket"
    );
}
