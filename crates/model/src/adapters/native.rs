//! Vigil's native JSON schema, `schemas/session-event.v1.json`.
//!
//! The schema API gateways and custom emitters write to. Tokens arrive as identifiers
//! (`token_id`, such as a JWT `jti`), hashed here with the deployment key, or as keyed hashes
//! computed upstream (`token_hash`); raw bearer values are not part of the schema.

use super::json::Value;

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

/// The fast path for well-formed native records: one typed pass over the bytes, borrowing
/// strings from the input, instead of building a `serde_json::Value` tree first.
///
/// It answers only when it is sure: `Some` holds exactly what [`parse`] would return for the
/// record; anything unusual (a wrong type, a quoted number, a float id, a bad timestamp, an
/// unknown `kind`, a missing field, a duplicate key, a record that is not native) gives
/// `None`, and the caller takes the general path, which names the fault.
pub fn parse_fast(text: &str, ctx: &AdapterContext) -> Option<SessionEvent> {
    use std::borrow::Cow;
    fn s(v: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
        v.filter(|x| !x.is_empty())
    }
    let r: fast::Record<'_> = serde_json::from_str(text).ok()?;
    let kind_str = s(r.kind)?;
    let session_raw = s(r.session_id);
    let user_raw = s(r.user_id);
    let token_id = r.token_id.and_then(|x| x.0);
    let token_hash = s(r.token_hash);
    // Detection as `detect` decides it (present, non-null ids only; else the general path).
    if session_raw.is_none() && user_raw.is_none() && token_id.is_none() && token_hash.is_none() {
        return None;
    }
    let kind = EventKind::parse(&kind_str)?;
    // As `token_field`: the identifier hashed with the deployment key, else the given hash.
    let hashed = |id: Option<String>, hash: Option<Cow<'_, str>>| match (id, hash) {
        (Some(id), _) => Some(Some(ctx.hasher.hash(&id))),
        (None, Some(h)) => crate::token::TokenHash::from_hex(&h).map(Some),
        (None, None) => Some(None),
    };
    let token = hashed(token_id, token_hash)?;
    let refresh_token = hashed(
        r.refresh_token_id.and_then(|x| x.0),
        s(r.refresh_token_hash),
    )?;
    let new_refresh_token = hashed(
        r.new_refresh_token_id.and_then(|x| x.0),
        s(r.new_refresh_token_hash),
    )?;
    let identity_type = match s(r.identity_type) {
        Some(t) => Some(IdentityType::parse(&t)?),
        None => None,
    };
    let lifecycle = match s(r.lifecycle) {
        Some(c) => Some(LifecycleChange::parse(&c)?),
        None if kind == EventKind::UserLifecycle => return None,
        None => None,
    };
    let session_id = match session_raw {
        Some(v) => v.into_owned(),
        None if kind.is_session_event() => return None,
        None => String::new(),
    };
    let user_id = match user_raw {
        Some(v) => v.into_owned(),
        None if kind == EventKind::TokenExposed => String::new(),
        None => return None,
    };
    if kind == EventKind::TokenExposed && token.is_none() {
        return None;
    }
    let time_ms = match r.time? {
        fast::Time::Text(t) => crate::time::parse_rfc3339(t.trim())?,
        fast::Time::Number(x) => super::json::epoch_to_ms(x)?,
    };
    if !crate::time::is_plausible(time_ms) {
        return None;
    }
    let ip = match s(r.ip) {
        Some(ip) => Some(super::json::parse_ip(&ip)?),
        None => None,
    };
    let u32_of = |x: Option<f64>| match x {
        None => Some(None),
        Some(x) => super::json::as_u32(x).map(Some),
    };
    let g = r.geo.unwrap_or_default();
    let geo = Geo {
        country: s(g.country).map(Into::into),
        city: s(g.city).map(Into::into),
        lat: g.lat,
        lon: g.lon,
        accuracy_km: u32_of(g.accuracy_km)?,
        asn: u32_of(r.asn)?,
        as_org: s(r.as_org).map(Into::into),
        is_proxy: r.is_proxy,
    };
    let scopes = match r.scopes {
        None => Vec::new(),
        Some(fast::Scopes(v)) => v,
    };
    Some(SessionEvent {
        time_ms,
        kind,
        success: r.success.unwrap_or(true),
        session_id,
        root_session_id: s(r.root_session_id).map(Into::into),
        parent_session_id: s(r.parent_session_id).map(Into::into),
        user_id,
        tenant: s(r.tenant).map(Into::into),
        ip,
        user_agent: s(r.user_agent).map(Into::into),
        device_id: r.device_id.and_then(|x| x.0),
        token,
        refresh_token,
        new_refresh_token,
        scopes,
        app: s(r.app).map(Into::into),
        client_id: s(r.client_id).map(Into::into),
        geo,
        source: SourceFormat::Native,
        source_id: s(r.id)?.into_owned(),
        identity_type,
        lifecycle,
        found_in: s(r.found_in).map(Into::into),
        event_name: s(r.event).map(Into::into),
    })
}

