//! Async connections over real sockets on 127.0.0.1 and Unix sockets: TCP,
//! Unix, TLS and endpoint strings, typed errors, and async and protocol code
//! together in one reactor.

mod tls_util;
mod util;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use torsion::aio::{self, Connection, StreamError};
use torsion::defer::Deferred;
use torsion::{Address, Context, DisconnectReason, LocalHandle, Protocol, Reactor};
use util::{localhost, EchoFactory, DEADLINE};

/// Runs `f` as a task on a fresh reactor until it finishes (a hang fails
/// after the deadline).
fn run<T: 'static>(
    f: impl FnOnce(
        LocalHandle,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StreamError>>>>,
) -> Result<T, StreamError> {
    let mut reactor = Reactor::new().unwrap();
    run_on(&mut reactor, f)
}

fn run_on<T: 'static>(
    reactor: &mut Reactor,
    f: impl FnOnce(
        LocalHandle,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StreamError>>>>,
) -> Result<T, StreamError> {
    let local = reactor.local();
    let fut = f(local.clone());
    let task = reactor.spawn_local(async move {
        match aio::timeout(&local, DEADLINE, fut).await {
            Ok(r) => r,
            Err(_) => panic!("the task did not finish within {DEADLINE:?}"),
        }
    });
    reactor.run_until_complete(task).unwrap()
}

/// Reads and never answers.
struct Sink;
impl Protocol for Sink {
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

/// A protocol client: sends a line, hands the answer line to `done`, closes.
struct OneLine<F> {
    line: &'static [u8],
    got: Vec<u8>,
    done: Option<F>,
}
impl<F: FnOnce(&[u8]) + 'static> OneLine<F> {
    fn new(line: &'static [u8], done: F) -> Self {
        OneLine {
            line,
            got: Vec::new(),
            done: Some(done),
        }
    }
}
impl<F: FnOnce(&[u8]) + 'static> Protocol for OneLine<F> {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.write(self.line);
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        self.got.extend_from_slice(data);
        if self.got.ends_with(b"\n") {
            if let Some(done) = self.done.take() {
                done(&self.got);
            }
            ctx.lose_connection();
        }
    }
}

/// Echo lines over `conn`, returning what came back.
async fn exchange(conn: &mut Connection, lines: &[&str]) -> Result<Vec<String>, StreamError> {
    let mut got = Vec::new();
    for line in lines {
        conn.write_all(format!("{line}\n").as_bytes()).await?;
        got.push(conn.read_line(1024).await?);
    }
    Ok(got)
}

