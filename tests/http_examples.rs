//! The `http_server` and `http_get` examples as a user runs them: hello
//! world, echo, files with no escape from the root, exit statuses, and a
//! SIGTERM that lets a download in flight finish before exiting 0.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use util::example_binary;

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(root: &std::path::Path) -> Server {
    let mut child = Command::new(example_binary("http_server"))
        .args(["127.0.0.1:0", "--root"])
        .arg(root)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start http_server");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

fn get(url: &str, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(example_binary("http_get"))
        .arg(url)
        .args(extra)
        .output()
        .expect("run http_get");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
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
    let pid = server.child.id();
    assert!(send_sigterm(pid), "kill -TERM {pid}");
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
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM through kill(1): the tests forbid no `unsafe`, but need none.
fn send_sigterm(pid: u32) -> bool {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}
