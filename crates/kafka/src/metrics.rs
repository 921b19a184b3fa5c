//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` endpoints.
//!
//! Metric updates are atomic increments on pre-registered series: partition tasks share them
//! without locks on the hot path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Every metric Vigil exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Events consumed, by topic and partition.
    pub events: IntCounterVec,
    /// Records rejected, by reason.
    pub rejections: IntCounterVec,
    /// Findings, by detector (including those below the alert threshold).
    pub findings: IntCounterVec,
    /// Alerts, by action.
    pub alerts: IntCounterVec,
    /// Revocations issued.
    pub revocations: IntCounter,
    /// Redelivered records a session had just processed, skipped.
    pub duplicates: IntCounter,
    /// Consumer lag, by topic and partition (from librdkafka statistics).
    pub lag: IntGaugeVec,
    /// Live sessions, by partition.
    pub live_sessions: IntGaugeVec,
    /// Session evictions, by cause.
    pub evictions: IntCounterVec,
    /// Changelog records applied during restore.
    pub restored_records: IntCounter,
    /// Partitions currently restoring.
    pub restoring: IntGauge,
    /// Seconds from the record's Kafka timestamp to its decision.
    pub latency: Histogram,
    /// Seconds from when Vigil took the record from librdkafka's queue to its decision:
    /// Vigil's own share of `latency` (the rest is the producer, the broker, the fetch and
    /// the wait in librdkafka's queue).
    pub internal_latency: Histogram,
    /// Offset commits, by result.
    pub commits: IntCounterVec,
    /// Set when the consumer has an assignment and no partition is restoring.
    pub ready: Arc<AtomicBool>,
    /// Input partitions assigned to this instance.
    pub assigned: IntGauge,
    /// Revocations whose signing failed (sent unsigned instead).
    pub sign_failures: IntCounter,
    /// Well-formed records of event types Vigil does not use, counted and skipped.
    pub ignored: IntCounter,
    /// GeoIP records found but not decodable (a database layout Vigil does not read); those
    /// addresses go unenriched.
    pub geoip_decode_errors: IntCounter,
    /// Live sessions by identity type and state (`live`, `past_policy`).
    pub sessions_by_type: IntGaugeVec,
    /// The latest session inventory of each partition this instance holds (`/sessions`).
    inventory: Arc<Mutex<BTreeMap<i32, vigil_engine::inventory::Inventory>>>,
}

/// A metric made from its static definition and registered (each exactly once).
fn registered<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<C>,
) -> C {
    let metric = metric.expect("static metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registers once");
    metric
}

