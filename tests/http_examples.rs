//! The `http_server` and `http_get` examples as a user runs them: hello
//! world, echo, files with no escape from the root, exit statuses, and a
//! SIGTERM that lets a download in flight finish before exiting 0.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use util::process::{run, text, ExampleServer};

fn start(root: &std::path::Path) -> ExampleServer {
    let root = root.to_str().expect("a UTF-8 temporary directory");
    ExampleServer::start("http_server", &["--root", root])
}

fn get(url: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![url];
    args.extend_from_slice(extra);
    let out = run("http_get", &args);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// Sends a raw request and reads the status line of the answer.
fn raw_status(addr: SocketAddr, target: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or("").to_owned()
}

fn root(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("torsion-http-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>hi</h1>\n").unwrap();
    std::fs::write(dir.join("sub").join("data.json"), "{}\n").unwrap();
    std::fs::write(dir.join("big.bin"), vec![7u8; 8 << 20]).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("escape")).unwrap();
    dir
}

#[test]
fn hello_echo_files_and_exit_statuses() {
    let dir = root("files");
    let server = start(&dir);
    let base = format!("http://{}", server.addr);
    let (code, out, _) = get(&format!("{base}/"), &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("HTTP/1.1 200 OK\n"), "{out}");
    assert!(out.ends_with("\n\nHello, World!"), "{out}");
    let (code, out, _) = get(&format!("{base}/files/sub/data.json"), &[]);
    assert_eq!(code, 0);
    assert!(out.contains("Content-Type: application/json\n"), "{out}");
    let (code, out, _) = get(&format!("{base}/files/index.html"), &[]);
    assert!(
        code == 0 && out.contains("Content-Type: text/html"),
        "{out}"
    );
    let saved = dir.join("saved.bin");
    let (code, _, _) = get(
        &format!("{base}/files/big.bin"),
        &["-o", saved.to_str().unwrap()],
    );
    assert_eq!(code, 0);
    assert_eq!(std::fs::read(&saved).unwrap(), vec![7u8; 8 << 20]);
    let (code, _, err) = get(&format!("{base}/files/missing"), &[]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("404"), "{err}");
    // No escape from the root.
    assert!(raw_status(server.addr, "/files/../Cargo.toml").contains(" 404 "));
    assert!(raw_status(server.addr, "/files/%2e%2e/%2e%2e/etc/passwd").contains(" 404 "));
    assert!(raw_status(server.addr, "/files/sub%2Fdata.json").contains(" 404 "));
    assert!(raw_status(server.addr, "/files/escape").contains(" 403 "));
    // Echo, with and without chunking.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nping\r\n0\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.ends_with("\r\n\r\nping"), "{out}");
    // A network error: one line, exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, err) = get(&format!("http://{closed}/"), &[]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // A malformed URL is a usage error.
    let (code, _, err) = get("not a url", &[]);
    assert_eq!(code, 2, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_lets_a_download_in_flight_finish_then_exits_0() {
    let dir = root("sigterm");
    let mut server = start(&dir);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = vec![0u8; 64 * 1024];
    let first = s.read(&mut got).unwrap();
    assert!(first > 0);
    server.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let total = first + rest.len();
    let text = String::from_utf8_lossy(&got[..first.min(200)]).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let head_len = got[..first]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap()
        + 4;
    assert_eq!(total - head_len, 8 << 20, "the whole file arrived");
    let status = server.wait();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idle_timeout_takes_a_duration_and_sigint_stops_cleanly() {
    let dir = root("idle");
    let root = dir.to_str().unwrap();
    let mut server =
        ExampleServer::start("http_server", &["--root", root, "--idle-timeout", "200ms"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // Kept alive after the answer, then closed by the server once idle.
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got)
        .expect("an orderly close, not a reset");
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nHello, World!"), "{got}");
    server.signal(libc::SIGINT);
    assert_eq!(server.wait().code(), Some(0));
    assert!(server.log_has_soon("stopped"), "{:?}", server.log());
    let _ = std::fs::remove_dir_all(&dir);
}
