//! Golden scenarios: every folder under `tests/scenarios/` holds `input.jsonl` (native
//! events), an optional `config.toml` (engine configuration) and `expected.jsonl` (the alerts,
//! revocations and rejections the engine must produce, in order, in a compact form).
//!
//! Run with `VIGIL_BLESS=1` to write `expected.jsonl` from the current output; review the
//! diff before committing it.

// The test harness reads scenario files; the engine it drives does not.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use vigil_engine::{Engine, EngineConfig, Output};
use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};

fn run_scenario(dir: &Path) -> Vec<Value> {
    let cfg: EngineConfig = match fs::read_to_string(dir.join("config.toml")) {
        Ok(text) => toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display())),
        Err(_) => EngineConfig::default(),
    };
    let mut engine = Engine::new(&cfg).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let ctx = AdapterContext::new(b"scenario-key");
    let input = fs::read_to_string(dir.join("input.jsonl")).expect("input.jsonl");
    let mut out = Output::default();
    let mut lines = Vec::new();
    for (n, line) in input
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let result = parse_record(line.as_bytes(), InputFormat::Auto, &ctx)
            .and_then(|ev| engine.process(&ev, &mut out));
        if let Err(r) = result {
            lines.push(json!({"type": "rejection", "line": n + 1, "reason": r.reason}));
        }
        for a in out.alerts.drain(..) {
            lines.push(json!({
                "type": "alert",
                "detector": a.finding.detector,
                "session": a.subject.session_id,
                "source_id": a.source_id,
                "action": a.action,
                "confidence": a.finding.confidence,
                "risk": a.session_risk,
            }));
        }
        for r in out.revocations.drain(..) {
            lines.push(json!({
                "type": "revocation",
                "session": r.subject.session_id,
                "source_id": r.source_id,
                "detectors": r.detectors,
            }));
        }
    }
    lines
}

fn scenario_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/scenarios exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("input.jsonl").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn golden_scenarios() {
    let bless = std::env::var_os("VIGIL_BLESS").is_some();
    let dirs = scenario_dirs();
    assert!(
        dirs.len() >= 10,
        "expected the scenario folders, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let actual = run_scenario(dir);
        let path = dir.join("expected.jsonl");
        if bless {
            let text: String = actual.iter().map(|v| format!("{v}\n")).collect();
            fs::write(&path, text).expect("write expected.jsonl");
            continue;
        }
        let expected: Vec<Value> = fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing", path.display()))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("expected.jsonl line is JSON"))
            .collect();
        if actual != expected {
            failures.push(format!(
                "{}:\n  expected: {}\n  actual:   {}",
                dir.file_name().unwrap_or_default().to_string_lossy(),
                serde_json::to_string_pretty(&expected).unwrap_or_default(),
                serde_json::to_string_pretty(&actual).unwrap_or_default()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every attack scenario revokes or at least alerts; every benign trap stays silent.
#[test]
fn benign_traps_are_silent_and_attacks_are_caught() {
    for dir in scenario_dirs() {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let out = run_scenario(&dir);
        let alerts = out.iter().filter(|v| v["type"] == "alert").count();
        let revocations = out.iter().filter(|v| v["type"] == "revocation").count();
        if name.starts_with("benign_") {
            assert_eq!(alerts, 0, "{name} raised {alerts} alert(s): {out:?}");
        } else if ["governance_", "lifecycle_", "delegation_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            // Policy, not anomaly: these end sessions without an alert.
            assert!(revocations > 0, "{name} revoked nothing");
        } else if !name.starts_with("regression_") {
            assert!(alerts > 0, "{name} raised no alert");
        }
    }
}
