#![no_main]
//! Fuzzes the ocsf adapter; corpus in fuzz/corpus/ocsf (replayed by `cargo test -p vigil-model`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_model::adapters::fuzz_entry("ocsf", data));
