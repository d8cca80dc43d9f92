//! The UDP echo examples run as a user runs them: separate processes over
//! 127.0.0.1, the server stopped with SIGTERM.

mod util;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn example(name: &str) -> PathBuf {
    util::example_binary(name)
}

fn client(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(example("udp_echo_client"))
        .args(args)
        .output()
        .expect("run udp_echo_client");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn udp_echo_client_and_server_as_processes() {
    let mut server = Command::new(example("udp_echo_server"))
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn udp_echo_server");
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("server exited early").unwrap();
        if let Some(at) = line.find("listening on ") {
            break line[at + "listening on ".len()..].trim().parse().unwrap();
        }
    };
    let target = addr.to_string();

    let (code, out, err) = client(&[&target]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Received: Hello, torsion!\nRound trip: "),
        "{out}"
    );

    let (code, out, _) = client(&[&target, "any", "words"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Received: any words\n"), "{out}");

    // A port nobody listens on is refused, not waited for.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, err) = client(&[&closed.to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("Connection refused"), "{err}");

    let (code, _, err) = client(&["not an address"]);
    assert_eq!(code, 2, "{err}");

    // SIGTERM: the port closes and the server exits 0.
    let pid = server.id() as i32;
    // SAFETY: kill(2) with a child's pid and a valid signal has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("port closed") && l.contains("echoed=2")),
        "{rest:?}"
    );
}
