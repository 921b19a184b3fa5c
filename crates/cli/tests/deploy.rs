//! The deployment files refer to what exists: the Grafana dashboard queries metrics Vigil
//! exports, and docker-compose mounts files that are in the repository.

use std::collections::BTreeSet;

use crate::root;

/// Every `vigil_*` metric name in a PromQL expression, histogram suffixes removed.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("vigil_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.push(base.to_owned());
        rest = &tail[end..];
    }
    out
}

fn exported() -> BTreeSet<String> {
    let m = vigil_kafka::Metrics::new();
    let e = vigil_enforce::EnforceMetrics::register(m.registry()).expect("register");
    m.names()
        .into_iter()
        .chain(e.names().into_iter().map(|n| format!("vigil_{n}")))
        .collect()
}

#[test]
fn dashboard_queries_only_metrics_vigil_exports() {
    let path = root().join("deploy/grafana/dashboards/vigil.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("json");
    let known = exported();
    let mut used = BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr");
            for name in metric_names(expr) {
                assert!(
                    known.contains(&name),
                    "panel {:?} queries {name}, which Vigil does not export (known: {known:?})",
                    panel["title"]
                );
                used.insert(name);
            }
        }
    }
    // What operators need on one screen.
    for must in [
        "vigil_events_total",
        "vigil_consumer_lag",
        "vigil_findings_total",
        "vigil_revocations_total",
        "vigil_processing_latency_seconds",
        "vigil_rejections_total",
        "vigil_enforce_deliveries_total",
        "vigil_enforce_dead_letters_total",
    ] {
        assert!(used.contains(must), "the dashboard does not show {must}");
    }
}

#[test]
fn compose_mounts_files_that_exist() {
    let compose = std::fs::read_to_string(root().join("docker-compose.yml")).expect("compose");
    let mut mounts = 0;
    for line in compose.lines() {
        let l = line.trim().trim_start_matches("- ").trim();
        if let Some(src) = l.strip_prefix("./").and_then(|s| s.split(':').next()) {
            assert!(
                root().join(src).exists(),
                "docker-compose.yml mounts ./{src}, which does not exist"
            );
            mounts += 1;
        }
    }
    assert!(mounts >= 5, "found only {mounts} mounts");
    let prom = std::fs::read_to_string(root().join("deploy/prometheus.yml")).expect("prometheus");
    for target in ["vigil:9898", "enforce:9899"] {
        assert!(
            prom.contains(target),
            "prometheus.yml does not scrape {target}"
        );
    }
}
