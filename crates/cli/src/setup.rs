//! What every command builds from the configuration: the hash key, GeoIP, the SET signer,
//! and the runtime parts the Kafka runtime shares across partition tasks.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tracing::warn;
use vigil_geo::GeoDb;
use vigil_kafka::runtime::RunParts;
use vigil_kafka::worker::Shared;
use vigil_kafka::{KafkaConfig, Metrics};
use vigil_model::adapters::AdapterContext;
use vigil_sign::{Jwks, SetSigner};

use crate::config::{DEV_TOKEN_HASH_KEY, VigilConfig};

/// The async runtime for the Kafka commands: multi-threaded (the rebalance callbacks step out
/// of it to wait for partition tasks), at least two workers.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2),
        )
        .enable_all()
        .build()
}

/// The token-hash key; the development key (with a warning) when none is configured and
/// `allow_dev` is set, else an error.
pub fn token_key(cfg: &VigilConfig, allow_dev: bool) -> Result<Vec<u8>> {
    match cfg.token_hash_key()? {
        Some(k) => Ok(k),
        None if allow_dev => {
            warn!(
                "No token-hash key configured (input.token_hash_key_file); using the development key. Token hashes are not secret in this run."
            );
            Ok(DEV_TOKEN_HASH_KEY.to_vec())
        }
        None => anyhow::bail!(
            "no token-hash key configured: set input.token_hash_key_file or input.token_hash_key_env (32 random bytes)"
        ),
    }
}

/// Adapter settings.
pub fn adapter(cfg: &VigilConfig, key: &[u8]) -> AdapterContext {
    let mut ctx = AdapterContext::new(key);
    ctx.max_record_bytes = cfg.input.max_record_bytes;
    ctx
}

/// GeoIP databases from the config and the command line.
pub fn geo(cfg: &VigilConfig, extra: &[PathBuf]) -> Result<GeoDb> {
    let mut geo = GeoDb::new(cfg.geoip.cache_entries);
    for db in cfg.geoip.databases.iter().chain(extra) {
        geo.open(db)?;
    }
    Ok(geo)
}

/// The SET signer, when a key is configured. The key file must not be world-readable.
pub fn signer(cfg: &VigilConfig) -> Result<Option<SetSigner>> {
    match &cfg.output.signing_key_file {
        Some(p) => {
            vigil_kafka::config::ensure_private(p)
                .map_err(|e| anyhow::anyhow!("output.signing_key_file: {e}"))?;
            let pem = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read signing key {}", p.display()))?;
            let signer = SetSigner::from_pem(&pem, cfg.output.signing_key_id.clone())
                .with_context(|| format!("signing key {}", p.display()))?;
            Ok(Some(signer))
        }
        None => Ok(None),
    }
}

/// The JWKS receivers verify SETs with: the signing key and the published ones. `None` when
/// SETs are not signed.
pub fn jwks(cfg: &VigilConfig) -> Result<Option<Jwks>> {
    let Some(signer) = signer(cfg)? else {
        if !cfg.output.published_keys.is_empty() {
            anyhow::bail!(
                "output.published_keys is set but output.signing_key_file is not: a JWKS needs the signing key"
            );
        }
        return Ok(None);
    };
    let mut published = Vec::new();
    for k in &cfg.output.published_keys {
        let pem = std::fs::read_to_string(&k.file)
            .with_context(|| format!("cannot read published key {}", k.file.display()))?;
        published.push(
            vigil_sign::public_jwk_from_pem(&pem, &k.kid)
                .with_context(|| format!("published key {}", k.file.display()))?,
        );
    }
    Ok(Some(Jwks::new(&signer, &published)))
}

/// The parts the Kafka runtime needs.
pub fn run_parts(
    cfg: &VigilConfig,
    kafka: &KafkaConfig,
    key: &[u8],
    geo: GeoDb,
    metrics: Metrics,
) -> Result<RunParts> {
    vigil_engine::Engine::new(&cfg.engine).context("invalid engine configuration")?;
    let formats = kafka
        .inputs
        .iter()
        .map(|i| (i.topic.clone(), i.format))
        .collect();
    let adapter = adapter(cfg, key);
    let signer = signer(cfg)?;
    let engine = cfg.engine.clone();
    let (issuer, audience) = (cfg.output.issuer.clone(), cfg.output.audience.clone());
    let topics = kafka.topics.clone();
    let changelog_encoding = kafka.changelog_encoding;
    Ok(RunParts {
        build_shared: Box::new(move |producer, metrics, restore_client| Shared {
            producer,
            topics,
            formats,
            adapter,
            engine,
            geo,
            signer,
            issuer,
            audience,
            metrics,
            restore_client,
            changelog_encoding,
            inputs: Vec::new(),
        }),
        metrics,
    })
}