/// The typed shape [`parse_fast`] reads. Every field is optional (`null` is absent, as in
/// the general path); a value of another type fails the whole pass.
mod fast {
    use std::borrow::Cow;
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, Deserializer, SeqAccess, Visitor};

    type S<'a> = Option<Cow<'a, str>>;

    #[derive(Deserialize)]
    pub struct Record<'a> {
        #[serde(borrow)]
        pub id: S<'a>,
        pub time: Option<Time<'a>>,
        #[serde(borrow)]
        pub kind: S<'a>,
        pub success: Option<bool>,
        #[serde(borrow)]
        pub session_id: S<'a>,
        #[serde(borrow)]
        pub root_session_id: S<'a>,
        #[serde(borrow)]
        pub parent_session_id: S<'a>,
        #[serde(borrow)]
        pub user_id: S<'a>,
        #[serde(borrow)]
        pub tenant: S<'a>,
        #[serde(borrow)]
        pub ip: S<'a>,
        #[serde(borrow)]
        pub user_agent: S<'a>,
        pub device_id: Option<Id>,
        pub token_id: Option<Id>,
        #[serde(borrow)]
        pub token_hash: S<'a>,
        pub refresh_token_id: Option<Id>,
        #[serde(borrow)]
        pub refresh_token_hash: S<'a>,
        pub new_refresh_token_id: Option<Id>,
        #[serde(borrow)]
        pub new_refresh_token_hash: S<'a>,
        pub scopes: Option<Scopes>,
        #[serde(borrow)]
        pub app: S<'a>,
        #[serde(borrow)]
        pub client_id: S<'a>,
        #[serde(borrow)]
        pub geo: Option<Geo<'a>>,
        pub asn: Option<f64>,
        #[serde(borrow)]
        pub as_org: S<'a>,
        pub is_proxy: Option<bool>,
        #[serde(borrow)]
        pub identity_type: S<'a>,
        #[serde(borrow)]
        pub lifecycle: S<'a>,
        #[serde(borrow)]
        pub found_in: S<'a>,
        #[serde(borrow)]
        pub event: S<'a>,
    }

    #[derive(Deserialize, Default)]
    pub struct Geo<'a> {
        #[serde(borrow)]
        pub country: S<'a>,
        #[serde(borrow)]
        pub city: S<'a>,
        pub lat: Option<f64>,
        pub lon: Option<f64>,
        pub accuracy_km: Option<f64>,
    }

    /// An RFC 3339 string or an epoch number.
    pub enum Time<'a> {
        Text(Cow<'a, str>),
        Number(f64),
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Time<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Time<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a time")
                }
                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                    Ok(Time::Text(Cow::Borrowed(v)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(Time::Text(Cow::Owned(v.to_owned())))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                    Ok(Time::Number(v as f64))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                    Ok(Time::Number(v as f64))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                    Ok(Time::Number(v))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// An id given as a string or an integer (rendered as the general path renders it);
    /// an empty string is absent. Floats are left to the general path.
    pub struct Id(pub Option<String>);

    impl<'de> Deserialize<'de> for Id {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Id;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an id")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                    Ok(Id((!v.is_empty()).then(|| v.to_owned())))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                    Ok(Id(Some(v.to_string())))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                    Ok(Id(Some(v.to_string())))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// Scopes as an array of strings or one space- or comma-separated string.
    pub struct Scopes(pub Vec<String>);

    impl<'de> Deserialize<'de> for Scopes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Scopes;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("scopes")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Scopes, E> {
                    Ok(Scopes(crate::adapters::json::split_scopes(v)))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scopes, A::Error> {
                    let mut out = Vec::new();
                    while let Some(s) = seq.next_element::<Cow<'de, str>>()? {
                        let s = s.trim();
                        if !s.is_empty() {
                            out.push(s.to_owned());
                        }
                    }
                    Ok(Scopes(out))
                }
            }
            d.deserialize_any(V)
        }
    }
}
