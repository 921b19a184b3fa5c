//! Outputs and sample inputs validate against the public schemas in `schemas/`, and the
//! schemas reject what they must.

use serde_json::{Value, json};

use crate::{ndjson, root, scratch, vigil};

fn validator(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schemas").join(name)).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"))
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} fails its schema: {errors:?}\n{doc}"
    );
}

#[test]
fn outputs_validate_against_their_schemas() {
    let dir = scratch("schemas");
    let a = dir.join("a.jsonl");
    let r = dir.join("r.jsonl");
    let d = dir.join("d.jsonl");
    let out = vigil(
        &[
            "replay",
            "--geoip",
            "tests/data/geoip-test.mmdb",
            "--alerts",
            a.to_str().expect("p"),
            "--revocations",
            r.to_str().expect("p"),
            "--dead-letter",
            d.to_str().expect("p"),
            "-",
        ],
        Some(
            [
                std::fs::read_to_string(root().join("tests/data/samples/native.jsonl"))
                    .expect("sample"),
                "{broken\n".into(),
                "{\"id\":1}\n".into(),
            ]
            .concat()
            .as_bytes(),
        ),
    );
    assert_eq!(out.status.code(), Some(0));
    let alerts = ndjson(&std::fs::read(&a).expect("alerts"));
    let revocations = ndjson(&std::fs::read(&r).expect("revocations"));
    let dead = ndjson(&std::fs::read(&d).expect("dead letters"));
    assert!(alerts.len() >= 7 && revocations.len() >= 7 && dead.len() == 2);
    let (va, vr, vd) = (
        validator("alert.v1.json"),
        validator("revocation.v1.json"),
        validator("dead-letter.v1.json"),
    );
    for x in &alerts {
        assert_valid(&va, x, "alert");
    }
    for x in &revocations {
        assert_valid(&vr, x, "revocation");
    }
    for x in &dead {
        assert_valid(&vd, x, "dead letter");
    }
}

#[test]
fn native_samples_and_scenarios_validate_against_the_input_schema() {
    let v = validator("session-event.v1.json");
    let mut n = 0;
    let mut files = vec![root().join("tests/data/samples/native.jsonl")];
    for e in std::fs::read_dir(root().join("crates/engine/tests/scenarios")).expect("scenarios") {
        files.push(e.expect("entry").path().join("input.jsonl"));
    }
    for f in files {
        for doc in ndjson(&std::fs::read(&f).expect("input")) {
            assert_valid(&v, &doc, &f.display().to_string());
            n += 1;
        }
    }
    assert!(n > 100, "only {n} records checked");
}

#[test]
fn revocation_schema_rejects_sub_exp_and_extra_events() {
    let v = validator("revocation.v1.json");
    let good = json!({
        "iss": "https://v/", "iat": 1, "jti": "00000000-0000-8000-8000-000000000000", "aud": "a", "txn": "t",
        "sub_id": {"format": "complex", "session": {"format": "opaque", "id": "s"}, "user": {"format": "opaque", "id": "u"}},
        "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {
            "initiating_entity": "policy", "reason_admin": {"en": "why"}, "event_timestamp": 1}}
    });
    assert!(v.is_valid(&good));
    let mut with_sub = good.clone();
    with_sub["sub"] = json!("u");
    assert!(!v.is_valid(&with_sub));
    let mut with_exp = good.clone();
    with_exp["exp"] = json!(2);
    assert!(!v.is_valid(&with_exp));
    let mut two = good.clone();
    two["events"]["https://schemas.openid.net/secevent/caep/event-type/credential-change"] =
        json!({});
    assert!(!v.is_valid(&two));
    let mut empty_reason = good;
    empty_reason["events"]["https://schemas.openid.net/secevent/caep/event-type/session-revoked"]
        ["reason_admin"] = json!({"en": ""});
    assert!(!v.is_valid(&empty_reason));
}
