#![no_main]
//! Fuzzes the native adapter; corpus in fuzz/corpus/native (replayed by `cargo test -p vigil-model`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_model::adapters::fuzz_entry("native", data));
