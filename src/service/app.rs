//! [`Application`]: runs services in a reactor until SIGINT or SIGTERM, then
//! shuts down gracefully; prints a snapshot table on SIGUSR1.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use super::table::SnapshotTable;
use super::{MultiService, Service, ServiceError};
use crate::context::Core;
use crate::error::Error;
use crate::reactor::Reactor;

/// How long a graceful shutdown may take before what is left is aborted.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an [`Application`] could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A service did not start (those started before it were stopped).
    #[error("could not start: {0}")]
    Start(#[from] ServiceError),
    /// The signal handlers could not be installed.
    #[error("could not install the signal handlers: {0}")]
    Signals(std::io::Error),
    /// The reactor failed.
    #[error(transparent)]
    Reactor(#[from] Error),
}

/// Runs a tree of services in a reactor (Twisted's `twistd` and
/// `application`): installs SIGINT and SIGTERM handlers, starts the services
/// in order, and runs until a signal or [`Core::stop`]. On the first signal it
/// shuts down gracefully: stops the services in reverse order (listeners
/// close, clients disconnect), then closes every connection after flushing
/// what was written, and returns once all are closed — or aborts what is
/// left when the shutdown timeout passes. A second signal aborts at once.
///
/// SIGUSR1 prints a [`Snapshot`](crate::introspect::Snapshot) of the reactor
/// as a table ([`SnapshotTable`]) to stderr and goes on running: the
/// connections holding the most bytes buffered for writing (then the
/// oldest), the totals, listeners, timers, queues, counters and callback
/// durations (`kill -USR1 PID`). The table goes to stderr in one write, not
/// through `tracing`, so that it stays a table whatever the log's format
/// and filter are; it is taken once the signal's turn comes, so a reactor
/// blocked in a callback prints it after that callback returns (the
/// [guide](crate::stuck_reactor) shows it). The handlers are a
/// [`Core::watch_signals`] watch, removed when `run` returns; from the first
/// `run` on, these signals no longer have their default action (ending the
/// process): after `run` they are ignored.
///
/// ```no_run
/// use torsion::service::{Application, ServerService};
/// # use std::net::SocketAddr;
/// # use torsion::{factory, Context, Protocol};
/// # struct Echo;
/// # impl Protocol for Echo {
/// #     fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) { ctx.write(data); }
/// # }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let mut app = Application::new()?;
///     app.add(ServerService::new("tcp:8000:interface=127.0.0.1", || factory(|_peer| Echo))?);
///     app.run()?; // returns after SIGINT/SIGTERM and a graceful shutdown: exit 0
///     Ok(())
/// }
/// ```
pub struct Application {
    reactor: Reactor,
    services: Rc<RefCell<MultiService>>,
    shutdown_timeout: Duration,
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("services", &self.services.borrow())
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// An application with a new reactor and no services.
    ///
    /// # Errors
    /// The reactor's, if it cannot be created.
    pub fn new() -> Result<Application, Error> {
        Ok(Application {
            reactor: Reactor::new()?,
            services: Rc::new(RefCell::new(MultiService::named("application"))),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        })
    }

    /// Adds a service, started after those added before it.
    pub fn add(&mut self, service: impl Service) -> &mut Self {
        self.services.borrow_mut().add(service);
        self
    }

    /// How long a graceful shutdown may take (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`]).
    pub fn set_shutdown_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The reactor, to set it up before [`run`](Self::run).
    pub fn reactor(&mut self) -> &mut Reactor {
        &mut self.reactor
    }

    /// Starts the services and runs until a signal (or [`Core::stop`]) and the
    /// graceful shutdown that follows. Returning `Ok` means a clean exit.
    ///
    /// # Errors
    /// [`AppError::Start`] if a service did not start, [`AppError::Signals`]
    /// if the handlers could not be installed, [`AppError::Reactor`] if the
    /// reactor failed.
    pub fn run(mut self) -> Result<(), AppError> {
        let services = self.services.clone();
        let timeout = self.shutdown_timeout;
        let shutting_down = Rc::new(Cell::new(false));
        let watch = self
            .reactor
            .watch_signals(
                &[libc::SIGINT, libc::SIGTERM, libc::SIGUSR1],
                move |core, sig| {
                    if sig == libc::SIGUSR1 {
                        core.request_snapshot(print_table);
                    } else {
                        on_signal(core, sig, &services, &shutting_down, timeout);
                    }
                },
            )
            .map_err(|e| match e {
                Error::Io(e) => AppError::Signals(e),
                e => AppError::Reactor(e),
            })?;
        let started = self.services.borrow_mut().start(&mut self.reactor);
        let res = match started {
            Ok(()) => self.reactor.run().map_err(AppError::from),
            Err(e) => Err(AppError::Start(e)),
        };
        drop(watch);
        res
    }
}

/// SIGUSR1: the snapshot's table on stderr, in one write (so that log lines
/// from other threads do not cut through it).
fn print_table(_core: &mut Core, snapshot: crate::introspect::Snapshot) {
    use std::io::Write;
    let text = format!("{}", SnapshotTable::new(&snapshot));
    let mut err = std::io::stderr().lock();
    // Nowhere to report a failed write to stderr; the service goes on.
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

fn on_signal(
    core: &mut Core,
    sig: i32,
    services: &Rc<RefCell<MultiService>>,
    shutting_down: &Rc<Cell<bool>>,
    timeout: Duration,
) {
    if shutting_down.replace(true) {
        tracing::warn!("{} again: aborting every connection now", signal_name(sig));
        core.shutdown(Duration::ZERO);
        return;
    }
    tracing::info!(?timeout, "{}: shutting down gracefully", signal_name(sig));
    let deadline = crate::context::later(core.now(), timeout);
    // Whatever happens, nothing outlives the deadline.
    core.call_later(timeout, |core| core.shutdown(Duration::ZERO));
    let running = services.borrow().is_running();
    if !running {
        core.shutdown(timeout);
        return;
    }
    let stopped = services.borrow_mut().stop(core);
    let local = core.local();
    drop(stopped.add_both(move |res| {
        if let Err(e) = res {
            tracing::error!(error = %e, "a service did not stop cleanly");
        }
        // Then every connection: flushed and closed, or aborted at the deadline.
        local.call(move |core| {
            let left = deadline.saturating_duration_since(core.now());
            core.shutdown(left);
        });
        Ok::<(), ServiceError>(())
    }));
}
