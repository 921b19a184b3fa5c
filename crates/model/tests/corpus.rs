//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) through the same entry point the fuzz
//! targets use, so every input a fuzzer ever saved is checked on every test run.

use std::path::Path;

use vigil_model::adapters::fuzz_entry;

#[test]
fn fuzz_corpus_replays_without_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut n = 0;
    for target in ["native", "okta", "entra", "ocsf"] {
        let dir = root.join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let path = e.expect("entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            fuzz_entry(target, &data);
            n += 1;
        }
    }
    assert!(n >= 8, "only {n} corpus files");
}
