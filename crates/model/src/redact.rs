//! Redaction of secrets from records kept for operators (dead letters).
//!
//! A rejected record is kept so someone can fix its producer, but it must not turn the
//! dead-letter store into a credential store. Values of keys that name bearer secrets are
//! replaced; identifiers (`*_id`, `*_hash`, `jti`) are kept because they are what an
//! operator needs and they grant nothing.

use serde_json::Value;

/// The replacement text.
pub const REDACTED: &str = "[redacted]";

/// Whether a JSON key names a secret value.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace(['-', '_'], "");
    if k.ends_with("id") || k.ends_with("hash") || k.ends_with("type") || k == "jti" {
        return false;
    }
    k.ends_with("token")
        || k.contains("cookie")
        || k.contains("assertion")
        || k.contains("password")
        || k.contains("secret")
        || k == "authorization"
        || k == "samlresponse"
        || k == "bearer"
}

/// Replaces every secret-named value in `v`, at any depth. Returns how many were replaced.
pub fn redact(v: &mut Value) -> usize {
    match v {
        Value::Object(map) => {
            let mut n = 0;
            for (k, val) in map.iter_mut() {
                if is_secret_key(k) && !val.is_null() {
                    *val = Value::String(REDACTED.into());
                    n += 1;
                } else {
                    n += redact(val);
                }
            }
            n
        }
        Value::Array(items) => items.iter_mut().map(redact).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn redacts_secrets_keeps_ids() {
        let mut v = json!({
            "token": "eyJ.secret", "token_id": "jti-1", "refresh_token_hash": "ab",
            "nested": [{"Cookie": "sid=abc", "accessToken": "x"}], "user_id": "u",
            "SAMLResponse": "PHNhbWw+", "password": "p"
        });
        assert_eq!(redact(&mut v), 5);
        assert_eq!(v["token"], REDACTED);
        assert_eq!(v["token_id"], "jti-1");
        assert_eq!(v["refresh_token_hash"], "ab");
        assert_eq!(v["nested"][0]["Cookie"], REDACTED);
        assert_eq!(v["nested"][0]["accessToken"], REDACTED);
        assert_eq!(v["SAMLResponse"], REDACTED);
        assert_eq!(v["user_id"], "u");
    }
}
