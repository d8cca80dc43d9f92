//! # From Twisted
//!
//! torsion keeps Twisted's model — a reactor, protocols built by factories,
//! transports that buffer and apply back-pressure, Deferreds — with Rust's
//! ownership in place of `self.transport`: every callback gets a
//! [`Context`](crate::Context) for the connection it is about, through which it
//! writes, closes, pauses and reaches the reactor ([`Core`](crate::Core)). The
//! reactor is a value ([`Reactor::new`](crate::Reactor::new)), not a global, so
//! several can live in one process (one per thread, one per test).
//!
//! ## The names
//!
//! | Twisted | torsion |
//! |---|---|
//! | `reactor` (global) | `Reactor::new()`: a value; `run()`, `stop()`, `run_once()`, `run_until()` |
//! | `reactor.callLater(d, f)` → `IDelayedCall` | `core.call_later(d, f)` → `DelayedCall` with `cancel`, `reset`, `delay`, `active`, `time` |
//! | `reactor.callFromThread(f)` | `reactor.reactor_handle().call_from_thread(f)` (`ReactorHandle` is `Send + Clone`) |
//! | `signal.signal(SIGHUP, handler)`; the reactor's own SIGINT/SIGTERM handlers (`installSignalHandlers`) | `core.watch_signals(&[libc::SIGHUP], \|core, signo\| ..)` → `SignalWatch` (the callback runs in the loop; dropping the watch removes the handlers); `service::Application` handles SIGINT/SIGTERM |
//! | `reactor.listenTCP(port, factory)` → `IListeningPort` | `listen_tcp(addr, factory)` → `ListeningPort` with `local_addr()`, `stop_listening()` |
//! | `reactor.connectTCP(host, port, factory, timeout)` → `IConnector` | `connect_tcp(addr, factory, timeout)` → `Connector` with `stop_connecting()`, `disconnect()` |
//! | `Protocol.connectionMade` / `dataReceived` / `connectionLost(reason)` | `Protocol::connection_made` / `data_received` / `connection_lost(reason)` |
//! | `IHalfCloseableProtocol.readConnectionLost` / `writeConnectionLost` | `read_connection_lost` / `write_connection_lost` (after `ctx.set_half_close(true)`) |
//! | `IPushProducer` `pauseProducing` / `resumeProducing` (from the transport) | `Protocol::pause_writing` / `resume_writing` |
//! | `Factory.forProtocol(Echo)`, `Factory.buildProtocol(addr)`, `startFactory`, `stopFactory` | `factory(\|_peer\| Echo)`, `Factory::build_protocol(&peer)`, `start_factory`, `stop_factory` |
//! | `ClientFactory.startedConnecting` / `clientConnectionFailed` / `clientConnectionLost` | `ClientFactory::started_connecting` / `client_connection_failed` / `client_connection_lost` (these return `Reconnect`) |
//! | `self.transport.write` / `writeSequence` | `ctx.write`, `ctx.write_bytes` (zero-copy `Bytes`), `ctx.write_sequence` |
//! | `transport.loseConnection()` / `abortConnection()` | `ctx.lose_connection()` / `ctx.abort_connection()` |
//! | `transport.loseWriteConnection()` | `ctx.lose_write_connection()` |
//! | `transport.pauseProducing()` / `resumeProducing()` | `ctx.pause_reading()` / `ctx.resume_reading()` |
//! | another connection's `transport.write(data)`, `loseConnection()`, ... | `core.connection(handle).write(data)` (`write_bytes` for a shared `Bytes`), `.lose_connection()`, `.abort_connection()`, `.pause_reading()`, `.resume_reading()`, `.with_protocol(\|p: &mut P, ctx\| ..)` → `Deferred` |
//! | `transport.getPeer()` / `getHost()` | `ctx.peer_addr()` / `ctx.host_addr()` (IP), `ctx.peer()` / `ctx.host()` (any transport: `Address::Inet` or `Address::Unix`) |
//! | `reactor.listenUNIX(path, factory, mode=, wantPID=)` / `connectUNIX` | `listen_unix_with(path, factory, UnixOptions { mode, remove_stale, .. })` → `UnixListeningPort`; `connect_unix(path, factory, timeout)` → `Connector` |
//! | `DatagramProtocol` `startProtocol` / `datagramReceived(data, addr)` / `connectionRefused` / `stopProtocol` | `DatagramProtocol::start_protocol` / `datagram_received(ctx, data, from)` / `connection_refused` / `stop_protocol` |
//! | `reactor.listenUDP(port, proto)`, `listenMulticast`, `listenUNIXDatagram` | `listen_udp(addr, proto)` / `listen_udp_with(.., UdpOptions)` → `DatagramPort`; `listen_unix_datagram(path, proto)` |
//! | `transport.write(data, addr)`, `connect`, `joinGroup` / `leaveGroup`, `setTTL`, `setLoopbackMode`, `setBroadcastAllowed` | `ctx.send_to(data, addr)` (wrong family, full buffer: error values), `ctx.connect` + `ctx.write`, `ctx.join_group` / `leave_group`, `set_multicast_ttl`, `set_multicast_loop`, `set_broadcast` |
//! | `Deferred` `addCallback` / `addErrback` / `addBoth` / `addCallbacks`, `callback` / `errback`, `cancel` | `Deferred::new()` → (`Deferred`, `Trigger`); `add_callback` / `add_errback` / `add_both` / `add_callbacks` (a callback may change the value's type or return another `Deferred`); `trigger.callback` / `errback`; `cancel` |
//! | `succeed`, `fail`, `maybeDeferred`, `DeferredList`, `gatherResults`, `race` | `defer::succeed`, `fail`, `maybe_deferred`, `DeferredList`, `gather_results`, `race` |
//! | `inlineCallbacks` / `ensureDeferred`, `task.react` | `async` code awaiting `Deferred`s (they implement `Future`); `core.spawn_local(fut)` → `Deferred`; `reactor.run_until_complete(d)` |
//! | (no Twisted equivalent: awaitable transports) | `aio::connect_tcp(&local, addr).await` → `aio::Connection` with `read`, `read_exact`, `read_line`, `write_all`, `flush`, `shutdown_write`, `close`; `aio::listen_tcp(..).await` → `accept().await`; `aio::sleep`, `aio::timeout` |
//! | `task.deferLater`, `Deferred.addTimeout`, `threads.deferToThread`, `reactor.resolve` | `task::defer_later`, `DeferredExt::add_timeout`, `core.defer_to_thread(f)`, `core.resolve(host)` |
//! | `task.LoopingCall` | `task::LoopingCall` (aligned to its start, missed intervals skipped and counted) |
//! | `ConnectionDone`, `ConnectionLost`, `ConnectionRefusedError`, `TimeoutError`, `ConnectionAborted` | `DisconnectReason::{Done, Reset, Refused, TimedOut, Aborted, ...}` |
//! | `LineReceiver`, `Int32StringReceiver` (and 8/16-bit), `NetstringReceiver` | `protocols::LineReceiver`, `protocols::LengthPrefixed`, `protocols::Netstring` (sans-IO codecs + `Framed` adapter) |
//! | `ReconnectingClientFactory` | `ReconnectingClientFactory` (seeded back-off, `stop_trying`) |
//! | `policies.LimitTotalConnectionsFactory`, `LimitConnectionsByPeer`, `ThrottlingFactory`, `TimeoutMixin` | `policies::Policed` (`max_connections`, `max_per_peer`, `read_rate`, `write_rate`, `idle_timeout`); `ctx.set_idle_timeout` |
//! | `reactor.spawnProcess(pp, exe, args, env, path, childFDs)`, `ProcessProtocol` | `core.spawn_process(ProcessSpec::new(exe).args(..).env(..).current_dir(..).child_fd(3, ChildFd::FromChild), pp)`, `process::ProcessProtocol` |
//! | `stdio.StandardIO(proto)` | `core.standard_io(proto)` |
//! | `FileSender` / `registerProducer` | `ctx.stream_from(chunks)` + `Protocol::streaming_finished` |
//! | `proto_helpers.StringTransport`, `task.Clock`, `iosim.connectedServerAndClient` | `testing::RecordingTransport`, `testing::Clock`, `testing::Pump` (with seeded `Faults`) |
//! | `twisted.web.server.Site(resource)`, `reactor.listenTCP(8080, site)` | `http::HttpServer::new(handler)`, `server.listen_tcp(core, addr)` (or `server.factory()` for Unix, TLS, the pump); `http::HttpService` for an `Application` |
//! | `Resource.render_GET(request)`, `putChild`, `isLeaf`, `NOT_DONE_YET` | `http::Handler` (a closure `\|core, req\| -> Response` or `Deferred<Response>`); `http::Router` (`get`, `post`, `route`, prefixes with `*`); a `Deferred` reply instead of `NOT_DONE_YET` |
//! | `Request` (`method`, `uri`, `requestHeaders`, `content`, `setResponseCode`, `setHeader`, `write`, `finish`) | `http::Request` (`method`, `target()`, `path()`, `query()`, `headers`, `body`, `take_incoming()` for streamed uploads) and `http::Response` (`status`, `headers`, `with_body`, `with_stream` for bodies pulled with back-pressure) |
//! | `twisted.web.client.Agent(reactor).request(method, url, headers, body)`, `HTTPConnectionPool`, `RedirectAgent`, `readBody` | `http::HttpClient::request(core, method, url, headers, body)` → `Deferred<Response, ClientError>` (body read whole); keep-alive pool per host built in; `ClientConfig::follow_redirects`; Twisted's `IBodyConsumer` / `Response.deliverBody(protocol)` is `HttpClient::request_streaming` → `StreamingResponse { head, body }`, `body.on_data(core, reader)` with `pause`/`resume`, or `body.into_reader()` (`AsyncRead`); `IBodyProducer` is `HttpClient::upload(core, method, url, headers, source, length)`; `Response::timings()` for connect/TLS/first-byte times |
//!
//! ## The seed programs, side by side
//!
//! Each Twisted program below is the classic one from its documentation (lightly
//! trimmed); the Rust program under it does the same with torsion. All of them
//! compile as part of the crate's documentation tests.
//!
//! ### An echo server
//!
//! Twisted:
//!
//! ```python
//! from twisted.internet import protocol, reactor
//!
//! class Echo(protocol.Protocol):
//!     def dataReceived(self, data):
//!         self.transport.write(data)
//!
//! class EchoFactory(protocol.Factory):
//!     def buildProtocol(self, addr):
//!         return Echo()
//!
//! reactor.listenTCP(8000, EchoFactory(), interface="127.0.0.1")
//! reactor.run()
//! ```
//!
//! torsion (the `echo_server` example adds back-pressure, logging, signals and
//! options to this). The factory struct mirrors Twisted's class; a closure is
//! a factory too: `reactor.listen_tcp(addr, torsion::factory(|_peer| Echo))`.
//!
//! ```no_run
//! use torsion::Address;
//! use torsion::{Context, Factory, Protocol, Reactor};
//!
//! struct Echo;
//!
//! impl Protocol for Echo {
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         ctx.write(data);
//!     }
//! }
//!
//! struct EchoFactory;
//!
//! impl Factory for EchoFactory {
//!     type Protocol = Echo;
//!     fn build_protocol(&mut self, _peer: &Address) -> Option<Echo> {
//!         Some(Echo)
//!     }
//! }
//!
//! fn main() -> torsion::Result<()> {
//!     let mut reactor = Reactor::new()?;
//!     reactor.listen_tcp("127.0.0.1:8000".parse().unwrap(), EchoFactory)?;
//!     reactor.run()
//! }
//! ```
//!
//! ### An echo client
//!
//! Twisted:
//!
//! ```python
//! from twisted.internet import reactor, protocol
//!
//! class EchoClient(protocol.Protocol):
//!     def connectionMade(self):
//!         self.transport.write(b"hello, world!")
//!
//!     def dataReceived(self, data):
//!         print("Server said:", data)
//!         self.transport.loseConnection()
//!
//! class EchoFactory(protocol.ClientFactory):
//!     protocol = EchoClient
//!
//!     def clientConnectionFailed(self, connector, reason):
//!         print("Connection failed - goodbye!")
//!         reactor.stop()
//!
//!     def clientConnectionLost(self, connector, reason):
//!         print("Connection lost - goodbye!")
//!         reactor.stop()
//!
//! reactor.connectTCP("127.0.0.1", 8000, EchoFactory())
//! reactor.run()
//! ```
//!
//! torsion: the factory's two end callbacks also say whether to connect again
//! ([`Reconnect`](crate::Reconnect)), which Twisted leaves to `connector.connect()`.
//!
//! ```no_run
//! use torsion::Address;
//! use std::time::Duration;
//! use torsion::{ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reactor, Reconnect};
//!
//! struct EchoClient;
//!
//! impl Protocol for EchoClient {
//!     fn connection_made(&mut self, ctx: &mut Context<'_>) {
//!         ctx.write(b"hello, world!");
//!     }
//!
//!     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
//!         println!("Server said: {}", String::from_utf8_lossy(data));
//!         ctx.lose_connection();
//!     }
//! }
//!
//! struct EchoFactory;
//!
//! impl ClientFactory for EchoFactory {
//!     type Protocol = EchoClient;
//!
//!     fn build_protocol(&mut self, _peer: &Address) -> Option<EchoClient> {
//!         Some(EchoClient)
//!     }
//!
//!     fn client_connection_failed(
//!         &mut self,
//!         core: &mut Core,
//!         _connector: Connector,
//!         reason: &DisconnectReason,
//!     ) -> Reconnect {
//!         println!("Connection failed ({reason}) - goodbye!");
//!         let _ = core.stop();
//!         Reconnect::Never
//!     }
//!
//!     fn client_connection_lost(
//!         &mut self,
//!         core: &mut Core,
//!         _connector: Connector,
//!         _reason: &DisconnectReason,
//!     ) -> Reconnect {
//!         println!("Connection lost - goodbye!");
//!         let _ = core.stop();
//!         Reconnect::Never
//!     }
//! }
//!
//! fn main() -> torsion::Result<()> {
//!     let mut reactor = Reactor::new()?;
//!     let addr = "127.0.0.1:8000".parse().unwrap();
//!     reactor.connect_tcp(addr, EchoFactory, Duration::from_secs(30));
//!     reactor.run()
//! }
//! ```
//!
//! ### A client that retries in `clientConnectionFailed`
//!
//! Twisted:
//!
//! ```python
//! from twisted.internet import reactor, protocol
//!
//! class Greeter(protocol.Protocol):
//!     def connectionMade(self):
//!         self.transport.write(b"hello\r\n")
//!         self.transport.loseConnection()
//!
//! class RetryingFactory(protocol.ClientFactory):
//!     protocol = Greeter
//!     tries = 0
//!
//!     def clientConnectionFailed(self, connector, reason):
//!         self.tries += 1
//!         if self.tries < 5:
//!             print("failed (%s), retrying in 1 s" % reason.getErrorMessage())
//!             reactor.callLater(1, connector.connect)
//!         else:
//!             print("giving up")
//!             reactor.stop()
//!
//!     def clientConnectionLost(self, connector, reason):
//!         reactor.stop()
//!
//! reactor.connectTCP("127.0.0.1", 8000, RetryingFactory(), timeout=5)
//! reactor.run()
//! ```
//!
//! torsion: returning [`Reconnect::After`](crate::Reconnect::After) is the
//! `callLater(1, connector.connect)`; the same factory serves the next attempt.
//! For back-off with jitter, wrap a factory in
//! [`ReconnectingClientFactory`](crate::ReconnectingClientFactory) instead.
//!
//! ```no_run
//! use torsion::Address;
//! use std::time::Duration;
//! use torsion::{ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reactor, Reconnect};
//!
//! struct Greeter;
//!
//! impl Protocol for Greeter {
//!     fn connection_made(&mut self, ctx: &mut Context<'_>) {
//!         ctx.write(b"hello\r\n");
//!         ctx.lose_connection();
//!     }
//!
//!     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
//! }
//!
//! struct RetryingFactory {
//!     tries: u32,
//! }
//!
//! impl ClientFactory for RetryingFactory {
//!     type Protocol = Greeter;
//!
//!     fn build_protocol(&mut self, _peer: &Address) -> Option<Greeter> {
//!         Some(Greeter)
//!     }
//!
//!     fn client_connection_failed(
//!         &mut self,
//!         core: &mut Core,
//!         _connector: Connector,
//!         reason: &DisconnectReason,
//!     ) -> Reconnect {
//!         self.tries += 1;
//!         if self.tries < 5 {
//!             println!("failed ({reason}), retrying in 1 s");
//!             Reconnect::After(Duration::from_secs(1))
//!         } else {
//!             println!("giving up");
//!             let _ = core.stop();
//!             Reconnect::Never
//!         }
//!     }
//!
//!     fn client_connection_lost(
//!         &mut self,
//!         core: &mut Core,
//!         _connector: Connector,
//!         _reason: &DisconnectReason,
//!     ) -> Reconnect {
//!         let _ = core.stop();
//!         Reconnect::Never
//!     }
//! }
//!
//! fn main() -> torsion::Result<()> {
//!     let mut reactor = Reactor::new()?;
//!     let addr = "127.0.0.1:8000".parse().unwrap();
//!     reactor.connect_tcp(addr, RetryingFactory { tries: 0 }, Duration::from_secs(5));
//!     reactor.run()
//! }
//! ```
//!
//! ### An availability monitor
//!
//! Twisted: every 5 seconds, try to connect to each target with a 2-second
//! timeout, and print a line whenever one goes up or down.
//!
//! ```python
//! from twisted.internet import reactor, protocol, task
//!
//! status = {}
//!
//! def report(target, state):
//!     if status.get(target) != state:
//!         status[target] = state
//!         print(target, state)
//!
//! class Probe(protocol.Protocol):
//!     def connectionMade(self):
//!         self.transport.loseConnection()
//!
//! class ProbeFactory(protocol.ClientFactory):
//!     protocol = Probe
//!
//!     def __init__(self, target):
//!         self.target = target
//!
//!     def buildProtocol(self, addr):
//!         report(self.target, "up")
//!         return protocol.ClientFactory.buildProtocol(self, addr)
//!
//!     def clientConnectionFailed(self, connector, reason):
//!         report(self.target, "down (%s)" % reason.getErrorMessage())
//!
//! targets = [("127.0.0.1", 8000), ("127.0.0.1", 8001)]
//!
//! def check():
//!     for host, port in targets:
//!         reactor.connectTCP(host, port, ProbeFactory((host, port)), timeout=2)
//!
//! task.LoopingCall(check).start(5)
//! reactor.run()
//! ```
//!
//! torsion: [`LoopingCall`](crate::task::LoopingCall) is Twisted's; the status
//! table is shared by the factories through an `Rc` (everything runs on the
//! reactor's thread). The `netmon` example grows this into a tool (persistent
//! connections, banners, latency percentiles, summaries).
//!
//! ```no_run
//! use std::cell::RefCell;
//! use std::collections::HashMap;
//! use std::net::SocketAddr;
//! use torsion::Address;
//! use std::rc::Rc;
//! use std::time::Duration;
//! use torsion::defer::Failure;
//! use torsion::task::LoopingCall;
//! use torsion::{ClientFactory, Connector, Context, Core, DisconnectReason, Protocol, Reactor, Reconnect};
//!
//! type Status = Rc<RefCell<HashMap<SocketAddr, String>>>;
//!
//! fn report(status: &Status, target: SocketAddr, state: String) {
//!     let mut status = status.borrow_mut();
//!     if status.get(&target) != Some(&state) {
//!         println!("{target} {state}");
//!         status.insert(target, state);
//!     }
//! }
//!
//! struct Probe;
//!
//! impl Protocol for Probe {
//!     fn connection_made(&mut self, ctx: &mut Context<'_>) {
//!         ctx.lose_connection();
//!     }
//!
//!     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
//! }
//!
//! struct ProbeFactory {
//!     target: SocketAddr,
//!     status: Status,
//! }
//!
//! impl ClientFactory for ProbeFactory {
//!     type Protocol = Probe;
//!
//!     fn build_protocol(&mut self, _peer: &Address) -> Option<Probe> {
//!         report(&self.status, self.target, "up".into());
//!         Some(Probe)
//!     }
//!
//!     fn client_connection_failed(
//!         &mut self,
//!         _core: &mut Core,
//!         _connector: Connector,
//!         reason: &DisconnectReason,
//!     ) -> Reconnect {
//!         report(&self.status, self.target, format!("down ({reason})"));
//!         Reconnect::Never
//!     }
//! }
//!
//! fn main() -> torsion::Result<()> {
//!     let mut reactor = Reactor::new()?;
//!     let status = Status::default();
//!     let targets: Vec<SocketAddr> = vec![
//!         "127.0.0.1:8000".parse().unwrap(),
//!         "127.0.0.1:8001".parse().unwrap(),
//!     ];
//!     let check = LoopingCall::<Failure>::new(move |core, _lc| {
//!         for &target in &targets {
//!             let factory = ProbeFactory { target, status: status.clone() };
//!             core.connect_tcp(target, factory, Duration::from_secs(2));
//!         }
//!         Ok(())
//!     });
//!     let _done = check.start(&mut reactor, Duration::from_secs(5), true);
//!     reactor.run()
//! }
//! ```
//!
//! ## What differs
//!
//! * **No global reactor.** Code that needs it gets it as an argument: every
//!   callback's [`Context`](crate::Context) dereferences to [`Core`](crate::Core).
//! * **No `self.transport`.** A protocol does not hold its transport; it reaches
//!   the connection through the `ctx` of each call, and other connections by
//!   [`ConnectionHandle`](crate::ConnectionHandle) through the reactor.
//! * **Failures are values.** `connection_lost` gets a
//!   [`DisconnectReason`](crate::DisconnectReason) (an enum, not an exception
//!   type); errors of calls are `Result`s.
//! * **Lines end in `\n` or `\r\n`.** [`LineReceiver`](crate::protocols::LineReceiver)
//!   accepts both by default (Twisted's wants its delimiter, `\r\n`), and sends
//!   `\r\n`.
//! * **Testing is the same idea.** `StringTransport`, `task.Clock` and
//!   `iosim` are [`RecordingTransport`](crate::testing::RecordingTransport),
//!   [`Clock`](crate::testing::Clock) and [`Pump`](crate::testing::Pump).
//!
