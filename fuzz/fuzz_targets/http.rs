//! The HTTP/1.1 request and response decoders: no panic on any input, and the
//! same messages however the input is split.
//! The check lives in `tests/fuzzing`, shared with the stable test that
//! replays the corpus (`cargo test --test fuzz_corpora`).
#![no_main]

#[path = "../../tests/fuzzing/mod.rs"]
mod fuzzing;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::check_http(data));
