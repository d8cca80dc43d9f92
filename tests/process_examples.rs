//! The process examples as a user runs them: `spawn` (a child's output and
//! status) and `chat_client` (StandardIO joined to the chat server), with
//! stdin as a pipe, a file, a terminal and closed, a broken stdout, and
//! Ctrl-C. (A closed stdout cannot be shown from a Rust binary: std's
//! runtime opens `/dev/null` on a closed descriptor 0, 1 or 2 at startup.)
mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};

use util::process::ExampleServer;
use util::{example_binary, DEADLINE};

fn spawn_example(args: &[&str]) -> Output {
    Command::new(example_binary("spawn"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn spawn_prints_prefixed_lines_and_exits_with_the_childs_status() {
    let out = spawn_example(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<&str> = stdout.lines().collect();
    // stdout and stderr are two pipes: their relative order is the reactor's.
    assert_eq!(lines.pop(), Some("exited with status 3"));
    lines.sort();
    assert_eq!(lines, ["err: err", "out: out"]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn spawn_reports_signals_and_missing_programs() {
    let out = spawn_example(&["sh", "-c", "printf 'no newline'; kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "out: no newline\nkilled by signal 15\n"
    );
    let out = spawn_example(&["/no/such/program"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cannot run /no/such/program: no such program\n"
    );
    // Usage errors, --help and --version: the table in tests/examples.rs.
}

/// A chat server (the example binary) on a free port, killed when dropped.
fn chat_server() -> ExampleServer {
    ExampleServer::start("chat_server", &[])
}

/// A named client in the room, reading with a deadline that only catches hangs.
struct Watcher {
    reader: BufReader<TcpStream>,
}

impl Watcher {
    fn join(server: &ExampleServer, name: &str) -> Watcher {
        let s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut w = Watcher {
            reader: BufReader::new(s),
        };
        assert_eq!(w.line(), "What's your name?");
        write!(w.reader.get_mut(), "{name}\r\n").unwrap();
        assert_eq!(w.line(), format!("Welcome, {name}!"));
        w
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l.trim_end_matches(['\r', '\n']).to_owned()
    }
}

fn client(server: &ExampleServer) -> Command {
    let mut c = Command::new(example_binary("chat_client"));
    c.arg(server.addr.to_string());
    c
}

#[test]
fn chat_client_sends_piped_lines_prints_the_room_and_exits_at_eof() {
    let server = chat_server();
    let mut watcher = Watcher::join(&server, "watcher");
    let mut child = client(&server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"alice\nhello room\n").unwrap();
    assert_eq!(watcher.line(), "* alice has joined.");
    assert_eq!(watcher.line(), "<alice> hello room");
    // A last line without a newline is sent too, at EOF.
    stdin.write_all(b"last words").unwrap();
    drop(stdin);
    assert_eq!(watcher.line(), "<alice> last words");
    assert_eq!(watcher.line(), "* alice has left.");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "What's your name?\nWelcome, alice!\n"
    );
}

#[test]
fn chat_client_reads_stdin_from_a_file() {
    let server = chat_server();
    let mut watcher = Watcher::join(&server, "watcher");
    let path = std::env::temp_dir().join(format!("torsion-chat-{}.txt", std::process::id()));
    std::fs::write(&path, "bob\nfrom a file\n").unwrap();
    let out = client(&server)
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(watcher.line(), "* bob has joined.");
    assert_eq!(watcher.line(), "<bob> from a file");
    assert_eq!(watcher.line(), "* bob has left.");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "What's your name?\nWelcome, bob!\n"
    );
    // A closed stdin is an EOF at once: the client joins nobody and exits.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec {} {} <&-",
            example_binary("chat_client").display(),
            server.addr
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "What's your name?\n");
}

#[test]
fn chat_client_reads_a_terminal() {
    // `script` gives the client a pseudo-terminal as stdin and stdout; ^D
    // on an empty line is the terminal's EOF.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("no `script` (util-linux) here: terminal case not run");
        return;
    }
    let server = chat_server();
    let mut watcher = Watcher::join(&server, "watcher");
    let cmd = format!(
        "{} {}",
        example_binary("chat_client").display(),
        server.addr
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"dave\n").unwrap();
    assert_eq!(watcher.line(), "* dave has joined.");
    stdin.write_all(b"typed\n").unwrap();
    assert_eq!(watcher.line(), "<dave> typed");
    stdin.write_all(b"\x04").unwrap();
    assert_eq!(watcher.line(), "* dave has left.");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Welcome, dave!"), "{text:?}");
}

#[test]
fn chat_client_stops_cleanly_on_ctrl_c() {
    let server = chat_server();
    let mut watcher = Watcher::join(&server, "watcher");
    let mut child = client(&server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"carol\n").unwrap();
    assert_eq!(watcher.line(), "* carol has joined.");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert_eq!(watcher.line(), "* carol has left.");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    drop(stdin);
}

#[test]
fn chat_client_reports_a_broken_stdout_and_a_refused_connection() {
    let server = chat_server();
    let mut watcher = Watcher::join(&server, "watcher");
    // stdout's reader goes away: the first line printed fails, clearly.
    let mut child = client(&server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"erin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "standard output closed: its reader went away\n"
    );
    drop(stdin);
    // Whether erin's name reached the server before the client gave up is a
    // race; either way erin is gone and the room goes on. A probe joining after
    // the client exited (its close was on the server's socket before the probe
    // connected) marks the point by which erin must have come and gone.
    let _probe = Watcher::join(&server, "probe");
    let mut seen = Vec::new();
    loop {
        let l = watcher.line();
        if l == "* probe has joined." {
            break;
        }
        seen.push(l);
    }
    assert!(
        seen.is_empty() || seen == ["* erin has joined.", "* erin has left."],
        "{seen:?}"
    );
    drop(server);
    let out = Command::new(example_binary("chat_client"))
        .arg("127.0.0.1:1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cannot connect to 127.0.0.1:1: connection refused\n"
    );
}
