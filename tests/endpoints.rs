//! Endpoint strings: parsing, listening and connecting, Happy Eyeballs.

mod util;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use torsion::endpoints::{interleave, ClientEndpoint, EndpointError, ServerEndpoint};
use torsion::testing::{Clock, Request};
use torsion::{Context, DisconnectReason, Protocol, Reactor};
use util::*;

#[test]
fn server_strings_parse_and_print_back() {
    let cases = [
        ("tcp:8000", "tcp:8000:interface=0.0.0.0"),
        (
            "tcp:8000:interface=127.0.0.1",
            "tcp:8000:interface=127.0.0.1",
        ),
        (
            "TCP:port=8000:backlog=64",
            "tcp:8000:interface=0.0.0.0:backlog=64",
        ),
        ("tcp6:8000", r"tcp6:8000:interface=\:\:"),
        (r"tcp6:8000:interface=\:\:1", r"tcp6:8000:interface=\:\:1"),
        ("tcp6:8000:interface=[::1]", r"tcp6:8000:interface=\:\:1"),
        ("unix:/run/app.sock:mode=660", "unix:/run/app.sock:mode=660"),
        ("unix:address=/tmp/x:lockfile=1", "unix:/tmp/x:lockfile=1"),
        (
            "tls:8443:cert=/c.pem:key=/k.pem:alpn=h2,http/1.1",
            "tls:8443:interface=0.0.0.0:cert=/c.pem:key=/k.pem:alpn=h2,http/1.1",
        ),
    ];
    for (input, canonical) in cases {
        let ep: ServerEndpoint = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(ep.to_string(), canonical, "{input}");
        let again: ServerEndpoint = canonical.parse().unwrap();
        assert_eq!(again, ep, "{canonical} does not parse back");
    }
    let ep: ServerEndpoint = "unix:/run/app.sock:mode=660".parse().unwrap();
    assert!(matches!(
        ep,
        ServerEndpoint::Unix {
            mode: Some(0o660),
            ..
        }
    ));
}

#[test]
fn client_strings_parse_and_print_back() {
    let cases = [
        (
            "tcp:host=example.org:port=80:timeout=5",
            "tcp:host=example.org:port=80:timeout=5",
        ),
        (
            "tcp:example.org:80",
            "tcp:host=example.org:port=80:timeout=30",
        ),
        (
            "tcp:host=[::1]:port=80:timeout=0.5",
            "tcp:host=[::1]:port=80:timeout=0.5",
        ),
        (
            "unix:path=/run/app.sock",
            "unix:path=/run/app.sock:timeout=30",
        ),
        (
            "unix:/run/app.sock:timeout=2",
            "unix:path=/run/app.sock:timeout=2",
        ),
        (
            "tls:host=example.org:port=443:ca=/ca.pem:alpn=h2",
            "tls:host=example.org:port=443:timeout=30:ca=/ca.pem:alpn=h2",
        ),
    ];
    for (input, canonical) in cases {
        let ep: ClientEndpoint = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(ep.to_string(), canonical, "{input}");
        assert_eq!(canonical.parse::<ClientEndpoint>().unwrap(), ep);
    }
}

