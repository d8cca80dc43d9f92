//! The TLS wrapper fed arbitrary bytes by its peer through the pump: no panic, bounded buffering, ends with a TLS error, plaintext never leaks.
//! The check lives in `tests/fuzzing`, shared with the stable test that
//! replays the corpus (`cargo test --test fuzz_corpora`).
#![no_main]

#[path = "../../tests/fuzzing/mod.rs"]
mod fuzzing;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::check_tls_peer(data));
