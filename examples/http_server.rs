//! An HTTP/1.1 server on torsion's `http` module.
//!
//! ```text
//! cargo run --example http_server                         # 127.0.0.1:8080
//! cargo run --example http_server -- 0.0.0.0:9000 --root /srv/www
//! curl http://127.0.0.1:8080/                             # Hello, World!
//! curl --data-binary @file http://127.0.0.1:8080/echo     # the body back
//! curl http://127.0.0.1:8080/files/README.md              # a file under --root
//! curl http://127.0.0.1:8080/metrics                      # the server's counters
//! ```
//!
//! `GET /files/<path>` serves the file `<path>` under `--root` (default the
//! current directory) with a `Content-Type` for common extensions, streamed
//! with back-pressure. A path never leaves the root: `..` components and
//! encoded separators (`%2F`, `%5C`) are `404`, a symlink that points
//! outside the root is `403`. Ctrl-C (SIGINT) or SIGTERM stops listening,
//! lets requests in flight finish (for up to `--shutdown-timeout`), and exits
//! 0; a second signal aborts what is left. Connections silent for
//! `--idle-timeout` (5 minutes) are closed. The access log goes to stderr
//! through `tracing` (INFO by default, `-v`/`-q`, or `RUST_LOG`).

use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use torsion::http::{
    percent_decode_path, HttpServer, HttpService, Request, Response, Router, ServerConfig,
};
use torsion::Core;
use tracing_subscriber::filter::LevelFilter;

#[path = "cli/mod.rs"]
mod cli;

/// Where the server listens when no address is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// An HTTP/1.1 server: hello world, an echo, static files, metrics. Ctrl-C or
/// SIGTERM stops listening, lets requests in flight finish and exits.
#[derive(Debug, Parser)]
#[command(name = "http_server", version)]
struct Args {
    /// Where to listen, as IP:PORT (port 0 picks a free one).
    #[arg(default_value = DEFAULT_ADDR)]
    address: SocketAddr,

    /// Directory served under /files/.
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,

    #[command(flatten)]
    idle: cli::IdleTimeout,

    /// How long a graceful shutdown may take (requests in flight finishing)
    /// before the connections left are aborted (10s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = cli::duration)]
    shutdown_timeout: Duration,

    #[command(flatten)]
    log: cli::Verbosity,
}

fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt" | "md" | "rs" | "toml") => "text/plain; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("pdf") => "application/pdf",
        Some("wasm") => "application/wasm",
        Some("gz") => "application/gzip",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

/// The file `rel` (still percent-encoded) names under `root`, or the status
/// to answer: 404 for what does not exist or tries to climb out, 403 for a
/// link out of the root.
fn resolve(root: &Path, rel: &str) -> Result<PathBuf, u16> {
    let decoded = percent_decode_path(rel).ok_or(404u16)?;
    let mut path = root.to_path_buf();
    for part in Path::new(&decoded).components() {
        match part {
            Component::Normal(p) => path.push(p),
            Component::CurDir => {}
            // `..`, an absolute path, a prefix: no escape from the root.
            _ => return Err(404),
        }
    }
    let real = path.canonicalize().map_err(|_| 404u16)?;
    if !real.starts_with(root) {
        return Err(403);
    }
    if !real.is_file() {
        return Err(404);
    }
    Ok(real)
}

/// Reads a file in 64 KiB pieces as the client takes them.
fn file_chunks(mut file: File) -> impl Iterator<Item = std::io::Result<Bytes>> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf) {
            Ok(0) => {
                done = true;
                None
            }
            Ok(n) => {
                buf.truncate(n);
                Some(Ok(Bytes::from(buf)))
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

fn serve_file(root: &Path, req: &Request) -> Response {
    let rel = req.path().strip_prefix("/files/").unwrap_or("");
    let path = match resolve(root, rel) {
        Ok(p) => p,
        Err(status) => return Response::error(status),
    };
    let opened = File::open(&path).and_then(|f| f.metadata().map(|m| (f, m.len())));
    match opened {
        Ok((file, len)) => Response::new(200)
            .with_header("Content-Type", content_type(&path))
            .with_stream(file_chunks(file), Some(len)),
        Err(_) => Response::error(404),
    }
}

fn router(root: PathBuf, server: Rc<std::cell::OnceCell<HttpServer>>) -> Router {
    Router::new()
        .get("/", |_: &mut Core, _: Request| {
            Response::text(200, "Hello, World!")
        })
        .post("/echo", |_: &mut Core, req: Request| {
            let kind = req
                .headers()
                .get("content-type")
                .unwrap_or("application/octet-stream")
                .to_owned();
            Response::ok(req.body).with_header("Content-Type", kind)
        })
        .get("/files/*", move |_: &mut Core, req: Request| serve_file(&root, &req))
        .get("/metrics", move |_: &mut Core, _: Request| {
            let s = server.get().map(|s| s.stats()).unwrap_or_default();
            Response::text(
                200,
                format!(
                    "http_connections_total {}\nhttp_connections_open {}\nhttp_requests_total {}\n\
                     http_requests_reused_total {}\nhttp_rejected_total {}\nhttp_handler_panics_total {}\n",
                    s.connections, s.open, s.requests, s.reused, s.rejected, s.panics
                ),
            )
        })
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging(&args.log, LevelFilter::INFO);
    cli::raise_descriptor_limit();
    let root = match args.root.canonicalize() {
        Ok(r) if r.is_dir() => r,
        _ => return cli::fail(format!("not a directory: {}", args.root.display())),
    };
    let config = ServerConfig {
        // "off": never (a delay past the clock's range is never).
        idle_timeout: args.idle.get().unwrap_or(Duration::MAX),
        ..ServerConfig::default()
    };
    let cell = Rc::new(std::cell::OnceCell::new());
    let server = HttpServer::with_config(router(root.clone(), cell.clone()), config);
    let _ = cell.set(server.clone());
    let mut app = match cli::application(args.shutdown_timeout) {
        Ok(app) => app,
        Err(status) => return status,
    };
    // Stopped after the listener: lets the requests in flight finish.
    app.add(HttpService::serving(server.clone()));
    let addr = args.address;
    cli::serve(app, "http server", addr, move |core| {
        let port = server.listen_tcp(core, addr)?;
        tracing::info!(root = %root.display(), "serving files under /files/");
        Ok(port)
    })
}
