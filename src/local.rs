//! The reactor side of Deferreds and futures: local tasks, calls queued without
//! a `&mut Core` at hand, and [`Reactor::run_until_complete`].
//!
//! Every turn of the reactor ends with [`Core::run_local`]: it runs the calls
//! queued through a [`LocalHandle`] and polls the futures that were woken. A
//! reactor with woken tasks does not sleep in its poll.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use slab::Slab;

use crate::context::{Core, Shared};
use crate::defer::{Deferred, LocalExecutor};

type LocalFn = Box<dyn FnOnce(&mut Core)>;
/// Delivers a worker thread's boxed result to its Deferred.
pub(crate) type Deliver = Box<dyn FnOnce(Box<dyn Any + Send>)>;

/// How many rounds of calls and polls one turn runs before leaving the rest to
/// the next turn (the poll then does not sleep), so a task that wakes itself
/// forever cannot starve I/O.
const ROUNDS_PER_TURN: usize = 64;

/// Reactor-thread state behind [`Core::local`].
pub(crate) struct LocalState {
    pub(crate) exec: LocalExecutor,
    calls: RefCell<VecDeque<LocalFn>>,
    /// `calls` is not empty (checked every turn, without borrowing it).
    has_calls: Cell<bool>,
    pub(crate) pool: RefCell<Option<crate::threads::ThreadPool>>,
    pub(crate) pool_size: Cell<usize>,
    pub(crate) thread_jobs: RefCell<Slab<Deliver>>,
}

impl LocalState {
    pub(crate) fn new(shared: &Arc<Shared>) -> Rc<LocalState> {
        let shared = shared.clone();
        let owner = std::thread::current().id();
        let notify = Arc::new(move || {
            // On the reactor thread the turn sees the woken task before it
            // polls; other threads must interrupt the poll.
            if std::thread::current().id() != owner {
                if let Some(w) = &shared.waker {
                    if let Err(e) = w.wake() {
                        tracing::error!(error = %e, "could not wake the reactor");
                    }
                }
            }
        });
        Rc::new(LocalState {
            exec: LocalExecutor::with_notify(notify),
            calls: RefCell::new(VecDeque::new()),
            has_calls: Cell::new(false),
            pool: RefCell::new(None),
            pool_size: Cell::new(crate::threads::DEFAULT_POOL_SIZE),
            thread_jobs: RefCell::new(Slab::new()),
        })
    }

    #[inline]
    pub(crate) fn has_work(&self) -> bool {
        self.has_calls.get() || self.exec.has_ready()
    }
}

impl fmt::Debug for LocalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalState")
            .field("exec", &self.exec)
            .field("calls", &self.calls.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Drop for LocalState {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.get_mut().take() {
            pool.shutdown();
        }
    }
}

/// A `Clone`, reactor-thread-only (`!Send`) handle for code that holds no
/// `&mut Core`: Deferred cancellers, futures, drop guards. Calls queued with
/// [`call`](Self::call) run at the end of the current reactor turn.
///
/// ```
/// use std::time::Duration;
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new().unwrap();
/// let local = reactor.local();
/// local.call(|core| core.stop().unwrap());
/// reactor.run().unwrap(); // returns: the queued call stopped it
/// ```
///
/// The handle does not keep the reactor's state alive: once the reactor is
/// dropped, calls queued through it are dropped too.
#[derive(Clone)]
pub struct LocalHandle {
    state: Weak<LocalState>,
}

impl fmt::Debug for LocalHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalHandle")
            .field("alive", &(self.state.strong_count() > 0))
            .finish()
    }
}

impl LocalHandle {
    /// Queues `f` to run with the `Core` at the end of the current turn (or the
    /// next turn if the reactor is between turns), in the order queued.
    pub fn call(&self, f: impl FnOnce(&mut Core) + 'static) {
        if let Some(state) = self.state.upgrade() {
            state.calls.borrow_mut().push_back(Box::new(f));
            state.has_calls.set(true);
        }
    }

    /// Spawns a local future; see [`Core::spawn_local`]. Returns `None` if the
    /// reactor is gone.
    #[track_caller]
    pub fn spawn_local<T, E, F>(&self, fut: F) -> Option<Deferred<T, E>>
    where
        T: 'static,
        E: fmt::Debug + 'static,
        F: Future<Output = std::result::Result<T, E>> + 'static,
    {
        self.state.upgrade().map(|s| s.exec.spawn(fut))
    }
}

impl Core {
    /// A handle for queuing work on this reactor from code without a `&mut
    /// Core` (see [`LocalHandle`]).
    pub fn local(&self) -> LocalHandle {
        LocalHandle {
            state: Rc::downgrade(&self.local),
        }
    }

    /// Runs a local (`!Send`) future on the reactor thread and returns a
    /// Deferred of its output (Twisted's `ensureDeferred`). The future is
    /// polled at the end of reactor turns, whenever it was woken; cancelling
    /// the Deferred drops the future.
    ///
    /// ```
    /// use torsion::defer::{Deferred, Failure};
    /// use torsion::Reactor;
    ///
    /// let mut reactor = Reactor::new().unwrap();
    /// let (d, trigger) = Deferred::<&str, Failure>::new();
    /// let task = reactor.spawn_local(async move { Ok::<_, Failure>(d.await?.len()) });
    /// reactor.call_later(std::time::Duration::ZERO, move |_| {
    ///     trigger.callback("four").unwrap();
    /// });
    /// assert_eq!(reactor.run_until_complete(task).unwrap().unwrap(), 4);
    /// ```
    #[track_caller]
    pub fn spawn_local<T, E, F>(&mut self, fut: F) -> Deferred<T, E>
    where
        T: 'static,
        E: fmt::Debug + 'static,
        F: Future<Output = std::result::Result<T, E>> + 'static,
    {
        self.local.exec.spawn(fut)
    }

    /// Runs the calls queued through [`LocalHandle::call`] and polls the woken
    /// local futures, until none is left (or a fairness budget is spent). The
    /// reactor calls this at the end of every turn; a test clock that drives a
    /// `Core` by hand calls it after advancing time.
    pub fn run_local(&mut self) {
        if !self.local.has_work() {
            return;
        }
        let local = self.local.clone();
        for _ in 0..ROUNDS_PER_TURN {
            let calls = std::mem::take(&mut *local.calls.borrow_mut());
            local.has_calls.set(false);
            let had_calls = !calls.is_empty();
            for f in calls {
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(self))) {
                    self.caught_panic(p, "local call");
                }
            }
            let polled = match catch_unwind(AssertUnwindSafe(|| local.exec.run_ready())) {
                Ok(n) => n,
                Err(p) => {
                    self.caught_panic(p, "local task");
                    1
                }
            };
            if !had_calls && polled == 0 {
                break;
            }
        }
    }

    /// Whether [`run_local`](Self::run_local) has something to do.
    pub(crate) fn has_local_work(&self) -> bool {
        self.local.has_work()
    }
}
