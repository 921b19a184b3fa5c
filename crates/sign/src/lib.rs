//! Signing of Vigil's Security Event Tokens and the key set that verifies them.
//!
//! A [`SetSigner`] turns SET claims into a compact JWS (`typ: secevent+jwt`) with ES256
//! (P-256) or RS256 (RSA, at least 2048 bits), chosen by the key it is given. [`Jwks`] is the
//! public JSON Web Key Set receivers fetch to verify them: the signing key plus any keys
//! published for rotation (the next key before it signs, the previous one while its tokens are
//! still in flight). [`verify`] checks a token against such a set.
//!
//! This crate does no I/O: keys come in as PEM text.
//!
//! ```
//! use serde_json::json;
//! use vigil_sign::{Jwks, SetSigner};
//!
//! let signer = SetSigner::from_p256_scalar(&[7u8; 32], "k1").expect("a valid scalar");
//! let token = signer.sign(&json!({"jti": "x"})).expect("signs");
//! let jwks = Jwks::new(&signer, &[]);
//! let claims = vigil_sign::verify(&token, &jwks.to_json()).expect("verifies");
//! assert_eq!(claims["jti"], "x");
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::bn::{BigNum, BigNumContext};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};

/// The smallest RSA modulus accepted, in bits (NIST SP 800-131A).
pub const MIN_RSA_BITS: u32 = 2048;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM holds no key this crate can use.
    #[error("not a usable key (PEM P-256 or RSA, PKCS#8, SEC1 or PKCS#1): {reason}")]
    BadKey {
        /// The decoder's complaint.
        reason: String,
    },
    /// An RSA key shorter than [`MIN_RSA_BITS`].
    #[error("RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")]
    WeakRsa {
        /// The key's size.
        bits: u32,
    },
    /// A key of a type or curve JWS ES256/RS256 cannot use.
    #[error("unsupported key type {kind}: use a P-256 (ES256) or RSA (RS256) key")]
    Unsupported {
        /// What the key is.
        kind: String,
    },
}

/// Why a token could not be signed (OpenSSL failed on a key it had accepted).
#[derive(Debug, thiserror::Error)]
#[error("signing failed: {reason}")]
pub struct SignError {
    reason: String,
}

/// Why a token did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("malformed JWS: {0}")]
    Malformed(&'static str),
    /// The header names a key the set does not hold.
    #[error("no key {kid:?} in the key set")]
    UnknownKey {
        /// The header's `kid`.
        kid: String,
    },
    /// The header's `alg` does not match the key.
    #[error("algorithm {alg:?} does not match key {kid:?}")]
    WrongAlgorithm {
        /// The header's `alg`.
        alg: String,
        /// The header's `kid`.
        kid: String,
    },
    /// The signature is wrong.
    #[error("bad signature")]
    BadSignature,
}

/// A JWS algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

impl Algorithm {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Rs256 => "RS256",
        }
    }
}

#[derive(Clone)]
enum Key {
    Es256(Es256Key),
    Rs256(PKey<Private>),
}

/// A P-256 private key: OpenSSL's copy signs (its P-256 code signs about seven times as many
/// tokens a second here as the pure-Rust one), the pure-Rust copy gives the public JWK.
#[derive(Clone)]
struct Es256Key {
    public: SigningKey,
    signing: openssl::ec::EcKey<Private>,
}

impl Es256Key {
    fn new(key: SigningKey) -> Result<Self, KeyError> {
        let signing = openssl_p256(&key.to_bytes()).map_err(bad)?;
        Ok(Self {
            public: key,
            signing,
        })
    }

    /// The raw `r || s` signature of `data` that JWS wants (RFC 7518, 3.4).
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let digest = openssl::sha::sha256(data);
        let sig = openssl::ecdsa::EcdsaSig::sign(&digest, &self.signing)?;
        let mut out = sig.r().to_vec_padded(32)?;
        out.extend(sig.s().to_vec_padded(32)?);
        Ok(out)
    }
}

