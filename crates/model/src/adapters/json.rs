//! Typed access to JSON fields with rejections that name the field at fault.

use std::net::IpAddr;

use serde_json::Value;

use crate::reject::{RejectReason, Rejection};
use crate::time;

/// The value at `path`, treating JSON `null` as absent.
pub fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object()?.get(*key)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

/// An optional string; empty strings count as absent.
pub fn opt_str<'a>(
    v: &'a Value,
    path: &[&str],
    field: &'static str,
) -> Result<Option<&'a str>, Rejection> {
    match get(v, path) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Rejection::wrong_type(field, "a string")),
    }
}

/// A required, non-empty string.
pub fn req_str<'a>(v: &'a Value, path: &[&str], field: &'static str) -> Result<&'a str, Rejection> {
    opt_str(v, path, field)?.ok_or_else(|| Rejection::missing(field))
}

/// An optional string or number rendered as a string (ids are often either).
pub fn opt_id(v: &Value, path: &[&str], field: &'static str) -> Result<Option<String>, Rejection> {
    match get(v, path) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
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
    s.split([' ', ','])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// At most `n` characters of `s`, for error messages.
pub fn clip(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}
