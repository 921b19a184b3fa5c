//! Typed access to JSON fields with rejections that name the field at fault, over a JSON
//! tree that borrows its strings from the record.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Number;

use crate::reject::{RejectReason, Rejection};
use crate::text::Text;
use crate::time;

/// A parsed JSON record for the adapters' general path: like `serde_json::Value`, but strings
/// and keys borrow from the input unless they contain escapes, and objects are the key/value
/// pairs in input order instead of a sorted map. Building and dropping a `serde_json::Value`
/// (one allocation per key and per string, a B-tree per object) was most of the cost of
/// parsing Okta, Entra and OCSF records.
///
/// Lookups give what `serde_json::Value` would: the last of duplicate keys wins. Nesting is
/// bounded by serde_json's recursion limit, as for `serde_json::Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, exactly as `serde_json` reads it.
    Number(Number),
    /// A string, borrowed from the input when it has no escapes.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Value<'a>>),
    /// An object: its members in input order.
    Object(Object<'a>),
}

/// A JSON object's members in input order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, Value<'a>)>);

impl<'a> Object<'a> {
    /// The value of `key`; the last one when the key repeats (as `serde_json` keeps it).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The members in input order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<'a> Value<'a> {
    /// Parses one JSON text, borrowing from it.
    pub fn parse(text: &'a str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    /// Parses one record for the adapters: as [`Value::parse`], but an object member whose key
    /// no adapter reads ([`read_by_adapters`]) is checked as JSON and skipped instead of built.
    /// The adapters read records only by key, so they find in this tree exactly what they would
    /// in the whole one (a test compares the two on every sample and vendor record); building
    /// the members nobody reads was most of the cost of a vendor record.
    ///
    /// A skipped member is checked for JSON syntax but not decoded: a number beyond `f64`, a
    /// lone surrogate escape or nesting deeper than serde_json's recursion limit inside a
    /// member no adapter reads does not make the record unreadable, as it would for a tree of
    /// the whole record.
    ///
    /// Most records are read by [`super::scan::Reader`], which answers only where it reads
    /// what serde_json would; serde_json reads the rest, and names the fault of a text that is
    /// not JSON.
    pub fn parse_record(text: &'a str) -> serde_json::Result<Self> {
        let mut r = super::scan::Reader::new(text);
        if let Some(v) = read_pruned(&mut r, 0)
            && r.end()
        {
            return Ok(v);
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let v = Tree::<true>.deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }

    /// The member `key` of an object (`None` for anything else).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.as_object()?.get(key)
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Self::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&Vec<Value<'a>>> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, Self::Object(_))
    }

    /// The JSON type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "boolean",
            Self::Number(_) => "number",
            Self::String(_) => "string",
            Self::Array(_) => "array",
            Self::Object(_) => "object",
        }
    }
}

/// Compact JSON, as `serde_json::Value` prints it.
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => s.serialize_unit(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Number(n) => n.serialize(s),
            Self::String(v) => s.serialize_str(v),
            Self::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Self::Object(o) => {
                let mut map = s.serialize_map(Some(o.0.len()))?;
                for (k, v) in o.iter() {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Tree::<false>.deserialize(d)
    }
}

/// Reads any JSON value into a [`Value`]; with `PRUNE`, leaving out the members of its
/// objects, at any depth, that no adapter reads ([`read_by_adapters`]): they are checked as
/// JSON and skipped.
struct Tree<const PRUNE: bool>;

impl<'de, const PRUNE: bool> DeserializeSeed<'de> for Tree<PRUNE> {
    type Value = Value<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, const PRUNE: bool> Visitor<'de> for Tree<PRUNE> {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Value::String(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Value::String(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Value::String(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(Tree::<PRUNE>)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(Text(k)) = map.next_key()? {
            if !PRUNE || read_by_adapters(&k) {
                members.push((k, map.next_value_seed(Tree::<PRUNE>)?));
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(Value::Object(Object(members)))
    }
}

/// One value read by [`super::scan::Reader`] as [`Value::parse_record`] builds it (members
/// no adapter reads skipped), `depth` containers around it; `None` where the reader is unsure.
fn read_pruned<'a>(r: &mut super::scan::Reader<'a>, depth: u32) -> Option<Value<'a>> {
    use super::scan::{MAX_DEPTH, Num};
    Some(match r.peek()? {
        b'{' | b'[' if depth >= MAX_DEPTH => return None,
        b'{' => {
            r.object()?;
            let mut members = Vec::new();
            let mut first = true;
            while let Some(k) = r.key(&mut first)? {
                if read_by_adapters(&k) {
                    members.push((k, read_pruned(r, depth + 1)?));
                } else {
                    r.skip(MAX_DEPTH - depth - 1)?;
                }
            }
            Value::Object(Object(members))
        }
        b'[' => {
            r.array()?;
            let mut items = Vec::new();
            let mut first = true;
            while r.element(&mut first)? {
                items.push(read_pruned(r, depth + 1)?);
            }
            Value::Array(items)
        }
        b'"' => Value::String(r.string()?),
        b't' | b'f' => Value::Bool(r.boolean()?),
        b'n' => r.null()?.then_some(Value::Null)?,
        _ => match r.number()? {
            Num::U64(u) => Value::Number(u.into()),
            Num::I64(i) => Value::Number(i.into()),
            Num::F64(x) => Number::from_f64(x).map_or(Value::Null, Value::Number),
        },
    })
}