/// OpenSSL's P-256 key for a private scalar, its public point derived.
fn openssl_p256(scalar: &[u8]) -> Result<openssl::ec::EcKey<Private>, openssl::error::ErrorStack> {
    let group = openssl::ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let d = BigNum::from_slice(scalar)?;
    let mut ctx = BigNumContext::new()?;
    let mut q = openssl::ec::EcPoint::new(&group)?;
    q.mul_generator2(&group, &d, &mut ctx)?;
    let key = openssl::ec::EcKey::from_private_components(&group, &d, &q)?;
    key.check_key()?;
    Ok(key)
}

/// A SET signer: a private key and its key id.
#[derive(Clone)]
pub struct SetSigner {
    key: Key,
    kid: String,
}

impl std::fmt::Debug for SetSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SetSigner(alg={}, kid={}, key=<redacted>)",
            self.alg().name(),
            self.kid
        )
    }
}

fn bad(e: impl std::fmt::Display) -> KeyError {
    KeyError::BadKey {
        reason: e.to_string(),
    }
}

impl SetSigner {
    /// Loads a private key: P-256 (ES256) or RSA of at least 2048 bits (RS256), in PKCS#8,
    /// SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM.
    ///
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` or
    /// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072` make one.
    pub fn from_pem(pem: &str, kid: impl Into<String>) -> Result<Self, KeyError> {
        let kid = kid.into();
        if let Ok(key) = SigningKey::from_pkcs8_pem(pem) {
            return Ok(Self {
                key: Key::Es256(Es256Key::new(key)?),
                kid,
            });
        }
        let pkey = PKey::private_key_from_pem(pem.as_bytes()).map_err(bad)?;
        let key = match pkey.id() {
            openssl::pkey::Id::RSA => {
                let bits = pkey.bits();
                if bits < MIN_RSA_BITS {
                    return Err(KeyError::WeakRsa { bits });
                }
                Key::Rs256(pkey)
            }
            openssl::pkey::Id::EC => {
                let ec = pkey.ec_key().map_err(bad)?;
                if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
                    return Err(KeyError::Unsupported {
                        kind: "EC key on a curve other than P-256".into(),
                    });
                }
                let scalar = ec.private_key().to_vec_padded(32).map_err(bad)?;
                Key::Es256(Es256Key::new(
                    SigningKey::from_slice(&scalar).map_err(bad)?,
                )?)
            }
            other => {
                return Err(KeyError::Unsupported {
                    kind: format!("{other:?}"),
                });
            }
        };
        Ok(Self { key, kid })
    }

    /// An ES256 signer from a raw 32-byte P-256 scalar (tests and tools).
    pub fn from_p256_scalar(bytes: &[u8; 32], kid: impl Into<String>) -> Result<Self, KeyError> {
        let key = SigningKey::from_bytes(bytes.into()).map_err(bad)?;
        Ok(Self {
            key: Key::Es256(Es256Key::new(key)?),
            kid: kid.into(),
        })
    }

    /// The algorithm this signer's key implies.
    pub fn alg(&self) -> Algorithm {
        match self.key {
            Key::Es256(_) => Algorithm::Es256,
            Key::Rs256(_) => Algorithm::Rs256,
        }
    }

    /// The key id placed in the JWS header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWK (`use: sig`, with `alg` and `kid`).
    pub fn public_jwk(&self) -> Value {
        match &self.key {
            Key::Es256(k) => ec_jwk(k.public.verifying_key(), &self.kid),
            Key::Rs256(k) => match k.rsa() {
                Ok(rsa) => rsa_jwk(rsa.n(), rsa.e(), &self.kid),
                // An RSA PKey always yields its RSA key; keep the set well-formed regardless.
                Err(_) => json!({ "kid": self.kid }),
            },
        }
    }

    /// Signs the claims (a JSON tree, or anything that serialises to a JSON object) as a
    /// compact JWS.
    pub fn sign<T: serde::Serialize + ?Sized>(&self, claims: &T) -> Result<String, SignError> {
        let header = json!({ "alg": self.alg().name(), "typ": "secevent+jwt", "kid": self.kid });
        let claims = serde_json::to_vec(claims).map_err(|e| SignError {
            reason: format!("claims do not serialise: {e}"),
        })?;
        let mut out = String::new();
        URL_SAFE_NO_PAD.encode_string(header.to_string(), &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut out);
        let sig = match &self.key {
            Key::Es256(k) => k.sign(out.as_bytes()),
            Key::Rs256(k) => rs256_sign(k, out.as_bytes()),
        }
        .map_err(|e| SignError {
            reason: e.to_string(),
        })?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut out);
        Ok(out)
    }
}

