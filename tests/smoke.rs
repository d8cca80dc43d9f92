mod util;
use std::time::Duration;
use util::*;

#[test]
fn echo_roundtrip() {
    let mut r = torsion::Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let seen = Shared::default();
    r.connect_tcp(
        port.local_addr(),
        ClientF {
            seen: seen.clone(),
            payload: b"hello".to_vec(),
            expect: 5,
        },
        Duration::from_secs(5),
    );
    run_until(&mut r, || {
        seen.borrow()
            .events
            .iter()
            .any(|e| e.starts_with("client_lost"))
    });
    let s = seen.borrow();
    assert_eq!(s.received, b"hello");
    assert_eq!(
        s.events,
        vec![
            "started",
            "made",
            "lost:connection closed cleanly",
            "client_lost:connection closed cleanly"
        ]
    );
}
