//! [`Listener`]: accepted connections for `async` code.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use super::conn::{Connection, StreamOptions, StreamProtocol};
use super::StreamError;
use crate::address::Address;
use crate::endpoints::Port;
use crate::local::LocalHandle;
use crate::protocol::Factory;

/// Connections accepted and not yet taken with [`Listener::accept`] past
/// which new ones are refused (closed at once).
pub const DEFAULT_BACKLOG: usize = 128;

pub(super) struct Queue {
    ready: VecDeque<Connection>,
    /// Built, `connection_made` not yet run.
    coming: usize,
    backlog: usize,
    waker: Option<Waker>,
}

/// Queues an accepted connection; false if the listener is gone.
pub(super) fn push(q: &Weak<RefCell<Queue>>, conn: Connection) -> bool {
    let Some(q) = q.upgrade() else {
        return false;
    };
    let mut q = q.borrow_mut();
    q.coming = q.coming.saturating_sub(1);
    q.ready.push_back(conn);
    if let Some(w) = q.waker.take() {
        w.wake();
    }
    true
}

/// A connection built for the queue ended before `connection_made`.
pub(super) fn forget(q: &Weak<RefCell<Queue>>) {
    if let Some(q) = q.upgrade() {
        let mut q = q.borrow_mut();
        q.coming = q.coming.saturating_sub(1);
    }
}

/// The [`Factory`] behind a [`Listener`]: builds a [`StreamProtocol`] per
/// connection and hands the connection to [`Listener::accept`]. Give it to
/// any listen call (`Core::listen_tcp`, `Core::listen_tls`, an endpoint's
/// `listen`) or to [`Pump::connect_factory`](crate::testing::Pump::connect_factory);
/// see [`accept_queue`](super::accept_queue).
pub struct AcceptFactory {
    queue: Weak<RefCell<Queue>>,
    options: StreamOptions,
}

impl fmt::Debug for AcceptFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptFactory")
            .field("listening", &(self.queue.strong_count() > 0))
            .field("options", &self.options)
            .finish()
    }
}

impl Factory for AcceptFactory {
    type Protocol = StreamProtocol;

    fn build_protocol(&mut self, peer: &Address) -> Option<StreamProtocol> {
        let q = self.queue.upgrade()?;
        let mut qs = q.borrow_mut();
        if qs.ready.len() + qs.coming >= qs.backlog {
            tracing::debug!(%peer, "async listener's backlog is full: refusing");
            return None;
        }
        qs.coming += 1;
        drop(qs);
        Some(StreamProtocol::new(self.options, Some(Rc::downgrade(&q))))
    }
}

/// Accepts connections for `async` code: [`accept`](Self::accept) waits for
/// the next one. Connections that arrive while nobody accepts wait in a
/// queue of at most [`DEFAULT_BACKLOG`] (each with its own bounded input
/// buffer); past it they are refused. Dropping the listener stops listening
/// and closes the connections not yet accepted.
pub struct Listener {
    queue: Rc<RefCell<Queue>>,
    port: Option<Port>,
    local: Option<LocalHandle>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("port", &self.port)
            .field("waiting", &self.queue.borrow().ready.len())
            .finish()
    }
}

impl Listener {
    pub(super) fn new(options: StreamOptions) -> (AcceptFactory, Listener) {
        let queue = Rc::new(RefCell::new(Queue {
            ready: VecDeque::new(),
            coming: 0,
            backlog: DEFAULT_BACKLOG,
            waker: None,
        }));
        let factory = AcceptFactory {
            queue: Rc::downgrade(&queue),
            options,
        };
        (
            factory,
            Listener {
                queue,
                port: None,
                local: None,
            },
        )
    }

    pub(super) fn set_port(&mut self, port: Port, local: LocalHandle) {
        self.port = Some(port);
        self.local = Some(local);
    }

    /// Sets how many connections may wait to be accepted.
    pub fn set_backlog(&mut self, backlog: usize) {
        self.queue.borrow_mut().backlog = backlog.max(1);
    }

    /// Waits for the next connection.
    ///
    /// # Errors
    /// None yet: a listener keeps accepting until dropped. The `Result` leaves
    /// room for listeners that can fail.
    pub async fn accept(&mut self) -> Result<Connection, StreamError> {
        poll_fn(|cx| {
            let mut q = self.queue.borrow_mut();
            match q.ready.pop_front() {
                Some(c) => Poll::Ready(Ok(c)),
                None => {
                    q.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Connections accepted and waiting for [`accept`](Self::accept).
    pub fn waiting(&self) -> usize {
        self.queue.borrow().ready.len()
    }

    /// Where it listens (`None` for a listener made with
    /// [`accept_queue`](super::accept_queue), which does not know).
    pub fn address(&self) -> Option<Address> {
        self.port.as_ref().map(Port::address)
    }

    /// The IP address and port it listens on, for a TCP (or TLS) listener.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.port.as_ref().and_then(Port::local_addr)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let (Some(port), Some(local)) = (self.port.take(), &self.local) {
            local.call(move |core| port.stop_listening(core));
        }
        // Connections not taken are dropped with the queue: closed.
        let waiting = self
            .queue
            .try_borrow_mut()
            .map(|mut q| std::mem::take(&mut q.ready));
        drop(waiting);
    }
}
