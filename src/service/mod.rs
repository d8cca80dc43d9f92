//! Services (Twisted's `twisted.application.service`): things that start and
//! stop with an application — listeners, clients that stay connected, timers —
//! composed in a [`MultiService`] and run by an [`Application`] that shuts
//! down gracefully on SIGINT / SIGTERM (and prints a [`SnapshotTable`] of the
//! reactor on SIGUSR1).
//!
//! ```
//! use std::time::Duration;
//! use torsion::service::{MultiService, Service, TimerService};
//! use torsion::Reactor;
//!
//! let mut reactor = Reactor::new()?;
//! let mut app = MultiService::new();
//! app.add(TimerService::new(Duration::from_millis(10), |_core| println!("tick")));
//! app.start(&mut reactor).unwrap();
//! assert!(app.is_running());
//! let stopped = app.stop(&mut reactor);
//! reactor.run_until_complete(stopped)?.unwrap();
//! # Ok::<(), torsion::Error>(())
//! ```

mod app;
mod net;
mod table;

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

pub use app::{AppError, Application, DEFAULT_SHUTDOWN_TIMEOUT};
pub use net::{ClientService, ServerService};
pub use table::{SnapshotTable, DEFAULT_TABLE_ROWS};

use crate::context::Core;
use crate::defer::{Cancelled, Deferred, Trigger};
use crate::local::LocalHandle;
use crate::task::LoopingCall;

/// Why a service could not start or stop cleanly.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The service is running already (start) or not running (stop).
    #[error("service {name:?} is {}", if *.running { "running already" } else { "not running" })]
    State {
        /// The service.
        name: String,
        /// Whether it was running.
        running: bool,
    },
    /// An endpoint string was refused, or listening on it failed.
    #[error("service {name:?}: {message}")]
    Endpoint {
        /// The service.
        name: String,
        /// The endpoint error's text.
        message: String,
    },
    /// A service failed in its own way.
    #[error("service {name:?}: {message}")]
    Failed {
        /// The service.
        name: String,
        /// What happened.
        message: String,
    },
    /// Stopping was cancelled.
    #[error("stopping was cancelled")]
    Cancelled,
}

impl From<Cancelled> for ServiceError {
    fn from(_: Cancelled) -> Self {
        ServiceError::Cancelled
    }
}

/// Something that starts and stops with the application (Twisted's
/// `IService`).
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use torsion::defer::Deferred;
/// use torsion::service::{MultiService, Service, ServiceError};
/// use torsion::{Core, Reactor};
///
/// /// A service of your own: here it only counts its starts and stops; a real
/// /// one would listen, connect or arm timers in `start` and undo it in `stop`.
/// struct Counter {
///     running: bool,
///     starts: Rc<Cell<u32>>,
/// }
///
/// impl Service for Counter {
///     fn name(&self) -> &str {
///         "counter"
///     }
///
///     fn start(&mut self, _core: &mut Core) -> Result<(), ServiceError> {
///         self.running = true;
///         self.starts.set(self.starts.get() + 1);
///         Ok(())
///     }
///
///     fn stop(&mut self, _core: &mut Core) -> Deferred<(), ServiceError> {
///         self.running = false;
///         // Stopped at once; a service that must wait (connections to close)
///         // returns a Deferred it fires later.
///         torsion::defer::succeed(())
///     }
///
///     fn is_running(&self) -> bool {
///         self.running
///     }
/// }
///
/// let starts = Rc::new(Cell::new(0));
/// let mut reactor = Reactor::new()?;
/// let mut app = MultiService::new();
/// app.add(Counter { running: false, starts: starts.clone() });
/// app.start(&mut reactor).unwrap();
/// assert_eq!(starts.get(), 1);
/// let stopped = app.stop(&mut reactor);
/// reactor.run_until_complete(stopped)?.unwrap();
/// assert!(!app.is_running());
/// # Ok::<(), torsion::Error>(())
/// ```
pub trait Service: 'static {
    /// A name for logs and errors.
    fn name(&self) -> &str;

    /// Starts the service (listen, connect, arm timers).
    ///
    /// # Errors
    /// Why it could not start; nothing it started is left running.
    fn start(&mut self, core: &mut Core) -> Result<(), ServiceError>;

    /// Stops the service. The Deferred fires once it has stopped (listeners
    /// closed, connections closed...).
    fn stop(&mut self, core: &mut Core) -> Deferred<(), ServiceError>;

    /// Whether it is running (started and not stopped).
    fn is_running(&self) -> bool;
}

/// A Deferred that has fired with `result`.
pub(crate) fn fired(result: Result<(), ServiceError>) -> Deferred<(), ServiceError> {
    let (d, t) = Deferred::new();
    let _ = t.fire(result);
    d
}

type Children = Rc<RefCell<Vec<Box<dyn Service>>>>;

/// Services started in the order added and stopped in reverse order, each
/// stop waiting for the one before it to finish (Twisted's `MultiService`).
/// A `MultiService` is itself a [`Service`], so trees nest.
///
/// ```
/// use std::time::Duration;
/// use torsion::service::{MultiService, Service, TimerService};
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// let mut inner = MultiService::new();
/// inner.add(TimerService::new(Duration::from_secs(1), |_core| {}));
/// let mut root = MultiService::new();
/// root.add(inner); // trees nest: started in order, stopped in reverse
/// root.start(&mut reactor).unwrap();
/// assert!(root.is_running());
/// let stopped = root.stop(&mut reactor);
/// reactor.run_until_complete(stopped)?.unwrap();
/// # Ok::<(), torsion::Error>(())
/// ```
pub struct MultiService {
    name: String,
    children: Children,
    running: bool,
}

