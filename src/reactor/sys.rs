//! The few system calls that std does not offer safely on stable Rust, for
//! child processes and pipes, and the two on every connection's hot path.
//! This is the crate's only `unsafe` code:
//!
//! * `recv` and `send` on a connected socket's descriptor: the same calls
//!   std makes under mio's and std's `Read`/`Write` wrappers, without their
//!   layers (about 35 instructions a call fewer, counted by callgrind), and
//!   on x86-64 Linux made in place (`syscall`), without libc's wrapper
//!   either (about ten more);
//! * `pidfd_open` and `pidfd_send_signal` (std's `PidFd` is unstable,
//!   `linux_pidfd`, rust-lang/rust#82971), and `kill` for the fallback;
//! * `writev` with `SIGPIPE` blocked on this thread: a pipe has no
//!   `MSG_NOSIGNAL`, and a write to a pipe whose reader is gone must be an
//!   `EPIPE` error for that pipe, never a signal for the process;
//! * `poll` of a pipe's write end, to tell that its reader closed;
//! * `epoll_wait` on `mio`'s epoll descriptor, for the turn's wait (Linux
//!   and Android; see `poller`; in place on x86-64, as `recv`);
//! * `fcntl` for the `O_NONBLOCK` flag of the process's own stdin and stdout
//!   (read, set, and restored afterwards);
//! * a `pre_exec` hook that puts extra pipes at child descriptors 3 and up
//!   (`dup2`; std's `Command` places only 0, 1 and 2);
//! * signal handlers (`signal-hook-registry`'s `register`), whose one action
//!   is a non-blocking `send` of one byte to a socket pair the reactor
//!   watches ([`send_on_signal`]).
//!
//! Each call passes only integers or pointers to locals that outlive it.
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// A descriptor that refers to the child `pid` (Linux >= 5.3), close-on-exec.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        let pid =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: pidfd_open(2) takes two integers and returns a new descriptor
        // or -1; no memory is shared with the kernel.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just created this descriptor for us; nothing else
        // owns or closes it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// Sends `signal` to the process behind `pidfd` (race-free: the descriptor
