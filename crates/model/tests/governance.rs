//! Account lifecycle and token exposure records: which source records become
//! `user_lifecycle` and `token_exposed` events, and what they must carry.

use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};
use vigil_model::{EventKind, IdentityType, LifecycleChange, RejectReason};

fn ctx() -> AdapterContext {
    AdapterContext::new(b"governance-test-key")
}

fn okta(event_type: &str) -> String {
    format!(
        r#"{{"uuid":"u-{event_type}","published":"2024-05-01T09:30:00Z","eventType":"{event_type}",
            "actor":{{"id":"00u-admin","type":"User"}},"outcome":{{"result":"SUCCESS"}},
            "client":{{"ipAddress":"10.0.0.5"}},
            "target":[{{"id":"00u-alice","type":"User","alternateId":"alice@example.com"}}]}}"#
    )
}

#[test]
fn okta_account_changes_are_lifecycle_events_for_the_target_user() {
    for (ty, change) in [
        ("user.lifecycle.deactivate", LifecycleChange::Deactivated),
        ("user.lifecycle.suspend", LifecycleChange::Suspended),
        ("user.lifecycle.delete.initiated", LifecycleChange::Deleted),
        (
            "user.account.reset_password",
            LifecycleChange::PasswordReset,
        ),
        ("user.mfa.factor.reset_all", LifecycleChange::MfaReset),
        (
            "user.account.update_password",
            LifecycleChange::CredentialsChanged,
        ),
    ] {
        let ev = parse_record(okta(ty).as_bytes(), InputFormat::Auto, &ctx()).expect(ty);
        assert_eq!(ev.kind, EventKind::UserLifecycle, "{ty}");
        assert_eq!(ev.lifecycle, Some(change), "{ty}");
        assert_eq!(ev.user_id, "00u-alice", "{ty}: the target, not the admin");
        assert!(ev.session_id.is_empty());
    }
    let no_target = okta("user.lifecycle.deactivate")
        .replace(r#""type":"User","alt"#, r#""type":"Group","alt"#);
    let err = parse_record(no_target.as_bytes(), InputFormat::Auto, &ctx()).expect_err("no user");
    assert_eq!(err.reason, RejectReason::MissingField);
}

#[test]
fn native_lifecycle_and_exposure_records_need_their_fields() {
    let ok = br#"{"id":"1","time":"2024-05-01T09:30:00Z","kind":"user_lifecycle","user_id":"alice","lifecycle":"mfa_reset"}"#;
    let ev = parse_record(ok, InputFormat::Auto, &ctx()).expect("valid");
    assert_eq!(ev.lifecycle, Some(LifecycleChange::MfaReset));
    let missing =
        br#"{"id":"1","time":"2024-05-01T09:30:00Z","kind":"user_lifecycle","user_id":"alice"}"#;
    let err = parse_record(missing, InputFormat::Auto, &ctx()).expect_err("no lifecycle");
    assert_eq!(err.field, Some("lifecycle"));

    let exposed = br#"{"id":"2","time":"2024-05-01T09:31:00Z","kind":"token_exposed","token_id":"jti-9","found_in":"SEC-1"}"#;
    let ev = parse_record(exposed, InputFormat::Auto, &ctx()).expect("valid");
    assert_eq!(ev.kind, EventKind::TokenExposed);
    assert_eq!(ev.token, Some(ctx().hasher.hash("jti-9")));
    assert_eq!(ev.found_in.as_deref(), Some("SEC-1"));
    let no_token =
        br#"{"id":"2","time":"2024-05-01T09:31:00Z","kind":"token_exposed","user_id":"x"}"#;
    let err = parse_record(no_token, InputFormat::Auto, &ctx()).expect_err("no token");
    assert_eq!(err.field, Some("token_hash"));

    let agent = br#"{"id":"3","time":"2024-05-01T09:32:00Z","kind":"access","session_id":"s","user_id":"u","identity_type":"agent"}"#;
    let ev = parse_record(agent, InputFormat::Auto, &ctx()).expect("valid");
    assert_eq!(ev.identity_type, Some(IdentityType::Agent));
    let bad = br#"{"id":"3","time":"2024-05-01T09:32:00Z","kind":"access","session_id":"s","user_id":"u","identity_type":"robot"}"#;
    let err = parse_record(bad, InputFormat::Auto, &ctx()).expect_err("unknown type");
    assert_eq!(err.field, Some("identity_type"));
}

#[test]
fn entra_audit_entries_that_end_sessions_are_lifecycle_events() {
    let audit = |activity: &str| {
        format!(
            r#"{{"time":"2024-05-01T09:30:00Z","category":"AuditLogs","tenantId":"t1",
                "properties":{{"id":"Directory_{activity}","activityDisplayName":"{activity}","result":"success",
                "initiatedBy":{{"user":{{"id":"admin-1"}}}},
                "targetResources":[{{"id":"aad-user-7","type":"User","userPrincipalName":"bob@example.com"}}]}}}}"#
        )
    };
    for (activity, change) in [
        ("Disable account", LifecycleChange::Deactivated),
        ("Delete user", LifecycleChange::Deleted),
        ("Reset user password", LifecycleChange::PasswordReset),
        ("Change user password", LifecycleChange::CredentialsChanged),
        ("Admin deleted security info", LifecycleChange::MfaReset),
    ] {
        let ev =
            parse_record(audit(activity).as_bytes(), InputFormat::Auto, &ctx()).expect(activity);
        assert_eq!(ev.kind, EventKind::UserLifecycle, "{activity}");
        assert_eq!(ev.lifecycle, Some(change), "{activity}");
        assert_eq!(ev.user_id, "aad-user-7");
        assert_eq!(ev.tenant.as_deref(), Some("t1"));
    }
    let other = parse_record(
        audit("Add member to group").as_bytes(),
        InputFormat::Auto,
        &ctx(),
    )
    .expect_err("not a session-ending change");
    assert_eq!(other.reason, RejectReason::UnsupportedEvent);
}

