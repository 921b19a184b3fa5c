//! Microsoft Entra ID sign-in logs: the Azure Monitor diagnostic export (`properties` wrapper,
//! categories `SignInLogs`, `NonInteractiveUserSignInLogs`, `ServicePrincipalSignInLogs`,
//! `ManagedIdentitySignInLogs`) or the bare Graph `signIn` resource.
//!
//! Field map: `properties.sessionId` → session (older exports without it fall back to
//! `correlationId`, the sign-in flow); `userId` (or `servicePrincipalId`) → user; `ipAddress`,
//! `userAgent`, `location`, `autonomousSystemNumber` → client; `deviceDetail.deviceId` → device;
//! `uniqueTokenIdentifier` → token id (hashed); `status.errorCode` 0 → success; `id` → source
//! id. Every Entra sign-in issues a token: interactive ones without an incoming token start
//! a session, ones that redeem a refresh token are refreshes. Service-principal and
//! managed-identity sign-ins are workload sessions.
//!
//! Audit log records (category `AuditLogs`, or a bare Graph `directoryAudit`) whose
//! `activityDisplayName` ends a user's sessions become [`EventKind::UserLifecycle`] for the
//! `User` in `targetResources`: "Disable account", "Delete user", "Reset user password",
//! "Reset password (by admin)", "Change user password", "Change password (self-service)",
//! "Admin deleted security info", "User deleted security info", "Revoke user sessions"
//! (deactivated, deleted, password reset, credentials changed, MFA reset).

use super::json::Value;

use super::AdapterContext;
use super::json::{get, opt_f64, opt_id, opt_ip, opt_str, opt_u32, req_time};
use crate::event::{EventKind, Geo, IdentityType, LifecycleChange, SessionEvent, SourceFormat};
use crate::reject::{RejectReason, Rejection};

/// Whether a record looks like an Entra sign-in.
pub fn detect(v: &Value) -> bool {
    let p = v.get("properties").unwrap_or(v);
    p.get("userPrincipalName").is_some()
        || p.get("uniqueTokenIdentifier").is_some()
        || v.get("category")
            .and_then(Value::as_str)
            .is_some_and(|c| c.ends_with("SignInLogs") || c == "AuditLogs")
        || (p.get("activityDisplayName").is_some() && p.get("targetResources").is_some())
}

/// Whether a record is an Entra audit log entry.
fn is_audit(v: &Value, p: &Value) -> bool {
    v.get("category").and_then(Value::as_str) == Some("AuditLogs")
        || p.get("activityDisplayName").is_some()
}

