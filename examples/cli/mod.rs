//! What every example and tool shares, so they behave alike: the `-v`/`-q`
//! flags and the logging they set up (`RUST_LOG` honoured), one-sentence error
//! messages with the exit statuses of the convention, and SIGINT/SIGTERM.
//!
//! Each example includes this file (`#[path = "cli/mod.rs"] mod cli;`); it is
//! one module, not a copy per example.
//!
//! The convention: `--help` and `--version` exit 0; a usage error is one line
//! and exits 2 ([`parse`]); a runtime error prints one plain sentence to stderr
//! and exits 1 ([`fail`]); servers stop cleanly on Ctrl-C and SIGTERM
//! ([`serve`]). `tests/examples.rs` checks every example against it.

#![allow(dead_code)] // Each example uses a part.

use std::fmt::Display;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use torsion::service::{AppError, Application, ServerService};
use torsion::{Core, ListeningPort, SignalWatch};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// The exit status of a runtime error.
pub const RUNTIME_ERROR: u8 = 1;
/// The exit status of a usage error (what clap uses too).
pub const USAGE_ERROR: u8 = 2;

/// How long an example server's connections may stay silent before they are
/// closed (`--idle-timeout`), so that idle or slowloris clients do not hold a
/// descriptor each for ever.
pub const DEFAULT_IDLE_TIMEOUT: &str = "5m";

/// `-v`/`--verbose` and `-q`/`--quiet`, flattened into every example's
/// arguments (`#[command(flatten)] log: cli::Verbosity`).
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Verbosity {
    /// More log output: -v debug (a line per connection), -vv trace. Without
    /// -v or -q, RUST_LOG chooses when set (e.g. RUST_LOG=torsion=debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output: warnings and errors only (-qq: errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
}

impl Verbosity {
    /// The level the flags ask for, `default` without any.
    pub fn level(&self, default: LevelFilter) -> LevelFilter {
        match (self.verbose, self.quiet) {
            (0, 0) => default,
            (0, 1) => LevelFilter::WARN,
            (0, _) => LevelFilter::ERROR,
            (1, _) => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        }
    }

    /// Whether `-q` was given.
    pub fn is_quiet(&self) -> bool {
        self.quiet > 0
    }
}

/// Parses the command line as clap does, but a usage error is one line on
/// stderr (`error: invalid value 'x' for '[ADDRESS]': ...; see --help`) and
/// exit status 2: clap's own message spreads over five lines with a usage
/// block. `--help` and `--version` print to stdout and exit 0, as with clap.
pub fn parse<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("{}", one_line_usage_error(&e.render().to_string()));
            std::process::exit(i32::from(USAGE_ERROR));
        }
    }
}

/// Clap's rendered usage error as one line: its message lines joined, without
/// the tip, the usage block and the "For more information" hint (`see --help`
/// stands for the last).
pub fn one_line_usage_error(rendered: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for line in rendered.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() || line.starts_with("tip:") {
            continue;
        }
        parts.push(line);
    }
    let text = parts.join(" ");
    format!("{}; see --help", text.trim_end_matches(':'))
}

/// Installs a `tracing-subscriber` that writes to stderr. The filter is
/// `-v`/`-q` when given, else `RUST_LOG` when set (`info`,
/// `torsion=debug,warn`, ...), else `default`.
pub fn init_logging(flags: &Verbosity, default: LevelFilter) {
    let from_flags = flags.verbose > 0 || flags.quiet > 0;
    let mut filter = Targets::new().with_default(flags.level(default));
    let mut bad_env = None;
    if !from_flags {
        if let Ok(env) = std::env::var("RUST_LOG") {
            if !env.trim().is_empty() {
                match Targets::from_str(&env) {
                    Ok(t) => filter = t,
                    Err(e) => bad_env = Some(format!("ignoring RUST_LOG={env:?}: {e}")),
                }
            }
        }
    }
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
    if let Some(warning) = bad_env {
        tracing::warn!("{warning}");
    }
}