/// names that process even after its pid is reused).
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: integers only; the siginfo pointer is null, which the call
        // documents as "as if sent by kill(2)".
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (pidfd, signal);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// `kill(pid, signal)`. Only called for a child that is not reaped yet, so the
/// pid cannot have been reused.
pub(crate) fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: integers only.
    if unsafe { libc::kill(pid, signal) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `recv(fd, buf, 0)`: reads from a connected socket, as `Read::read` does,
/// returning the byte count, or the error number negated (the kernel's own
/// convention: no `errno` to store and read back; see [`neg_errno`]).
#[inline]
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> isize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let (ptr, len) = (buf.as_mut_ptr() as usize, buf.len());
        // SAFETY: recvfrom(2) with no address: `buf` is valid for writes of
        // `len` bytes for the call, which writes at most that many (on a
        // descriptor that is no socket, or closed, the call fails).
        unsafe { syscall6(libc::SYS_recvfrom, fd as usize, ptr, len, 0, 0, 0) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    // SAFETY: as above.
    neg_errno(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

/// `send(fd, buf, flags)`: writes to a connected socket, returning what the
/// call returns (as [`recv`]).
#[inline]
pub(crate) fn send(fd: RawFd, buf: &[u8], flags: libc::c_int) -> isize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let (ptr, len) = (buf.as_ptr() as usize, buf.len());
        // SAFETY: sendto(2) with no address: `buf` is valid for reads of
        // `len` bytes for the call.
        unsafe {
            syscall6(
                libc::SYS_sendto,
                fd as usize,
                ptr,
                len,
                flags as usize,
                0,
                0,
            )
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the call.
    neg_errno(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) })
}

/// `epoll_wait(epfd, buf, ms)`: waits at most `ms` milliseconds (`-1`: no
/// limit) for events on the epoll descriptor `epfd`, into `buf`; the number
/// of events written (at most `buf.len()`).
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
pub(crate) fn epoll_wait(
    epfd: RawFd,
    buf: &mut [libc::epoll_event],
    ms: libc::c_int,
) -> io::Result<usize> {
    let cap = libc::c_int::try_from(buf.len()).unwrap_or(libc::c_int::MAX);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `buf` holds at least `cap` events, which is all the kernel
    // writes; on a descriptor that is no epoll instance the call fails.
    let n = unsafe {
        syscall6(
            libc::SYS_epoll_wait,
            epfd as usize,
            buf.as_mut_ptr() as usize,
            cap as usize,
            ms as isize as usize,
            0,
            0,
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above.
    let n = neg_errno(unsafe { libc::epoll_wait(epfd, buf.as_mut_ptr(), cap, ms) } as isize);
    if n < 0 {
        return Err(io::Error::from_raw_os_error(-n as i32));
    }
    // (Non-negative and at most `cap`.)
    Ok(n as usize)
}

/// The system call `n` made in place, without libc's wrapper (which tests
/// for thread cancellation and stores `errno`: about ten instructions a
/// call, three calls a round trip on the hot path): the kernel's result,
/// `-errno` on failure. x86-64 Linux's calling convention: the number in
/// `rax`, arguments in `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9`; `rcx` and
/// `r11` are clobbered.
///
/// # Safety
/// The arguments must be what call `n` takes: any pointer among them valid
/// for what the call does through it.
#[cfg(all(
    target_arch = "x86_64",
    any(target_os = "linux", target_os = "android")
))]
#[inline(always)]
unsafe fn syscall6(
    n: libc::c_long,
    a: usize,
    b: usize,
    c: usize,
    d: usize,
    e: usize,
    f: usize,
) -> isize {
    let r: isize;
    // SAFETY: the caller's; the asm reads and writes memory through the
    // pointers it is given (no `nomem`/`readonly`), and uses no stack.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => r,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            in("r8") e,
            in("r9") f,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    r
}

/// A libc call's result in the kernel's convention: the result, or the
/// error number negated (libc's -1 with the number in `errno`, read here at
/// once), as [`syscall6`] returns it.
#[cfg_attr(all(target_arch = "x86_64", target_os = "linux"), allow(dead_code))]
#[inline]
fn neg_errno(r: isize) -> isize {
    if r < 0 {
        return -(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO) as isize);
    }
    r
}

