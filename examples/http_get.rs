//! Fetches a URL with torsion's HTTP client and prints the status line, the
//! header fields and the body.
//!
//! ```text
//! cargo run --example http_get -- http://127.0.0.1:8080/
//! cargo run --example http_get -- https://example.org/ -o page.html
//! cargo run --example http_get -- --location --timeout 5s http://example.org/old
//! ```
//!
//! The body streams: it is written as it arrives (to standard output, or to
//! FILE with `-o`), and the server is read only as fast as it is written, so
//! a download of any size runs in bounded memory. `https://` certificates are
//! checked against the system's roots. The exit status is 0 for a response
//! below 400, 1 (with a one-line reason on stderr) for a network error, a
//! body cut short or a status of 400 or more, 2 for a usage error (a
//! malformed URL or option).

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use torsion::http::{BodyChunk, ClientConfig, ClientError, HttpClient, Url};
use torsion::{Core, Reactor};
use tracing_subscriber::filter::LevelFilter;

#[path = "cli/mod.rs"]
mod cli;

/// Fetch a URL over HTTP/1.1 and print the response.
#[derive(Debug, Parser)]
#[command(name = "http_get", version)]
struct Args {
    /// The http:// or https:// URL.
    #[arg(value_parser = url)]
    url: String,
    /// Write the body to FILE instead of standard output (the status line
    /// and header fields still go to standard output).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// How long connecting may take, and then how long the server may stay
    /// silent (30s, 1.5s, 250ms, 2m; 0 or off: no limit).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = cli::maybe_duration)]
    timeout: cli::MaybeDuration,
    /// Follow up to 10 redirects.
    #[arg(short = 'L', long)]
    location: bool,

    #[command(flatten)]
    log: cli::Verbosity,
}

/// For clap: an `http://` or `https://` URL the client can use.
fn url(text: &str) -> Result<String, String> {
    match Url::parse(text) {
        Ok(_) => Ok(text.to_owned()),
        Err(_) => Err("expected an http:// or https:// URL".into()),
    }
}

/// Where the body goes.
enum Out {
    Stdout(std::io::Stdout),
    File(BufWriter<File>, PathBuf),
}

impl Out {
    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        match self {
            Out::Stdout(s) => s
                .lock()
                .write_all(data)
                .map_err(|e| format!("cannot write the output: {}", cli::plain(e))),
            Out::File(f, path) => f
                .write_all(data)
                .map_err(|e| format!("cannot write {}: {}", path.display(), cli::plain(e))),
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        match self {
            Out::Stdout(s) => s
                .lock()
                .flush()
                .map_err(|e| format!("cannot write the output: {}", cli::plain(e))),
            Out::File(f, path) => f
                .flush()
                .map_err(|e| format!("cannot write {}: {}", path.display(), cli::plain(e))),
        }
    }
}

/// How the download ended.
type Outcome = Rc<RefCell<Option<Result<(), String>>>>;

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::WARN);
    match run(&args) {
        Ok(code) => code,
        Err(message) => cli::fail(message),
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let mut reactor =
        Reactor::new().map_err(|e| format!("cannot start the reactor: {}", cli::plain(e)))?;
    let timeout = args.timeout.0.unwrap_or(Duration::MAX);
    let client = HttpClient::with_config(ClientConfig {
        connect_timeout: timeout,
        response_timeout: timeout,
        follow_redirects: if args.location { 10 } else { 0 },
        ..ClientConfig::default()
    });
    let d = client.get_streaming(&mut reactor, &args.url);
    let response = match reactor.run_until_complete(d) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(failure(&args.url, &e)),
        Err(e) => return Err(format!("the reactor failed: {}", cli::plain(e))),
    };
    let head = &response.head;
    let mut text = format!("{} {} {}\n", head.version, head.status, head.reason());
    for (name, value) in head.headers.iter() {
        text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value)));
    }
    text.push('\n');
    let mut stdout = std::io::stdout();
    stdout
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write the output: {}", cli::plain(e)))?;
    let mut out = match &args.output {
        Some(path) => {
            let _ = stdout.flush();
            let file = File::create(path)
                .map_err(|e| format!("cannot create {}: {}", path.display(), cli::plain(e)))?;
            Out::File(BufWriter::with_capacity(64 * 1024, file), path.clone())
        }
        None => Out::Stdout(stdout),
    };
    // Each piece is written as it comes; while it is being written the
    // client reads nothing more, so memory stays bounded.
    let outcome: Outcome = Rc::new(RefCell::new(None));
    let done = outcome.clone();
    let body = response.body.clone();
    let url = args.url.clone();
    response
        .body
        .on_data(&mut reactor, move |core: &mut Core, chunk| {
            let result = match chunk {
                BodyChunk::Data(d) => match out.write(&d) {
                    Ok(()) => return,
                    Err(e) => {
                        body.close(core);
                        Err(e)
                    }
                },
                BodyChunk::End(_) => out.finish(),
                BodyChunk::Failed(e) => {
                    let _ = out.finish();
                    Err(failure(&url, &e))
                }
            };
            *done.borrow_mut() = Some(result);
            let _ = core.stop();
        });
    drop(response.body);
    if outcome.borrow().is_none() {
        reactor
            .run()
            .map_err(|e| format!("the reactor failed: {}", cli::plain(e)))?;
    }
    let result = outcome
        .borrow_mut()
        .take()
        .unwrap_or_else(|| Err(format!("{}: the body did not arrive", args.url)));
    result?;
    if head.status >= 400 {
        return Err(format!("{}: {} {}", args.url, head.status, head.reason()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `URL: REASON`, one sentence.
fn failure(url: &str, e: &ClientError) -> String {
    format!("{url}: {}", cli::plain(e))
}
