use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{ndjson, root, scratch, vigil};

const GEOIP: &str = "tests/data/geoip-test.mmdb";

struct Run {
    alerts: Vec<Value>,
    revocations: Vec<Value>,
    dead: Vec<Value>,
    stderr: String,
    code: i32,
}

fn replay(name: &str, extra: &[&str], stdin: Option<&[u8]>) -> Run {
    let dir = scratch(name);
    let a = dir.join("alerts.jsonl");
    let r = dir.join("revocations.jsonl");
    let d = dir.join("dead.jsonl");
    let mut args = vec![
        "replay",
        "--geoip",
        GEOIP,
        "--alerts",
        a.to_str().expect("utf-8 path"),
        "--revocations",
        r.to_str().expect("utf-8 path"),
        "--dead-letter",
        d.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let out = vigil(&args, stdin);
    let read = |p: &std::path::Path| ndjson(&std::fs::read(p).unwrap_or_default());
    Run {
        alerts: read(&a),
        revocations: read(&r),
        dead: read(&d),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

#[derive(serde::Deserialize)]
struct Label {
    class: String,
    name: String,
    revoke: bool,
}

#[test]
fn committed_fixtures_match_the_testkit() {
    for f in vigil_testkit::render::Format::ALL {
        let (text, labels) = vigil_testkit::samples::render(f);
        let path = root().join(format!("tests/data/samples/{}.jsonl", f.name()));
        let committed = std::fs::read_to_string(&path).expect("sample file");
        assert!(
            committed == text,
            "{} drifted: run cargo run -p vigil-testkit --bin vigil-fixtures",
            path.display()
        );
        let lpath = root().join(format!("tests/data/samples/{}.labels.json", f.name()));
        let committed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&lpath).expect("labels")).expect("json");
        assert_eq!(
            committed,
            serde_json::to_value(&labels).expect("labels serialize")
        );
    }
    let db = std::fs::read(root().join(GEOIP)).expect("geoip db");
    assert!(
        db == vigil_testkit::geoip::test_database(),
        "geoip-test.mmdb drifted"
    );
}

/// The acceptance test: every attack in the sample story is flagged, in every format, and no
/// benign trap is.
#[test]
fn samples_in_every_format_flag_attacks_and_spare_benign_traps() {
    for format in ["native", "okta", "entra", "ocsf"] {
        let input = format!("tests/data/samples/{format}.jsonl");
        let run = replay(&format!("samples-{format}"), &[&input], None);
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
        assert!(run.dead.is_empty(), "{format}: rejected {:?}", run.dead);
        let labels: BTreeMap<String, Label> = serde_json::from_str(
            &std::fs::read_to_string(
                root().join(format!("tests/data/samples/{format}.labels.json")),
            )
            .expect("labels"),
        )
        .expect("labels json");
        let alerted: BTreeSet<String> = run
            .alerts
            .iter()
            .map(|a| {
                a["actor"]["session"]["uid"]
                    .as_str()
                    .expect("session uid")
                    .to_owned()
            })
            .collect();
        let revoked: BTreeSet<String> = run
            .revocations
            .iter()
            .map(|r| {
                r["sub_id"]["session"]["id"]
                    .as_str()
                    .expect("session id")
                    .to_owned()
            })
            .collect();
        let attacks = labels.values().filter(|l| l.class == "attack").count();
        assert!(
            attacks >= 7,
            "{format}: only {attacks} attacks in the sample"
        );
        for (session, label) in &labels {
            let is_attack = label.class == "attack";
            assert_eq!(
                alerted.contains(session),
                is_attack,
                "{format}: {session} ({}) alerted={}",
                label.name,
                alerted.contains(session)
            );
            assert_eq!(
                revoked.contains(session),
                label.revoke,
                "{format}: {session} ({}) revoked={}",
                label.name,
                revoked.contains(session)
            );
        }
        assert!(
            run.stderr.contains("vigil replay summary"),
            "{format}: no summary"
        );
    }
}

#[test]
fn same_input_gives_same_ids() {
    let a = replay("determinism-a", &["tests/data/samples/okta.jsonl"], None);
    let b = replay("determinism-b", &["tests/data/samples/okta.jsonl"], None);
    let ids = |r: &Run| -> Vec<String> {
        r.alerts
            .iter()
            .map(|a| a["metadata"]["uid"].as_str().unwrap_or_default().to_owned())
            .chain(
                r.revocations
                    .iter()
                    .map(|r| r["jti"].as_str().unwrap_or_default().to_owned()),
            )
            .collect()
    };
    assert!(!ids(&a).is_empty());
    assert_eq!(ids(&a), ids(&b));
}

/// Malformed JSON, wrong types, invalid UTF-8, missing ids, absurd timestamps and a huge
/// record each become a dead letter with its reason; valid records around them still flow;
/// a well-formed record of an event type Vigil does not use is counted as ignored.
#[test]
fn bad_input_is_dead_lettered_with_reasons_and_the_stream_keeps_flowing() {
    let good = |id: &str, t: &str| {
        format!(
            r#"{{"id":"{id}","time":"{t}","kind":"access","session_id":"s-ok","user_id":"u","ip":"81.2.69.10"}}"#
        )
    };
    let huge = format!(r#"{{"id":"h","pad":"{}"}}"#, "x".repeat(2_000_000));
    let mut input = Vec::new();
    for line in [
        good("g1", "2024-05-01T09:00:00Z"),
        "{not json".into(),
        "[1,2,3]".into(),
        r#"{"id":"w","time":"2024-05-01T09:00:00Z","kind":"access","session_id":42,"user_id":"u"}"#.into(),
        r#"{"id":"m","time":"2024-05-01T09:00:00Z","kind":"access","user_id":"u"}"#.into(),
        r#"{"id":"t","time":"3024-05-01T09:00:00Z","kind":"access","session_id":"s","user_id":"u"}"#.into(),
        r#"{"id":"t2","time":"yesterday","kind":"access","session_id":"s","user_id":"u"}"#.into(),
        r#"{"id":"k","time":1e300,"kind":"access","session_id":"s","user_id":"u"}"#.into(),
        r#"{"id":"z","time":"2024-05-01T09:00:00Z","kind":"teleport","session_id":"s","user_id":"u"}"#.into(),
        r#"{"hello":"world"}"#.into(),
        r#"{"id":"ip","time":"2024-05-01T09:00:00Z","kind":"access","session_id":"s","user_id":"u","ip":"999.1.1.1"}"#.into(),
        r#"{"eventType":"user.lifecycle.create","published":"2024-05-01T09:00:00Z","uuid":"o1","actor":{"id":"u"}}"#.into(),
        huge,
        good("g2", "2024-05-01T09:01:00Z"),
    ] {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    input.extend_from_slice(b"{\"id\":\"\xff\xfe\"}\n");
    input.extend_from_slice(good("g3", "2024-05-01T09:02:00Z").as_bytes());
    let run = replay("bad-input", &["--summary-json", "-"], Some(&input));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reasons: Vec<&str> = run
        .dead
        .iter()
        .map(|d| d["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(
        reasons,
        [
            "malformed_json",
            "not_an_object",
            "wrong_type",
            "missing_field",
            "absurd_timestamp",
            "bad_timestamp",
            "absurd_timestamp",
            "invalid_value",
            "unknown_format",
            "invalid_value",
            "too_large",
            "invalid_utf8",
        ]
    );
    for d in &run.dead {
        assert!(!d["detail"].as_str().unwrap_or_default().is_empty(), "{d}");
    }
    let too_large = &run.dead[10];
    assert_eq!(too_large["truncated"], true);
    assert!(
        too_large["record_text"]
            .as_str()
            .is_some_and(|t| t.len() <= 64 * 1024)
    );
    assert!(run.dead[11]["record_base64"].is_string());
    let summary: Value = serde_json::from_str(run.stderr.lines().last().expect("summary line"))
        .expect("summary json");
    assert_eq!(
        summary["events"], 3,
        "the three good records were processed: {summary}"
    );
    assert_eq!(summary["rejected"], 12);
    // An Okta event type Vigil does not use is counted as ignored, not dead-lettered.
    assert_eq!(summary["ignored"], 1);
}

/// Raw secrets never leave: a rejected record's secret-named fields are redacted in its dead
/// letter, and token identifiers appear in outputs only as keyed hashes.
#[test]
fn secrets_are_never_written() {
    let secret = "eyJhbGciOiJSUzI1NiJ9.SECRET-BEARER-VALUE";
    let cookie = "idx=SECRET-COOKIE-VALUE";
    let lines = [
        format!(r#"{{"id":"x","time":"2024-05-01T09:00:00Z","kind":"access","user_id":"u","token":"{secret}","cookie":"{cookie}"}}"#),
        r#"{"id":"a","time":"2024-05-01T09:00:00Z","kind":"token_issued","session_id":"s1","user_id":"u","token_id":"JTI-SHOULD-BE-HASHED"}"#.into(),
        r#"{"id":"b","time":"2024-05-01T09:10:00Z","kind":"access","session_id":"s2","user_id":"u","token_id":"JTI-SHOULD-BE-HASHED"}"#.into(),
    ];
    let input = lines.join("\n");
    let run = replay("secrets", &["-"], Some(input.as_bytes()));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.dead.len(), 1);
    assert_eq!(run.dead[0]["record"]["token"], "[redacted]");
    assert_eq!(run.revocations.len(), 1, "the replayed token is caught");
    let everything = format!(
        "{:?}{:?}{:?}{}",
        run.alerts, run.revocations, run.dead, run.stderr
    );
    for s in [
        "SECRET-BEARER-VALUE",
        "SECRET-COOKIE-VALUE",
        "JTI-SHOULD-BE-HASHED",
    ] {
        assert!(!everything.contains(s), "{s} leaked");
    }
}

#[test]
fn check_config_accepts_the_example_and_rejects_typos() {
    let ok = vigil(&["check-config", "config/example.toml"], None);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("impossible_travel"));
    let dir = scratch("bad-config");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[engine.policy]\nrevoke_at = 500\n").expect("write");
    let out = vigil(&["check-config", bad.to_str().expect("utf-8")], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revoke_at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = vigil(&["replay", "no-such-file.jsonl"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such-file.jsonl"));
}

#[test]
fn signed_sets_verify_with_the_configured_key() {
    use base64::Engine as _;
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::{EncodePrivateKey, LineEnding};

    let dir = scratch("signing");
    let key = p256::ecdsa::SigningKey::from_bytes(&[9u8; 32].into()).expect("scalar");
    let pem = key.to_pkcs8_pem(LineEnding::LF).expect("pem");
    let key_path = dir.join("set.pem");
    std::fs::write(&key_path, pem.as_bytes()).expect("write key");
    let cfg = dir.join("vigil.toml");
    std::fs::write(
        &cfg,
        format!(
            "[output]\nsigning_key_file = {:?}\nsigning_key_id = \"k-test\"\n",
            key_path
        ),
    )
    .expect("write cfg");
    #[cfg(unix)]
    {
        // A private key every user can read is refused.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let refused = replay(
            "signing-world-readable",
            &[
                "--config",
                cfg.to_str().expect("utf-8"),
                "tests/data/samples/native.jsonl",
            ],
            None,
        );
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(
            refused.stderr.contains("every user can read it"),
            "{}",
            refused.stderr
        );
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let run = replay(
        "signing-run",
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "tests/data/samples/native.jsonl",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.revocations.is_empty());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for r in &run.revocations {
        let jws = r["set_jwt"].as_str().expect("signed form");
        let parts: Vec<&str> = jws.split('.').collect();
        let header: Value =
            serde_json::from_slice(&b64.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(
            (header["typ"].as_str(), header["kid"].as_str()),
            (Some("secevent+jwt"), Some("k-test"))
        );
        let claims: Value =
            serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["jti"], r["jti"]);
        let sig =
            p256::ecdsa::Signature::from_slice(&b64.decode(parts[2]).expect("b64")).expect("sig");
        key.verifying_key()
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("verifies");
    }
}

/// The documented Envoy access-log mapping: the replayed token from a hosting provider with a
/// scripting client is revoked, the unauthenticated request is rejected for its missing
/// session, and the ordinary users pass.
#[test]
fn gateway_access_log_fixture() {
    let run = replay("gateway", &["tests/data/gateway/envoy-access.jsonl"], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reasons: Vec<(&str, &str)> = run
        .dead
        .iter()
        .map(|d| {
            (
                d["reason"].as_str().unwrap_or_default(),
                d["field"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(reasons, [("missing_field", "session_id")]);
    let revoked: Vec<&str> = run
        .revocations
        .iter()
        .map(|r| r["sub_id"]["session"]["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(revoked, ["102sidA"]);
    assert!(
        run.alerts
            .iter()
            .all(|a| a["actor"]["session"]["uid"] == "102sidA")
    );
}

/// The vendor-shaped Okta and Entra fixtures (one benign user each, an MFA push answered on
/// a phone, system jobs, service principals, then the users' deactivations): nothing is
/// rejected, the two unused event types are ignored, and no benign session raises an alert.
#[test]
fn vendor_shaped_benign_traffic_raises_nothing() {
    let dir = scratch("vendor");
    let cfg = dir.join("grace.toml");
    // The two files are replayed one after the other, so the second one is hours older.
    std::fs::write(&cfg, "[engine.state]\nout_of_order_grace = \"24h\"\n").expect("write cfg");
    let run = replay(
        "vendor-run",
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--summary-json",
            "tests/data/vendor/okta-system-log.jsonl",
            "tests/data/vendor/entra-signin.jsonl",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary: Value = serde_json::from_str(run.stderr.lines().last().expect("summary line"))
        .expect("summary json");
    assert_eq!(summary["records"], 18, "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");
    assert_eq!(summary["ignored"], 2, "{summary}");
    assert_eq!(summary["alerts"], 0, "{summary}");
}
