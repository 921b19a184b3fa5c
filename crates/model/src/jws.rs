//! Compact JWS signing of Security Event Tokens (ES256, `typ: secevent+jwt`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};

/// Why a signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM is not a PKCS#8 P-256 private key.
    #[error("signing key is not a PKCS#8 PEM P-256 (ES256) private key: {reason}")]
    BadKey {
        /// The decoder's complaint.
        reason: String,
    },
}

/// An ES256 signer with a key id.
#[derive(Clone)]
pub struct SetSigner {
    key: SigningKey,
    kid: String,
}

impl std::fmt::Debug for SetSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SetSigner(kid={}, key=<redacted>)", self.kid)
    }
}

impl SetSigner {
    /// Loads a PKCS#8 PEM P-256 private key (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`).
    pub fn from_pem(pem: &str, kid: impl Into<String>) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::BadKey {
            reason: e.to_string(),
        })?;
        Ok(Self {
            key,
            kid: kid.into(),
        })
    }

    /// A signer from a raw 32-byte scalar (tests and tools).
    pub fn from_scalar(bytes: &[u8; 32], kid: impl Into<String>) -> Result<Self, KeyError> {
        let key = SigningKey::from_bytes(bytes.into()).map_err(|e| KeyError::BadKey {
            reason: e.to_string(),
        })?;
        Ok(Self {
            key,
            kid: kid.into(),
        })
    }

    /// The key id placed in the JWS header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key that verifies this signer's tokens.
    pub fn verifying_key(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// Signs the claims as a compact JWS.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": "ES256", "typ": "secevent+jwt", "kid": self.kid });
        let mut out = String::new();
        URL_SAFE_NO_PAD.encode_string(header.to_string(), &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut out);
        let sig: Signature = self.key.sign(out.as_bytes());
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.to_bytes(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Verifier;

    use super::*;

    #[test]
    fn signature_verifies_and_header_is_secevent() {
        let signer = SetSigner::from_scalar(&[7u8; 32], "k1").expect("valid scalar");
        let jws = signer.sign(&json!({"jti": "x"}));
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["typ"], "secevent+jwt");
        assert_eq!(header["alg"], "ES256");
        let sig_bytes = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        let sig = Signature::from_slice(&sig_bytes).expect("64-byte signature");
        let signed = format!("{}.{}", parts[0], parts[1]);
        signer
            .verifying_key()
            .verify(signed.as_bytes(), &sig)
            .expect("verifies");
        let tampered = format!("{}.{}x", parts[0], parts[1]);
        assert!(
            signer
                .verifying_key()
                .verify(tampered.as_bytes(), &sig)
                .is_err()
        );
    }

    #[test]
    fn rejects_garbage_pem() {
        assert!(SetSigner::from_pem("not a key", "k").is_err());
    }
}