/// Whether any adapter reads an object member named `key`, at any depth: the adapters'
/// paths and lookups, every key name they use. A name here that a format does not use only
/// costs a member built for nothing; a name missing would hide a member from its adapter.
pub fn read_by_adapters(key: &str) -> bool {
    matches!(
        key,
        // Native.
        "id" | "time" | "kind" | "session_id" | "root_session_id" | "parent_session_id"
            | "user_id" | "tenant" | "ip" | "user_agent" | "device_id" | "token_id"
            | "token_hash" | "refresh_token_id" | "refresh_token_hash" | "new_refresh_token_id"
            | "new_refresh_token_hash" | "scopes" | "app" | "client_id" | "geo" | "country"
            | "city" | "lat" | "lon" | "accuracy_km" | "asn" | "as_org" | "is_proxy"
            | "success" | "identity_type" | "lifecycle" | "found_in" | "event"
            // Okta.
            | "eventType" | "published" | "uuid" | "actor" | "type" | "alternateId"
            | "displayName" | "client" | "ipAddress" | "userAgent" | "rawUserAgent"
            | "geographicalContext" | "geolocation" | "securityContext" | "asNumber" | "asOrg"
            | "isProxy" | "authenticationContext" | "externalSessionId" | "outcome" | "result"
            | "debugContext" | "debugData" | "grantType" | "rotatedRefreshTokenId"
            | "deviceFingerprint" | "grantedScopes" | "clientId" | "target"
            // Entra.
            | "category" | "properties" | "createdDateTime" | "activityDateTime" | "sessionId"
            | "correlationId" | "userId" | "userPrincipalName" | "tenantId" | "homeTenantId"
            | "callerIpAddress" | "deviceDetail" | "deviceId" | "location"
            | "countryOrRegion" | "geoCoordinates" | "latitude" | "longitude"
            | "autonomousSystemNumber" | "status" | "errorCode" | "uniqueTokenIdentifier"
            | "incomingTokenType" | "isInteractive" | "originalRequestId" | "appId"
            | "appDisplayName" | "resourceDisplayName" | "servicePrincipalId"
            | "activityDisplayName" | "targetResources"
            // OCSF.
            | "class_uid" | "activity_id" | "activity_name" | "status_id" | "metadata" | "uid"
            | "uid_alt" | "tenant_uid" | "user" | "session" | "credential_uid" | "src_endpoint"
            | "long" | "coordinates" | "autonomous_system" | "number" | "name"
            | "proxy_endpoint" | "http_request" | "device" | "dst_endpoint" | "svc_name" | "api"
            | "request" | "service"
    )
}

/// The value at `path`, treating JSON `null` as absent.
pub fn get<'v, 'a>(v: &'v Value<'a>, path: &[&str]) -> Option<&'v Value<'a>> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object()?.get(key)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

/// An optional string; empty strings count as absent.
pub fn opt_str<'v>(
    v: &'v Value<'_>,
    path: &[&str],
    field: &'static str,
) -> Result<Option<&'v str>, Rejection> {
    match get(v, path) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_ref())),
        Some(_) => Err(Rejection::wrong_type(field, "a string")),
    }
}

/// A required, non-empty string.
pub fn req_str<'v>(
    v: &'v Value<'_>,
    path: &[&str],
    field: &'static str,
) -> Result<&'v str, Rejection> {
    opt_str(v, path, field)?.ok_or_else(|| Rejection::missing(field))
}

/// An optional string or number rendered as a string (ids are often either).
pub fn opt_id(v: &Value, path: &[&str], field: &'static str) -> Result<Option<String>, Rejection> {
    match get(v, path) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Rejection::wrong_type(field, "a string or number")),
    }
}

/// An optional number; numeric strings are accepted because several exporters quote them.
pub fn opt_f64(v: &Value, path: &[&str], field: &'static str) -> Result<Option<f64>, Rejection> {
    match get(v, path) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| Rejection::wrong_type(field, "a number")),
        Some(_) => Err(Rejection::wrong_type(field, "a number")),
    }
}