impl fmt::Debug for MultiService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .children
            .borrow()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        f.debug_struct("MultiService")
            .field("name", &self.name)
            .field("children", &names)
            .field("running", &self.running)
            .finish()
    }
}

impl Default for MultiService {
    fn default() -> Self {
        Self::new()
    }
}

impl MultiService {
    /// An empty group.
    pub fn new() -> MultiService {
        Self::named("application")
    }

    /// An empty group with a name.
    pub fn named(name: impl Into<String>) -> MultiService {
        MultiService {
            name: name.into(),
            children: Rc::default(),
            running: false,
        }
    }

    /// Adds a service (started after those added before it). Adding to a
    /// running group does not start it: call its `start` yourself if needed.
    pub fn add(&mut self, service: impl Service) -> &mut Self {
        self.children.borrow_mut().push(Box::new(service));
        self
    }

    /// Number of services in the group.
    pub fn len(&self) -> usize {
        self.children.borrow().len()
    }

    /// Whether the group is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Service for MultiService {
    fn name(&self) -> &str {
        &self.name
    }

    /// Starts the children in order. If one fails, those already started are
    /// stopped again (in reverse order) and its error is returned.
    fn start(&mut self, core: &mut Core) -> Result<(), ServiceError> {
        if self.running {
            return Err(ServiceError::State {
                name: self.name.clone(),
                running: true,
            });
        }
        let n = self.children.borrow().len();
        for i in 0..n {
            let res = self.children.borrow_mut()[i].start(core);
            if let Err(e) = res {
                // DEBUG: the error is returned, and whoever started the service
                // reports it (an ERROR here printed it twice).
                tracing::debug!(service = %self.children.borrow()[i].name(), error = %e, "could not start");
                let t = Deferred::<(), ServiceError>::new().1;
                let local = core.local();
                stop_from(self.children.clone(), i, core, local, t, None);
                return Err(e);
            }
        }
        self.running = true;
        Ok(())
    }

    /// Stops the children in reverse order, each after the previous one's
    /// Deferred fired. Fires with the first error if any failed (the others
    /// are stopped anyway).
    fn stop(&mut self, core: &mut Core) -> Deferred<(), ServiceError> {
        if !self.running {
            return fired(Err(ServiceError::State {
                name: self.name.clone(),
                running: false,
            }));
        }
        self.running = false;
        let (d, t) = Deferred::new();
        let n = self.children.borrow().len();
        let local = core.local();
        stop_from(self.children.clone(), n, core, local, t, None);
        d
    }

    fn is_running(&self) -> bool {
        self.running
    }
}

/// Stops `children[..end]`, last first, waiting for each.
fn stop_from(
    children: Children,
    end: usize,
    core: &mut Core,
    local: LocalHandle,
    done: Trigger<(), ServiceError>,
    first_error: Option<ServiceError>,
) {
    let mut end = end;
    // Skip those not running (a failed start leaves later ones unstarted).
    while end > 0 && !children.borrow()[end - 1].is_running() {
        end -= 1;
    }
    if end == 0 {
        let _ = done.fire(first_error.map_or(Ok(()), Err));
        return;
    }
    let d = children.borrow_mut()[end - 1].stop(core);
    drop(d.add_both(move |res| {
        let first_error = first_error.or_else(|| res.err());
        let l = local.clone();
        local.call(move |core| stop_from(children, end - 1, core, l, done, first_error));
        Ok::<(), ServiceError>(())
    }));
}

/// Calls a function every `interval` while running (Twisted's `TimerService`),
/// the first call at start.
///
/// ```
/// use std::time::Duration;
/// use torsion::service::{MultiService, Service, TimerService};
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// let mut services = MultiService::new();
/// // Every 10 ms while running (Twisted's TimerService).
/// services.add(TimerService::new(Duration::from_millis(10), |_core| println!("tick")));
/// services.start(&mut reactor).unwrap();
/// let stopped = services.stop(&mut reactor);
/// reactor.run_until_complete(stopped)?.unwrap();
/// # Ok::<(), torsion::Error>(())
/// ```
pub struct TimerService {
    name: String,
    interval: Duration,
    call: LoopingCall<ServiceError>,
}

impl fmt::Debug for TimerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerService")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .field("running", &self.call.is_running())
            .finish()
    }
}

impl TimerService {
    /// A service that calls `f` every `interval`.
    pub fn new(interval: Duration, mut f: impl FnMut(&mut Core) + 'static) -> TimerService {
        TimerService {
            name: format!("timer every {interval:?}"),
            interval,
            call: LoopingCall::new(move |core, _| {
                f(core);
                Ok::<(), ServiceError>(())
            }),
        }
    }

    /// The same, with a name.
    pub fn named(mut self, name: impl Into<String>) -> TimerService {
        self.name = name.into();
        self
    }
}

impl Service for TimerService {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, core: &mut Core) -> Result<(), ServiceError> {
        let name = self.name.clone();
        let done = self
            .call
            .start(core, self.interval, true)
            .map_err(|_| ServiceError::State {
                name: name.clone(),
                running: true,
            })?;
        drop(done.add_errback(move |e| {
            tracing::error!(service = %name, error = %e, "timer stopped");
            Ok::<(), ServiceError>(())
        }));
        Ok(())
    }

    fn stop(&mut self, core: &mut Core) -> Deferred<(), ServiceError> {
        if !self.call.is_running() {
            return fired(Err(ServiceError::State {
                name: self.name.clone(),
                running: false,
            }));
        }
        self.call.stop(core);
        fired(Ok(()))
    }

    fn is_running(&self) -> bool {
        self.call.is_running()
    }
}