/// Prints `message` (one sentence) to stderr once and gives exit status 1.
pub fn fail(message: impl Display) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(RUNTIME_ERROR)
}

/// An error's text as part of a sentence: `Address already in use (os error
/// 98)` becomes `address already in use`.
pub fn plain(error: impl Display) -> String {
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    };
    let mut chars = text.chars();
    let first = chars.next();
    let acronym = chars.clone().next().is_some_and(char::is_uppercase);
    match first {
        // Lower-case a capitalised first word, but not an acronym ("TLS: ...").
        Some(c) if c.is_uppercase() && !acronym => {
            let mut out: String = c.to_lowercase().collect();
            out.push_str(chars.as_str());
            out
        }
        _ => text,
    }
}

/// `cannot listen on ADDR: REASON`, the sentence every server prints when it
/// cannot bind; `error` is the library's (an `AppError`, an `io::Error`...).
pub fn cannot_listen(addr: impl Display, error: impl Display) -> String {
    format!("cannot listen on {addr}: {}", plain(error))
}

/// The library's error from a failed start of a service, without the
/// service's name (which the sentence around it gives already).
pub fn service_error(error: &AppError) -> String {
    use torsion::service::ServiceError;
    match error {
        AppError::Start(ServiceError::Failed { message, .. })
        | AppError::Start(ServiceError::Endpoint { message, .. }) => plain(message),
        other => plain(other),
    }
}

/// A server's application runner (`torsion::service::Application`) with
/// `grace` as its shutdown timeout: how long the graceful stop after SIGINT or
/// SIGTERM may take before what is left is aborted.
///
/// # Errors
/// The exit status, once the sentence is printed, when the reactor cannot be
/// created.
pub fn application(grace: Duration) -> Result<Application, ExitCode> {
    let mut app =
        Application::new().map_err(|e| fail(format!("cannot start the reactor: {}", plain(e))))?;
    app.set_shutdown_timeout(grace);
    Ok(app)
}

/// Runs a TCP server the way every example server runs: `app` (from
/// [`application`], with any services of the program's own added) gets one
/// more that calls `listen` to bind `addr` when it starts and logs `WHAT
/// listening on ADDR` (the real port when 0 was asked for). SIGINT or SIGTERM
/// stops listening, closes every connection after its flush (the services
/// added before stop after the listener, so they can finish what is in
/// flight), and gives exit status 0; a second signal aborts what is left. A
/// bind error is one sentence, `cannot listen on ADDR: REASON`, and status 1.
pub fn serve(
    mut app: Application,
    what: &str,
    addr: SocketAddr,
    mut listen: impl FnMut(&mut Core) -> torsion::Result<ListeningPort> + 'static,
) -> ExitCode {
    let announce = what.to_owned();
    app.add(ServerService::from_fn(
        format!("{what} on {addr}"),
        move |core| {
            let port = listen(core)?;
            tracing::info!("{announce} listening on {}", port.local_addr());
            Ok::<_, torsion::Error>(port)
        },
    ));
    match app.run() {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e @ AppError::Start(_)) => fail(cannot_listen(addr, service_error(&e))),
        Err(e) => fail(plain(e)),
    }
}

/// For clap's `value_parser`: a `HOST:PORT` (its form only; it is resolved
/// later, and a name that does not resolve is a runtime error).
pub fn host_port(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(text.to_owned())
        }
        _ => Err("expected HOST:PORT, e.g. 127.0.0.1:8000".into()),
    }
}

/// Resolves a `HOST:PORT` to its first address.
///
/// # Errors
/// The sentence to print.
pub fn resolve(target: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    match target.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{target} resolves to no address")),
        Err(e) => Err(format!("cannot resolve {target}: {}", plain(e))),
    }
}

