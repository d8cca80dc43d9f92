//! `Deferred` as a `Future`, and a small single-threaded executor that runs
//! local (`!Send`) futures and reports their outcome through a Deferred.
//!
//! The executor is pure: it never sleeps and knows no reactor. Whoever owns it
//! calls [`LocalExecutor::run_ready`] when told that tasks were woken (the
//! `notify` hook, which may be called from any thread). The reactor does this
//! in every turn, see [`Core::spawn_local`](crate::Core::spawn_local).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use slab::Slab;

use super::Deferred;

impl<T: 'static, E: 'static> Future for Deferred<T, E> {
    type Output = Result<T, E>;

    /// Ready with the chain's final result once it has fired and every callback
    /// has run. Awaiting takes the result, so an error handed to the awaiting
    /// code is not logged as unhandled.
    ///
    /// Polled again after `Ready`, it stays `Pending`.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.take_typed() {
            return Poll::Ready(r);
        }
        self.chain.set_waker(cx.waker());
        Poll::Pending
    }
}

type Notify = Arc<dyn Fn() + Send + Sync>;
type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

/// Ids of woken tasks, shared with wakers (which may live on other threads).
struct WakeQueue {
    ready: Mutex<Vec<usize>>,
    /// Mirrors `!ready.is_empty()` (changed only under the lock), so the reactor
    /// can ask "anything woken?" every turn without taking the lock.
    nonempty: AtomicBool,
    notify: Notify,
}

struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    queue: Arc<WakeQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            let mut ready = self.queue.ready.lock().unwrap_or_else(|e| e.into_inner());
            ready.push(self.id);
            self.queue.nonempty.store(true, Ordering::Release);
            drop(ready);
            (self.queue.notify)();
        }
    }
}

struct Slot {
    /// `None` while the task is being polled.
    future: Option<LocalTask>,
    waker: Arc<TaskWaker>,
    cancelled: Rc<std::cell::Cell<bool>>,
}

/// Runs local (`!Send`) futures on the thread that owns it, reporting each
/// one's output through a [`Deferred`].
///
/// It never sleeps and knows no reactor: its owner calls
/// [`run_ready`](Self::run_ready) when told (through the `notify` hook, from any
/// thread) that tasks were woken. The reactor does this every turn, see
/// [`Core::spawn_local`](crate::Core::spawn_local).
///
/// ```
/// use torsion::defer::{Deferred, Failure, LocalExecutor};
///
/// let exec = LocalExecutor::new();
/// let (d, trigger) = Deferred::<u32, Failure>::new();
/// let mut out = exec.spawn(async move { Ok::<_, Failure>(d.await? + 1) });
/// exec.run_ready();
/// assert!(!out.has_result()); // waiting for `d`
/// trigger.callback(41).unwrap();
/// exec.run_ready();
/// assert_eq!(out.take_result().unwrap().unwrap(), 42);
/// ```
#[derive(Clone)]
pub struct LocalExecutor {
    inner: Rc<Inner>,
    /// Beside `inner`, not in it: [`has_ready`](Self::has_ready), asked
    /// every reactor turn, reaches the flag through one pointer.
    queue: Arc<WakeQueue>,
}

struct Inner {
    tasks: RefCell<Slab<Slot>>,
}

