//! Vigil's enforcement side: `vigil enforce` reads the revocations topic and pushes each
//! Security Event Token to the configured receivers (RFC 8935 SSF push delivery: an HTTP POST
//! of the signed SET as `application/secevent+jwt`).
//!
//! Nothing is lost: a record's offset is committed only once every receiver has accepted it
//! or it has been written to the dead-letter topic ([`tracker`]). Each receiver has its own
//! task and bounded queue, so SETs reach a receiver in the order they were read and a slow
//! receiver holds the others back only once its queue is full. Retries back off
//! exponentially and honour `Retry-After`; a receiver that refuses a SET (4xx) or stays
//! unreachable for `max_attempts` sends it to the dead-letter topic with the reason in
//! headers. Delivery is at-least-once and idempotent by `jti`: a receiver task skips a `jti`
//! it has just delivered, and receivers deduplicate by `jti` as RFC 8935 expects.
//!
//! Unsigned SETs on the topic (when `vigil run` has no signing key) are signed here; without
//! a key they are dead-lettered, since receivers such as Okta accept only signed SETs.
//!
//! Main types: [`EnforceConfig`], [`EnforceMetrics`], [`run`]; [`push`] holds the HTTP side.

pub mod config;
pub mod push;
pub mod tracker;

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};
use vigil_kafka::KafkaConfig;
use vigil_kafka::error::{RetryHint, RuntimeError, classify};
use vigil_sign::SetSigner;

pub use config::{EnforceConfig, ReceiverConfig};
use push::{Attempt, Pusher};
use tracker::Tracker;

/// `jti`s a receiver task remembers to skip redelivered SETs.
const RECENT_JTIS: usize = 65_536;

/// Metrics of `vigil enforce`, registered beside Vigil's others.
#[derive(Clone)]
pub struct EnforceMetrics {
    /// SETs finished per receiver, by result: delivered, duplicate, dead_lettered.
    pub deliveries: IntCounterVec,
    /// HTTP attempts per receiver, by outcome: accepted, retry, refused.
    pub attempts: IntCounterVec,
    /// Records written to the dead-letter topic, by reason class.
    pub dead_letters: IntCounterVec,
    /// Seconds from the record's Kafka timestamp to the receiver's acceptance.
    pub latency: HistogramVec,
    /// SETs waiting in each receiver's queue.
    pub queued: IntGaugeVec,
}

impl EnforceMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let deliveries = counter(
            "enforce_deliveries_total",
            "SETs finished per receiver, by result.",
            &["receiver", "result"],
        )?;
        let attempts = counter(
            "enforce_attempts_total",
            "HTTP push attempts per receiver, by outcome.",
            &["receiver", "outcome"],
        )?;
        let dead_letters = counter(
            "enforce_dead_letters_total",
            "Records written to the enforcement dead-letter topic, by reason.",
            &["reason"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "enforce_delivery_latency_seconds",
                "Seconds from a revocation record's timestamp to its acceptance by a receiver.",
            )
            .buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ]),
            &["receiver"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        let queued = IntGaugeVec::new(
            Opts::new("enforce_queued", "SETs waiting in a receiver's queue."),
            &["receiver"],
        )?;
        registry.register(Box::new(queued.clone()))?;
        Ok(Self {
            deliveries,
            attempts,
            dead_letters,
            latency,
            queued,
        })
    }

    /// The names of these metrics, without the registry's prefix (`vigil_` in `vigil enforce`).
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let all: [&dyn Collector; 5] = [
            &self.deliveries,
            &self.attempts,
            &self.dead_letters,
            &self.latency,
            &self.queued,
        ];
        all.iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.clone())
            .collect()
    }
}

/// One SET on its way to one receiver.
#[derive(Clone)]
struct Job {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Arc<[u8]>>,
    jti: Arc<str>,
    jws: Arc<str>,
}