/// Bucket bounds of both latency histograms from 10 ms to 0.75 s, seconds: close enough that
/// a p99 read from them lands near where it is (with only 0.1, 0.25 and 0.5 there, any p99
/// inside a busy 0.1-0.25 bucket interpolated to about 0.245 s).
const LATENCY_TAIL: [f64; 14] = [
    0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
];

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("vigil".into()), None).expect("static prefix is valid");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            registered(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let counter = |name: &str, help: &str| registered(&registry, IntCounter::new(name, help));
        let gauge = |name: &str, help: &str| registered(&registry, IntGauge::new(name, help));
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            registered(&registry, IntGaugeVec::new(Opts::new(name, help), labels))
        };
        let events = counter_vec("events_total", "Events consumed.", &["topic", "partition"]);
        let rejections = counter_vec(
            "rejections_total",
            "Records rejected, by reason.",
            &["reason"],
        );
        let findings = counter_vec("findings_total", "Findings, by detector.", &["detector"]);
        let alerts = counter_vec("alerts_total", "Alerts, by action.", &["action"]);
        let evictions = counter_vec(
            "evictions_total",
            "Session evictions, by cause.",
            &["cause"],
        );
        let commits = counter_vec(
            "commits_total",
            "Offset or transaction commits, by result.",
            &["result"],
        );
        let revocations = counter("revocations_total", "Revocations issued.");
        let duplicates = counter(
            "duplicates_skipped_total",
            "Redelivered records a session had just processed, skipped.",
        );
        let lag = gauge_vec(
            "consumer_lag",
            "Consumer lag in records.",
            &["topic", "partition"],
        );
        let live_sessions = gauge_vec("live_sessions", "Live sessions held.", &["partition"]);
        let restored_records = counter(
            "changelog_restored_records_total",
            "Changelog records applied during restore.",
        );
        let geoip_decode_errors = counter(
            "geoip_decode_errors_total",
            "GeoIP records found but not decodable (database layout not read); those addresses go unenriched.",
        );
        let assigned = gauge(
            "partitions_assigned",
            "Input partitions assigned to this instance.",
        );
        let restoring = gauge(
            "partitions_restoring",
            "Partitions restoring state from the changelog.",
        );
        let latency = registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "processing_latency_seconds",
                    "Seconds from a record's Kafka timestamp to its decision.",
                )
                .buckets(
                    [
                        &[0.0005, 0.001, 0.002, 0.005][..],
                        &LATENCY_TAIL,
                        &[1.0, 2.5, 5.0, 10.0],
                    ]
                    .concat(),
                ),
            ),
        );
        let internal_latency = registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "internal_latency_seconds",
                    "Seconds from when Vigil took a record from librdkafka's queue to its \
                     decision: Vigil's own share of processing_latency_seconds.",
                )
                .buckets(
                    [
                        &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005][..],
                        &LATENCY_TAIL,
                        &[1.0],
                    ]
                    .concat(),
                ),
            ),
        );
        let sign_failures = counter(
            "set_sign_failures_total",
            "Revocations whose signing failed and that were sent unsigned.",
        );
        let ignored = counter(
            "ignored_total",
            "Well-formed records of event types Vigil does not use, skipped (not dead-lettered).",
        );
        let sessions_by_type = gauge_vec(
            "sessions",
            "Live sessions held, by identity type and state (live, past_policy).",
            &["identity_type", "state"],
        );
        Self {
            registry,
            events,
            rejections,
            findings,
            alerts,
            revocations,
            duplicates,
            lag,
            live_sessions,
            evictions,
            restored_records,
            restoring,
            latency,
            internal_latency,
            commits,
            ready: Arc::new(AtomicBool::new(false)),
            assigned,
            sign_failures,
            sessions_by_type,
            ignored,
            geoip_decode_errors,
            inventory: Arc::default(),
        }
    }

    /// Records a partition's session inventory (or forgets it, with `None`, when the
    /// partition goes) and updates the `sessions` gauges.
    pub fn publish_inventory(
        &self,
        partition: i32,
        inventory: Option<vigil_engine::inventory::Inventory>,
    ) {
        let total = {
            let mut map = self
                .inventory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match inventory {
                Some(i) => map.insert(partition, i),
                None => map.remove(&partition),
            };
            let mut total = vigil_engine::inventory::Inventory::default();
            for i in map.values() {
                total.merge(i);
            }
            total
        };
        for ty in vigil_model::IdentityType::ALL {
            let c = total.by_type.get(ty.as_str()).copied().unwrap_or_default();
            self.sessions_by_type
                .with_label_values(&[ty.as_str(), "live"])
                .set(i64::try_from(c.live).unwrap_or(i64::MAX));
            self.sessions_by_type
                .with_label_values(&[ty.as_str(), "past_policy"])
                .set(i64::try_from(c.past_policy).unwrap_or(i64::MAX));
        }
    }

    /// The session inventory of every partition this instance holds, merged, as JSON.
    pub fn inventory_json(&self) -> String {
        let map = self
            .inventory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut total = vigil_engine::inventory::Inventory::default();
        for i in map.values() {
            total.merge(i);
        }
        let partitions: Vec<i32> = map.keys().copied().collect();
        serde_json::json!({ "partitions": partitions, "inventory": total }).to_string()
    }

    /// The names of every metric defined here (with the `vigil_` prefix), whether or not it
    /// has a sample yet.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let all: [&dyn Collector; 18] = [
            &self.events,
            &self.rejections,
            &self.findings,
            &self.alerts,
            &self.revocations,
            &self.duplicates,
            &self.lag,
            &self.live_sessions,
            &self.evictions,
            &self.restored_records,
            &self.restoring,
            &self.latency,
            &self.internal_latency,
            &self.commits,
            &self.assigned,
            &self.sign_failures,
            &self.sessions_by_type,
            &self.ignored,
        ];
        let mut names: Vec<String> = all
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| format!("vigil_{}", d.fq_name))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The registry, for components that export metrics of their own beside these.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records rejected so far, all reasons.
    pub fn rejected_total(&self) -> u64 {
        use prometheus::core::Collector;
        self.rejections
            .collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `/metrics`, `/healthz`, `/readyz` and, when given, the SET verification keys at
/// `/.well-known/jwks.json`, until the process ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    jwks: Option<String>,
) -> std::io::Result<SocketAddr> {
    let jwks = jwks.map(Arc::new);
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    info!(%local, "Metrics and health endpoints listening.");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let m = metrics.clone();
            let jwks = jwks.clone();
            tokio::spawn(async move {
                // The request line may arrive in several segments: read up to the end of the
                // headers (or 8 KiB, or 5 s).
                let mut buf = Vec::with_capacity(1024);
                let read_head = async {
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                };
                if tokio::time::timeout(std::time::Duration::from_secs(5), read_head)
                    .await
                    .is_err()
                    || buf.is_empty()
                {
                    return;
                }
                let req = String::from_utf8_lossy(&buf);
                let path = req.split_whitespace().nth(1).unwrap_or("/");
                let (status, body, ctype) = match path {
                    "/metrics" => ("200 OK", m.render(), "text/plain; version=0.0.4"),
                    "/healthz" => ("200 OK", "ok\n".to_owned(), "text/plain"),
                    "/sessions" => ("200 OK", m.inventory_json(), "application/json"),
                    "/.well-known/jwks.json" if jwks.is_some() => (
                        "200 OK",
                        jwks.as_deref().cloned().unwrap_or_default(),
                        "application/jwk-set+json",
                    ),
                    "/readyz" if m.ready.load(Ordering::Relaxed) => {
                        ("200 OK", "ready\n".to_owned(), "text/plain")
                    }
                    "/readyz" => (
                        "503 Service Unavailable",
                        "not ready: joining the group or restoring state\n".to_owned(),
                        "text/plain",
                    ),
                    _ => ("404 Not Found", "not found\n".to_owned(), "text/plain"),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                if let Err(e) = sock.write_all(resp.as_bytes()).await {
                    warn!(error = %e, "Metrics response failed.");
                }
            });
        }
    });
    Ok(local)
}
