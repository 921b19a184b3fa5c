//! `vigil eval` on the labelled samples: the report counts what the labels say, and a wrong
//! label shows up as a missed target.

use serde_json::Value;

use crate::{root, vigil};

fn eval(labels: &str, input: &str, json: &std::path::Path) -> (String, Value) {
    let out = vigil(
        &[
            "eval",
            "--labels",
            labels,
            "--geoip",
            "tests/data/geoip-test.mmdb",
            "--json",
            json.to_str().expect("utf-8"),
            input,
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(json).expect("report")).expect("json");
    (String::from_utf8_lossy(&out.stdout).into_owned(), report)
}

#[test]
fn eval_reports_recall_false_positives_and_delay_on_the_okta_sample() {
    let dir = std::env::temp_dir().join(format!("vigil-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (table, report) = eval(
        "tests/data/samples/okta.labels.json",
        "tests/data/samples/okta.jsonl",
        &dir.join("okta.json"),
    );
    assert_eq!(report["attack_sessions"], 10);
    assert_eq!(report["benign_sessions"], 12);
    assert_eq!(report["recall"], 1.0);
    assert_eq!(report["false_positive_sessions"], 0);
    assert_eq!(
        report["attacks"]["aitm_cookie_replay"]["revoked_on_first_malicious"],
        1
    );
    assert_eq!(
        report["attacks"]["token_replay_other_session"]["delay_events_max"],
        0
    );
    assert_eq!(
        report["benign_traps"]["shared_corporate_nat"]["sessions"],
        3
    );
    assert!(
        table.contains("target met   : no alert on any benign trap"),
        "{table}"
    );

    // Call a benign session an attack: recall drops below the target.
    let labels: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/data/samples/okta.labels.json"))
            .expect("labels"),
    )
    .expect("json");
    let mut wrong = labels.clone();
    wrong["b-vpn"] =
        serde_json::json!({"class": "attack", "name": "aitm_cookie_replay", "revoke": true});
    let path = dir.join("wrong.labels.json");
    std::fs::write(&path, wrong.to_string()).expect("write");
    let (table, report) = eval(
        path.to_str().expect("utf-8"),
        "tests/data/samples/okta.jsonl",
        &dir.join("wrong.json"),
    );
    assert_eq!(report["attacks"]["aitm_cookie_replay"]["recall"], 0.5);
    assert!(
        table.contains("target MISSED: recall >= 0.99 for every attack type (lowest 0.500 (aitm_cookie_replay))"),
        "{table}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A generated population (office hours, apps, hourly refresh, phones, office NAT, VPN users
/// toggling all day, IPv6, travellers, browser updates) with attacks in a fifth of the
/// user-days: every attack is caught and no benign session alerts. A regression guard on
/// detection quality, measured by `vigil eval`.
#[test]
fn a_generated_population_is_caught_without_false_positives() {
    let dir = std::env::temp_dir().join(format!("vigil-pop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (traffic, labels) = (dir.join("pop.jsonl"), dir.join("pop.labels.json"));
    let out = vigil(
        &[
            "gen",
            "--population",
            "60",
            "--days",
            "10",
            "--attack-rate",
            "0.2",
            "--seed",
            "3",
            "--out",
            traffic.to_str().expect("utf-8"),
            "--labels",
            labels.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (table, report) = eval(
        labels.to_str().expect("utf-8"),
        traffic.to_str().expect("utf-8"),
        &dir.join("report.json"),
    );
    assert!(
        report["attack_sessions"].as_u64().unwrap_or(0) >= 100,
        "{table}"
    );
    assert!(report["recall"].as_f64().unwrap_or(0.0) >= 0.99, "{table}");
    assert_eq!(report["false_positive_sessions"], 0, "{table}");
    assert_eq!(report["rejected"], 0, "{table}");
    let _ = std::fs::remove_dir_all(dir);
}