/// What every receiver task shares.
struct Shared {
    cfg: EnforceConfig,
    source_topic: String,
    producer: FutureProducer,
    metrics: EnforceMetrics,
    done: mpsc::UnboundedSender<(i32, i64)>,
    fatal: mpsc::UnboundedSender<RuntimeError>,
}

/// The SET in a revocations record, signed, with its `jti`; or why it cannot be pushed.
fn decode(payload: Option<&[u8]>, signer: Option<&SetSigner>) -> Result<(String, String), String> {
    let bytes = payload.ok_or("empty record")?;
    let text = std::str::from_utf8(bytes).map_err(|_| "record is not UTF-8")?;
    let text = text.trim();
    if text.starts_with('{') {
        let claims: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("record is not JSON: {e}"))?;
        let jti = claims["jti"]
            .as_str()
            .filter(|j| !j.is_empty())
            .ok_or("SET has no jti")?
            .to_owned();
        if !claims["events"].is_object() {
            return Err("SET has no events object".into());
        }
        let signer = signer.ok_or(
            "unsigned SET and no signing key configured (output.signing_key_file); receivers accept only signed SETs",
        )?;
        let jws = signer.sign(&claims).map_err(|e| e.to_string())?;
        return Ok((jti, jws));
    }
    let mut parts = text.split('.');
    let (Some(_), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("record is neither a JSON SET nor a compact JWS".into());
    };
    let claims: serde_json::Value = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("JWS payload is not base64url JSON")?;
    let jti = claims["jti"]
        .as_str()
        .filter(|j| !j.is_empty())
        .ok_or("SET has no jti")?;
    Ok((jti.to_owned(), text.to_owned()))
}

