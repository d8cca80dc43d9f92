//! Blocking work off the reactor thread: a small, bounded thread pool per
//! reactor, [`Core::defer_to_thread`] and [`Core::resolve`] (Twisted's
//! `deferToThread` and its threaded resolver).
//!
//! The pool starts no thread until the first job, grows up to its size (default
//! [`DEFAULT_POOL_SIZE`], see [`Core::set_thread_pool_size`]) and queues jobs
//! beyond that. Results come back through
//! [`ReactorHandle::call_from_thread`](crate::ReactorHandle::call_from_thread),
//! so the Deferred always fires on the reactor thread. Dropping the reactor
//! lets idle workers exit; a worker busy with a job exits when the job ends.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};

use crate::context::Core;
use crate::defer::{Deferred, Panicked};

/// Worker threads a reactor's pool grows to unless told otherwise.
pub const DEFAULT_POOL_SIZE: usize = 4;

type Job = Box<dyn FnOnce() + Send>;

struct PoolState {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
    shutdown: bool,
}

/// The bounded pool itself (reactor-internal).
pub(crate) struct ThreadPool {
    shared: Arc<(Mutex<PoolState>, Condvar)>,
    max: usize,
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl ThreadPool {
    pub(crate) fn new(max: usize) -> Self {
        ThreadPool {
            shared: Arc::new((
                Mutex::new(PoolState {
                    jobs: VecDeque::new(),
                    idle: 0,
                    threads: 0,
                    shutdown: false,
                }),
                Condvar::new(),
            )),
            max: max.max(1),
        }
    }

    pub(crate) fn submit(&self, job: Job) {
        let (lock, cvar) = &*self.shared;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        st.jobs.push_back(job);
        if st.idle > 0 {
            cvar.notify_one();
            return;
        }
        if st.threads < self.max {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("torsion-worker".into())
                .spawn(move || worker(shared));
            match spawned {
                Ok(_) => st.threads += 1,
                Err(e) if st.threads == 0 => {
                    tracing::error!(error = %e, "could not start a worker thread; running the job inline");
                    let job = st.jobs.pop_back().expect("just pushed");
                    drop(st);
                    job();
                }
                Err(e) => tracing::warn!(error = %e, "could not start another worker thread"),
            }
        }
    }

    /// Jobs queued, workers busy and started (for snapshots).
    pub(crate) fn info(&self) -> crate::introspect::PoolInfo {
        let st = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        crate::introspect::PoolInfo {
            queued: st.jobs.len(),
            busy: st.threads.saturating_sub(st.idle),
            workers: st.threads,
            max_workers: self.max,
        }
    }

    pub(crate) fn shutdown(&self) {
        let (lock, cvar) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).shutdown = true;
        cvar.notify_all();
    }
}

fn worker(shared: Arc<(Mutex<PoolState>, Condvar)>) {
    let (lock, cvar) = &*shared;
    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            // Jobs catch their own panics; this is a second line of defence.
            let _ = catch_unwind(AssertUnwindSafe(job));
            st = lock.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        if st.shutdown {
            st.threads -= 1;
            return;
        }
        st.idle += 1;
        st = cvar.wait(st).unwrap_or_else(|e| e.into_inner());
        st.idle -= 1;
    }
}

impl Core {
    /// The thread pool's queue and workers (all zero before it starts).
    pub(crate) fn pool_info(&self) -> crate::introspect::PoolInfo {
        match &*self.local.pool.borrow() {
            Some(pool) => pool.info(),
            None => crate::introspect::PoolInfo {
                max_workers: self.local.pool_size.get(),
                ..Default::default()
            },
        }
    }

    /// Sets how many worker threads this reactor's pool may run (at least
    /// one). Takes effect for a pool not started yet; a started pool keeps its
    /// size.
    pub fn set_thread_pool_size(&mut self, threads: usize) {
        self.local.pool_size.set(threads.max(1));
    }