#[test]
fn bad_strings_are_clear_errors() {
    let server = |s: &str| s.parse::<ServerEndpoint>().unwrap_err().to_string();
    let client = |s: &str| s.parse::<ClientEndpoint>().unwrap_err().to_string();
    assert_eq!(server(""), "empty endpoint string");
    assert_eq!(
        server("udp:53"),
        "unknown endpoint type \"udp\" (expected tcp, tcp6, unix or tls)"
    );
    assert_eq!(server("tcp"), "tcp endpoint: missing parameter \"port\"");
    assert_eq!(
        server("tcp:80000"),
        "tcp endpoint: invalid port \"80000\": not a port number (0-65535)"
    );
    assert_eq!(
        server("tcp:80:interface=[::1]"),
        "tcp endpoint: invalid interface \"[::1]\": tcp endpoints take an IPv4 address"
    );
    assert!(server("tcp:80:interface=::1").contains("in brackets"));
    assert_eq!(
        server("tcp:80:intrface=1.2.3.4"),
        "tcp endpoint: unexpected parameter \"intrface\""
    );
    assert_eq!(
        server("tcp:80:1.2.3.4:extra"),
        "tcp endpoint: unexpected positional argument \"extra\""
    );
    assert_eq!(
        server("tcp:80:backlog=-1"),
        "tcp endpoint: invalid backlog \"-1\": not a positive number"
    );
    assert_eq!(
        server("tcp:port=1:port=2"),
        "tcp endpoint: parameter \"port\" given twice"
    );
    assert_eq!(
        server("unix:/x:mode=999"),
        "unix endpoint: invalid mode \"999\": not an octal file mode"
    );
    assert_eq!(
        server("tls:443:key=k.pem"),
        "tls endpoint: missing parameter \"certkey\""
    );
    assert_eq!(
        server("tls:443:cert=c.pem"),
        "tls endpoint: missing parameter \"key\""
    );
    assert_eq!(
        client("tcp:host=example.org"),
        "tcp endpoint: missing parameter \"port\""
    );
    assert_eq!(
        client("tcp:host=a:port=1:timeout=-3"),
        "tcp endpoint: invalid timeout \"-3\": not a number of seconds (0 < t <= 86400)"
    );
    assert_eq!(
        client("unix:"),
        "unix endpoint: missing parameter \"address\""
    );
    assert!(matches!(
        "tcp:[::1".parse::<ClientEndpoint>(),
        Err(EndpointError::Syntax { .. })
    ));
}

#[test]
fn interleave_alternates_families_starting_with_the_first() {
    let a: Vec<SocketAddr> = ["[::1]:1", "[::2]:1", "[::3]:1", "1.1.1.1:1", "2.2.2.2:1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let order: Vec<String> = interleave(&a).iter().map(|a| a.to_string()).collect();
    assert_eq!(
        order,
        ["[::1]:1", "1.1.1.1:1", "[::2]:1", "2.2.2.2:1", "[::3]:1"]
    );
    let b = vec![a[3], a[0], a[4]];
    let order: Vec<String> = interleave(&b).iter().map(|a| a.to_string()).collect();
    assert_eq!(order, ["1.1.1.1:1", "[::1]:1", "2.2.2.2:1"]);
}

struct Quiet;
impl Protocol for Quiet {
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

#[test]
fn happy_eyeballs_starts_an_attempt_every_250ms_families_interleaved() {
    let mut clock = Clock::new();
    let addrs: Vec<SocketAddr> = [
        "[2001:db8::1]:80",
        "[2001:db8::2]:80",
        "192.0.2.1:80",
        "192.0.2.2:80",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let _d = clock.connect_happy_eyeballs(&addrs, Quiet, Duration::from_secs(5));
    let connects = |clock: &mut Clock| -> Vec<String> {
        clock
            .take_requests()
            .into_iter()
            .filter_map(|r| match r {
                Request::Connect { addr, .. } => Some(addr.to_string()),
                _ => None,
            })
            .collect()
    };
    clock.advance(Duration::ZERO);
    assert_eq!(connects(&mut clock), ["[2001:db8::1]:80"]);
    clock.advance(Duration::from_millis(249));
    assert!(connects(&mut clock).is_empty());
    clock.advance(Duration::from_millis(1));
    assert_eq!(connects(&mut clock), ["192.0.2.1:80"]);
    clock.advance(Duration::from_millis(250));
    assert_eq!(connects(&mut clock), ["[2001:db8::2]:80"]);
    clock.advance(Duration::from_millis(250));
    assert_eq!(connects(&mut clock), ["192.0.2.2:80"]);
    clock.advance(Duration::from_secs(10));
    assert!(connects(&mut clock).is_empty(), "no more addresses");
}

/// A listener whose accept queue is full: SYNs to it are dropped, connects hang.
fn blackhole() -> (socket2::Socket, Vec<socket2::Socket>, SocketAddr) {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    (l, fillers, addr)
}

#[test]
fn happy_eyeballs_a_hanging_first_address_loses_to_the_second() {
    let (_l, _fillers, hole) = blackhole();
    let mut reactor = Reactor::new().unwrap();
    let port = reactor.listen_tcp(localhost(), EchoFactory).unwrap();
    let started = std::time::Instant::now();
    let mut d =
        reactor.connect_happy_eyeballs(&[hole, port.local_addr()], Quiet, Duration::from_secs(30));
    let res = Rc::new(RefCell::new(None));
    let r2 = res.clone();
    run_until(&mut reactor, || {
        if let Some(r) = d.take_result() {
            *r2.borrow_mut() = Some(r);
        }
        res.borrow().is_some()
    });
    let h = res
        .borrow_mut()
        .take()
        .unwrap()
        .expect("the second address connects");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the second attempt waited its turn"
    );
    // The winner is the working address, and the hanging attempt is gone:
    // listener + the two ends of the winning connection, nothing connecting.
    let peer = reactor
        .connection(h)
        .with_protocol(|_: &mut Quiet, ctx| ctx.peer_addr());
    let peer = reactor.run_until_complete(peer).unwrap().unwrap();
    assert_eq!(peer, port.local_addr());
    assert!(reactor
        .run_until(DEADLINE, |r| r.source_count() == 3)
        .unwrap());
    // Nothing else happens: no late attempt, no second connection.
    reactor
        .run_until(Duration::from_millis(300), |_| false)
        .unwrap();
    assert_eq!(reactor.source_count(), 3);
    assert_eq!(reactor.connection_count(), 2);
}

#[test]
fn happy_eyeballs_a_refused_address_starts_the_next_at_once() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut reactor = Reactor::new().unwrap();
    let port = reactor.listen_tcp(localhost(), EchoFactory).unwrap();
    let started = std::time::Instant::now();
    let mut d = reactor.connect_happy_eyeballs(
        &[refused, port.local_addr()],
        Quiet,
        Duration::from_secs(30),
    );
    let mut out = None;
    run_until(&mut reactor, || {
        out = d.take_result();
        out.is_some()
    });
    assert!(out.unwrap().is_ok());
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "waited for the attempt delay after a refusal"
    );
}