#[test]
fn entra_service_principal_sign_ins_are_workload_sessions() {
    let rec = br#"{"time":"2024-05-01T09:30:00Z","category":"ServicePrincipalSignInLogs",
        "properties":{"id":"sp-1","servicePrincipalId":"sp-42","correlationId":"corr-1","ipAddress":"10.1.1.1",
        "status":{"errorCode":0}}}"#;
    let ev = parse_record(rec, InputFormat::Auto, &ctx()).expect("valid");
    assert_eq!(ev.identity_type, Some(IdentityType::Workload));
    assert_eq!(ev.user_id, "sp-42");
}

#[test]
fn ocsf_account_changes_that_end_sessions_are_lifecycle_events() {
    let rec = |activity: u32| {
        format!(
            r#"{{"class_uid":3001,"activity_id":{activity},"time":1714555800000,"status_id":1,
                "metadata":{{"uid":"m-{activity}","product":{{"name":"idp"}}}},"user":{{"uid":"u-9"}}}}"#
        )
    };
    for (activity, change) in [
        (3, LifecycleChange::CredentialsChanged),
        (4, LifecycleChange::PasswordReset),
        (5, LifecycleChange::Deactivated),
        (6, LifecycleChange::Deleted),
        (9, LifecycleChange::Suspended),
    ] {
        let ev = parse_record(rec(activity).as_bytes(), InputFormat::Auto, &ctx()).expect("valid");
        assert_eq!(ev.lifecycle, Some(change), "activity {activity}");
        assert_eq!(ev.user_id, "u-9");
    }
    let created = parse_record(rec(1).as_bytes(), InputFormat::Auto, &ctx()).expect_err("create");
    assert_eq!(created.reason, RejectReason::UnsupportedEvent);
}