fn rs256_sign(key: &PKey<Private>, data: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), key)?;
    s.update(data)?;
    s.sign_to_vec()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ec_jwk(key: &VerifyingKey, kid: &str) -> Value {
    let point = key.to_encoded_point(false);
    json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": point.x().map(|x| b64(x)), "y": point.y().map(|y| b64(y)),
    })
}

fn rsa_jwk(n: &openssl::bn::BigNumRef, e: &openssl::bn::BigNumRef, kid: &str) -> Value {
    json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": b64(&n.to_vec()), "e": b64(&e.to_vec()),
    })
}

/// The public JWK of a key given as PEM (public or private; P-256 or RSA): a key published
/// for rotation without signing with it.
pub fn public_jwk_from_pem(pem: &str, kid: &str) -> Result<Value, KeyError> {
    let pkey: PKey<Public> = match PKey::public_key_from_pem(pem.as_bytes()) {
        Ok(k) => k,
        Err(_) => return SetSigner::from_pem(pem, kid).map(|s| s.public_jwk()),
    };
    match pkey.id() {
        openssl::pkey::Id::RSA => {
            let rsa = pkey.rsa().map_err(bad)?;
            if rsa.size() * 8 < MIN_RSA_BITS {
                return Err(KeyError::WeakRsa {
                    bits: rsa.size() * 8,
                });
            }
            Ok(rsa_jwk(rsa.n(), rsa.e(), kid))
        }
        openssl::pkey::Id::EC => {
            let ec = pkey.ec_key().map_err(bad)?;
            if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
                return Err(KeyError::Unsupported {
                    kind: "EC key on a curve other than P-256".into(),
                });
            }
            let mut ctx = BigNumContext::new().map_err(bad)?;
            let (mut x, mut y) = (BigNum::new().map_err(bad)?, BigNum::new().map_err(bad)?);
            ec.public_key()
                .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
                .map_err(bad)?;
            Ok(json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": b64(&x.to_vec_padded(32).map_err(bad)?),
                "y": b64(&y.to_vec_padded(32).map_err(bad)?),
            }))
        }
        other => Err(KeyError::Unsupported {
            kind: format!("{other:?}"),
        }),
    }
}

/// A JSON Web Key Set: the signing key first, then the keys published for rotation, each key
/// id once.
#[derive(Debug, Clone)]
pub struct Jwks {
    keys: Vec<Value>,
}

impl Jwks {
    /// The set for `signer` plus `published` JWKs (see [`public_jwk_from_pem`]).
    pub fn new(signer: &SetSigner, published: &[Value]) -> Self {
        let mut keys = vec![signer.public_jwk()];
        for k in published {
            if !keys.iter().any(|have| have["kid"] == k["kid"]) {
                keys.push(k.clone());
            }
        }
        Self { keys }
    }

    /// The key ids, signing key first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k["kid"].as_str()).collect()
    }

    /// The JWKS document (`{"keys": [...]}`).
    pub fn to_json(&self) -> Value {
        json!({ "keys": self.keys })
    }
}

fn part(s: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| VerifyError::Malformed("a part is not base64url"))
}

