//! Okta System Log `LogEvent` (`/api/v1/logs`, or any exporter that keeps its shape).
//!
//! Field map: `published` → time; `authenticationContext.externalSessionId` → session;
//! `actor.id` → user; `client.ipAddress`, `client.userAgent.rawUserAgent`,
//! `client.geographicalContext` → client; `securityContext.asNumber/asOrg/isProxy` → network;
//! `debugContext.debugData.deviceFingerprint` → device (not `dtHash`, which some events of a
//! session carry and others do not); `grantedScopes` →
//! scopes; targets of type `access_token`/`refresh_token`/`id_token` → token ids (hashed);
//! `uuid` → source id.
//!
//! Account lifecycle events (`user.lifecycle.deactivate`, `.suspend`, `.delete.*`,
//! `user.account.reset_password`, `user.account.update_password`,
//! `user.mfa.factor.reset_all`, `user.mfa.factor.deactivate`) become
//! [`EventKind::UserLifecycle`] for the target `User` (the actor is usually an administrator);
//! they carry no session.

use super::json::Value;

use super::AdapterContext;
use super::json::{get, opt_bool, opt_f64, opt_id, opt_ip, opt_str, opt_u32, req_str, req_time};
use crate::event::{EventKind, Geo, LifecycleChange, SessionEvent, SourceFormat};
use crate::reject::{RejectReason, Rejection};

/// Whether a record looks like an Okta `LogEvent`.
pub fn detect(v: &Value) -> bool {
    v.get("eventType").is_some() && v.get("published").is_some()
}

/// The account change an Okta `eventType` reports, if it is one that ends every session.
fn lifecycle_of(event_type: &str) -> Option<LifecycleChange> {
    Some(match event_type {
        "user.lifecycle.deactivate" => LifecycleChange::Deactivated,
        "user.lifecycle.suspend" => LifecycleChange::Suspended,
        t if t.starts_with("user.lifecycle.delete") => LifecycleChange::Deleted,
        "user.account.reset_password" => LifecycleChange::PasswordReset,
        "user.mfa.factor.reset_all" => LifecycleChange::MfaReset,
        "user.account.update_password" | "user.mfa.factor.deactivate" => {
            LifecycleChange::CredentialsChanged
        }
        _ => return None,
    })
}