#[test]
fn happy_eyeballs_all_failing_reports_the_last_reason_and_cancel_stops_attempts() {
    let a = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut reactor = Reactor::new().unwrap();
    let mut d = reactor.connect_happy_eyeballs(&[a, b], Quiet, Duration::from_secs(30));
    let mut out = None;
    run_until(&mut reactor, || {
        out = d.take_result();
        out.is_some()
    });
    assert_eq!(out.unwrap().unwrap_err(), DisconnectReason::Refused);

    let (_l, _f, hole) = blackhole();
    let mut d = reactor.connect_happy_eyeballs(&[hole, hole], Quiet, Duration::from_secs(30));
    assert!(reactor
        .run_until(DEADLINE, |r| r.source_count() == 1)
        .unwrap());
    d.cancel();
    assert_eq!(
        d.take_result().unwrap().unwrap_err(),
        DisconnectReason::Cancelled
    );
    assert!(reactor
        .run_until(DEADLINE, |r| r.source_count() == 0)
        .unwrap());
    // The second attempt never starts.
    reactor
        .run_until(Duration::from_millis(400), |_| false)
        .unwrap();
    assert_eq!(reactor.source_count(), 0);
}

#[test]
fn tcp_endpoints_listen_and_connect_by_host_name() {
    let mut reactor = Reactor::new().unwrap();
    let server: ServerEndpoint = "tcp:0:interface=127.0.0.1".parse().unwrap();
    let port = server.listen(&mut reactor, EchoFactory).unwrap();
    let client: ClientEndpoint = format!(
        "tcp:host=localhost:port={}:timeout=5",
        port.local_addr().unwrap().port()
    )
    .parse()
    .unwrap();
    let seen = Shared::default();
    let mut d = client
        .connect(
            &mut reactor,
            Client {
                seen: seen.clone(),
                payload: b"through an endpoint".to_vec(),
                expect: 19,
            },
        )
        .unwrap();
    run_until(&mut reactor, || seen.borrow().lost.is_some());
    assert_eq!(seen.borrow().received, b"through an endpoint");
    assert!(d.take_result().unwrap().is_ok());
}

