//! The Vigil configuration file: one TOML file for input, output, GeoIP and engine settings.
//! Runtime knobs (paths, log level) are command-line flags instead.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vigil_engine::EngineConfig;

/// Development key used when no token-hash key is configured. Token hashes made with it are
/// not secret; `vigil replay` warns when it is in use.
pub const DEV_TOKEN_HASH_KEY: &[u8] = b"vigil-development-key-do-not-use-in-production";

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VigilConfig {
    /// Input handling.
    pub input: InputConfig,
    /// Output rendering.
    pub output: OutputConfig,
    /// GeoIP databases.
    pub geoip: GeoipConfig,
    /// Detection engine.
    pub engine: EngineConfig,
    /// Kafka runtime (`vigil run`); absent for `vigil replay`.
    pub kafka: Option<vigil_kafka::KafkaConfig>,
    /// SET push delivery (`vigil enforce`).
    pub enforce: Option<vigil_enforce::EnforceConfig>,
}

/// Input handling.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Records larger than this many bytes are rejected.
    pub max_record_bytes: usize,
    /// File holding the secret key for token hashes (HMAC-SHA256).
    pub token_hash_key_file: Option<PathBuf>,
    /// Environment variable holding the key, if not a file.
    pub token_hash_key_env: Option<String>,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            max_record_bytes: vigil_model::adapters::DEFAULT_MAX_RECORD_BYTES,
            token_hash_key_file: None,
            token_hash_key_env: None,
        }
    }
}

/// Output rendering.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// SET issuer (`iss`).
    pub issuer: String,
    /// SET audience (`aud`): the enforcement service.
    pub audience: String,
    /// PEM private key to sign SETs with: P-256 (ES256) or RSA of at least 2048 bits (RS256).
    /// Unsigned when absent. Must not be world-readable.
    pub signing_key_file: Option<PathBuf>,
    /// Key id for the JWS header.
    pub signing_key_id: String,
    /// Further public keys to publish in the JWKS beside the signing key, for rotation: the
    /// next key before it signs, the previous one while its SETs may still be verified.
    pub published_keys: Vec<PublishedKey>,
}

/// A key published in the JWKS without signing with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedKey {
    /// PEM file: the public key (or the private one; only its public half is published).
    pub file: PathBuf,
    /// Its key id.
    pub kid: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            issuer: "https://vigil.invalid/".into(),
            audience: "urn:vigil:enforcement".into(),
            signing_key_file: None,
            signing_key_id: "vigil-1".into(),
            published_keys: Vec::new(),
        }
    }
}

/// GeoIP databases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoipConfig {
    /// MaxMind DB files (City and ASN).
    pub databases: Vec<PathBuf>,
    /// Per-IP cache entries.
    pub cache_entries: usize,
}

impl Default for GeoipConfig {
    fn default() -> Self {
        Self {
            databases: Vec::new(),
            cache_entries: 100_000,
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The path.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The token-hash key could not be read.
    #[error("cannot read the token-hash key: {0}")]
    Key(String),
}

impl VigilConfig {
    /// Loads and parses a file.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, LoadError> {
        toml::from_str(text).map_err(|e| LoadError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// The token-hash key: from the configured file or environment variable, else `None`.
    pub fn token_hash_key(&self) -> Result<Option<Vec<u8>>, LoadError> {
        if let Some(path) = &self.input.token_hash_key_file {
            vigil_kafka::config::ensure_private(path).map_err(LoadError::Key)?;
            let bytes = std::fs::read(path)
                .map_err(|e| LoadError::Key(format!("{}: {e}", path.display())))?;
            let trimmed = bytes.trim_ascii().to_vec();
            if trimmed.len() < 16 {
                return Err(LoadError::Key(format!(
                    "{} holds {} bytes; use at least 16 random bytes",
                    path.display(),
                    trimmed.len()
                )));
            }
            return Ok(Some(trimmed));
        }
        if let Some(var) = &self.input.token_hash_key_env {
            let v = std::env::var(var)
                .map_err(|_| LoadError::Key(format!("environment variable {var} is not set")))?;
            if v.len() < 16 {
                return Err(LoadError::Key(format!(
                    "{var} holds {} bytes; use at least 16",
                    v.len()
                )));
            }
            return Ok(Some(v.into_bytes()));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_builds() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/example.toml");
        let cfg = VigilConfig::load(&path).expect("config/example.toml parses");
        vigil_engine::Engine::new(&cfg.engine).expect("config/example.toml is valid");
        let enforce = cfg.enforce.expect("config/example.toml shows [enforce]");
        enforce.validate().expect("its [enforce] table is valid");
        assert_eq!(enforce.receivers.len(), 2);
    }

    #[test]
    fn governance_example_parses_and_its_limits_fit_the_state() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/governance-example.toml");
        let cfg = VigilConfig::load(&path).expect("config/governance-example.toml parses");
        vigil_engine::Engine::new(&cfg.engine).expect("its limits are valid");
        let too_long = "[engine.governance.human]\nmax_idle = \"3d\"\n";
        let cfg = VigilConfig::parse(too_long, "t").expect("parses");
        let err = vigil_engine::Engine::new(&cfg.engine).expect_err("idle beyond the state's");
        assert!(
            err.to_string().contains("governance.human.max_idle"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_errors() {
        let e = VigilConfig::parse("[engine.state]\nidle_tll = \"1h\"\n", "t").expect_err("typo");
        assert!(e.to_string().contains("idle_tll"), "{e}");
        let e = VigilConfig::parse("[engine.state]\nidle_ttl = \"soon\"\n", "t").expect_err("bad");
        assert!(e.to_string().contains("invalid duration"), "{e}");
    }
}