/// An optional non-negative integer that fits in 32 bits (ASNs, radii).
pub fn opt_u32(v: &Value, path: &[&str], field: &'static str) -> Result<Option<u32>, Rejection> {
    match opt_f64(v, path, field)? {
        None => Ok(None),
        Some(x) => as_u32(x).map(Some).ok_or_else(|| {
            Rejection::field(
                RejectReason::InvalidValue,
                field,
                format!("field {field} must be a non-negative 32-bit integer"),
            )
        }),
    }
}

/// `x` as a non-negative integer that fits in 32 bits, if it is one.
pub fn as_u32(x: f64) -> Option<u32> {
    (x >= 0.0 && x <= f64::from(u32::MAX) && x.fract() == 0.0).then_some(x as u32)
}

/// An optional boolean; `"true"`/`"false"` strings are accepted.
pub fn opt_bool(v: &Value, path: &[&str], field: &'static str) -> Result<Option<bool>, Rejection> {
    match get(v, path) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(Rejection::wrong_type(field, "a boolean")),
    }
}

/// A required event time: an RFC 3339 string, or epoch seconds or milliseconds as a number.
pub fn req_time(v: &Value, path: &[&str], field: &'static str) -> Result<i64, Rejection> {
    let ms = match get(v, path) {
        None => return Err(Rejection::missing(field)),
        Some(Value::String(s)) => time::parse_rfc3339(s.trim()).ok_or_else(|| {
            Rejection::field(
                RejectReason::BadTimestamp,
                field,
                format!(
                    "field {field} is not an RFC 3339 timestamp: {}",
                    clip(s, 64)
                ),
            )
        })?,
        Some(Value::Number(n)) => epoch_to_ms(n.as_f64().unwrap_or(f64::NAN)).ok_or_else(|| {
            Rejection::field(
                RejectReason::AbsurdTimestamp,
                field,
                format!("field {field} is not a usable epoch time: {n}"),
            )
        })?,
        Some(_) => {
            return Err(Rejection::wrong_type(
                field,
                "an RFC 3339 string or epoch number",
            ));
        }
    };
    if !time::is_plausible(ms) {
        return Err(Rejection::field(
            RejectReason::AbsurdTimestamp,
            field,
            format!(
                "field {field} is {}, outside 2000-01-01..2100-01-01",
                if (-62_135_596_800_000..253_402_300_800_000).contains(&ms) {
                    time::format_rfc3339(ms)
                } else {
                    format!("{ms} ms since the epoch")
                }
            ),
        ));
    }
    Ok(ms)
}

/// Epoch seconds (below 1e11) or milliseconds to milliseconds.
pub fn epoch_to_ms(x: f64) -> Option<i64> {
    if !x.is_finite() || x.abs() > 1e16 {
        return None;
    }
    let ms = if x.abs() < 1e11 { x * 1000.0 } else { x };
    Some(ms.round() as i64)
}

/// An optional client IP; a trailing port (`1.2.3.4:443`, `[::1]:443`) is stripped.
pub fn opt_ip(v: &Value, path: &[&str], field: &'static str) -> Result<Option<IpAddr>, Rejection> {
    let Some(s) = opt_str(v, path, field)? else {
        return Ok(None);
    };
    parse_ip(s).map(Some).ok_or_else(|| {
        Rejection::field(
            RejectReason::InvalidValue,
            field,
            format!("field {field} is not an IP address: {}", clip(s, 64)),
        )
    })
}

/// Parses an IP address, allowing a port suffix.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    if port.chars().all(|c| c.is_ascii_digit()) {
        host.parse().ok()
    } else {
        None
    }
}

/// Scopes as a JSON array of strings or one space- or comma-separated string.
pub fn scopes(v: &Value, path: &[&str], field: &'static str) -> Result<Vec<String>, Rejection> {
    match get(v, path) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(split_scopes(s)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.trim().to_owned()),
                _ => Err(Rejection::wrong_type(field, "an array of strings")),
            })
            .filter(|r| r.as_ref().map_or(true, |s| !s.is_empty()))
            .collect(),
        Some(_) => Err(Rejection::wrong_type(
            field,
            "a string or an array of strings",
        )),
    }
}

/// Splits a space- or comma-separated scope list.
pub fn split_scopes(s: &str) -> Vec<String> {
    scope_parts(s).map(str::to_owned).collect()
}

/// The scopes of a space- or comma-separated list, in order.
pub fn scope_parts(s: &str) -> impl Iterator<Item = &str> {
    s.split([' ', ',']).map(str::trim).filter(|x| !x.is_empty())
}

/// At most `n` characters of `s`, for error messages.
pub fn clip(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}
