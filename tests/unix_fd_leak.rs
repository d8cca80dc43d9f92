//! No descriptor leaks over Unix sockets: connects, accepts, echoes, client
//! closes, large writes and refused connects (alone in its binary, so no other
//! test opens descriptors meanwhile).
mod suite;
mod util;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use suite::temp_socket_path;
use torsion::Reactor;
use util::*;

#[test]
fn descriptors_return_after_unix_cycles() {
    let path = temp_socket_path("leak");
    let mut r = Reactor::new().unwrap();
    let port = r.listen_unix(&path, EchoFactory).unwrap();
    let stale = temp_socket_path("leak-stale");
    drop(UnixListener::bind(&stale).unwrap());
    // Warm up: the listener registered, lazily made descriptors exist.
    r.run_once(Some(Duration::ZERO)).unwrap();
    let before = fd_count();
    for round in 0..5 {
        let mut seens = Vec::new();
        for i in 0..40 {
            let seen = Shared::default();
            let (target, payload, expect) = match i % 4 {
                0 => (&path, b"echo".to_vec(), 4),
                1 => (&path, vec![], 0),  // client closes at once
                2 => (&stale, vec![], 0), // refused
                _ => (&path, vec![1; 100_000], 100_000),
            };
            r.connect_unix(
                target,
                ClientF {
                    seen: seen.clone(),
                    payload,
                    expect,
                },
                Duration::from_secs(5),
            );
            seens.push(seen);
        }
        run_until(&mut r, || {
            seens.iter().all(|s| {
                s.borrow().failed.is_some()
                    || s.borrow()
                        .events
                        .iter()
                        .any(|e| e.starts_with("client_lost"))
            })
        });
        let idle = r
            .run_until(DEADLINE, |r| {
                r.connection_count() == 0 && r.source_count() == 1
            })
            .unwrap();
        assert!(idle, "connections or lingering sockets left");
        assert_eq!(fd_count(), before, "round {round}");
    }
    port.stop_listening(&mut r);
    r.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(
        fd_count(),
        before - 1,
        "the listener's descriptor is closed"
    );
    std::fs::remove_file(&stale).unwrap();
}
