//! [`sleep`] and [`timeout`] on the reactor's timer queue.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::context::DelayedCall;
use crate::defer::TimedOut;
use crate::local::LocalHandle;

#[derive(Default)]
struct Timer {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    call: Cell<Option<DelayedCall>>,
    dropped: Cell<bool>,
}

/// The future of [`sleep`].
pub struct Sleep {
    local: LocalHandle,
    delay: Duration,
    timer: Option<Rc<Timer>>,
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("delay", &self.delay)
            .field("started", &self.timer.is_some())
            .field("fired", &self.timer.as_ref().is_some_and(|t| t.fired.get()))
            .finish()
    }
}

/// Waits for `delay` on the reactor's timer queue (a `call_later`): under the
/// fake clock of [`testing`](crate::testing) it ends when the test advances
/// the clock, not in real time. The delay counts from the end of the turn in
/// which the future is first polled; a delay past the clock's range never
/// ends. Dropping the future cancels the timer.
///
/// ```
/// use std::time::Duration;
/// use torsion::aio;
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// let local = reactor.local();
/// let task = reactor.spawn_local(async move {
///     aio::sleep(&local, Duration::from_millis(5)).await;
///     Ok::<_, aio::StreamError>("rested")
/// });
/// assert_eq!(reactor.run_until_complete(task)?.unwrap(), "rested");
/// # Ok::<(), torsion::Error>(())
/// ```
pub fn sleep(local: &LocalHandle, delay: Duration) -> Sleep {
    Sleep {
        local: local.clone(),
        delay,
        timer: None,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(t) = &self.timer {
            if t.fired.get() {
                return Poll::Ready(());
            }
            *t.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let t = Rc::new(Timer::default());
        *t.waker.borrow_mut() = Some(cx.waker().clone());
        let (tt, delay) = (t.clone(), self.delay);
        self.local.call(move |core| {
            if tt.dropped.get() || core.now().checked_add(delay).is_none() {
                return; // cancelled already, or never due
            }
            let fire = tt.clone();
            let call = core.call_later(delay, move |_| {
                fire.fired.set(true);
                fire.call.set(None);
                if let Some(w) = fire.waker.borrow_mut().take() {
                    w.wake();
                }
            });
            tt.call.set(Some(call));
        });
        self.timer = Some(t);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(t) = &self.timer {
            t.dropped.set(true);
            if let Some(call) = t.call.take() {
                self.local.call(move |core| {
                    let _ = call.cancel(core);
                });
            }
        }
    }
}

/// The future of [`timeout`].
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("sleep", &self.sleep)
            .finish_non_exhaustive()
    }
}

/// Runs `future` for at most `limit` on the reactor's timer queue (see
/// [`sleep`]): its output, or [`TimedOut`] (dropping the future, which
/// cancels what it was doing: a connect stops, a read leaves its bytes in
/// the buffer). `TimedOut` converts to [`StreamError::TimedOut`](super::StreamError::TimedOut)
/// with `?`.
///
/// ```
/// use std::time::Duration;
/// use torsion::aio;
/// use torsion::defer::TimedOut;
/// use torsion::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// let local = reactor.local();
/// let task = reactor.spawn_local(async move {
///     let slow = aio::sleep(&local, Duration::from_secs(3600));
///     Ok::<_, aio::StreamError>(aio::timeout(&local, Duration::from_millis(5), slow).await)
/// });
/// assert_eq!(reactor.run_until_complete(task)?.unwrap(), Err(TimedOut));
/// # Ok::<(), torsion::Error>(())
/// ```
pub fn timeout<F: Future>(local: &LocalHandle, limit: Duration, future: F) -> Timeout<F> {
    Timeout {
        future: Box::pin(future),
        sleep: sleep(local, limit),
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TimedOut)),
            Poll::Pending => Poll::Pending,
        }
    }
}
