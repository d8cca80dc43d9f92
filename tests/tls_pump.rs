//! TLS over the in-memory pump: the wrapper's semantics without sockets.
#![cfg(feature = "tls")]

mod tls_util;

use std::time::Duration;

use tls_util::certs;
use torsion::testing::Pump;
use torsion::tls::{self, StartTls, TlsProtocol};
use torsion::{Context, DisconnectReason, Protocol};

/// Records everything; writes `greeting` on connect; closes after `close_after` bytes.
#[derive(Default)]
struct Peer {
    greeting: Vec<u8>,
    close_after: Option<usize>,
    got: Vec<u8>,
    made: usize,
    lost: Option<DisconnectReason>,
    alpn: Option<Vec<u8>>,
}

impl Protocol for Peer {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        self.made += 1;
        let g = std::mem::take(&mut self.greeting);
        ctx.write(&g);
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        self.alpn = ctx
            .tls_info()
            .and_then(|i| i.alpn_protocol().map(<[u8]>::to_vec));
        self.got.extend_from_slice(data);
        if self.close_after.is_some_and(|n| self.got.len() >= n) {
            ctx.lose_connection();
        }
    }
    fn connection_lost(&mut self, _ctx: &mut Context<'_>, reason: &DisconnectReason) {
        assert!(self.lost.is_none(), "connection_lost twice");
        self.lost = Some(reason.clone());
    }
}

/// Echoes, pausing its reading while its writes are held back.
struct Echo;
impl Protocol for Echo {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        ctx.write(data);
    }
    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        ctx.pause_reading();
    }
    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        ctx.resume_reading();
    }
}

fn client(c: &tls_util::Certs, p: impl Protocol) -> TlsProtocol {
    TlsProtocol::client(c.client(), tls::server_name("localhost").unwrap(), p).unwrap()
}

fn server(c: &tls_util::Certs, p: impl Protocol) -> TlsProtocol {
    TlsProtocol::server(c.server(), p).unwrap()
}

#[test]
fn echo_with_writes_before_the_handshake_and_clean_close() {
    let c = certs(&["localhost"]);
    let mut pump = Pump::new();
    let greeting = b"written in connection_made, before any handshake".to_vec();
    let n = greeting.len();
    let link = pump.connect(
        client(
            &c,
            Peer {
                greeting: greeting.clone(),
                close_after: Some(n),
                ..Peer::default()
            },
        ),
        server(&c, Echo),
    );
    pump.flush();
    let peer = pump.client(link).inner::<Peer>().unwrap();
    assert_eq!(peer.got, greeting);
    assert_eq!(peer.lost, Some(DisconnectReason::Done));
    assert!(pump.client(link).is_handshake_done());
    // The server heard close_notify, then the end of stream: a clean end.
    assert_eq!(pump.server_lost(link), Some(&DisconnectReason::Done));
    assert_eq!(pump.client_lost(link), Some(&DisconnectReason::Done));
}

#[test]
fn large_transfer_both_ways_under_back_pressure() {
    let c = certs(&["localhost"]);
    let mut pump = Pump::new();
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let link = pump.connect(
        client(
            &c,
            Peer {
                greeting: payload.clone(),
                close_after: Some(payload.len()),
                ..Peer::default()
            },
        ),
        server(&c, Echo),
    );
    pump.flush();
    let peer = pump.client(link).inner::<Peer>().unwrap();
    assert_eq!(peer.got.len(), payload.len());
    assert!(peer.got == payload, "echo differs");
    assert_eq!(peer.lost, Some(DisconnectReason::Done));
}

#[test]
fn bytes_cut_into_single_bytes_still_make_a_session() {
    use torsion::testing::Faults;
    let c = certs(&["localhost"]);
    let mut pump = Pump::with_faults(Faults::new(7).split_writes());
    let link = pump.connect(
        client(
            &c,
            Peer {
                greeting: b"ping".to_vec(),
                close_after: Some(4),
                ..Peer::default()
            },
        ),
        server(&c, Echo),
    );
    pump.flush();
    assert_eq!(pump.client(link).inner::<Peer>().unwrap().got, b"ping");
    assert_eq!(pump.client_lost(link), Some(&DisconnectReason::Done));
}

#[test]
fn an_untrusted_certificate_fails_the_handshake_on_both_sides() {
    let good = certs(&["localhost"]);
    let other = certs(&["localhost"]);
    let mut pump = Pump::new();
    let link = pump.connect(
        // Trusts another CA.
        client(
            &other,
            Peer {
                greeting: b"secret".to_vec(),
                ..Peer::default()
            },
        ),
        server(&good, Peer::default()),
    );
    pump.flush();
    let lost = pump.client(link).inner::<Peer>().unwrap().lost.clone();
    match lost {
        Some(DisconnectReason::Tls(m)) => assert!(m.contains("certificate"), "{m}"),
        other => panic!("client heard {other:?}"),
    }
    let server = pump.server(link).inner::<Peer>().unwrap();
    assert!(
        matches!(server.lost, Some(DisconnectReason::Tls(_))),
        "{:?}",
        server.lost
    );
    assert!(
        server.got.is_empty(),
        "nothing may leak before verification"
    );
}

