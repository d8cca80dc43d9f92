//! Runs a command as a child process and prints its output line by line:
//! stdout lines prefixed `out: `, stderr lines `err: `, then how it ended.
//! Exits with the child's exit status (128 + the signal if one killed it).
//!
//! ```text
//! cargo run --example spawn -- sh -c 'echo out; echo err >&2; exit 3'
//! out: out
//! err: err
//! exited with status 3
//! ```
//!
//! The child gets this process's environment and stdin; its stdout and stderr
//! are pipes read by the reactor.

#[path = "cli/mod.rs"]
mod cli;

use std::process::ExitCode;

use clap::Parser;
use torsion::process::{ChildFd, ProcessContext, ProcessProtocol, ProcessSpec, ProcessStatus};
use torsion::{DisconnectReason, Reactor};
use tracing_subscriber::filter::LevelFilter;

/// Run a command and print its output, prefixed by stream.
#[derive(Parser, Debug)]
#[command(name = "spawn", version)]
struct Args {
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    #[command(flatten)]
    log: cli::Verbosity,
}

/// Splits each stream into lines and prints them with their prefix.
#[derive(Default)]
struct Printer {
    out: Vec<u8>,
    err: Vec<u8>,
    status: Option<ProcessStatus>,
}

fn print_lines(prefix: &str, buf: &mut Vec<u8>, data: &[u8]) {
    buf.extend_from_slice(data);
    while let Some(i) = buf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = buf.drain(..=i).collect();
        println!("{prefix}: {}", String::from_utf8_lossy(&line[..i]));
    }
}

impl ProcessProtocol for Printer {
    fn out_received(&mut self, _ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
        print_lines("out", &mut self.out, data);
    }
    fn err_received(&mut self, _ctx: &mut ProcessContext<'_, '_>, data: &[u8]) {
        print_lines("err", &mut self.err, data);
    }
    fn child_connection_lost(
        &mut self,
        _ctx: &mut ProcessContext<'_, '_>,
        fd: i32,
        _reason: &DisconnectReason,
    ) {
        // A last line without a newline.
        let (prefix, buf) = match fd {
            1 => ("out", &mut self.out),
            _ => ("err", &mut self.err),
        };
        if !buf.is_empty() {
            println!("{prefix}: {}", String::from_utf8_lossy(buf));
            buf.clear();
        }
    }
    fn process_ended(&mut self, ctx: &mut ProcessContext<'_, '_>, status: ProcessStatus) {
        println!("{status}");
        self.status = Some(status);
        let _ = ctx.stop();
    }
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::WARN);
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let mut reactor = match Reactor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the reactor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let spec = ProcessSpec::new(program)
        .args(rest)
        .inherit_env()
        .stdin(ChildFd::Inherit);
    let process = match reactor.spawn_process(spec, Printer::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = reactor.run() {
        eprintln!("reactor failed: {e}");
        return ExitCode::FAILURE;
    }
    match process.status() {
        Some(ProcessStatus::Exited(code)) => ExitCode::from(code as u8),
        Some(ProcessStatus::Signaled { signal, .. }) => ExitCode::from((128 + signal) as u8),
        _ => ExitCode::FAILURE,
    }
}
