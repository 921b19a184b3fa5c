#![no_main]
//! Fuzzes the entra adapter; corpus in fuzz/corpus/entra (replayed by `cargo test -p vigil-model`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_model::adapters::fuzz_entry("entra", data));
