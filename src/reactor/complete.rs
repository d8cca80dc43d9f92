//! Running the reactor until a Deferred fires (Twisted's `task.react`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::Reactor;
use crate::defer::Deferred;
use crate::error::{Error, Result};

impl Reactor {
    /// Runs the reactor until `d` has its final result and returns it (Twisted's
    /// `task.react`, or `run_until_complete` in asyncio). If `d` has fired
    /// already the reactor does not run at all.
    ///
    /// # Errors
    /// [`Error::Stopped`] if the reactor was stopped before `d` fired (`d` is
    /// then dropped); otherwise as [`Reactor::run`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::defer::Failure;
    /// use torsion::task::defer_later;
    /// use torsion::Reactor;
    ///
    /// let mut reactor = Reactor::new().unwrap();
    /// let d = defer_later::<_, Failure, _>(&mut reactor, Duration::from_millis(1), |_| Ok("done"));
    /// assert_eq!(reactor.run_until_complete(d).unwrap().unwrap(), "done");
    /// ```
    pub fn run_until_complete<T: 'static, E: 'static>(
        &mut self,
        mut d: Deferred<T, E>,
    ) -> Result<std::result::Result<T, E>> {
        if let Some(r) = d.take_result() {
            return Ok(r);
        }
        let slot: Rc<RefCell<Option<std::result::Result<T, E>>>> = Rc::new(RefCell::new(None));
        let waiting = Rc::new(Cell::new(true));
        let (s, w) = (slot.clone(), waiting.clone());
        let local = self.local();
        let rest = d.add_both(move |r| {
            *s.borrow_mut() = Some(r);
            if w.get() {
                local.call(|core| {
                    let _ = core.stop();
                });
            }
            Ok::<(), E>(())
        });
        drop(rest);
        let ran = self.run();
        waiting.set(false);
        ran?;
        let r = slot.borrow_mut().take();
        r.ok_or(Error::Stopped)
    }
}
