//! Vigil's native JSON schema, `schemas/session-event.v1.json`.
//!
//! The schema API gateways and custom emitters write to. Tokens arrive as identifiers
//! (`token_id`, such as a JWT `jti`), hashed here with the deployment key, or as keyed hashes
//! computed upstream (`token_hash`); raw bearer values are not part of the schema.

use serde_json::Value;

use super::json::{
    get, opt_bool, opt_f64, opt_id, opt_ip, opt_str, opt_u32, req_str, req_time, scopes,
};
use super::{AdapterContext, token_field};
use crate::event::{EventKind, Geo, IdentityType, LifecycleChange, SessionEvent, SourceFormat};
use crate::reject::{RejectReason, Rejection};

/// Whether a record looks like the native schema: `kind` plus either id, so a record that
/// lacks one of them is rejected for that field rather than as an unknown format.
pub fn detect(v: &Value) -> bool {
    v.get("kind").is_some()
        && (v.get("session_id").is_some()
            || v.get("user_id").is_some()
            || v.get("token_hash").is_some()
            || v.get("token_id").is_some())
}

/// Maps one native record.
pub fn parse(v: &Value, ctx: &AdapterContext) -> Result<SessionEvent, Rejection> {
    let kind_str = req_str(v, &["kind"], "kind")?;
    let kind = EventKind::parse(kind_str).ok_or_else(|| {
        Rejection::field(
            RejectReason::InvalidValue,
            "kind",
            format!(
                "field kind has unknown value {:?}",
                super::json::clip(kind_str, 40)
            ),
        )
    })?;
    let geo = Geo {
        country: opt_str(v, &["geo", "country"], "geo.country")?.map(str::to_owned),
        city: opt_str(v, &["geo", "city"], "geo.city")?.map(str::to_owned),
        lat: opt_f64(v, &["geo", "lat"], "geo.lat")?,
        lon: opt_f64(v, &["geo", "lon"], "geo.lon")?,
        accuracy_km: opt_u32(v, &["geo", "accuracy_km"], "geo.accuracy_km")?,
        asn: opt_u32(v, &["asn"], "asn")?,
        as_org: opt_str(v, &["as_org"], "as_org")?.map(str::to_owned),
        is_proxy: opt_bool(v, &["is_proxy"], "is_proxy")?,
    };
    if get(v, &["geo"]).is_some_and(|g| !g.is_object()) {
        return Err(Rejection::wrong_type("geo", "an object"));
    }
    let identity_type = match opt_str(v, &["identity_type"], "identity_type")? {
        Some(t) => Some(IdentityType::parse(t).ok_or_else(|| {
            Rejection::field(
                RejectReason::InvalidValue,
                "identity_type",
                format!(
                    "field identity_type has unknown value {:?} (human, workload or agent)",
                    super::json::clip(t, 40)
                ),
            )
        })?),
        None => None,
    };
    let lifecycle = match opt_str(v, &["lifecycle"], "lifecycle")? {
        Some(c) => Some(LifecycleChange::parse(c).ok_or_else(|| {
            Rejection::field(
                RejectReason::InvalidValue,
                "lifecycle",
                format!(
                    "field lifecycle has unknown value {:?}",
                    super::json::clip(c, 40)
                ),
            )
        })?),
        None if kind == EventKind::UserLifecycle => {
            return Err(Rejection::missing("lifecycle"));
        }
        None => None,
    };
    // Account changes concern a user and exposures a token, wherever their sessions live.
    let session_id = if kind.is_session_event() {
        req_str(v, &["session_id"], "session_id")?.to_owned()
    } else {
        opt_str(v, &["session_id"], "session_id")?
            .unwrap_or_default()
            .to_owned()
    };
    let user_id = if kind == EventKind::TokenExposed {
        opt_str(v, &["user_id"], "user_id")?
            .unwrap_or_default()
            .to_owned()
    } else {
        req_str(v, &["user_id"], "user_id")?.to_owned()
    };
    let token = token_field(v, ctx, "token_id", "token_hash")?;
    if kind == EventKind::TokenExposed && token.is_none() {
        return Err(Rejection::missing("token_hash"));
    }
    Ok(SessionEvent {
        time_ms: req_time(v, &["time"], "time")?,
        kind,
        success: opt_bool(v, &["success"], "success")?.unwrap_or(true),
        session_id,
        root_session_id: opt_str(v, &["root_session_id"], "root_session_id")?.map(str::to_owned),
        parent_session_id: opt_str(v, &["parent_session_id"], "parent_session_id")?
            .map(str::to_owned),
        user_id,
        tenant: opt_str(v, &["tenant"], "tenant")?.map(str::to_owned),
        ip: opt_ip(v, &["ip"], "ip")?,
        user_agent: opt_str(v, &["user_agent"], "user_agent")?.map(str::to_owned),
        device_id: opt_id(v, &["device_id"], "device_id")?,
        token,
        refresh_token: token_field(v, ctx, "refresh_token_id", "refresh_token_hash")?,
        new_refresh_token: token_field(v, ctx, "new_refresh_token_id", "new_refresh_token_hash")?,
        scopes: scopes(v, &["scopes"], "scopes")?,
        app: opt_str(v, &["app"], "app")?.map(str::to_owned),
        client_id: opt_str(v, &["client_id"], "client_id")?.map(str::to_owned),
        geo,
        source: SourceFormat::Native,
        source_id: req_str(v, &["id"], "id")?.to_owned(),
        identity_type,
        lifecycle,
        found_in: opt_str(v, &["found_in"], "found_in")?.map(str::to_owned),
        event_name: opt_str(v, &["event"], "event")?.map(str::to_owned),
    })
}
