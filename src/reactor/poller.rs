//! The turn's wait for readiness, and the events it brings.
//!
//! On Linux and Android the reactor waits with `epoll_wait` on `mio`'s own
//! epoll descriptor (every source is registered through `mio`'s `Registry`
//! as everywhere), into a buffer of its own: that is all `mio::Poll::poll`
//! does there, but `mio` takes the timeout as a `Duration` and converts it
//! to milliseconds in every call, while the turn knows its two common
//! timeouts (none and `FAR_DEADLINE`) as constants, and the call is not
//! inlined. Elsewhere this is `mio::Poll::poll`. Either way the events read
//! alike, with `mio`'s meaning of each flag. (The call itself is in
//! `sys`, the crate's one `unsafe` module.)

use std::io;
use std::time::Duration;

use mio::Poll;

/// Milliseconds for the poll's wait (`-1`: no limit): rounded up, so that
/// a wait shorter than a millisecond does not become a busy poll (as `mio`
/// does).
#[inline]
pub(crate) fn millis(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(d) if d.is_zero() => 0,
        Some(d) => {
            let ms = d
                .as_millis()
                .saturating_add(u128::from(d.subsec_nanos() % 1_000_000 != 0));
            i32::try_from(ms).unwrap_or(i32::MAX)
        }
    }
}

