//! The UDP echo examples run as a user runs them: separate processes over
//! 127.0.0.1, the server stopped with SIGTERM.

mod util;
use std::net::UdpSocket;

use util::process::{run, text, ExampleServer};

fn client(args: &[&str]) -> (i32, String, String) {
    let out = run("udp_echo_client", args);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn udp_echo_client_and_server_as_processes() {
    let mut server = ExampleServer::start("udp_echo_server", &[]);
    let addr = server.addr;
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
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(server.log_has_soon("port closed"), "{:?}", server.log());
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.contains("port closed") && l.contains("echoed=2")),
        "{:?}",
        server.log()
    );
}
