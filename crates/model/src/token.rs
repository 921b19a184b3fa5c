//! Keyed hashes of secrets: tokens, cookies, assertions, device ids.
//!
//! Vigil never keeps a raw credential. Every token value or identifier is reduced at the edge to
//! `HMAC-SHA256(key, value)`, of which state keeps the first 16 bytes. A secret scanner that
//! holds the same key computes the same hash, so a `token_exposed` event can name a token
//! without carrying it.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first 16 bytes of `HMAC-SHA256(key, token)`: enough to tell tokens apart, useless to
/// an attacker who reads state, logs or outputs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 16]);

impl TokenHash {
    /// Parses a hex digest (at least 32 hex digits; a full 64-digit HMAC-SHA256 is truncated).
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 32 || !b.len().is_multiple_of(2) || b.len() > 128 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let hi = hex_val(b[2 * i])?;
            let lo = hex_val(b[2 * i + 1])?;
            *o = hi << 4 | lo;
        }
        if !b[32..].iter().all(|c| hex_val(*c).is_some()) {
            return None;
        }
        Some(Self(out))
    }

    /// The hash as 32 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl serde::Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("token hash must be 32 hex digits"))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.to_hex())
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Computes keyed hashes with the deployment's secret key.
#[derive(Clone)]
pub struct TokenHasher {
    mac: Hmac<Sha256>,
}

impl TokenHasher {
    /// A hasher keyed with `key` (any length; 32 random bytes recommended).
    pub fn new(key: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| {
            <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).expect("a 32-byte key is valid")
        });
        Self { mac }
    }

    /// The keyed hash of a secret value.
    pub fn hash(&self, value: &str) -> TokenHash {
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        TokenHash(out)
    }
}

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHasher(<key redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_hash_depends_on_key_and_value() {
        let a = TokenHasher::new(b"k1");
        let b = TokenHasher::new(b"k2");
        assert_eq!(a.hash("tok"), a.hash("tok"));
        assert_ne!(a.hash("tok"), a.hash("tok2"));
        assert_ne!(a.hash("tok"), b.hash("tok"));
    }

    #[test]
    fn matches_hmac_sha256_reference() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let h = TokenHasher::new(b"Jefe").hash("what do ya want for nothing?");
        assert_eq!(h.to_hex(), "5bdcc146bf60754e6a042426089575c7");
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        let h = TokenHasher::new(b"k").hash("v");
        assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(TokenHash::from_hex("abc"), None);
        assert_eq!(TokenHash::from_hex(&"zz".repeat(16)), None);
    }
}
