//! `vigil sessions`: what is live right now, read from the changelog (the durable state of
//! every partition, at most one commit interval old), without touching running instances.

use std::io::Write;

use anyhow::{Context, Result};
use vigil_engine::Engine;
use vigil_engine::inventory::{Inventory, SessionView};
use vigil_kafka::KafkaConfig;

use crate::config::VigilConfig;

/// Options of `vigil sessions`.
pub struct SessionsArgs {
    /// Print every session as NDJSON instead of the summary.
    pub ndjson: bool,
    /// Include ended and revoked sessions (held for replay detection).
    pub all: bool,
    /// Only this user's sessions.
    pub user: Option<String>,
    /// Only this identity type.
    pub identity_type: Option<String>,
}

/// Reads every changelog partition and prints the inventory.
pub fn run(cfg: &VigilConfig, kafka: &KafkaConfig, args: &SessionsArgs) -> Result<()> {
    let base = vigil_kafka::runtime::client_config(kafka)?;
    let topic = kafka.topics.changelog.clone();
    let partitions = vigil_kafka::runtime::partition_counts(&base, &kafka.brokers, &[&topic])?[0];
    let reader = vigil_kafka::worker::changelog_reader_config(
        &base,
        &format!("{}-inventory", kafka.group_id),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // The summary counts every status; the listing shows live sessions unless --all.
    let keep = |v: &SessionView| {
        (args.all || !args.ndjson || v.status == "live")
            && args.user.as_deref().is_none_or(|u| v.user_id == u)
            && args
                .identity_type
                .as_deref()
                .is_none_or(|t| v.identity_type == t)
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut total = Inventory::default();
    for p in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
        let engine = Engine::new(&cfg.engine).context("invalid engine configuration")?;
        let (engine, _) = vigil_kafka::worker::read_changelog(&reader, &topic, p, engine, || {})?;
        let views: Vec<SessionView> = engine
            .session_views(now)
            .into_iter()
            .filter(|v| keep(v))
            .collect();
        if args.ndjson {
            for v in &views {
                writeln!(out, "{}", serde_json::to_string(v)?)?;
            }
        } else {
            total.merge(&Inventory::of(&views));
        }
    }
    if !args.ndjson {
        writeln!(out, "Sessions in {topic} ({partitions} partitions):")?;
        writeln!(
            out,
            "  live {}   ended {}   revoked by Vigil {}   users with a live session {}",
            total.live, total.ended, total.revoked, total.users
        )?;
        writeln!(out, "  {:<10} {:>10} {:>12}", "type", "live", "past policy")?;
        for (t, c) in &total.by_type {
            writeln!(out, "  {:<10} {:>10} {:>12}", t, c.live, c.past_policy)?;
        }
        let mut apps: Vec<(&String, &u64)> = total.by_app.iter().collect();
        apps.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        if !apps.is_empty() {
            writeln!(
                out,
                "  top apps: {}",
                apps.iter()
                    .take(10)
                    .map(|(a, n)| format!("{a} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        writeln!(
            out,
            "  oldest live session: {} s. Every session: vigil sessions --ndjson [--all]",
            total.oldest_live_seconds
        )?;
    }
    out.flush()?;
    Ok(())
}