impl fmt::Debug for LocalExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalExecutor")
            .field("tasks", &self.inner.tasks.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Default for LocalExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalExecutor {
    /// An executor whose owner polls it without being told (tests, loops that
    /// call [`run_ready`](Self::run_ready) regularly).
    pub fn new() -> Self {
        Self::with_notify(Arc::new(|| {}))
    }

    /// An executor that calls `notify` (from whatever thread woke a task)
    /// whenever a task becomes ready, so its owner can schedule a
    /// [`run_ready`](Self::run_ready).
    pub fn with_notify(notify: Arc<dyn Fn() + Send + Sync>) -> Self {
        let queue = Arc::new(WakeQueue {
            ready: Mutex::new(Vec::new()),
            nonempty: AtomicBool::new(false),
            notify,
        });
        LocalExecutor {
            inner: Rc::new(Inner {
                tasks: RefCell::new(Slab::new()),
            }),
            queue,
        }
    }

    /// Spawns `fut` and returns a Deferred of its output. The future is first
    /// polled by the next [`run_ready`](Self::run_ready). Cancelling the
    /// Deferred drops the future at its next poll (the `async` code stops at the
    /// `.await` it was waiting on) and fails the Deferred with [`Cancelled`](super::Cancelled).
    #[track_caller]
    pub fn spawn<T, E, F>(&self, fut: F) -> Deferred<T, E>
    where
        T: 'static,
        E: fmt::Debug + 'static,
        F: Future<Output = Result<T, E>> + 'static,
    {
        let cancelled = Rc::new(std::cell::Cell::new(false));
        let flag = cancelled.clone();
        let mut tasks = self.inner.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let id = entry.key();
        let waker = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(false),
            queue: self.queue.clone(),
        });
        let wake = waker.clone();
        let (d, trigger) = Deferred::<T, E>::with_canceller(move |_| {
            flag.set(true);
            wake.wake_by_ref();
        });
        let task = async move {
            let r = fut.await;
            let _ = trigger.fire(r);
        };
        entry.insert(Slot {
            future: Some(Box::pin(task)),
            waker: waker.clone(),
            cancelled,
        });
        drop(tasks);
        waker.wake_by_ref();
        d
    }

    /// Whether some task is waiting to be polled.
    #[inline]
    pub fn has_ready(&self) -> bool {
        self.queue.nonempty.load(Ordering::Acquire)
    }

    /// Number of tasks not finished yet.
    pub fn len(&self) -> usize {
        self.inner.tasks.borrow().len()
    }

    /// Whether every task has finished.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Polls every task woken so far once (tasks woken meanwhile wait for the
    /// next call, so one busy task cannot starve the caller). Returns how many
    /// were polled.
    ///
    /// # Panics
    /// A task that panics is dropped and its panic resumed here, after the
    /// executor was left consistent; tasks not yet polled stay queued.
    pub fn run_ready(&self) -> usize {
        if !self.has_ready() {
            return 0;
        }
        let ready = {
            let mut r = self.queue.ready.lock().unwrap_or_else(|e| e.into_inner());
            self.queue.nonempty.store(false, Ordering::Release);
            std::mem::take(&mut *r)
        };
        let mut polled = 0;
        for (i, &id) in ready.iter().enumerate() {
            let taken = {
                let mut tasks = self.inner.tasks.borrow_mut();
                tasks.get_mut(id).and_then(|slot| {
                    slot.waker.queued.store(false, Ordering::Release);
                    if slot.cancelled.get() {
                        // Dropped below, outside the borrow.
                        return Some((None, slot.waker.clone()));
                    }
                    slot.future.take().map(|f| (Some(f), slot.waker.clone()))
                })
            };
            let Some((fut, waker)) = taken else { continue };
            let Some(mut fut) = fut else {
                let slot = self.inner.tasks.borrow_mut().try_remove(id);
                drop(slot);
                continue;
            };
            polled += 1;
            let w = Waker::from(waker);
            let mut cx = Context::from_waker(&w);
            let done = match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
                Ok(p) => p.is_ready(),
                Err(panic) => {
                    // The task is gone; let the owner log the panic.
                    let slot = self.inner.tasks.borrow_mut().try_remove(id);
                    drop(slot);
                    drop(fut);
                    let rest = &ready[i + 1..];
                    let mut r = self.queue.ready.lock().unwrap_or_else(|e| e.into_inner());
                    r.extend_from_slice(rest);
                    if !r.is_empty() {
                        self.queue.nonempty.store(true, Ordering::Release);
                    }
                    drop(r);
                    resume_unwind(panic);
                }
            };
            let mut tasks = self.inner.tasks.borrow_mut();
            if done || tasks.get(id).is_some_and(|s| s.cancelled.get()) {
                let slot = tasks.try_remove(id);
                drop(tasks);
                drop(slot);
                drop(fut);
            } else if let Some(slot) = tasks.get_mut(id) {
                slot.future = Some(fut);
            }
        }
        polled
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Drop futures one at a time outside the borrow: a future's destructor
        // may drop Deferreds whose chains run user code.
        let slots: Vec<Slot> = self.tasks.get_mut().drain().collect();
        drop(slots);
    }
}
