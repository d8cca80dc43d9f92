//! The connection engine under random writes, pauses, resumes, half-closes, closes, aborts, faults and clock advances: its invariants hold.
//! The check lives in `tests/fuzzing`, shared with the stable test that
//! replays the corpus (`cargo test --test fuzz_corpora`).
#![no_main]

#[path = "../../tests/fuzzing/mod.rs"]
mod fuzzing;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::check_engine(data));