/// `writev` to a pipe without `SIGPIPE`: the signal is blocked on this thread
/// for the call, and one raised by it is consumed, so a reader that went away
/// is an `EPIPE` error, whatever the process's disposition for the signal.
pub(crate) fn write_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // IOV_MAX on Linux; a longer list is written in more calls by the caller.
    let count = bufs.len().min(1024) as libc::c_int;
    // SAFETY: `set` and `old` are locals initialised by sigemptyset /
    // pthread_sigmask before use; `IoSlice` is documented to be ABI-compatible
    // with `iovec`, and the slices outlive the call.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let n = libc::writev(fd.as_raw_fd(), bufs.as_ptr().cast::<libc::iovec>(), count);
        let err = io::Error::last_os_error();
        // If SIGPIPE was not blocked before, nothing could have been pending:
        // a pending one is ours. Consume it before unblocking.
        if n < 0
            && err.raw_os_error() == Some(libc::EPIPE)
            && libc::sigismember(&old, libc::SIGPIPE) == 0
        {
            consume_sigpipe(&set);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if n < 0 {
            return Err(err);
        }
        Ok(n as usize)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe fn consume_sigpipe(set: &libc::sigset_t) {
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY (caller): `set` is an initialised signal set.
    unsafe {
        while libc::sigtimedwait(set, std::ptr::null_mut(), &zero) < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
unsafe fn consume_sigpipe(set: &libc::sigset_t) {
    // SAFETY (caller): `set` is an initialised signal set. Only pending
    // signals are waited for, so sigwait returns at once.
    unsafe {
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut pending);
        if libc::sigismember(&pending, libc::SIGPIPE) == 1 {
            let mut sig = 0;
            libc::sigwait(set, &mut sig);
        }
    }
}

/// Whether the reader of the pipe whose write end is `fd` has gone (`POLLERR`).
pub(crate) fn reader_gone(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one initialised pollfd, count 1, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLERR != 0
}

/// Whether `O_NONBLOCK` is set on `fd`'s open file description.
pub(crate) fn nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: integers only.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// Sets or clears `O_NONBLOCK` on `fd`'s open file description.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: integers only.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let new = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if new != flags && libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes the child see each `(fd, target)` at descriptor `target` (>= 3). The
/// descriptors stay open in the parent until `cmd` is dropped.
///
/// The caller makes sure no descriptor numbered `3..=max target` is free in
/// the parent when `cmd` spawns, so std's own exec-error pipe cannot sit at a
/// target number and be overwritten.
pub(crate) fn place_fds(cmd: &mut Command, fds: Vec<(OwnedFd, RawFd)>) {
    let max = fds.iter().map(|(_, t)| *t).max().unwrap_or(2);
    let pairs: Vec<(RawFd, RawFd)> = fds.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
    let mut moved: Vec<RawFd> = vec![-1; pairs.len()];
    let hook = move || -> io::Result<()> {
        let _keep = &fds;
        // First move every source above all targets (close-on-exec copies), so
        // that placing one cannot overwrite another's source.
        for (i, &(src, _)) in pairs.iter().enumerate() {
            // SAFETY: integers only; async-signal-safe.
            let fd = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, max + 1) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            moved[i] = fd;
        }
        for (i, &(_, target)) in pairs.iter().enumerate() {
            // SAFETY: integers only; async-signal-safe. dup2 clears
            // close-on-exec on `target`, so the child keeps it.
            if unsafe { libc::dup2(moved[i], target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec. It only calls
    // fcntl and dup2 (async-signal-safe) and writes into a vector allocated
    // before the fork, without allocating.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// A new pipe, both ends close-on-exec: `(read end, write end)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the two-element array.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let r = unsafe {
        let r = libc::pipe(fds.as_mut_ptr());
        if r == 0 {
            libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(fds[1], libc::F_SETFD, libc::FD_CLOEXEC);
        }
        r
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just created both descriptors; we are their only owner.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The process's stdout, descriptor 1.
pub(crate) fn stdout_fd() -> BorrowedFd<'static> {
    // SAFETY: descriptor 1 is the process's stdout for its whole life, as std's
    // own `Stdout` assumes (it writes to the number too). `standard_io` checks
    // that it is open before using it.
    unsafe { BorrowedFd::borrow_raw(1) }
}

/// The CPU's time-stamp counter, for timing callbacks at the cost of a few
/// instructions (`Instant::now` costs a call into the vDSO, several times
/// more): used only where it is invariant, ticking at a constant rate
/// through frequency changes and sleep states (`constant_tsc` and
/// `nonstop_tsc` in `/proc/cpuinfo`), and calibrated once per process
/// against `Instant` over a millisecond. `None` elsewhere: callers then
/// use `Instant`.
pub(crate) fn tsc_clock() -> Option<crate::core::timing::Clock> {
    static CLOCK: std::sync::OnceLock<Option<crate::core::timing::Clock>> =
        std::sync::OnceLock::new();
    *CLOCK.get_or_init(calibrate_tsc)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter into registers; it touches no memory and
    // exists on every x86_64 CPU.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_rdtsc()
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn calibrate_tsc() -> Option<crate::core::timing::Clock> {
    use std::io::BufRead;
    let f = std::fs::File::open("/proc/cpuinfo").ok()?;
    let flags = io::BufReader::new(f)
        .lines()
        .map_while(|l| l.ok())
        .find(|l| l.starts_with("flags"))?;
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    if !(has("constant_tsc") && has("nonstop_tsc")) {
        return None;
    }
    // Each end of the span is an `Instant` read between two counter reads,
    // the narrowest of a few tries: a thread preempted between the two
    // clocks' reads would otherwise skew the rate by the time it lost (a
    // 0.2% error was seen on a loaded machine). Over a millisecond, the
    // error left is the brackets' width, tens of nanoseconds.
    let pair = || {
        (0..8)
            .map(|_| {
                let a = rdtsc();
                let i = std::time::Instant::now();
                let b = rdtsc();
                (b.wrapping_sub(a), i, a / 2 + b / 2)
            })
            .min_by_key(|(width, _, _)| *width)
            .map(|(_, i, t)| (i, t))
    };
    let (start, t0) = pair()?;
    while start.elapsed() < std::time::Duration::from_millis(1) {
        std::hint::spin_loop();
    }
    let (end, t1) = pair()?;
    let elapsed = end.duration_since(start);
    let ticks = t1.checked_sub(t0).filter(|t| *t > 0)?;
    let mult = u64::try_from((elapsed.as_nanos() << 32) / u128::from(ticks)).ok()?;
    (mult > 0).then_some(crate::core::timing::Clock {
        ticks: rdtsc,
        mult,
        cheap: true,
    })
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn calibrate_tsc() -> Option<crate::core::timing::Clock> {
    None
}

/// Installs a handler for `signal` that sends `byte` on the socket `fd`
/// without blocking, through `signal-hook-registry` (chained after any
/// handler already installed, and after those installed through it before).
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for the signals that cannot or must not
/// be handled (SIGKILL, SIGSTOP, SIGILL, SIGFPE, SIGSEGV); the operating
/// system's error from `sigaction` (a number that is no signal, for one).
pub(crate) fn send_on_signal(
    signal: i32,
    fd: std::sync::Arc<OwnedFd>,
    byte: u8,
) -> io::Result<signal_hook_registry::SigId> {
    // `register` panics for these; an error is ours to return.
    if signal_hook_registry::FORBIDDEN.contains(&signal) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {signal} cannot be watched"),
        ));
    }
    // A reader that has gone is an error for send, not a SIGPIPE (as for
    // the connections' writes; on Apple platforms the socket pair has
    // SO_NOSIGPIPE instead, see `signals::install`).
    const FLAGS: libc::c_int = libc::MSG_DONTWAIT | NO_SIGPIPE;
    let action = move || {
        // SAFETY: one byte from a local, on a descriptor this closure keeps
        // open. A full socket (the reactor is behind) or a gone reader makes
        // send fail, and the signal is dropped: the reactor has bytes to read
        // already, or is no more.
        unsafe {
            libc::send(fd.as_raw_fd(), std::ptr::from_ref(&byte).cast(), 1, FLAGS);
        }
    };
    // SAFETY: `register` asks for an async-signal-safe action. Ours calls only
    // send(2), async-signal-safe by POSIX; reading the `Arc`'s pointer touches
    // no count, lock or allocator, and nothing in it can panic. The registry
    // saves and restores errno around the actions, and the closure (with its
    // share of the descriptor) is dropped by `unregister`, outside any handler.
    unsafe { signal_hook_registry::register(signal, action) }
}

/// The `send` flag that keeps a write to a gone peer from raising SIGPIPE
/// (`MSG_NOSIGNAL`), where the platform has one; Apple platforms have none and
/// set `SO_NOSIGPIPE` on the socket instead (mio does for connections).
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd"
))]
pub(crate) const NO_SIGPIPE: libc::c_int = libc::MSG_NOSIGNAL;
/// No `MSG_NOSIGNAL` here: the socket's `SO_NOSIGPIPE` does its work.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
pub(crate) const NO_SIGPIPE: libc::c_int = 0;
