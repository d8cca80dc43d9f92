//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`: the
//! seeds and every input that ever crashed) through the same checks the
//! fuzz targets run, so CI checks them on stable, without libFuzzer.

mod fuzzing;

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/<target>`; fails naming the
/// file that broke it. Returns how many files ran.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).expect("a corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("?");
            panic!("{}: {msg}", f.display());
        }
    }
    files.len()
}

/// Found by replaying the `engine` corpus on stable (the fuzzer's release
/// build has no overflow checks, so it wrapped silently): a reset point
/// below what a pipe had already delivered underflowed in the pump. Its
/// input is `fuzz/corpus/engine/crash-reset-at-a-byte-already-delivered`.
#[test]
fn pump_reset_at_a_byte_already_delivered_resets_at_the_next_delivery() {
    use torsion::testing::{Direction, Pump};
    use torsion::{Context, DisconnectReason, Protocol};

    #[derive(Default)]
    struct P {
        got: usize,
        lost: Option<DisconnectReason>,
    }
    impl Protocol for P {
        fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
            self.got += data.len();
        }
        fn connection_lost(&mut self, _: &mut Context<'_>, reason: &DisconnectReason) {
            self.lost = Some(reason.clone());
        }
    }
    let mut pump = Pump::new();
    let link = pump.connect(P::default(), P::default());
    pump.with_client(link, |_, ctx| ctx.write(&[7; 100]));
    pump.flush();
    assert_eq!(pump.server(link).got, 100);
    pump.reset_at(link, Direction::ClientToServer, 10);
    pump.with_client(link, |_, ctx| ctx.write(&[7; 5]));
    pump.flush();
    assert_eq!(
        pump.server(link).got,
        100,
        "bytes past the reset point arrived"
    );
    assert_eq!(pump.server(link).lost, Some(DisconnectReason::Reset));
    assert_eq!(pump.client(link).lost, Some(DisconnectReason::Reset));
}

#[test]
fn endpoint_corpus_round_trips() {
    let n = replay("endpoint", fuzzing::check_endpoint);
    assert!(n >= 20, "only {n} endpoint corpus files");
}

#[test]
fn engine_corpus_keeps_the_invariants() {
    let n = replay("engine", fuzzing::check_engine);
    assert!(n >= 20, "only {n} engine corpus files");
}

#[test]
fn http_corpus_decodes_alike_however_split() {
    let n = replay("http", fuzzing::check_http);
    assert!(n >= 6, "only {n} http corpus files");
}

#[cfg(feature = "tls")]
#[test]
fn tls_peer_corpus_ends_in_tls_errors() {
    let n = replay("tls_peer", fuzzing::check_tls_peer);
    assert!(n >= 20, "only {n} tls_peer corpus files");
}

/// Writes the TLS target's seeds: a real ClientHello for the server side, a
/// real server's first flight for the client side, each in one chunk and cut
/// small, closed and left silent. Run by hand after changing the input
/// format: `cargo test --test fuzz_corpora -- --ignored write_tls_seeds`.
#[cfg(feature = "tls")]
#[test]
#[ignore]
fn write_tls_seeds() {
    use torsion::testing::Pump;
    use torsion::tls::{self, TlsProtocol};
    use torsion::{Context, Protocol};

    #[derive(Default)]
    struct Raw {
        send: Vec<u8>,
        got: Vec<u8>,
    }
    impl Protocol for Raw {
        fn connection_made(&mut self, ctx: &mut Context<'_>) {
            let s = std::mem::take(&mut self.send);
            ctx.write(&s);
        }
        fn data_received(&mut self, _: &mut Context<'_>, data: &[u8]) {
            self.got.extend_from_slice(data);
        }
    }
    struct Quiet;
    impl Protocol for Quiet {
        fn data_received(&mut self, _: &mut Context<'_>, _: &[u8]) {}
    }
    let (server, client) = fuzzing::tls_configs();
    let mut pump = Pump::new();
    let name = tls::server_name("localhost").unwrap();
    let link = pump.connect(
        Raw::default(),
        TlsProtocol::client(client.clone(), name, Quiet).unwrap(),
    );
    pump.flush();
    let hello = pump.client(link).got.clone();
    let link = pump.connect(
        Raw {
            send: hello.clone(),
            got: Vec::new(),
        },
        TlsProtocol::server(server.clone(), Quiet).unwrap(),
    );
    pump.flush();
    let flight = pump.client(link).got.clone();
    assert!(!hello.is_empty() && !flight.is_empty());

    /// Mode byte, then chunks: a length byte `b` and `4b + 1` bytes.
    fn encode(mode: u8, data: &[u8], max: usize) -> Vec<u8> {
        let mut out = vec![mode];
        let mut rest = data;
        while !rest.is_empty() {
            let n = ((rest.len().min(max) - 1) / 4 * 4 + 1).min(1021);
            out.push(((n - 1) / 4) as u8);
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/tls_peer");
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for (side, data) in [(0u8, &hello), (1, &flight)] {
        for (extra, max) in [(0u8, 1021), (2, 1021), (4, 1021), (0, 5), (0, 1), (2, 64)] {
            let seed = encode(side | extra, data, max);
            std::fs::write(dir.join(format!("seed-{n:02}")), seed).unwrap();
            n += 1;
        }
        // Truncated and with one byte flipped in the middle.
        let mut flipped = data.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x41;
        for (i, d) in [data[..data.len() / 2].to_vec(), flipped]
            .iter()
            .enumerate()
        {
            std::fs::write(
                dir.join(format!("seed-{n:02}")),
                encode(side | (i as u8) << 1, d, 1021),
            )
            .unwrap();
            n += 1;
        }
    }
    for mode in 0..8u8 {
        std::fs::write(dir.join(format!("seed-{n:02}")), [mode]).unwrap();
        n += 1;
    }
    // Garbage that looks like a record header, and an alert.
    for (i, g) in [
        &[0x16u8, 3, 1, 0xff, 0xff][..],
        &[0x15, 3, 3, 0, 2, 2, 40],
        &[0x17, 3, 3, 0, 5, 1, 2, 3, 4, 5],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(
            dir.join(format!("seed-{n:02}")),
            encode(i as u8 & 1, g, 1021),
        )
        .unwrap();
        n += 1;
    }
}
