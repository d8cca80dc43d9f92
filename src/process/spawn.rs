//! Starting a child: [`ProcessSpec`] and [`Core::spawn_process`].

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::state::{Dir, ProcessState, Reaping, Slot};
use super::{Process, ProcessProtocol};
use crate::context::{Core, Op};
use crate::reactor::{sys, PipeEndFd, PipeRequest};

/// The highest child descriptor number a pipe can be placed at.
pub const MAX_CHILD_FD: i32 = 255;

/// What one of the child's descriptors is (Twisted's `childFDs` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChildFd {
    /// A pipe the parent writes and the child reads (Twisted's `'w'`; the
    /// default for stdin).
    ToChild,
    /// A pipe the child writes and the parent reads (Twisted's `'r'`; the
    /// default for stdout and stderr).
    FromChild,
    /// The parent's own descriptor of that number (stdin, stdout, stderr
    /// only).
    Inherit,
    /// `/dev/null` (stdin, stdout, stderr only).
    Null,
}

/// What to run: program, arguments, environment, directory, descriptors.
///
/// The environment starts **empty**, as in Twisted: add variables with
/// [`env`](Self::env), or take the parent's with
/// [`inherit_env`](Self::inherit_env). (With no `PATH`, a program name
/// without a slash is looked for in the system's default path.) By default
/// stdin is a pipe to the child and stdout and stderr pipes from it.
///
/// ```
/// use torsion::process::{ChildFd, ProcessSpec};
///
/// let spec = ProcessSpec::new("sh")
///     .args(["-c", "echo $GREETING >&3"])
///     .env("GREETING", "hello")
///     .current_dir("/")
///     .stdin(ChildFd::Null)
///     .child_fd(3, ChildFd::FromChild);
/// # let _ = spec;
/// ```
#[derive(Clone)]
pub struct ProcessSpec {
    program: OsString,
    args: Vec<OsString>,
    env: BTreeMap<OsString, OsString>,
    dir: Option<PathBuf>,
    fds: BTreeMap<i32, ChildFd>,
}

impl fmt::Debug for ProcessSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("dir", &self.dir)
            .field("fds", &self.fds)
            .finish()
    }
}

impl ProcessSpec {
    /// Runs `program` (a path, or a name looked up in `PATH`) with no
    /// arguments (`argv[0]` is `program`) and an empty environment.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let fds = [
            (0, ChildFd::ToChild),
            (1, ChildFd::FromChild),
            (2, ChildFd::FromChild),
        ];
        ProcessSpec {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: BTreeMap::new(),
            dir: None,
            fds: fds.into_iter().collect(),
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets one environment variable of the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .insert(key.as_ref().to_owned(), value.as_ref().to_owned());
        self
    }

    /// Sets environment variables of the child.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env
                .insert(k.as_ref().to_owned(), v.as_ref().to_owned());
        }
        self
    }

    /// Gives the child a copy of this process's environment (variables set
    /// before or after this call with [`env`](Self::env) win over it if set
    /// after).
    pub fn inherit_env(self) -> Self {
        self.envs(std::env::vars_os())
    }

    /// The child's working directory (default: the parent's).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// What the child's stdin is.
    pub fn stdin(self, what: ChildFd) -> Self {
        self.child_fd(0, what)
    }

    /// What the child's stdout is.
    pub fn stdout(self, what: ChildFd) -> Self {
        self.child_fd(1, what)
    }

    /// What the child's stderr is.
    pub fn stderr(self, what: ChildFd) -> Self {
        self.child_fd(2, what)
    }

    /// What the child's descriptor `fd` is: descriptors 3 to
    /// [`MAX_CHILD_FD`] can be pipes ([`ChildFd::ToChild`] or
    /// [`ChildFd::FromChild`]); others are not passed to the child.
    pub fn child_fd(mut self, fd: i32, what: ChildFd) -> Self {
        self.fds.insert(fd, what);
        self
    }

    /// The program.
    pub fn program(&self) -> &OsStr {
        &self.program
    }
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// No program by that name or path.
    #[error("cannot run {}: no such program", .program.to_string_lossy())]
    NotFound {
        /// The program asked for.
        program: OsString,
    },
    /// The program exists but may not be executed (no execute permission, a
    /// directory, a mount without exec).
    #[error("cannot run {}: permission denied", .program.to_string_lossy())]
    PermissionDenied {
        /// The program asked for.
        program: OsString,
    },
    /// The working directory does not exist or is not a directory.
    #[error("cannot run {} in {}: no such directory", .program.to_string_lossy(), .dir.display())]
    NoSuchDirectory {
        /// The program asked for.
        program: OsString,
        /// The directory asked for.
        dir: PathBuf,
    },
    /// A child descriptor that cannot be set up that way (negative, over
    /// [`MAX_CHILD_FD`], or `Inherit`/`Null` above 2).
    #[error("child descriptor {fd} cannot be {what:?}")]
    InvalidFd {
        /// The descriptor.
        fd: i32,
        /// What was asked for it.
        what: ChildFd,
    },
    /// Another operating-system error (out of descriptors or processes, an
    /// exec format error...).
    #[error("cannot run {}: {source}", .program.to_string_lossy())]
    Io {
        /// The program asked for.
        program: OsString,
        /// The error.
        source: io::Error,
    },
}

