//! `http_get -o FILE` as a user runs it on a large download: the body is
//! written as it arrives, so the process's peak memory (from `wait4`) stays
//! a small fraction of the body.

mod util;

use std::io::Read;
use std::process::{Command, Stdio};

use util::example_binary;

/// `http_get -o FILE` writes the body as it arrives: a body of 128 MiB is
/// saved by a process whose peak memory stays a small fraction of it.
#[test]
fn http_get_saves_a_large_body_in_bounded_memory() {
    use torsion::http::{HttpServer, Request, Response, Router};
    const TOTAL: u64 = 128 << 20;
    const PIECE: u64 = 256 << 10;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reactor = torsion::Reactor::new().unwrap();
        let server = HttpServer::new(Router::new().get(
            "/big",
            |_: &mut torsion::Core, _: Request| {
                let pieces = (0..TOTAL / PIECE)
                    .map(|i| Ok(bytes::Bytes::from(vec![(i % 251) as u8; PIECE as usize])));
                Response::new(200).with_stream(pieces, Some(TOTAL))
            },
        ));
        let port = server
            .listen_tcp(&mut reactor, "127.0.0.1:0".parse().unwrap())
            .unwrap();
        tx.send(port.local_addr()).unwrap();
        let _ = reactor.run(); // until the test process ends
    });
    let addr = rx.recv().unwrap();
    let dir = std::env::temp_dir().join(format!("torsion-http-get-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("big.bin");
    // Reaped by wait4 below, which std's Child does not know about.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(example_binary("http_get"))
        .arg(format!("http://{addr}/big"))
        .arg("-o")
        .arg(&saved)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run http_get");
    // wait4, not Child::wait: it also gives the child's peak resident size.
    let mut status = 0;
    // SAFETY: plain system call on our own child; both out-pointers are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let len = std::fs::metadata(&saved).unwrap().len();
    let mut f = std::fs::File::open(&saved).unwrap();
    let mut piece = vec![0u8; PIECE as usize];
    let mut intact = true;
    for i in 0..TOTAL / PIECE {
        f.read_exact(&mut piece).unwrap();
        intact &= piece.iter().all(|&b| b == (i % 251) as u8);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(len, TOTAL);
    assert!(intact, "the file holds the body, in order");
    let peak_kib = usage.ru_maxrss as u64; // KiB on Linux
    assert!(
        peak_kib < 48 * 1024,
        "http_get peaked at {peak_kib} KiB for a {} KiB body",
        TOTAL >> 10
    );
}
