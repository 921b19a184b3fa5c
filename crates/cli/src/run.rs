//! `vigil run`: the consumer-group runtime.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tracing::info;
use vigil_kafka::{KafkaConfig, Metrics};

use crate::config::VigilConfig;
use crate::setup;

/// Runs until SIGINT or SIGTERM, then drains, flushes and commits.
pub fn run(
    cfg: &VigilConfig,
    kafka: &KafkaConfig,
    metrics_addr: SocketAddr,
    allow_dev_key: bool,
) -> Result<()> {
    let key = setup::token_key(cfg, allow_dev_key)?;
    let geo = setup::geo(cfg, &[])?;
    let metrics = Metrics::new();
    let parts = setup::run_parts(cfg, kafka, &key, geo, metrics.clone())?;
    let jwks = setup::jwks(cfg)?.map(|j| j.to_json().to_string());
    let rt = setup::runtime().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let with_jwks = jwks.is_some();
        let bound = vigil_kafka::metrics::serve(metrics_addr, metrics, jwks)
            .await
            .with_context(|| format!("cannot listen on {metrics_addr} for /metrics"))?;
        info!(%bound, jwks = with_jwks, "Serving /metrics, /healthz, /readyz and, when SETs are signed, /.well-known/jwks.json.");
        vigil_kafka::runtime::run(kafka, parts, shutdown_signal()).await?;
        info!("Stopped cleanly.");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    info!("Shutdown signal received.");
}
