//! [`HttpService`]: an HTTP server as an application service.

use std::net::SocketAddr;

use super::server::HttpServer;
use crate::context::Core;
use crate::defer::Deferred;
use crate::reactor::ListeningPort;
use crate::service::{Service, ServiceError};

/// An [`HttpServer`] listening on a TCP address while running, for an
/// [`Application`](crate::service::Application): stopping it (on SIGINT or
/// SIGTERM) is the server's graceful [`shutdown`](HttpServer::shutdown), so
/// requests in flight finish before the application exits.
///
/// ```no_run
/// use torsion::http::{HttpServer, HttpService, Request, Response};
/// use torsion::service::Application;
/// use torsion::Core;
///
/// let server = HttpServer::new(|_: &mut Core, _: Request| Response::ok("hi"));
/// let mut app = Application::new()?;
/// app.add(HttpService::new(server, "127.0.0.1:8080".parse().unwrap()));
/// app.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HttpService {
    server: HttpServer,
    addr: Option<SocketAddr>,
    name: String,
    port: Option<ListeningPort>,
    running: bool,
}

impl HttpService {
    /// A service for `server` on `addr`.
    pub fn new(server: HttpServer, addr: SocketAddr) -> HttpService {
        HttpService {
            server,
            addr: Some(addr),
            name: format!("http:{addr}"),
            port: None,
            running: false,
        }
    }

    /// A service for a server that listens already (through
    /// [`HttpServer::listen_tcp`] and friends, so that a program can report
    /// a bind error itself before running): starting it does nothing,
    /// stopping it is the graceful shutdown.
    pub fn serving(server: HttpServer) -> HttpService {
        HttpService {
            server,
            addr: None,
            name: "http".to_owned(),
            port: None,
            running: false,
        }
    }

    /// The bound address while running (the real port if 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.port.map(|p| p.local_addr())
    }
}

impl Service for HttpService {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, core: &mut Core) -> Result<(), ServiceError> {
        if self.running {
            return Err(ServiceError::State {
                name: self.name.clone(),
                running: true,
            });
        }
        if let Some(addr) = self.addr {
            let port = self
                .server
                .listen_tcp(core, addr)
                .map_err(|e| ServiceError::Endpoint {
                    name: self.name.clone(),
                    message: format!("cannot listen on {addr}: {e}"),
                })?;
            tracing::info!(addr = %port.local_addr(), "HTTP server listening");
            self.port = Some(port);
        }
        self.running = true;
        Ok(())
    }

    fn stop(&mut self, core: &mut Core) -> Deferred<(), ServiceError> {
        self.port = None;
        if !std::mem::replace(&mut self.running, false) {
            let (d, t) = Deferred::new();
            let _ = t.errback(ServiceError::State {
                name: self.name.clone(),
                running: false,
            });
            return d;
        }
        let name = self.name.clone();
        self.server
            .shutdown(core)
            .map_err(move |e| ServiceError::Failed {
                name,
                message: e.to_string(),
            })
    }

    fn is_running(&self) -> bool {
        self.running
    }
}
