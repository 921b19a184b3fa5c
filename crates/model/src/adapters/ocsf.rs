//! OCSF 1.x Authentication (`class_uid` 3002) and API Activity (`class_uid` 6003).
//!
//! Field map: `time` → time; `session.uid` (Authentication) or `actor.session.uid` (API
//! Activity) → session, `session.uid_alt` → root session; `user.uid`/`actor.user.uid` → user;
//! `src_endpoint.ip`, `src_endpoint.location`, `src_endpoint.autonomous_system` → client;
//! `http_request.user_agent` → user agent; `device.uid` → device; `session.credential_uid` →
//! token id (hashed); `metadata.uid` → source id; `status_id` 2 (failure) → not successful.
//!
//! Account Change (`class_uid` 3001) activities that must end every session of `user.uid`
//! become [`EventKind::UserLifecycle`]: 3 Password Change and 11 MFA Factor Disable
//! (credentials changed), 4 Password Reset, 5 Disable, 6 Delete, 9 Lock (suspended).

use super::json::Value;

use super::AdapterContext;
use super::json::{get, opt_bool, opt_f64, opt_id, opt_ip, opt_str, opt_u32, req_str, req_time};
use crate::event::{EventKind, Geo, SessionEvent, SourceFormat};
use crate::reject::{RejectReason, Rejection};

/// OCSF Authentication.
pub const CLASS_AUTHENTICATION: u64 = 3002;
/// OCSF API Activity.
pub const CLASS_API_ACTIVITY: u64 = 6003;
/// OCSF Account Change.
pub const CLASS_ACCOUNT_CHANGE: u64 = 3001;

/// Maps an Account Change record to a lifecycle event, or says why it is not used.
fn account_change(v: &Value, activity: u32) -> Result<SessionEvent, Rejection> {
    use crate::event::LifecycleChange as L;
    let change = match activity {
        3 | 11 => L::CredentialsChanged,
        4 => L::PasswordReset,
        5 => L::Deactivated,
        6 => L::Deleted,
        9 => L::Suspended,
        other => {
            return Err(Rejection::field(
                RejectReason::UnsupportedEvent,
                "activity_id",
                format!("ocsf Account Change activity {other} does not end sessions"),
            ));
        }
    };
    let mut ev = super::lifecycle_event(
        req_time(v, &["time"], "time")?,
        req_str(v, &["user", "uid"], "user.uid")?,
        opt_str(v, &["metadata", "tenant_uid"], "metadata.tenant_uid")?,
        SourceFormat::Ocsf,
        req_str(v, &["metadata", "uid"], "metadata.uid")?.to_owned(),
        change,
    );
    ev.success = opt_u32(v, &["status_id"], "status_id")? != Some(2);
    Ok(ev)
}

/// Whether a record looks like OCSF.
pub fn detect(v: &Value) -> bool {
    v.get("class_uid").is_some()
}

