//! Vendor-shaped records: our own Okta System Log and Entra sign-in/audit fixtures, written
//! after the shapes real exports take (null security contexts and targets, system actors,
//! authenticator-app MFA events, placeholder coordinates, empty device ids, offset
//! timestamps with seven fraction digits, service-principal and managed-identity sign-ins,
//! the bare Graph resource, audit entries). Every record parses, except the event types
//! Vigil does not use, which are ignorable.

use std::collections::BTreeMap;

use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};
use vigil_model::{EventKind, IdentityType, LifecycleChange, SessionEvent};

fn load(name: &str) -> BTreeMap<String, Result<SessionEvent, vigil_model::Rejection>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/vendor")
        .join(name);
    let ctx = AdapterContext::new(b"vendor-test-key");
    std::fs::read_to_string(&path)
        .expect("fixture")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let id = v["uuid"]
                .as_str()
                .or(v["properties"]["id"].as_str())
                .or(v["id"].as_str())
                .expect("record id")
                .to_owned();
            (id, parse_record(l.as_bytes(), InputFormat::Auto, &ctx))
        })
        .collect()
}

#[test]
fn okta_system_log_shapes_parse() {
    let recs = load("okta-system-log.jsonl");
    assert_eq!(recs.len(), 10);
    for (id, r) in &recs {
        match id.as_str() {
            "v-okta-08" | "v-okta-09" => {
                let e = r.as_ref().expect_err("not session activity");
                assert!(e.reason.is_ignorable(), "{id}: {e:?}");
            }
            _ => assert!(r.is_ok(), "{id}: {r:?}"),
        }
    }
    let ev = |id: &str| recs[id].as_ref().expect("parsed");
    assert_eq!(ev("v-okta-01").kind, EventKind::SessionStart);
    assert_eq!(ev("v-okta-01").device_id.as_deref(), Some("b1f0c3a9e2"));
    assert_eq!(ev("v-okta-01").geo.asn, None, "null securityContext");
    assert!(ev("v-okta-02").success, "ALLOW is a success");
    assert_eq!(ev("v-okta-03").kind, EventKind::Mfa);
    assert!(ev("v-okta-05").token.is_some());
    assert_eq!(ev("v-okta-05").scopes, ["openid", "profile", "mail.read"]);
    assert_eq!(ev("v-okta-05").client_id.as_deref(), Some("0oaMailClient"));
    assert_eq!(
        ev("v-okta-06").geo.coordinates(),
        None,
        "(0, 0) is no place"
    );
    assert_eq!(ev("v-okta-07").kind, EventKind::Logout);
    assert_eq!(ev("v-okta-10").kind, EventKind::UserLifecycle);
    assert_eq!(ev("v-okta-10").user_id, "00u7mira");
    assert_eq!(
        ev("v-okta-10").lifecycle,
        Some(LifecycleChange::Deactivated)
    );
}

#[test]
fn entra_sign_in_and_audit_shapes_parse() {
    let recs = load("entra-signin.jsonl");
    assert_eq!(recs.len(), 8);
    for (id, r) in &recs {
        assert!(r.is_ok(), "{id}: {r:?}");
    }
    let ev = |id: &str| recs[id].as_ref().expect("parsed");
    let first = ev("v-entra-01");
    assert_eq!(first.session_id, "c-noor-1", "no sessionId: correlationId");
    assert_eq!(first.device_id, None, "an empty deviceId is no device");
    assert_eq!(first.time_ms, 1_717_398_902_123);
    assert_eq!(first.identity_type, None);
    assert!(!ev("v-entra-02").success, "KMSI interrupt 50140");
    assert_eq!(ev("v-entra-03").kind, EventKind::TokenRefreshed);
    assert_eq!(ev("v-entra-03").session_id, "sess-noor-1");
    for (id, sp) in [
        ("v-entra-04", "sp-ci-runner"),
        ("v-entra-05", "mi-func-app"),
        ("v-entra-06", "msp-graph"),
    ] {
        assert_eq!(ev(id).identity_type, Some(IdentityType::Workload), "{id}");
        assert_eq!(ev(id).user_id, sp, "{id}");
    }
    assert_eq!(
        ev("v-entra-07").session_id,
        "sess-noor-2",
        "bare Graph signIn"
    );
    assert_eq!(ev("v-entra-08").kind, EventKind::UserLifecycle);
    assert_eq!(ev("v-entra-08").user_id, "aad-noor");
}