/// An async echo server: one task per accepted connection.
fn serve_echo(local: &LocalHandle, mut listener: aio::Listener) {
    let spawner = local.clone();
    local.spawn_local(async move {
        loop {
            let mut conn = listener.accept().await?;
            spawner.spawn_local(async move {
                let mut buf = vec![0; 16 * 1024];
                loop {
                    match conn.read(&mut buf).await? {
                        0 => return conn.close().await,
                        n => conn.write_all(&buf[..n]).await?,
                    }
                }
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), StreamError>(())
    });
}

#[test]
fn tcp_client_against_a_protocol_server() {
    let mut reactor = Reactor::new().unwrap();
    let port = reactor.listen_tcp(localhost(), EchoFactory).unwrap();
    let addr = port.local_addr();
    let got = run_on(&mut reactor, move |local| {
        Box::pin(async move {
            let mut conn = aio::connect_tcp(&local, addr).await?;
            assert_eq!(conn.peer(), &Address::Inet(addr));
            let host = conn.host().and_then(Address::inet).unwrap();
            assert!(host.ip().is_loopback() && host.port() != addr.port());
            let got = exchange(&mut conn, &["one", "two", "three"]).await?;
            conn.close().await?;
            Ok(got)
        })
    })
    .unwrap();
    assert_eq!(got, ["one\n", "two\n", "three\n"]);
}

#[test]
fn refused_is_a_typed_error() {
    // A port nobody listens on: bound, then closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = run(move |local| Box::pin(async move { aio::connect_tcp(&local, addr).await }))
        .unwrap_err();
    assert!(matches!(err, StreamError::Refused), "{err:?}");
    assert_eq!(err.to_string(), "connection refused");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}

/// A server that greets, then resets the connection when the client speaks.
struct Rude;
impl Protocol for Rude {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.write(b"bye\n");
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, _data: &[u8]) {
        ctx.abort_connection();
    }
}

#[test]
fn a_reset_is_a_typed_error_after_the_data() {
    let mut reactor = Reactor::new().unwrap();
    let addr = reactor
        .listen_tcp(localhost(), torsion::factory(|_: &Address| Rude))
        .unwrap()
        .local_addr();
    let err = run_on(&mut reactor, move |local| {
        Box::pin(async move {
            let mut conn = aio::connect_tcp(&local, addr).await?;
            assert_eq!(conn.read_line(100).await?, "bye\n");
            conn.write_all(b"hello?\n").await?;
            let mut buf = [0; 16];
            conn.read(&mut buf).await
        })
    })
    .unwrap_err();
    assert!(matches!(err, StreamError::Reset), "{err:?}");
}

#[test]
fn a_read_times_out_on_the_reactor_clock() {
    let mut reactor = Reactor::new().unwrap();
    let addr = reactor
        .listen_tcp(localhost(), torsion::factory(|_: &Address| Sink))
        .unwrap()
        .local_addr();
    let err = run_on(&mut reactor, move |local| {
        Box::pin(async move {
            let mut conn = aio::connect_tcp(&local, addr).await?;
            conn.write_all(b"anyone?\n").await?;
            aio::timeout(&local, Duration::from_millis(50), conn.read_line(100)).await??;
            Ok(())
        })
    })
    .unwrap_err();
    assert!(matches!(err, StreamError::TimedOut), "{err:?}");
}

#[test]
fn async_server_and_client_over_unix_sockets() {
    let dir = std::env::temp_dir().join(format!("torsion-aio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let p = path.clone();
    let got = run(move |local| {
        Box::pin(async move {
            let listener = aio::listen_unix(&local, &p).await?;
            assert!(matches!(listener.address(), Some(Address::Unix(_))));
            serve_echo(&local, listener);
            let mut conn = aio::connect_unix(&local, &p).await?;
            assert!(matches!(conn.peer(), Address::Unix(_)));
            let got = exchange(&mut conn, &["over", "unix"]).await?;
            conn.close().await?;
            Ok(got)
        })
    })
    .unwrap();
    assert_eq!(got, ["over\n", "unix\n"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn endpoint_strings_listen_and_connect() {
    let got = run(|local| {
        Box::pin(async move {
            let listener = aio::listen(&local, "tcp:0:interface=127.0.0.1").await?;
            let port = listener.local_addr().unwrap().port();
            serve_echo(&local, listener);
            let mut conn = aio::connect(&local, &format!("tcp:host=127.0.0.1:port={port}")).await?;
            let got = exchange(&mut conn, &["endpoint"]).await?;
            conn.close().await?;
            // Host names go through the resolver and Happy Eyeballs.
            let mut conn = aio::connect(&local, &format!("tcp:localhost:{port}")).await?;
            let more = exchange(&mut conn, &["by name"]).await;
            Ok((got, more.ok()))
        })
    })
    .unwrap();
    assert_eq!(got.0, ["endpoint\n"]);
    // "localhost" may resolve to ::1 first, where nobody listens: Happy
    // Eyeballs then falls back to 127.0.0.1, so it works either way.
    assert_eq!(got.1.unwrap(), ["by name\n"]);

    let err =
        run(|local| Box::pin(async move { aio::connect(&local, "tcp:host=x").await })).unwrap_err();
    assert!(matches!(err, StreamError::Endpoint(_)), "{err:?}");
    assert_eq!(err.to_string(), "tcp endpoint: missing parameter \"port\"");
    let err =
        run(|local| Box::pin(async move { aio::listen(&local, "bogus:1").await })).unwrap_err();
    assert!(matches!(err, StreamError::Endpoint(_)), "{err:?}");
}

#[test]
fn listening_on_a_taken_port_is_a_typed_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err =
        run(move |local| Box::pin(async move { aio::listen_tcp(&local, addr).await })).unwrap_err();
    assert!(matches!(err, StreamError::Listen(_)), "{err:?}");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::AddrInUse
    );
}

#[cfg(feature = "tls")]
#[test]
fn tls_async_server_and_client() {
    let certs = tls_util::shared_certs();
    let (server, client) = (certs.server(), certs.client());
    let got = run(move |local| {
        Box::pin(async move {
            let listener = aio::listen_tls(&local, localhost(), server).await?;
            let addr = listener.local_addr().unwrap();
            serve_echo(&local, listener);
            let name = torsion::tls::server_name("localhost").unwrap();
            let mut conn = aio::connect_tls(&local, addr, name, client).await?;
            let got = exchange(&mut conn, &["secret", "stuff"]).await?;
            // A large write and a flush through the TLS layer.
            let big = vec![b'z'; 1 << 20];
            conn.write_all(&big).await?;
            conn.flush().await?;
            let mut back = vec![0; big.len()];
            conn.read_exact(&mut back).await?;
            assert!(back == big);
            conn.close().await?;
            Ok(got)
        })
    })
    .unwrap();
    assert_eq!(got, ["secret\n", "stuff\n"]);
}

#[cfg(feature = "tls")]
#[test]
fn tls_with_an_untrusted_certificate_fails_typed() {
    let certs = tls_util::shared_certs();
    let server = certs.server();
    let stranger = tls_util::certs(&["localhost"]).client();
    let err = run(move |local| {
        Box::pin(async move {
            let listener = aio::listen_tls(&local, localhost(), server).await?;
            let addr = listener.local_addr().unwrap();
            serve_echo(&local, listener);
            let name = torsion::tls::server_name("localhost").unwrap();
            aio::connect_tls(&local, addr, name, stranger).await
        })
    })
    .unwrap_err();
    assert!(
        matches!(err, StreamError::Lost(DisconnectReason::Tls(_))),
        "{err:?}"
    );
}

/// A protocol callback starts an async task, which connects to an async
/// echo server and answers through the protocol's connection.
struct Relay {
    echo: SocketAddr,
}
impl Protocol for Relay {
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        let (local, echo, h) = (ctx.local(), self.echo, ctx.handle());
        let line = String::from_utf8_lossy(data).trim().to_owned();
        drop(ctx.spawn_local(async move {
            let mut conn = aio::connect_tcp(&local, echo).await?;
            let got = exchange(&mut conn, &[&format!("relayed {line}")]).await?;
            conn.close().await?;
            local.call(move |core| core.connection(h).write(got.concat().as_bytes()));
            Ok::<(), StreamError>(())
        }));
    }
}

#[test]
fn protocol_and_async_code_in_one_reactor() {
    let mut reactor = Reactor::new().unwrap();
    let local = reactor.local();
    // The async echo server.
    let (factory, listener) = aio::accept_queue();
    let echo = reactor
        .listen_tcp(localhost(), factory)
        .unwrap()
        .local_addr();
    serve_echo(&local, listener);
    // The protocol server whose callbacks start async tasks.
    let relay = reactor
        .listen_tcp(
            localhost(),
            torsion::factory(move |_: &Address| Relay { echo }),
        )
        .unwrap()
        .local_addr();
    // An async task that starts protocol-style work: a protocol client whose
    // result it awaits.
    let got = run_on(&mut reactor, move |local| {
        Box::pin(async move {
            let (d, trigger) = Deferred::<Vec<u8>, StreamError>::new();
            let trigger = Rc::new(RefCell::new(Some(trigger)));
            local.call(move |core| {
                let client = OneLine::new(b"hi\n", move |got: &[u8]| {
                    if let Some(t) = trigger.borrow_mut().take() {
                        let _ = t.callback(got.to_vec());
                    }
                });
                drop(core.connect_protocol(relay, client, Duration::from_secs(5)));
            });
            d.await
        })
    })
    .unwrap();
    assert_eq!(got, b"relayed hi\n");
}
