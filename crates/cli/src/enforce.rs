//! `vigil enforce`: pushes revocation SETs to the configured receivers.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use tracing::info;
use vigil_enforce::{EnforceConfig, EnforceMetrics};
use vigil_kafka::{KafkaConfig, Metrics};

use crate::config::VigilConfig;
use crate::run::shutdown_signal;
use crate::setup;

/// Runs until SIGINT or SIGTERM, then delivers what is queued (up to `drain_timeout`) and
/// commits.
pub fn run(
    cfg: &VigilConfig,
    kafka: &KafkaConfig,
    enforce: &EnforceConfig,
    metrics_addr: SocketAddr,
) -> Result<()> {
    let signer = setup::signer(cfg)?;
    let jwks = setup::jwks(cfg)?.map(|j| j.to_json().to_string());
    let metrics = Metrics::new();
    let enforce_metrics = EnforceMetrics::register(metrics.registry())
        .context("cannot register the enforcement metrics")?;
    let rt = setup::runtime().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let bound = vigil_kafka::metrics::serve(metrics_addr, metrics.clone(), jwks)
            .await
            .with_context(|| format!("cannot listen on {metrics_addr} for /metrics"))?;
        info!(%bound, "Serving /metrics, /healthz, /readyz.");
        metrics.ready.store(true, Ordering::Relaxed);
        vigil_enforce::run(kafka, enforce, signer, enforce_metrics, shutdown_signal()).await?;
        Ok(())
    })
}