/// Maps an audit log entry that ends a user's sessions.
fn parse_audit(v: &Value, p: &Value) -> Result<SessionEvent, Rejection> {
    let activity = opt_str(
        p,
        &["activityDisplayName"],
        "properties.activityDisplayName",
    )?
    .unwrap_or_default();
    let change = match activity {
        "Disable account" => LifecycleChange::Deactivated,
        "Delete user" | "Hard delete user" => LifecycleChange::Deleted,
        "Reset user password" | "Reset password (by admin)" => LifecycleChange::PasswordReset,
        "Change user password" | "Change password (self-service)" | "Revoke user sessions" => {
            LifecycleChange::CredentialsChanged
        }
        "Admin deleted security info" | "User deleted security info" => LifecycleChange::MfaReset,
        other => {
            return Err(Rejection::field(
                RejectReason::UnsupportedEvent,
                "properties.activityDisplayName",
                format!(
                    "entra audit activity {:?} does not end sessions",
                    super::json::clip(other, 60)
                ),
            ));
        }
    };
    let user = get(p, &["targetResources"])
        .and_then(Value::as_array)
        .and_then(|ts| {
            ts.iter()
                .find(|t| t.get("type").and_then(Value::as_str) == Some("User"))
        })
        .and_then(|t| t.get("id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Rejection::missing("properties.targetResources[type=User].id"))?;
    let time_ms = if get(v, &["time"]).is_some() {
        req_time(v, &["time"], "time")?
    } else {
        req_time(p, &["activityDateTime"], "properties.activityDateTime")?
    };
    let source_id = opt_id(p, &["id"], "properties.id")?
        .or(opt_id(v, &["correlationId"], "correlationId")?)
        .ok_or_else(|| Rejection::missing("properties.id"))?;
    let mut ev = super::lifecycle_event(
        time_ms,
        user,
        opt_str(v, &["tenantId"], "tenantId")?,
        SourceFormat::Entra,
        source_id,
        change,
    );
    ev.success = opt_str(p, &["result"], "properties.result")?.is_none_or(|r| r == "success");
    Ok(ev)
}

/// Maps one Entra sign-in or audit record.
pub fn parse(v: &Value, ctx: &AdapterContext) -> Result<SessionEvent, Rejection> {
    let p = get(v, &["properties"]).unwrap_or(v);
    if !p.is_object() {
        return Err(Rejection::wrong_type("properties", "an object"));
    }
    if is_audit(v, p) {
        return parse_audit(v, p);
    }
    let nonempty = |k: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .is_some_and(|x| !x.is_empty())
    };
    let workload = v.get("category").and_then(Value::as_str).is_some_and(|c| {
        matches!(
            c,
            "ServicePrincipalSignInLogs"
                | "MicrosoftServicePrincipalSignInLogs"
                | "ManagedIdentitySignInLogs"
        )
    }) || (!nonempty("userId") && nonempty("servicePrincipalId"));
    let time_ms = if get(v, &["time"]).is_some() {
        req_time(v, &["time"], "time")?
    } else {
        req_time(p, &["createdDateTime"], "properties.createdDateTime")?
    };
    let session_id = match opt_str(p, &["sessionId"], "properties.sessionId")? {
        Some(s) => s.to_owned(),
        None => opt_str(p, &["correlationId"], "properties.correlationId")?
            .or(opt_str(v, &["correlationId"], "correlationId")?)
            .ok_or_else(|| Rejection::missing("properties.sessionId"))?
            .to_owned(),
    };
    let user_id = opt_str(p, &["userId"], "properties.userId")?
        .or(opt_str(
            p,
            &["servicePrincipalId"],
            "properties.servicePrincipalId",
        )?)
        .or(opt_str(
            p,
            &["userPrincipalName"],
            "properties.userPrincipalName",
        )?)
        .ok_or_else(|| Rejection::missing("properties.userId"))?;
    let error_code = match get(p, &["status", "errorCode"]) {
        None => 0.0,
        Some(_) => {
            opt_f64(p, &["status", "errorCode"], "properties.status.errorCode")?.unwrap_or(0.0)
        }
    };
    let incoming = opt_str(p, &["incomingTokenType"], "properties.incomingTokenType")?;
    let interactive = match get(p, &["isInteractive"]) {
        Some(Value::Bool(b)) => *b,
        _ => v.get("category").and_then(Value::as_str) == Some("SignInLogs"),
    };
    let kind = match incoming {
        Some(t) if t.to_ascii_lowercase().contains("refreshtoken") => EventKind::TokenRefreshed,
        Some(t) if !t.eq_ignore_ascii_case("none") => EventKind::TokenIssued,
        _ if interactive => EventKind::SessionStart,
        _ => EventKind::TokenIssued,
    };
    let loc = ["location"];
    let geo = Geo {
        country: opt_str(
            p,
            &[loc[0], "countryOrRegion"],
            "properties.location.countryOrRegion",
        )?
        .map(str::to_owned),
        city: opt_str(p, &[loc[0], "city"], "properties.location.city")?.map(str::to_owned),
        lat: opt_f64(
            p,
            &[loc[0], "geoCoordinates", "latitude"],
            "properties.location.geoCoordinates.latitude",
        )?,
        lon: opt_f64(
            p,
            &[loc[0], "geoCoordinates", "longitude"],
            "properties.location.geoCoordinates.longitude",
        )?,
        accuracy_km: None,
        asn: opt_u32(
            p,
            &["autonomousSystemNumber"],
            "properties.autonomousSystemNumber",
        )?,
        as_org: None,
        is_proxy: None,
    };
    let token = opt_str(
        p,
        &["uniqueTokenIdentifier"],
        "properties.uniqueTokenIdentifier",
    )?
    .map(|t| ctx.hasher.hash(t));
    let source_id = opt_id(p, &["id"], "properties.id")?
        .or(opt_id(
            p,
            &["originalRequestId"],
            "properties.originalRequestId",
        )?)
        .ok_or_else(|| Rejection::missing("properties.id"))?;
    Ok(SessionEvent {
        time_ms,
        kind,
        success: error_code == 0.0,
        session_id,
        root_session_id: None,
        parent_session_id: None,
        user_id: user_id.to_owned(),
        tenant: opt_str(v, &["tenantId"], "tenantId")?
            .or(opt_str(p, &["homeTenantId"], "properties.homeTenantId")?)
            .map(str::to_owned),
        ip: match opt_ip(p, &["ipAddress"], "properties.ipAddress")? {
            Some(ip) => Some(ip),
            None => opt_ip(v, &["callerIpAddress"], "callerIpAddress")?,
        },
        user_agent: opt_str(p, &["userAgent"], "properties.userAgent")?.map(str::to_owned),
        device_id: opt_str(
            p,
            &["deviceDetail", "deviceId"],
            "properties.deviceDetail.deviceId",
        )?
        .map(str::to_owned),
        token,
        refresh_token: None,
        new_refresh_token: None,
        scopes: Vec::new(),
        app: opt_str(
            p,
            &["resourceDisplayName"],
            "properties.resourceDisplayName",
        )?
        .or(opt_str(
            p,
            &["appDisplayName"],
            "properties.appDisplayName",
        )?)
        .map(str::to_owned),
        client_id: opt_str(p, &["appId"], "properties.appId")?.map(str::to_owned),
        geo,
        source: SourceFormat::Entra,
        source_id,
        identity_type: workload.then_some(IdentityType::Workload),
        lifecycle: None,
        found_in: None,
        event_name: None,
    })
}