#[test]
fn an_unknown_host_fails_the_deferred() {
    let mut reactor = Reactor::new().unwrap();
    let client: ClientEndpoint = "tcp:host=no-such-host.invalid:port=80".parse().unwrap();
    let mut d = client.connect(&mut reactor, Quiet).unwrap();
    let mut out = None;
    run_until(&mut reactor, || {
        out = d.take_result();
        out.is_some()
    });
    match out.unwrap() {
        Err(DisconnectReason::Io { message, .. }) => {
            assert!(message.contains("no-such-host.invalid"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unix_endpoints_listen_with_a_mode_and_connect() {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!("torsion-ep-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut reactor = Reactor::new().unwrap();
    let server: ServerEndpoint = format!("unix:{}:mode=600:lockfile=1", path.display())
        .parse()
        .unwrap();
    let port = server.listen(&mut reactor, EchoFactory).unwrap();
    assert_eq!(port.address(), torsion::Address::unix(&path));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let client: ClientEndpoint = format!("unix:path={}:timeout=5", path.display())
        .parse()
        .unwrap();
    let seen = Shared::default();
    let mut d = client
        .connect(
            &mut reactor,
            Client {
                seen: seen.clone(),
                payload: b"over a unix socket".to_vec(),
                expect: 18,
            },
        )
        .unwrap();
    run_until(&mut reactor, || seen.borrow().lost.is_some());
    assert_eq!(seen.borrow().received, b"over a unix socket");
    assert!(d.take_result().unwrap().is_ok());
    port.stop_listening(&mut reactor);
    reactor
        .run_until(Duration::from_millis(10), |_| false)
        .unwrap();
    let _ = std::fs::remove_file(&path);
}

#[cfg(feature = "tls")]
mod tls_util;

#[cfg(feature = "tls")]
#[test]
fn tls_endpoints_listen_and_connect() {
    let c = tls_util::certs(&["localhost"]);
    let dir = std::env::temp_dir().join(format!("torsion-ep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, pem) in [
        ("chain.pem", &c.chain_pem),
        ("key.pem", &c.key_pem),
        ("ca.pem", &c.ca_pem),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let p = |n: &str| dir.join(n).display().to_string();
    let mut reactor = Reactor::new().unwrap();
    let server: ServerEndpoint = format!(
        "tls:0:interface=127.0.0.1:cert={}:key={}:alpn=echo",
        p("chain.pem"),
        p("key.pem")
    )
    .parse()
    .unwrap();
    let port = server.listen(&mut reactor, EchoFactory).unwrap();
    let client: ClientEndpoint = format!(
        "tls:host=localhost:port={}:ca={}:alpn=echo:timeout=5",
        port.local_addr().unwrap().port(),
        p("ca.pem")
    )
    .parse()
    .unwrap();
    let seen = Shared::default();
    let mut d = client
        .connect(
            &mut reactor,
            Client {
                seen: seen.clone(),
                payload: b"secret".to_vec(),
                expect: 6,
            },
        )
        .unwrap();
    run_until(&mut reactor, || seen.borrow().lost.is_some());
    assert_eq!(seen.borrow().received, b"secret");
    assert_eq!(seen.borrow().lost, Some(DisconnectReason::Done));
    assert!(d.take_result().unwrap().is_ok());

    // A client that checks another name fails the Deferred with the TLS reason.
    let wrong: ClientEndpoint = format!(
        "tls:host=127.0.0.1:port={}:ca={}:sni=example.org",
        port.local_addr().unwrap().port(),
        p("ca.pem")
    )
    .parse()
    .unwrap();
    let mut d = wrong.connect(&mut reactor, Quiet).unwrap();
    let mut out = None;
    run_until(&mut reactor, || {
        out = d.take_result();
        out.is_some()
    });
    assert!(matches!(out.unwrap(), Err(DisconnectReason::Tls(_))));
    // A missing CA file is an error at once.
    let missing: ClientEndpoint = "tls:host=localhost:port=1:ca=/nonexistent/ca.pem"
        .parse()
        .unwrap();
    assert!(matches!(
        missing.connect(&mut reactor, Quiet),
        Err(EndpointError::Tls(_))
    ));
    let _ = std::fs::remove_dir_all(dir);
}