/// Events one wait takes at most.
pub(crate) const EVENTS: usize = 1024;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::os::fd::AsRawFd;

    use super::*;

    /// The events of one wait, in a buffer of a length the compiler knows
    /// (the wait's count and the bounds check of the events taken from it
    /// are constants, not loads).
    pub(crate) struct Events {
        buf: Box<[libc::epoll_event; EVENTS]>,
        len: usize,
    }

    impl Events {
        pub(crate) fn new() -> Events {
            let buf = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS].into_boxed_slice();
            match buf.try_into() {
                Ok(buf) => Events { buf, len: 0 },
                Err(_) => unreachable!("the vector is EVENTS long"),
            }
        }

        /// The events of the last wait.
        #[inline]
        pub(crate) fn iter(&self) -> impl Iterator<Item = Event> + '_ {
            self.buf[..self.len].iter().map(|e| Event {
                flags: e.events,
                token: e.u64 as usize,
            })
        }
    }

    /// Waits for readiness at most `ms` milliseconds (`-1`: until some
    /// comes; see [`millis`]).
    #[inline]
    pub(crate) fn wait(poll: &mut Poll, events: &mut Events, ms: i32) -> io::Result<()> {
        // (The descriptor is the poll's, open while `poll` lives.)
        match crate::reactor::sys::epoll_wait(poll.as_raw_fd(), &mut events.buf[..], ms) {
            Ok(n) => {
                events.len = n;
                Ok(())
            }
            Err(e) => {
                events.len = 0;
                Err(e)
            }
        }
    }

    /// One readiness event: the epoll flags and the source's token.
    #[derive(Clone, Copy)]
    pub(crate) struct Event {
        flags: u32,
        token: usize,
    }

    const IN: u32 = libc::EPOLLIN as u32;
    const PRI: u32 = libc::EPOLLPRI as u32;
    const OUT: u32 = libc::EPOLLOUT as u32;
    const ERR: u32 = libc::EPOLLERR as u32;
    const HUP: u32 = libc::EPOLLHUP as u32;
    const RDHUP: u32 = libc::EPOLLRDHUP as u32;

    impl Event {
        /// A readable edge of `token`, for reads the reactor resumes itself.
        #[inline]
        pub(crate) fn readable(token: usize) -> Event {
            Event { flags: IN, token }
        }
        #[inline]
        pub(crate) fn token(&self) -> usize {
            self.token
        }
        #[cfg(test)]
        pub(crate) fn is_readable(&self) -> bool {
            self.flags & (IN | PRI) != 0
        }
        /// Whether a read is due: readable, read-closed, or an error. (Read
        /// closed without `IN` is `HUP`: one test for all three.)
        #[inline]
        pub(crate) fn wants_read(&self) -> bool {
            self.flags & (IN | PRI | ERR | HUP) != 0
        }
        #[inline]
        pub(crate) fn is_writable(&self) -> bool {
            self.flags & OUT != 0
        }
        #[cfg(test)]
        pub(crate) fn is_error(&self) -> bool {
            self.flags & ERR != 0
        }
        /// Both halves closed, or the peer's FIN (or `shutdown(SHUT_RD)`).
        /// (Most events have neither flag: one test tells.)
        #[inline]
        pub(crate) fn is_read_closed(&self) -> bool {
            // The usual event's answer is one test and a branch (the rest
            // is out of line, so it is not computed for every event).
            self.flags & (HUP | RDHUP) != 0 && hup_means_read_closed(self.flags)
        }
    }

    /// With `HUP` or `RDHUP` set: both halves closed, or the peer's FIN
    /// (`RDHUP` with `IN`).
    #[cold]
    #[inline(never)]
    fn hup_means_read_closed(flags: u32) -> bool {
        flags & HUP != 0 || flags & IN != 0
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_flag_combination_reads_as_mio_reads_it() {
            let all = [IN, PRI, OUT, ERR, HUP, RDHUP];
            for bits in 0..1u32 << all.len() {
                let flags = (0..all.len())
                    .filter(|i| bits & (1 << i) != 0)
                    .fold(0, |f, i| f | all[i]);
                let ev = Event { flags, token: 7 };
                let has = |f: u32| flags & f != 0;
                assert_eq!(ev.token(), 7);
                assert_eq!(
                    ev.wants_read(),
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    "{flags:#x}"
                );
                assert_eq!(ev.is_readable(), has(IN) || has(PRI), "{flags:#x}");
                assert_eq!(ev.is_writable(), has(OUT), "{flags:#x}");
                assert_eq!(ev.is_error(), has(ERR), "{flags:#x}");
                // mio's order: HUP, or IN and RDHUP.
                assert_eq!(
                    ev.is_read_closed(),
                    has(HUP) || (has(IN) && has(RDHUP)),
                    "{flags:#x}"
                );
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use super::*;

    /// The events of one wait.
    pub(crate) struct Events(mio::Events);

    impl Events {
        pub(crate) fn new() -> Events {
            Events(mio::Events::with_capacity(EVENTS))
        }

        /// The events of the last wait.
        #[inline]
        pub(crate) fn iter(&self) -> impl Iterator<Item = Event> + '_ {
            self.0.iter().map(|e| Event {
                token: e.token().0,
                readable: e.is_readable(),
                writable: e.is_writable(),
                error: e.is_error(),
                read_closed: e.is_read_closed(),
            })
        }
    }

    /// Waits for readiness at most `ms` milliseconds (`-1`: until some
    /// comes; see [`millis`]).
    #[inline]
    pub(crate) fn wait(poll: &mut Poll, events: &mut Events, ms: i32) -> io::Result<()> {
        let timeout = u64::try_from(ms).ok().map(Duration::from_millis);
        poll.poll(&mut events.0, timeout)
    }

    /// One readiness event, as `mio` reads it.
    #[derive(Clone, Copy)]
    pub(crate) struct Event {
        token: usize,
        readable: bool,
        writable: bool,
        error: bool,
        read_closed: bool,
    }

    impl Event {
        /// A readable edge of `token`, for reads the reactor resumes itself.
        #[inline]
        pub(crate) fn readable(token: usize) -> Event {
            Event {
                token,
                readable: true,
                writable: false,
                error: false,
                read_closed: false,
            }
        }
        #[inline]
        pub(crate) fn token(&self) -> usize {
            self.token
        }
        #[cfg(test)]
        pub(crate) fn is_readable(&self) -> bool {
            self.readable
        }
        /// Whether a read is due: readable, read-closed, or an error.
        #[inline]
        pub(crate) fn wants_read(&self) -> bool {
            self.readable || self.read_closed || self.error
        }
        #[inline]
        pub(crate) fn is_writable(&self) -> bool {
            self.writable
        }
        #[cfg(test)]
        pub(crate) fn is_error(&self) -> bool {
            self.error
        }
        #[inline]
        pub(crate) fn is_read_closed(&self) -> bool {
            self.read_closed
        }
    }
}

pub(crate) use imp::{wait, Event, Events};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_the_millisecond() {
        assert_eq!(millis(None), -1);
        assert_eq!(millis(Some(Duration::ZERO)), 0);
        assert_eq!(millis(Some(Duration::from_nanos(1))), 1);
        assert_eq!(millis(Some(Duration::from_millis(1))), 1);
        assert_eq!(millis(Some(Duration::from_micros(1_001))), 2);
        assert_eq!(millis(Some(Duration::from_secs(1))), 1_000);
        assert_eq!(millis(Some(Duration::MAX)), i32::MAX);
    }
}