#[test]
fn a_wrong_host_name_fails_the_handshake() {
    let c = certs(&["localhost"]);
    let mut pump = Pump::new();
    let link = pump.connect(
        TlsProtocol::client(
            c.client(),
            tls::server_name("example.org").unwrap(),
            Peer::default(),
        )
        .unwrap(),
        server(&c, Peer::default()),
    );
    pump.flush();
    let lost = pump.client(link).inner::<Peer>().unwrap().lost.clone();
    assert!(
        matches!(lost, Some(DisconnectReason::Tls(ref m)) if m.contains("not valid for name")),
        "{lost:?}"
    );
}

#[test]
fn alpn_is_negotiated_and_visible_to_the_protocol() {
    let c = certs(&["localhost"]);
    let mut pump = Pump::new();
    let link = pump.connect(
        TlsProtocol::client(
            c.client_alpn(&[b"h2", b"torsion/1"]),
            tls::server_name("localhost").unwrap(),
            Peer {
                greeting: b"x".to_vec(),
                ..Peer::default()
            },
        )
        .unwrap(),
        TlsProtocol::server(c.server_alpn(&[b"torsion/1"]), Echo).unwrap(),
    );
    pump.flush();
    let client = pump.client(link);
    assert_eq!(
        client.info().unwrap().alpn_protocol(),
        Some(&b"torsion/1"[..])
    );
    assert_eq!(
        client.inner::<Peer>().unwrap().alpn.as_deref(),
        Some(&b"torsion/1"[..])
    );
    assert_eq!(
        pump.server(link).info().unwrap().server_name(),
        Some("localhost")
    );
}

#[test]
fn the_handshake_times_out() {
    let c = certs(&["localhost"]);
    let mut pump = Pump::new();
    // The "server" speaks no TLS and says nothing.
    let link = pump.connect(
        client(&c, Peer::default()).with_handshake_timeout(Duration::from_secs(3)),
        Peer::default(),
    );
    pump.flush();
    assert_eq!(pump.client_lost(link), None);
    pump.advance(Duration::from_secs(3));
    assert_eq!(
        pump.client(link).inner::<Peer>().unwrap().lost,
        Some(DisconnectReason::TimedOut)
    );
}

/// A line protocol that upgrades to TLS on "STARTTLS".
struct Starter {
    server: Option<std::sync::Arc<torsion::tls::ServerConfig>>,
    client: Option<std::sync::Arc<torsion::tls::ClientConfig>>,
    got: Vec<u8>,
    secure_got: Vec<u8>,
}

impl Protocol for Starter {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        if self.client.is_some() {
            ctx.write(b"STARTTLS\n");
        }
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        if ctx.tls_info().is_some() {
            self.secure_got.extend_from_slice(data);
            if self.server.is_some() {
                ctx.write(b"secure echo: ");
                ctx.write(data);
            }
            return;
        }
        self.got.extend_from_slice(data);
        if let Some(cfg) = self.server.clone() {
            if self.got.ends_with(b"STARTTLS\n") {
                ctx.write(b"GO\n"); // in the clear
                ctx.start_tls(StartTls::Server(cfg)).unwrap();
            }
        } else if let Some(cfg) = self.client.clone() {
            if self.got.ends_with(b"GO\n") {
                ctx.start_tls(StartTls::Client(
                    cfg,
                    tls::server_name("localhost").unwrap(),
                ))
                .unwrap();
                // Written after start_tls in the same callback: encrypted,
                // sent after the handshake.
                ctx.write(b"hello over tls");
            }
        }
    }
}

#[test]
fn start_tls_upgrades_a_live_connection() {
    let c = certs(&["localhost"]);
    let mut pump = Pump::new();
    let link = pump.connect(
        Starter {
            server: None,
            client: Some(c.client()),
            got: Vec::new(),
            secure_got: Vec::new(),
        },
        Starter {
            server: Some(c.server()),
            client: None,
            got: Vec::new(),
            secure_got: Vec::new(),
        },
    );
    pump.flush();
    // The testing tools find the protocol through its TLS wrapper.
    let server = pump.server(link);
    assert_eq!(server.got, b"STARTTLS\n");
    assert_eq!(server.secure_got, b"hello over tls");
    let client = pump.client(link);
    assert_eq!(client.got, b"GO\n");
    assert_eq!(client.secure_got, b"secure echo: hello over tls");
    // Reaching the protocol by handle goes through the wrapper too.
    let h = pump.client_handle(link);
    let mut tls = pump
        .core_mut()
        .connection(h)
        .with_protocol(|_: &mut Starter, ctx| {
            ctx.write(b"via handle");
            ctx.tls_info().is_some()
        });
    pump.flush();
    assert!(tls.take_result().unwrap().unwrap());
    assert_eq!(pump.server(link).secure_got, b"hello over tlsvia handle");
}