    /// Runs `f` on the reactor's thread pool and returns a Deferred of its
    /// result, fired on the reactor thread (Twisted's `deferToThread`). A panic
    /// in `f` fails the Deferred with [`Panicked`]. Cancelling the Deferred
    /// fails it at once; the job still runs and its result is dropped.
    ///
    /// ```
    /// use torsion::defer::Failure;
    /// use torsion::Reactor;
    ///
    /// let mut reactor = Reactor::new().unwrap();
    /// let d = reactor.defer_to_thread(|| Ok::<_, Failure>((1..=10u64).product::<u64>()));
    /// assert_eq!(reactor.run_until_complete(d).unwrap().unwrap(), 3_628_800);
    /// ```
    #[track_caller]
    pub fn defer_to_thread<T, E>(
        &mut self,
        f: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Deferred<T, E>
    where
        T: Send + 'static,
        E: From<Panicked> + fmt::Debug + Send + 'static,
    {
        let (d, trigger) = Deferred::<T, E>::new();
        let id = self.local.thread_jobs.borrow_mut().insert(Box::new(
            move |any: Box<dyn std::any::Any + Send>| {
                if let Ok(r) = any.downcast::<Result<T, E>>() {
                    let _ = trigger.fire(*r);
                }
            },
        ));
        let handle = self.reactor_handle();
        let job: Job = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f))
                .unwrap_or_else(|p| Err(E::from(Panicked::from_payload(&*p))));
            handle.call_from_thread(move |core| {
                let deliver = core.local.thread_jobs.borrow_mut().try_remove(id);
                if let Some(deliver) = deliver {
                    deliver(Box::new(r));
                }
            });
        });
        let mut pool = self.local.pool.borrow_mut();
        pool.get_or_insert_with(|| ThreadPool::new(self.local.pool_size.get()))
            .submit(job);
        d
    }

    /// Resolves a host name (or an address literal) to its IPv4 and IPv6
    /// addresses on the thread pool, with the system resolver.
    ///
    /// # Errors
    /// The Deferred fails with the resolver's error (for example an unknown
    /// host) or [`io::ErrorKind::NotFound`] if it found no address.
    ///
    /// ```
    /// use torsion::Reactor;
    ///
    /// let mut reactor = Reactor::new().unwrap();
    /// let d = reactor.resolve("127.0.0.1");
    /// let addrs = reactor.run_until_complete(d).unwrap().unwrap();
    /// assert_eq!(addrs, vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
    /// ```
    #[track_caller]
    pub fn resolve(&mut self, host: &str) -> Deferred<Vec<IpAddr>, io::Error> {
        let host = host.to_owned();
        self.defer_to_thread(move || {
            // An IPv6 literal may come bracketed, as in URLs.
            let name = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(&host);
            let mut out: Vec<IpAddr> = Vec::new();
            for a in (name, 0u16).to_socket_addrs()? {
                if !out.contains(&a.ip()) {
                    out.push(a.ip());
                }
            }
            if out.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no address for {name}"),
                ));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn pool_never_grows_past_its_size_and_runs_every_job() {
        let pool = ThreadPool::new(2);
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        for i in 0..10 {
            let (gate, tx) = (gate.clone(), tx.clone());
            pool.submit(Box::new(move || {
                let (lock, cvar) = &*gate;
                let mut open = lock.lock().unwrap();
                while !*open {
                    open = cvar.wait(open).unwrap();
                }
                tx.send(i).unwrap();
            }));
        }
        {
            let st = pool.shared.0.lock().unwrap();
            assert_eq!(st.threads, 2);
            assert!(st.jobs.len() >= 8);
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let mut got: Vec<i32> = (0..10).map(|_| rx.recv().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        pool.shutdown();
    }

    #[test]
    fn a_panicking_job_does_not_kill_its_worker() {
        let pool = ThreadPool::new(1);
        let (tx, rx) = mpsc::channel();
        pool.submit(Box::new(|| panic!("job bug")));
        pool.submit(Box::new(move || tx.send(1).unwrap()));
        assert_eq!(rx.recv().unwrap(), 1);
        assert_eq!(pool.shared.0.lock().unwrap().threads, 1);
        pool.shutdown();
    }
}