/// Writes a dead letter, retrying retryable errors until the broker acknowledges it.
#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    shared: &Shared,
    key: Option<&[u8]>,
    payload: &[u8],
    partition: i32,
    offset: i64,
    reason: &str,
    receiver: Option<(&str, u32, Option<u16>)>,
) -> Result<(), RuntimeError> {
    let (p, o) = (partition.to_string(), offset.to_string());
    let mut headers = OwnedHeaders::new()
        .insert(Header {
            key: "vigil.reason",
            value: Some(reason),
        })
        .insert(Header {
            key: "vigil.source.topic",
            value: Some(shared.source_topic.as_str()),
        })
        .insert(Header {
            key: "vigil.source.partition",
            value: Some(p.as_str()),
        })
        .insert(Header {
            key: "vigil.source.offset",
            value: Some(o.as_str()),
        });
    if let Some((name, attempts, status)) = receiver {
        let attempts = attempts.to_string();
        headers = headers
            .insert(Header {
                key: "vigil.receiver",
                value: Some(name),
            })
            .insert(Header {
                key: "vigil.attempts",
                value: Some(attempts.as_str()),
            });
        if let Some(s) = status {
            let s = s.to_string();
            headers = headers.insert(Header {
                key: "vigil.http_status",
                value: Some(s.as_str()),
            });
        }
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut rec = FutureRecord::to(&shared.cfg.dead_letter_topic)
            .payload(payload)
            .headers(headers.clone());
        if let Some(k) = key {
            rec = rec.key(k);
        }
        match shared.producer.send(rec, Duration::from_secs(5)).await {
            Ok(_) => {
                let class = if receiver.is_some() {
                    "undeliverable"
                } else {
                    "not_a_set"
                };
                shared
                    .metrics
                    .dead_letters
                    .with_label_values(&[class])
                    .inc();
                return Ok(());
            }
            Err((e, _)) if classify(&e) == RetryHint::Retry => {
                warn!(error = %e, "Dead-letter write failed; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err((e, _)) => {
                return Err(RuntimeError::Kafka {
                    context: format!(
                        "cannot write to the dead-letter topic {}",
                        shared.cfg.dead_letter_topic
                    ),
                    source: e,
                });
            }
        }
    }
}

/// The jtis a receiver delivered last, oldest first out.
struct Recent {
    set: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
}

impl Recent {
    fn new() -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }
    fn contains(&self, jti: &str) -> bool {
        self.set.contains(jti)
    }
    fn insert(&mut self, jti: Arc<str>) {
        if self.set.insert(jti.clone()) {
            self.order.push_back(jti);
            if self.order.len() > RECENT_JTIS
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// One receiver's task: delivers its queue in order, each SET until accepted, refused or out
/// of attempts.
async fn receiver_task(
    name: String,
    pusher: Pusher,
    mut queue: mpsc::Receiver<Job>,
    shared: Arc<Shared>,
) {
    let mut recent = Recent::new();
    let m = &shared.metrics;
    while let Some(job) = queue.recv().await {
        if recent.contains(&job.jti) {
            m.deliveries.with_label_values(&[&name, "duplicate"]).inc();
            debug!(receiver = %name, jti = %job.jti, "SET already delivered; skipped.");
            let _ = shared.done.send((job.partition, job.offset));
            continue;
        }
        let mut attempt = 1u32;
        let failed = loop {
            let (p, body) = (pusher.clone(), job.jws.clone());
            let outcome = tokio::task::spawn_blocking(move || p.post(&body))
                .await
                .unwrap_or_else(|e| Attempt::Retry {
                    reason: format!("delivery task failed: {e}"),
                    status: None,
                    after: None,
                });
            match outcome {
                Attempt::Delivered { status } => {
                    m.attempts.with_label_values(&[&name, "accepted"]).inc();
                    debug!(receiver = %name, jti = %job.jti, status, attempt, "SET delivered.");
                    break None;
                }
                Attempt::Refused { reason, status } => {
                    m.attempts.with_label_values(&[&name, "refused"]).inc();
                    break Some((reason, Some(status)));
                }
                Attempt::Retry {
                    reason,
                    status,
                    after,
                } => {
                    m.attempts.with_label_values(&[&name, "retry"]).inc();
                    if attempt >= shared.cfg.max_attempts {
                        break Some((
                            format!("{reason} (gave up after {attempt} attempts)"),
                            status,
                        ));
                    }
                    let wait = push::backoff(
                        attempt + 1,
                        shared.cfg.backoff_initial,
                        shared.cfg.backoff_max,
                        after,
                    );
                    warn!(receiver = %name, jti = %job.jti, attempt, reason = %reason, wait = ?wait, "SET push failed; retrying.");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        };
        match failed {
            None => {
                m.deliveries.with_label_values(&[&name, "delivered"]).inc();
                if let Some(ts) = job.timestamp_ms {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    m.latency
                        .with_label_values(&[&name])
                        .observe(((now - ts).max(0) as f64) / 1000.0);
                }
                recent.insert(job.jti.clone());
            }
            Some((reason, status)) => {
                m.deliveries
                    .with_label_values(&[&name, "dead_lettered"])
                    .inc();
                error!(receiver = %name, jti = %job.jti, reason = %reason, "SET not delivered; writing it to the dead-letter topic.");
                let written = dead_letter(
                    &shared,
                    job.key.as_deref(),
                    job.jws.as_bytes(),
                    job.partition,
                    job.offset,
                    &reason,
                    Some((&name, attempt, status)),
                )
                .await;
                if let Err(e) = written {
                    let _ = shared.fatal.send(e);
                    return;
                }
            }
        }
        let _ = shared.done.send((job.partition, job.offset));
    }
}

/// Consumes the revocations topic and pushes every SET to every receiver until `shutdown`
/// resolves, then drains (up to `drain_timeout`) and commits what was delivered.
pub async fn run(
    kafka: &KafkaConfig,
    cfg: &EnforceConfig,
    signer: Option<SetSigner>,
    metrics: EnforceMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RuntimeError> {
    cfg.validate()
        .map_err(|e| RuntimeError::Config(e.to_string()))?;
    let source_topic = kafka.topics.revocations.clone();
    let base = vigil_kafka::runtime::client_config(kafka)?;
    vigil_kafka::runtime::partition_counts(
        &base,
        &kafka.brokers,
        &[source_topic.as_str(), cfg.dead_letter_topic.as_str()],
    )?;
    let mut pushers = Vec::new();
    for r in &cfg.receivers {
        let auth = match &r.auth_header {
            Some(src) => Some(src.read().map_err(|e| {
                RuntimeError::Config(format!("enforce receiver {}: auth_header: {e}", r.name))
            })?),
            None => None,
        };
        pushers.push((r.name.clone(), Pusher::new(r, auth, cfg.request_timeout)));
    }

    let cc =
        vigil_kafka::runtime::group_consumer_config(&base, &cfg.group_id, kafka.session_timeout);
    let consumer: StreamConsumer = cc.create().map_err(|e| RuntimeError::Kafka {
        context: "cannot create the revocations consumer".into(),
        source: e,
    })?;
    consumer
        .subscribe(&[source_topic.as_str()])
        .map_err(|e| RuntimeError::Kafka {
            context: format!("cannot subscribe to {source_topic}"),
            source: e,
        })?;
    let producer: FutureProducer = vigil_kafka::runtime::producer_base(&base, "2")
        .create()
        .map_err(|e| RuntimeError::Kafka {
            context: "cannot create the dead-letter producer".into(),
            source: e,
        })?;

    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        source_topic: source_topic.clone(),
        producer,
        metrics: metrics.clone(),
        done: done_tx,
        fatal: fatal_tx,
    });
    let mut queues = Vec::new();
    let mut tasks = AbortOnDrop(Vec::new());
    for (name, pusher) in pushers {
        let (tx, rx) = mpsc::channel(cfg.queue);
        tasks.0.push(tokio::spawn(receiver_task(
            name.clone(),
            pusher,
            rx,
            shared.clone(),
        )));
        queues.push((name, tx));
    }
    info!(
        topic = %source_topic,
        receivers = queues.len(),
        group = %cfg.group_id,
        "Pushing revocations to receivers."
    );

    let mut tracker = Tracker::default();
    let mut tick = tokio::time::interval(cfg.commit_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(e) = fatal_rx.recv() => return Err(e),
            Some((p, o)) = done_rx.recv() => tracker.finish(p, o),
            _ = tick.tick() => {
                commit(&consumer, &source_topic, &mut tracker, CommitMode::Async);
                for (name, tx) in &queues {
                    metrics
                        .queued
                        .with_label_values(&[name])
                        .set((cfg.queue - tx.capacity()) as i64);
                }
            }
            msg = consumer.recv() => {
                let m = match msg {
                    Ok(m) => m,
                    Err(e) if classify(&e) == RetryHint::Retry => {
                        warn!(error = %e, "Revocations consumer error; retrying.");
                        continue;
                    }
                    Err(e) => {
                        return Err(RuntimeError::Kafka {
                            context: format!("cannot consume {source_topic}"),
                            source: e,
                        });
                    }
                };
                let (partition, offset) = (m.partition(), m.offset());
                match decode(m.payload(), signer.as_ref()) {
                    Ok((jti, jws)) => {
                        let job = Job {
                            partition,
                            offset,
                            timestamp_ms: m.timestamp().to_millis(),
                            key: m.key().map(Arc::from),
                            jti: Arc::from(jti),
                            jws: Arc::from(jws),
                        };
                        tracker.dispatch(partition, offset, queues.len());
                        for (_, tx) in &queues {
                            // Waits when the receiver's queue is full: backpressure, not loss.
                            if tx.send(job.clone()).await.is_err() {
                                return Err(fatal_rx.recv().await.unwrap_or_else(|| {
                                    RuntimeError::Config("a receiver task stopped".into())
                                }));
                            }
                        }
                    }
                    Err(reason) => {
                        warn!(partition, offset, reason = %reason, "Revocation record unusable; dead-lettering it.");
                        dead_letter(
                            &shared,
                            m.key(),
                            m.payload().unwrap_or_default(),
                            partition,
                            offset,
                            &reason,
                            None,
                        )
                        .await?;
                        tracker.dispatch(partition, offset, 0);
                    }
                }
            }
        }
    }

    info!(
        outstanding = tracker.outstanding(),
        "Stopping: delivering what is queued."
    );
    let deadline = tokio::time::Instant::now() + cfg.drain_timeout;
    while tracker.outstanding() > 0 {
        tokio::select! {
            Some((p, o)) = done_rx.recv() => tracker.finish(p, o),
            Some(e) = fatal_rx.recv() => return Err(e),
            _ = tokio::time::sleep_until(deadline) => {
                warn!(
                    outstanding = tracker.outstanding(),
                    "Drain timeout: undelivered SETs stay uncommitted and are pushed after restart."
                );
                break;
            }
        }
    }
    commit(&consumer, &source_topic, &mut tracker, CommitMode::Sync);
    info!("Stopped cleanly.");
    Ok(())
}

/// Stops the receiver tasks when `run` returns, however it returns: a SET they still hold is
/// uncommitted and is pushed again by the next owner of its partition.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Commits the finished prefix of every partition this instance still owns.
fn commit(consumer: &StreamConsumer, topic: &str, tracker: &mut Tracker, mode: CommitMode) {
    let owned: HashSet<i32> = consumer
        .assignment()
        .map(|a| a.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default();
    let mut tpl = TopicPartitionList::new();
    let mut moved = Vec::new();
    for (p, o) in tracker.advanced() {
        if !owned.contains(&p) {
            if tracker.outstanding() == 0 {
                tracker.forget(p);
            }
            continue;
        }
        if tpl
            .add_partition_offset(topic, p, Offset::Offset(o))
            .is_ok()
        {
            moved.push((p, o));
        }
    }
    if moved.is_empty() {
        return;
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            for (p, o) in moved {
                tracker.committed(p, o);
            }
        }
        Err(e) => warn!(error = %e, "Offset commit failed; retrying at the next interval."),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn records_decode_to_signed_sets_or_a_reason() {
        let signer = SetSigner::from_p256_scalar(&[9u8; 32], "k").expect("key");
        let set = json!({"jti": "j1", "iss": "i", "events": {"e": {}}}).to_string();
        let (jti, jws) = decode(Some(set.as_bytes()), Some(&signer)).expect("signs");
        assert_eq!(jti, "j1");
        let jwks = vigil_sign::Jwks::new(&signer, &[]).to_json();
        assert_eq!(
            vigil_sign::verify(&jws, &jwks).expect("verifies")["jti"],
            "j1"
        );
        // Already signed: passed through unchanged.
        let (jti, again) = decode(Some(jws.as_bytes()), None).expect("jws");
        assert_eq!((jti.as_str(), again.as_str()), ("j1", jws.as_str()));
        for (bytes, why) in [
            (None, "empty"),
            (Some(&b"\xff\xfe"[..]), "UTF-8"),
            (Some(&b"{\"jti\": 1}"[..]), "no jti"),
            (Some(&b"{\"jti\": \"x\"}"[..]), "no events"),
            (Some(&b"a.b"[..]), "neither"),
            (Some(&b"a.!!.c"[..]), "base64url"),
        ] {
            let err = decode(bytes, Some(&signer)).expect_err(why);
            assert!(err.contains(why), "{err} should mention {why}");
        }
        let err = decode(Some(set.as_bytes()), None).expect_err("unsigned without a key");
        assert!(err.contains("no signing key"), "{err}");
    }

    #[test]
    fn recent_forgets_the_oldest() {
        let mut r = Recent::new();
        for i in 0..=RECENT_JTIS {
            r.insert(Arc::from(i.to_string()));
        }
        assert!(!r.contains("0"));
        assert!(r.contains("1"));
        assert!(r.contains(&RECENT_JTIS.to_string()));
    }
}