#[test]
fn write_to_by_handle_is_encrypted_and_lose_by_handle_sends_close_notify() {
    let c = certs(&["localhost"]);
    let mut pump = Pump::new();
    let link = pump.connect(client(&c, Peer::default()), server(&c, Peer::default()));
    pump.flush();
    let h = pump.server_handle(link);
    pump.core_mut().connection(h).write(b"by handle");
    pump.core_mut().connection(h).lose_connection();
    pump.flush();
    let peer = pump.client(link).inner::<Peer>().unwrap();
    assert_eq!(peer.got, b"by handle");
    assert_eq!(peer.lost, Some(DisconnectReason::Done));
}

#[test]
fn half_close_delivers_close_notify_as_read_connection_lost() {
    #[derive(Default)]
    struct Half {
        eof: bool,
        got: Vec<u8>,
    }
    impl Protocol for Half {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            ctx.set_half_close(true);
        }
        fn data_received(&mut self, _ctx: &mut Context<'_>, data: &[u8]) {
            self.got.extend_from_slice(data);
        }
        fn read_connection_lost(&mut self, ctx: &mut Context<'_>) {
            self.eof = true;
            ctx.write(b"after your eof");
            ctx.lose_connection();
        }
    }
    let c = certs(&["localhost"]);
    let mut pump = Pump::new();
    struct Closer;
    impl Protocol for Closer {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            ctx.set_half_close(true);
            ctx.write(b"bye");
            ctx.lose_write_connection();
        }
        fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    }
    let link = pump.connect(client(&c, Closer), server(&c, Half::default()));
    pump.flush();
    let half = pump.server(link).inner::<Half>().unwrap();
    assert!(half.eof);
    assert_eq!(half.got, b"bye");
    assert_eq!(pump.server_lost(link), Some(&DisconnectReason::Done));
}

#[test]
fn an_insecure_client_accepts_any_certificate_but_still_encrypts() {
    let c = certs(&["localhost"]);
    let mut pump = Pump::new();
    let insecure = std::sync::Arc::new(tls::insecure_client_config().unwrap());
    let link = pump.connect(
        TlsProtocol::client(
            insecure,
            tls::server_name("some.other.name").unwrap(),
            Peer {
                greeting: b"x".to_vec(),
                close_after: Some(1),
                ..Peer::default()
            },
        )
        .unwrap(),
        server(&c, Echo),
    );
    pump.flush();
    assert_eq!(pump.client(link).inner::<Peer>().unwrap().got, b"x");
    assert!(pump.client(link).info().unwrap().peer_certificates().len() == 1);
}

#[test]
fn pem_errors_are_typed() {
    use torsion::tls::TlsError;
    assert!(matches!(
        tls::certs_from_pem(b""),
        Err(TlsError::NoCertificates)
    ));
    assert!(matches!(
        tls::key_from_pem(b"not pem at all"),
        Err(TlsError::NoPrivateKey)
    ));
    let c = certs(&["localhost"]);
    // A certificate is not a key, and a key is not a certificate.
    assert!(matches!(
        tls::key_from_pem(c.chain_pem.as_bytes()),
        Err(TlsError::NoPrivateKey)
    ));
    assert!(matches!(
        tls::certs_from_pem(c.key_pem.as_bytes()),
        Err(TlsError::NoCertificates)
    ));
    // A key that does not match the certificate.
    let other = certs(&["localhost"]);
    assert!(matches!(
        tls::server_config_from_pem(c.chain_pem.as_bytes(), other.key_pem.as_bytes()),
        Err(TlsError::Rustls(_))
    ));
    let err = tls::load_certs("/nonexistent/chain.pem").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/chain.pem"),
        "{err}"
    );
    assert!(matches!(
        tls::server_name("bad name!"),
        Err(TlsError::InvalidServerName(_))
    ));
    assert!(tls::server_name("[::1]").is_ok());
    assert!(tls::server_name("127.0.0.1").is_ok());
}

#[test]
fn an_idle_timeout_set_by_the_wrapped_protocol_fires_through_the_wrapper() {
    struct Sleepy;
    impl Protocol for Sleepy {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            ctx.set_idle_timeout(Some(Duration::from_secs(10)));
        }
        fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
    }
    let c = certs(&["localhost"]);
    let mut pump = Pump::new();
    let link = pump.connect(client(&c, Peer::default()), server(&c, Sleepy));
    pump.flush();
    pump.advance(Duration::from_secs(5));
    assert_eq!(pump.server_lost(link), None);
    pump.advance(Duration::from_secs(6));
    assert_eq!(pump.server_lost(link), Some(&DisconnectReason::TimedOut));
    // The close was graceful (close_notify, then the end of stream), whatever
    // its reason: the client sees a clean end, as over TCP (tests/tls.rs).
    assert_eq!(
        pump.client(link).inner::<Peer>().unwrap().lost,
        Some(DisconnectReason::Done)
    );
}