/// Maps an Okta account lifecycle event: the user is the `User` target.
fn parse_lifecycle(v: &Value, change: LifecycleChange) -> Result<SessionEvent, Rejection> {
    let user = get(v, &["target"])
        .and_then(Value::as_array)
        .and_then(|ts| {
            ts.iter()
                .find(|t| t.get("type").and_then(Value::as_str) == Some("User"))
        })
        .and_then(|t| t.get("id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Rejection::missing("target[type=User].id"))?;
    let success =
        opt_str(v, &["outcome", "result"], "outcome.result")?.is_none_or(|r| r == "SUCCESS");
    let mut ev = super::lifecycle_event(
        req_time(v, &["published"], "published")?,
        user,
        opt_str(v, &["tenant"], "tenant")?,
        SourceFormat::Okta,
        opt_id(v, &["uuid"], "uuid")?.ok_or_else(|| Rejection::missing("uuid"))?,
        change,
    );
    ev.success = success;
    ev.ip = opt_ip(v, &["client", "ipAddress"], "client.ipAddress")?;
    ev.event_name = opt_str(v, &["eventType"], "eventType")?.map(str::to_owned);
    Ok(ev)
}

/// Which Vigil event kind an Okta `eventType` is, if Vigil uses it at all.
fn kind_of(event_type: &str, grant_type: Option<&str>) -> Option<EventKind> {
    Some(match event_type {
        "user.session.start" => EventKind::SessionStart,
        "user.session.end" => EventKind::Logout,
        "user.session.clear" | "user.session.expire" => EventKind::Revocation,
        t if t.starts_with("app.oauth2") && t.contains("token.grant") => {
            if grant_type == Some("refresh_token") {
                EventKind::TokenRefreshed
            } else {
                EventKind::TokenIssued
            }
        }
        t if t.starts_with("app.oauth2") && t.contains("token.revoke") => EventKind::Revocation,
        t if t.starts_with("user.authentication.auth_via_mfa")
            || t.starts_with("user.mfa.")
            || t == "system.push.send_factor_verify_push" =>
        {
            EventKind::Mfa
        }
        t if t.starts_with("user.authentication.sso")
            || t.starts_with("user.session.access_admin_app")
            || t.starts_with("user.session.impersonation")
            || t.starts_with("policy.evaluate_sign_on")
            || t.starts_with("app.oauth2.")
            || t.starts_with("app.generic.")
            || t.starts_with("app.inbound_del_auth")
            || t.starts_with("user.authentication.") =>
        {
            EventKind::Access
        }
        _ => return None,
    })
}

/// Maps one Okta `LogEvent`.
pub fn parse(v: &Value, ctx: &AdapterContext) -> Result<SessionEvent, Rejection> {
    let event_type = req_str(v, &["eventType"], "eventType")?;
    let debug = get(v, &["debugContext", "debugData"]);
    let dbg_str = |key: &'static str, field: &'static str| -> Result<Option<&str>, Rejection> {
        match debug {
            Some(d) => opt_str(d, &[key], field),
            None => Ok(None),
        }
    };
    if let Some(change) = lifecycle_of(event_type) {
        return parse_lifecycle(v, change);
    }
    // Okta's own background jobs (imports, provisioning) carry no user session.
    if let Some(actor) = opt_str(v, &["actor", "type"], "actor.type")?
        && actor != "User"
        && actor != "PublicClientApp"
    {
        return Err(Rejection::field(
            RejectReason::UnsupportedEvent,
            "actor.type",
            format!("okta actor type {actor} is not a user session"),
        ));
    }
    let grant_type = dbg_str("grantType", "debugContext.debugData.grantType")?;
    let kind = kind_of(event_type, grant_type).ok_or_else(|| {
        Rejection::field(
            RejectReason::UnsupportedEvent,
            "eventType",
            format!("okta eventType {event_type} carries no session activity Vigil uses"),
        )
    })?;
    let session_id = opt_str(
        v,
        &["authenticationContext", "externalSessionId"],
        "authenticationContext.externalSessionId",
    )?
    .filter(|s| !s.eq_ignore_ascii_case("unknown"))
    .ok_or_else(|| Rejection::missing("authenticationContext.externalSessionId"))?;
    let result = opt_str(v, &["outcome", "result"], "outcome.result")?.unwrap_or("SUCCESS");
    let success = matches!(result, "SUCCESS" | "ALLOW" | "UNKNOWN");

    let mut token = None;
    let mut refresh = None;
    if let Some(targets) = get(v, &["target"]) {
        let Some(targets) = targets.as_array() else {
            return Err(Rejection::wrong_type("target", "an array"));
        };
        for t in targets {
            let ty = opt_str(t, &["type"], "target.type")?.unwrap_or("");
            let id = opt_str(t, &["id"], "target.id")?;
            match (ty, id) {
                ("access_token" | "id_token", Some(id)) if token.is_none() => {
                    token = Some(ctx.hasher.hash(id));
                }
                ("refresh_token", Some(id)) => refresh = Some(ctx.hasher.hash(id)),
                _ => {}
            }
        }
    }
    // On a refresh grant the refresh-token target is the token presented; Okta may add the
    // rotated one as `debugData.rotatedRefreshTokenId` where rotation is on.
    let (refresh_token, new_refresh_token) = if kind == EventKind::TokenRefreshed {
        let rotated = dbg_str(
            "rotatedRefreshTokenId",
            "debugContext.debugData.rotatedRefreshTokenId",
        )?;
        (refresh, rotated.map(|r| ctx.hasher.hash(r)))
    } else {
        (None, refresh)
    };
    let app = match get(v, &["target"]).and_then(Value::as_array) {
        Some(ts) => ts
            .iter()
            .find(|t| t.get("type").and_then(Value::as_str) == Some("AppInstance"))
            .and_then(|t| t.get("displayName").or_else(|| t.get("alternateId")))
            .and_then(Value::as_str)
            .map(str::to_owned),
        None => None,
    };
    let gc = ["client", "geographicalContext"];
    let geo = Geo {
        country: opt_str(
            v,
            &[gc[0], gc[1], "country"],
            "client.geographicalContext.country",
        )?
        .map(str::to_owned),
        city: opt_str(
            v,
            &[gc[0], gc[1], "city"],
            "client.geographicalContext.city",
        )?
        .map(str::to_owned),
        lat: opt_f64(
            v,
            &[gc[0], gc[1], "geolocation", "lat"],
            "client.geographicalContext.geolocation.lat",
        )?,
        lon: opt_f64(
            v,
            &[gc[0], gc[1], "geolocation", "lon"],
            "client.geographicalContext.geolocation.lon",
        )?,
        accuracy_km: None,
        asn: opt_u32(
            v,
            &["securityContext", "asNumber"],
            "securityContext.asNumber",
        )?,
        as_org: opt_str(v, &["securityContext", "asOrg"], "securityContext.asOrg")?
            .map(str::to_owned),
        is_proxy: opt_bool(
            v,
            &["securityContext", "isProxy"],
            "securityContext.isProxy",
        )?,
    };
    // Only the browser fingerprint: `dtHash` (device trust) is a different identifier that
    // appears on some events of a session and not others, so mixing the two would make one
    // browser look like two devices.
    let device = dbg_str(
        "deviceFingerprint",
        "debugContext.debugData.deviceFingerprint",
    )?
    .map(str::to_owned);
    let scopes = dbg_str("grantedScopes", "debugContext.debugData.grantedScopes")?
        .map(super::json::split_scopes)
        .unwrap_or_default();
    Ok(SessionEvent {
        time_ms: req_time(v, &["published"], "published")?,
        kind,
        success,
        session_id: session_id.to_owned(),
        root_session_id: None,
        parent_session_id: None,
        user_id: req_str(v, &["actor", "id"], "actor.id")?.to_owned(),
        tenant: opt_str(v, &["tenant"], "tenant")?.map(str::to_owned),
        ip: opt_ip(v, &["client", "ipAddress"], "client.ipAddress")?,
        user_agent: opt_str(
            v,
            &["client", "userAgent", "rawUserAgent"],
            "client.userAgent.rawUserAgent",
        )?
        .map(str::to_owned),
        device_id: device,
        token,
        refresh_token,
        new_refresh_token,
        scopes,
        app,
        client_id: dbg_str("clientId", "debugContext.debugData.clientId")?.map(str::to_owned),
        geo,
        source: SourceFormat::Okta,
        source_id: opt_id(v, &["uuid"], "uuid")?.ok_or_else(|| Rejection::missing("uuid"))?,
        identity_type: None,
        lifecycle: None,
        found_in: None,
        event_name: Some(event_type.to_owned()),
    })
}