/// Verifies a compact JWS against a JWKS document and returns its claims.
pub fn verify(token: &str, jwks: &Value) -> Result<Value, VerifyError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed("not three parts"));
    };
    let header: Value = serde_json::from_slice(&part(h)?)
        .map_err(|_| VerifyError::Malformed("header is not JSON"))?;
    let alg = header["alg"].as_str().unwrap_or_default().to_owned();
    let kid = header["kid"].as_str().unwrap_or_default().to_owned();
    let key = jwks["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"] == kid.as_str()))
        .ok_or_else(|| VerifyError::UnknownKey { kid: kid.clone() })?;
    let sig = part(s)?;
    let signed = &token[..h.len() + 1 + p.len()];
    let wrong = || VerifyError::WrongAlgorithm {
        alg: alg.clone(),
        kid: kid.clone(),
    };
    let coord = |name: &str| -> Result<Vec<u8>, VerifyError> {
        part(key[name].as_str().unwrap_or_default())
    };
    let ok = match (alg.as_str(), key["kty"].as_str()) {
        ("ES256", Some("EC")) => {
            let (x, y) = (coord("x")?, coord("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(VerifyError::Malformed(
                    "EC key coordinates are not 32 bytes",
                ));
            }
            let point = p256::EncodedPoint::from_affine_coordinates(
                x.as_slice().into(),
                y.as_slice().into(),
                false,
            );
            let vk = VerifyingKey::from_encoded_point(&point)
                .map_err(|_| VerifyError::Malformed("EC key is not on P-256"))?;
            let sig = Signature::from_slice(&sig).map_err(|_| VerifyError::BadSignature)?;
            vk.verify(signed.as_bytes(), &sig).is_ok()
        }
        ("RS256", Some("RSA")) => {
            let n = BigNum::from_slice(&coord("n")?)
                .map_err(|_| VerifyError::Malformed("RSA modulus"))?;
            let e = BigNum::from_slice(&coord("e")?)
                .map_err(|_| VerifyError::Malformed("RSA exponent"))?;
            let pkey = Rsa::from_public_components(n, e)
                .and_then(PKey::from_rsa)
                .map_err(|_| VerifyError::Malformed("RSA key"))?;
            openssl::sign::Verifier::new(MessageDigest::sha256(), &pkey)
                .and_then(|mut v| {
                    v.update(signed.as_bytes())?;
                    v.verify(&sig)
                })
                .unwrap_or(false)
        }
        _ => return Err(wrong()),
    };
    if !ok {
        return Err(VerifyError::BadSignature);
    }
    serde_json::from_slice(&part(p)?).map_err(|_| VerifyError::Malformed("payload is not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_pem(bits: u32) -> String {
        let rsa = Rsa::generate(bits).expect("rsa key");
        String::from_utf8(
            PKey::from_rsa(rsa)
                .expect("pkey")
                .private_key_to_pem_pkcs8()
                .expect("pem"),
        )
        .expect("utf-8")
    }

    fn header(token: &str) -> Value {
        let h = token.split('.').next().expect("header");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("json")
    }

    #[test]
    fn es256_signs_and_verifies_against_its_jwks() {
        let signer = SetSigner::from_p256_scalar(&[7u8; 32], "k1").expect("valid scalar");
        let token = signer.sign(&json!({"jti": "x"})).expect("signs");
        assert_eq!(header(&token)["typ"], "secevent+jwt");
        assert_eq!(header(&token)["alg"], "ES256");
        let jwks = Jwks::new(&signer, &[]).to_json();
        assert_eq!(verify(&token, &jwks).expect("verifies")["jti"], "x");
        let (head, _) = token.rsplit_once('.').expect("three parts");
        let forged = format!(
            "{}.{}.{}",
            head.split('.').next().expect("h"),
            URL_SAFE_NO_PAD.encode(br#"{"jti":"y"}"#),
            token.rsplit('.').next().expect("sig")
        );
        assert_eq!(verify(&forged, &jwks), Err(VerifyError::BadSignature));
    }

    /// Each ES256 signature is 64 raw bytes (`r || s`, each padded to 32) and verifies with
    /// the public key the JWKS publishes, whatever the nonce drawn: 300 tokens, so components
    /// with a leading zero byte (padded back to 32) come up about twice in a run.
    #[test]
    fn es256_signatures_verify_whatever_the_nonce() {
        let signer = SetSigner::from_p256_scalar(&[9u8; 32], "k1").expect("valid scalar");
        let jwks = Jwks::new(&signer, &[]).to_json();
        for i in 0..300 {
            let token = signer.sign(&json!({ "jti": i })).expect("signs");
            let sig = URL_SAFE_NO_PAD
                .decode(token.rsplit('.').next().expect("sig"))
                .expect("b64");
            assert_eq!(sig.len(), 64);
            assert_eq!(verify(&token, &jwks).expect("verifies")["jti"], i);
        }
        // The same claims twice: two nonces, two signatures, both valid.
        let a = signer.sign(&json!({"jti": "same"})).expect("signs");
        let b = signer.sign(&json!({"jti": "same"})).expect("signs");
        assert_ne!(a, b);
        assert!(verify(&a, &jwks).is_ok() && verify(&b, &jwks).is_ok());
    }

    #[test]
    fn rs256_signs_and_verifies_and_short_keys_are_refused() {
        let signer = SetSigner::from_pem(&rsa_pem(2048), "r1").expect("rsa key");
        assert_eq!(signer.alg(), Algorithm::Rs256);
        let token = signer.sign(&json!({"jti": "x"})).expect("signs");
        assert_eq!(header(&token)["alg"], "RS256");
        let jwks = Jwks::new(&signer, &[]).to_json();
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
        assert_eq!(verify(&token, &jwks).expect("verifies")["jti"], "x");
        assert!(matches!(
            SetSigner::from_pem(&rsa_pem(1024), "weak"),
            Err(KeyError::WeakRsa { bits: 1024 })
        ));
    }

    #[test]
    fn rotation_publishes_the_next_key_and_verifies_by_kid() {
        let old = SetSigner::from_p256_scalar(&[7u8; 32], "2026-01").expect("old");
        let new_pem = rsa_pem(2048);
        let new = SetSigner::from_pem(&new_pem, "2026-07").expect("new");
        // Before the switch: the old key signs, the new one is published.
        let published = public_jwk_from_pem(&new_pem, "2026-07").expect("public jwk");
        let before = Jwks::new(&old, std::slice::from_ref(&published));
        assert_eq!(before.kids(), ["2026-01", "2026-07"]);
        let t_new = new.sign(&json!({"jti": "n"})).expect("signs");
        assert_eq!(verify(&t_new, &before.to_json()).expect("ok")["jti"], "n");
        // A token under a key the set does not hold is refused by kid.
        let only_old = Jwks::new(&old, &[]).to_json();
        assert_eq!(
            verify(&t_new, &only_old),
            Err(VerifyError::UnknownKey {
                kid: "2026-07".into()
            })
        );
        // The public PEM gives the same JWK as the private one.
        let pubpem = PKey::private_key_from_pem(new_pem.as_bytes())
            .expect("pkey")
            .public_key_to_pem()
            .expect("pem");
        let from_pub = public_jwk_from_pem(std::str::from_utf8(&pubpem).expect("utf-8"), "2026-07")
            .expect("jwk");
        assert_eq!(from_pub, new.public_jwk());
    }

    #[test]
    fn sec1_ec_pem_loads_as_es256_and_other_curves_are_refused() {
        let group = openssl::ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("p256");
        let ec = openssl::ec::EcKey::generate(&group).expect("key");
        let pem = String::from_utf8(ec.private_key_to_pem().expect("pem")).expect("utf-8");
        let signer = SetSigner::from_pem(&pem, "e").expect("sec1 p256");
        assert_eq!(signer.alg(), Algorithm::Es256);
        let pubpem = String::from_utf8(ec.public_key_to_pem().expect("pem")).expect("utf-8");
        assert_eq!(
            public_jwk_from_pem(&pubpem, "e").expect("jwk"),
            signer.public_jwk()
        );
        let p384 = openssl::ec::EcGroup::from_curve_name(Nid::SECP384R1).expect("p384");
        let other = openssl::ec::EcKey::generate(&p384).expect("key");
        let pem = String::from_utf8(other.private_key_to_pem().expect("pem")).expect("utf-8");
        assert!(matches!(
            SetSigner::from_pem(&pem, "x"),
            Err(KeyError::Unsupported { .. })
        ));
        assert!(matches!(
            SetSigner::from_pem("not a key", "k"),
            Err(KeyError::BadKey { .. })
        ));
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let signer = SetSigner::from_p256_scalar(&[7u8; 32], "k1").expect("valid scalar");
        let d = format!("{signer:?}");
        assert!(d.contains("redacted") && d.contains("ES256"), "{d}");
    }
}
