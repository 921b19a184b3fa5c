#![no_main]
//! Fuzzes the okta adapter; corpus in fuzz/corpus/okta (replayed by `cargo test -p vigil-model`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_model::adapters::fuzz_entry("okta", data));
