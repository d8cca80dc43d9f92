//! Endpoint strings: no panic on any input; what parses prints back to a string that parses to the same endpoint; a repeated part is never ignored.
//! The check lives in `tests/fuzzing`, shared with the stable test that
//! replays the corpus (`cargo test --test fuzz_corpora`).
#![no_main]

#[path = "../../tests/fuzzing/mod.rs"]
mod fuzzing;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::check_endpoint(data));