/// Calls `on_signal` on the reactor's thread at every SIGINT or SIGTERM (and
/// at every signal of `more`), with the signal's number, until the returned
/// watch is dropped ([`Core::watch_signals`]). For the programs that do not
/// run under `torsion::service::Application`, which handles them itself.
///
/// # Errors
/// The sentence to print when the handlers cannot be installed.
pub fn on_signals(
    core: &mut Core,
    more: &[i32],
    on_signal: impl FnMut(&mut Core, i32) + 'static,
) -> Result<SignalWatch, String> {
    let mut which = vec![libc::SIGINT, libc::SIGTERM];
    which.extend_from_slice(more);
    watch_signals(core, &which, on_signal)
}

/// Calls `on_signal` on the reactor's thread at every signal of `which`
/// ([`Core::watch_signals`]), until the returned watch is dropped.
///
/// # Errors
/// The sentence to print when the handlers cannot be installed.
pub fn watch_signals(
    core: &mut Core,
    which: &[i32],
    on_signal: impl FnMut(&mut Core, i32) + 'static,
) -> Result<SignalWatch, String> {
    core.watch_signals(which, on_signal)
        .map_err(|e| format!("cannot install the signal handlers: {}", plain(e)))
}

/// SIGINT and SIGTERM for a server that stops gracefully: the first logs
/// `SIGNAL: {what}` and calls `shut_down`; a second exits at once with status
/// 130 (the convention of every server here that does not run under
/// `torsion::service::Application`, which does the same itself).
///
/// # Errors
/// The sentence to print when the handlers cannot be installed.
pub fn on_shutdown_signals(
    core: &mut Core,
    what: &'static str,
    mut shut_down: impl FnMut(&mut Core) + 'static,
) -> Result<SignalWatch, String> {
    let mut seen = 0;
    on_signals(core, &[], move |core, sig| {
        seen += 1;
        if seen == 1 {
            tracing::info!("{}: {what}", signal_name(sig));
            shut_down(core);
        } else {
            tracing::warn!("{} again: exiting at once", signal_name(sig));
            std::process::exit(130);
        }
    })
}

/// The name of a signal, for the log.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// A duration that may be "none" (`--idle-timeout off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeDuration(pub Option<Duration>);

/// For clap's `value_parser`: [`parse_duration`].
pub fn maybe_duration(text: &str) -> Result<MaybeDuration, String> {
    parse_duration(text).map(MaybeDuration)
}

/// For clap's `value_parser`: a duration that must be longer than zero, such as
/// a `--timeout` (the syntax of [`parse_duration`]).
pub fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)?.ok_or_else(|| format!("{text:?} is no time at all (e.g. 10s)"))
}

/// The `--idle-timeout` every example server takes.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct IdleTimeout {
    /// Close a connection after this long without traffic, so that idle or
    /// slowloris clients do not hold a descriptor each for ever (30s, 5m, 1h;
    /// 0 or off: never).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_IDLE_TIMEOUT, value_parser = maybe_duration)]
    pub idle_timeout: MaybeDuration,
}

impl IdleTimeout {
    /// The timeout, `None` for never.
    pub fn get(&self) -> Option<Duration> {
        self.idle_timeout.0
    }
}

/// Parses a duration such as `300`, `300s`, `5m`, `1.5s`, `250ms` or `1h`
/// (plain numbers are seconds); `0` or `off` means none.
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if t == "off" || t == "none" {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return Err(format!("not a duration: {text:?} (e.g. 30s, 5m)"));
    }
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (e.g. 30s, 5m)"))?;
    let d = Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("not a duration: {text:?}"))?;
    Ok(if d.is_zero() { None } else { Some(d) })
}

/// Lifts the soft descriptor limit to the hard one, so a server can hold
/// thousands of connections where the soft limit is a low default (often 1024).
pub fn raise_descriptor_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("could not raise the descriptor limit");
            }
        }
    }
}