/// Maps one OCSF record.
pub fn parse(v: &Value, ctx: &AdapterContext) -> Result<SessionEvent, Rejection> {
    let class = match get(v, &["class_uid"]) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(_) => return Err(Rejection::wrong_type("class_uid", "an integer")),
        None => None,
    };
    let activity = opt_u32(v, &["activity_id"], "activity_id")?.unwrap_or(0);
    let (kind, session_root, user_root): (EventKind, &[&str], &[&str]) = match class {
        Some(CLASS_AUTHENTICATION) => {
            let kind = match activity {
                1 => EventKind::SessionStart,
                2 => EventKind::Logout,
                3 | 4 => EventKind::TokenIssued,
                _ => EventKind::Access,
            };
            (kind, &["session"], &["user"])
        }
        Some(CLASS_API_ACTIVITY) => (EventKind::Access, &["actor", "session"], &["actor", "user"]),
        Some(CLASS_ACCOUNT_CHANGE) => return account_change(v, activity),
        _ => {
            return Err(Rejection::field(
                RejectReason::UnsupportedEvent,
                "class_uid",
                format!(
                    "ocsf class_uid {} is not Authentication (3002), API Activity (6003) or Account Change (3001)",
                    get(v, &["class_uid"]).map_or_else(|| "null".into(), Value::to_string)
                ),
            ));
        }
    };
    let session = get(v, session_root);
    let sess_str = |key: &'static str, field: &'static str| -> Result<Option<&str>, Rejection> {
        session.map_or(Ok(None), |s| opt_str(s, &[key], field))
    };
    let session_id =
        sess_str("uid", "session.uid")?.ok_or_else(|| Rejection::missing("session.uid"))?;
    let user = get(v, user_root);
    let user_id = match user {
        Some(u) => opt_id(u, &["uid"], "user.uid")?
            .or(opt_str(u, &["name"], "user.name")?.map(str::to_owned)),
        None => None,
    }
    .ok_or_else(|| Rejection::missing("user.uid"))?;
    let loc = ["src_endpoint", "location"];
    let mut lat = opt_f64(v, &[loc[0], loc[1], "lat"], "src_endpoint.location.lat")?;
    let mut lon = opt_f64(v, &[loc[0], loc[1], "long"], "src_endpoint.location.long")?;
    if let Some(Value::Array(c)) = get(v, &[loc[0], loc[1], "coordinates"]) {
        // GeoJSON order: [longitude, latitude].
        if let [Value::Number(x), Value::Number(y)] = c.as_slice() {
            lon = lon.or(x.as_f64());
            lat = lat.or(y.as_f64());
        }
    }
    let geo = Geo {
        country: opt_str(
            v,
            &[loc[0], loc[1], "country"],
            "src_endpoint.location.country",
        )?
        .map(str::to_owned),
        city: opt_str(v, &[loc[0], loc[1], "city"], "src_endpoint.location.city")?
            .map(str::to_owned),
        lat,
        lon,
        accuracy_km: None,
        asn: opt_u32(
            v,
            &["src_endpoint", "autonomous_system", "number"],
            "src_endpoint.autonomous_system.number",
        )?,
        as_org: opt_str(
            v,
            &["src_endpoint", "autonomous_system", "name"],
            "src_endpoint.autonomous_system.name",
        )?
        .map(str::to_owned),
        is_proxy: opt_bool(
            v,
            &["src_endpoint", "proxy_endpoint", "is_proxy"],
            "src_endpoint.is_proxy",
        )?,
    };
    let status = opt_u32(v, &["status_id"], "status_id")?.unwrap_or(1);
    let scopes = match get(v, &["api", "request", "scopes"]) {
        Some(_) => super::json::scopes(v, &["api", "request", "scopes"], "api.request.scopes")?,
        None => Vec::new(),
    };
    Ok(SessionEvent {
        time_ms: req_time(v, &["time"], "time")?,
        kind,
        success: status != 2,
        session_id: session_id.to_owned(),
        root_session_id: sess_str("uid_alt", "session.uid_alt")?.map(str::to_owned),
        parent_session_id: None,
        user_id,
        tenant: opt_str(v, &["metadata", "tenant_uid"], "metadata.tenant_uid")?.map(str::to_owned),
        ip: opt_ip(v, &["src_endpoint", "ip"], "src_endpoint.ip")?,
        user_agent: opt_str(
            v,
            &["http_request", "user_agent"],
            "http_request.user_agent",
        )?
        .map(str::to_owned),
        device_id: opt_id(v, &["device", "uid"], "device.uid")?,
        token: sess_str("credential_uid", "session.credential_uid")?.map(|t| ctx.hasher.hash(t)),
        refresh_token: None,
        new_refresh_token: None,
        scopes,
        app: opt_str(v, &["service", "name"], "service.name")?
            .or(opt_str(
                v,
                &["dst_endpoint", "svc_name"],
                "dst_endpoint.svc_name",
            )?)
            .or(opt_str(v, &["api", "service", "name"], "api.service.name")?)
            .map(str::to_owned),
        client_id: None,
        geo,
        source: SourceFormat::Ocsf,
        source_id: req_str(v, &["metadata", "uid"], "metadata.uid")?.to_owned(),
        identity_type: None,
        lifecycle: None,
        found_in: None,
        event_name: opt_str(v, &["activity_name"], "activity_name")?.map(str::to_owned),
    })
}