impl Core {
    /// Starts a child process described by `spec`, run by `protocol`
    /// (Twisted's `reactor.spawnProcess`). The child starts now; its pipes are
    /// registered, and `connection_made` called, once the current callback
    /// returns (or at the next turn, before `run`).
    ///
    /// See the [`process`](crate::process) module for an example.
    ///
    /// # Errors
    /// A [`SpawnError`]: the program was not found or is not executable, the
    /// directory does not exist, a descriptor was set up wrongly, or the
    /// system refused (out of descriptors or processes). The protocol is not
    /// called then.
    pub fn spawn_process(
        &mut self,
        spec: ProcessSpec,
        protocol: impl ProcessProtocol,
    ) -> Result<Process, SpawnError> {
        let ProcessSpec {
            program,
            args,
            env,
            dir,
            fds,
        } = spec;
        let io_err = |source: io::Error| SpawnError::Io {
            program: program.clone(),
            source,
        };
        for (&fd, &what) in &fds {
            let pipe = matches!(what, ChildFd::ToChild | ChildFd::FromChild);
            if !(0..=MAX_CHILD_FD).contains(&fd) || (fd > 2 && !pipe) {
                return Err(SpawnError::InvalidFd { fd, what });
            }
        }
        if let Some(d) = &dir {
            if !d.is_dir() {
                return Err(SpawnError::NoSuchDirectory {
                    program,
                    dir: d.clone(),
                });
            }
        }
        let mut cmd = Command::new(&program);
        cmd.args(&args).env_clear().envs(&env);
        if let Some(d) = &dir {
            cmd.current_dir(d);
        }
        // Pipes: the parent's ends are kept, the child's handed to `cmd`
        // (dropped with it, right after the spawn, so that only the child
        // holds them and their EOF comes when it closes them).
        let mut pipes = Vec::new();
        let mut slots = BTreeMap::new();
        let mut extra = Vec::new();
        for i in 0..=2 {
            if !fds.contains_key(&i) {
                // Not mentioned: /dev/null rather than the parent's.
                let null = Stdio::null();
                match i {
                    0 => cmd.stdin(null),
                    1 => cmd.stdout(null),
                    _ => cmd.stderr(null),
                };
            }
        }
        for (&fd, &what) in &fds {
            let stdio = match what {
                ChildFd::Inherit => Stdio::inherit(),
                ChildFd::Null => Stdio::null(),
                ChildFd::ToChild | ChildFd::FromChild => {
                    let (r, w) = sys::pipe().map_err(io_err)?;
                    let (ours, theirs, dir) = if what == ChildFd::ToChild {
                        (PipeEndFd::Writer(w), r, Dir::ToChild)
                    } else {
                        (PipeEndFd::Reader(r), w, Dir::FromChild)
                    };
                    let our_fd = match &ours {
                        PipeEndFd::Reader(f) | PipeEndFd::Writer(f) => f,
                        PipeEndFd::Stdio(f, _) => f,
                    };
                    sys::set_nonblocking(std::os::fd::AsFd::as_fd(our_fd), true).map_err(io_err)?;
                    pipes.push((fd, ours));
                    slots.insert(fd, Slot { dir, handle: None });
                    if fd > 2 {
                        extra.push((theirs, fd));
                        continue;
                    }
                    Stdio::from(theirs)
                }
            };
            match fd {
                0 => cmd.stdin(stdio),
                1 => cmd.stdout(stdio),
                2 => cmd.stderr(stdio),
                _ => &mut cmd,
            };
        }
        // Descriptors 3 and up: no number up to the highest target may be
        // free when std creates its own pipes for the spawn, or one could sit
        // at a target and be overwritten in the child. Fill the holes with
        // /dev/null until after the spawn.
        let mut placeholders = Vec::new();
        if let Some(max) = extra.iter().map(|(_, t)| *t).max() {
            loop {
                let f = std::fs::File::open("/dev/null").map_err(io_err)?;
                if f.as_raw_fd() > max {
                    break;
                }
                placeholders.push(f);
            }
            sys::place_fds(&mut cmd, extra);
        }
        let spawned = cmd.spawn();
        drop(cmd);
        drop(placeholders);
        let child = spawned.map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => SpawnError::NotFound {
                program: program.clone(),
            },
            io::ErrorKind::PermissionDenied => SpawnError::PermissionDenied {
                program: program.clone(),
            },
            _ => SpawnError::Io {
                program: program.clone(),
                source,
            },
        })?;
        let pid = child.id();
        // The child is not reaped until we wait for it, so its pid is still
        // its own here even if it exited already.
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::debug!(error = %e, "no pidfd: watching SIGCHLD instead");
                None
            }
        };
        tracing::debug!(pid, program = %program.to_string_lossy(), "spawned");
        let state = ProcessState::new(pid, pidfd, Box::new(protocol), slots);
        let process = Process {
            state: state.clone(),
        };
        // Each pipe is a connection whose protocol is the process's adapter;
        // once all are registered the protocol hears `connection_made`; then
        // the exit watcher.
        let fds: Vec<i32> = pipes.iter().map(|(fd, _)| *fd).collect();
        let pipes = pipes
            .into_iter()
            .map(|(fd, end)| (end, state.pipe_protocol(fd)))
            .collect();
        let st = state.clone();
        let started = move |core: &mut Core, registered: &[bool]| {
            for (fd, ok) in fds.iter().zip(registered) {
                if !ok {
                    st.pipe_failed(*fd);
                }
            }
            st.started(core);
        };
        let req = PipeRequest {
            pipes,
            started: Some(Box::new(started)),
            watch: Some(Box::new(Reaping::new(state, child))),
        };
        self.ops.push(Op::Pipes(Box::new(req)));
        Ok(process)
    }
}
