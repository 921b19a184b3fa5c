//! The consumer-group runtime: one consumer for the group, one task per assigned partition.
//!
//! ```text
//!            ┌──────────── main loop (select!) ─────────────┐
//!  Kafka ──▶ │ events ─▶ rebalance callbacks, errors        │
//!            │ ready  ─▶ mark ready once no task is restoring│
//!            │ tick   ─▶ flush every task, commit offsets   │
//!            │ stop   ─▶ flush, commit, leave the group     │
//!            └──────────────────────────────────────────────┘
//!  rebalance callbacks: revoke ─▶ flush + commit + stop those tasks (before letting go)
//!                       assign ─▶ split each partition's queue from the consumer's, spawn
//!                                 its task (it restores, then reads that queue itself)
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::config::KafkaConfig;
use crate::delivery::Delivery;
use crate::error::{RetryHint, RuntimeError, classify};
use crate::metrics::Metrics;
use crate::worker::{self, Command, FlushReport, Incoming, PartitionQueue, Shared, Worker};

/// Partition tasks by partition number, shared by the main loop and the rebalance callbacks
/// (which run inside the main loop's poll, so the lock is never contended).
type Workers = Arc<Mutex<BTreeMap<i32, Worker>>>;

/// Builds the librdkafka settings common to every client: brokers, pass-through settings and
/// secrets (read here, never logged).
pub fn client_config(cfg: &KafkaConfig) -> Result<ClientConfig, RuntimeError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    c.set_log_level(RDKafkaLogLevel::Warning);
    c.set("socket.nagle.disable", "true");
    for (k, v) in &cfg.client {
        if let Some((_, why)) = PROTECTED.iter().find(|(p, _)| p == k) {
            return Err(RuntimeError::Config(format!(
                "kafka.client.{k} is set by Vigil itself and cannot be overridden: {why}"
            )));
        }
        if crate::config::SECRET_SETTINGS.contains(&k.as_str()) {
            return Err(RuntimeError::Config(format!(
                "kafka.client.{k} holds a secret: move it to kafka.client_secrets ({{ env = \"VAR\" }} or {{ file = \"PATH\" }})"
            )));
        }
        if crate::config::PRIVATE_FILE_SETTINGS.contains(&k.as_str()) {
            crate::config::ensure_private(std::path::Path::new(v))
                .map_err(|e| RuntimeError::Config(format!("kafka.client.{k}: {e}")))?;
        }
        c.set(k, v);
    }
    for (k, src) in &cfg.client_secrets {
        let v = src
            .read()
            .map_err(|e| RuntimeError::Config(format!("kafka.client_secrets.{k}: {e}")))?;
        c.set(k, v);
    }
    Ok(c)
}

/// Settings Vigil's guarantees depend on, each with why (or where it is configured instead):
/// `kafka.client` may not set them. Vigil's tuning defaults (`linger.ms`, `fetch.wait.max.ms`,
/// `heartbeat.interval.ms`, `statistics.interval.ms`, `queued.max.messages.kbytes`,
/// `fetch.queue.backoff.ms`, `compression.type`) are not here: `kafka.client` overrides those
/// (see [`set_default`]).
const PROTECTED: [(&str, &str); 15] = [
    ("bootstrap.servers", "set kafka.brokers"),
    ("group.id", "set kafka.group_id"),
    ("group.instance.id", "set kafka.group_instance_id"),
    ("transactional.id", "set kafka.transactional_id"),
    ("session.timeout.ms", "set kafka.session_timeout"),
    ("transaction.timeout.ms", "set kafka.transaction_timeout"),
    (
        "enable.auto.commit",
        "offsets are committed only once the outputs before them are acknowledged",
    ),
    (
        "enable.auto.offset.store",
        "offsets are committed only once the outputs before them are acknowledged",
    ),
    (
        "isolation.level",
        "Vigil reads only committed records (read_committed)",
    ),
    (
        "enable.idempotence",
        "outputs are retried without duplicates or reordering",
    ),
    (
        "acks",
        "an output counts as written once every in-sync replica has it (all)",
    ),
    (
        "message.timeout.ms",
        "outputs are retried until the brokers take them (at-least-once) or for kafka.transaction_timeout (exactly-once)",
    ),
    (
        "partition.assignment.strategy",
        "each instance must be assigned the same partitions of every input topic as of the changelog",
    ),
    (
        "auto.offset.reset",
        "a new consumer group reads its inputs from the earliest offset, so no retained event is skipped",
    ),
    (
        "enable.partition.eof",
        "the group consumer must not stop at the end of a partition",
    ),
];

/// Sets `key` to Vigil's default `value` unless the deployment's `kafka.client` already set it
/// (in `cc`, a clone of [`client_config`]'s result): tuning, not guarantees.
pub fn set_default(cc: &mut ClientConfig, key: &str, value: &str) {
    if cc.get(key).is_none() {
        cc.set(key, value);
    }
}

/// The group consumer's context: its rebalance callbacks start and stop the partition tasks.
pub struct VigilContext {
    /// The consumer itself, to split each assigned partition's queue from its own.
    consumer: OnceLock<Weak<StreamConsumer<VigilContext>>>,
    workers: Workers,
    delivery: Delivery,
    producer: FutureProducer,
    fatal_tx: mpsc::UnboundedSender<RuntimeError>,
    generation: Arc<AtomicU64>,
    shared: Arc<Shared>,
    ready_tx: mpsc::UnboundedSender<i32>,
    queue: usize,
    metrics: Metrics,
    handle: tokio::runtime::Handle,
    input_topics: Vec<String>,
}

impl ClientContext for VigilContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            if !self.input_topics.contains(topic) {
                continue;
            }
            for (p, ps) in &t.partitions {
                if *p >= 0 && ps.consumer_lag >= 0 {
                    self.metrics
                        .lag
                        .with_label_values(&[topic, &p.to_string()])
                        .set(ps.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for VigilContext {
    fn pre_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let tpl = match rebalance {
            Rebalance::Assign(tpl) => return self.assign(tpl),
            Rebalance::Revoke(tpl) => tpl,
            Rebalance::Error(_) => return,
        };
        let mut partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        partitions.sort_unstable();
        partitions.dedup();
        let taken: Vec<(i32, Worker)> = {
            let mut w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            partitions
                .iter()
                .filter_map(|p| w.remove(p).map(|x| (*p, x)))
                .collect()
        };
        self.generation.fetch_add(1, Ordering::SeqCst);
        if taken.is_empty() {
            return;
        }
        info!(partitions = ?partitions, "Partitions revoked; flushing and committing before letting go.");
        // Exactly-once: every task's output is in the one open transaction, so all of them
        // reach the barrier and the transaction commits with the revoked partitions' offsets.
        // The revoked partitions' tasks end after their flush.
        let revoked = taken.iter().map(|(_, w)| (w.tx.clone(), true));
        let senders: Vec<(mpsc::Sender<Command>, bool)> = match self.delivery {
            Delivery::AtLeastOnce => revoked.collect(),
            Delivery::ExactlyOnce => {
                let w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
                revoked
                    .chain(w.values().map(|x| (x.tx.clone(), false)))
                    .collect()
            }
        };
        // The callback runs inside the consumer's poll on a runtime thread: step out of the
        // async context to wait for the tasks (which run on other threads).
        let hold = self.delivery == Delivery::ExactlyOnce;
        let result = tokio::task::block_in_place(|| {
            let barrier = self.handle.block_on(flush_tasks(&senders, hold, false))?;
            if self.delivery == Delivery::AtLeastOnce {
                // Deliveries handed to a commit still in flight must be acknowledged too
                // before these partitions' offsets are committed.
                use rdkafka::producer::Producer;
                self.producer
                    .flush(Duration::from_secs(30))
                    .map_err(|source| RuntimeError::Kafka {
                        context: "outputs not acknowledged before the revoke commit".into(),
                        source,
                    })?;
            }
            make_durable(
                base,
                self.delivery,
                &self.producer,
                barrier,
                &self.metrics,
                CommitMode::Sync,
            )
        });
        if let Err(e) = result {
            error!(error = %e, "Flush and commit on revoke failed; the new owner will reprocess from the last commit.");
            if self.delivery == Delivery::ExactlyOnce {
                let _ = self.fatal_tx.send(e);
            }
        }
        self.metrics.assigned.sub(taken.len() as i64);
        // A task's partition queue must be gone before its partition can be assigned (and
        // its queue split) again: the queue shares librdkafka's partition queue with the next
        // one, and dropping it turns that queue's wake-ups off.
        tokio::task::block_in_place(|| self.handle.block_on(stopped(taken)));
    }

    fn post_rebalance(&self, _base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(e) = rebalance {
            warn!(error = %e, "Rebalance error.");
        }
    }
}

impl VigilContext {
    /// Before the partitions are assigned: splits each one's queue from the consumer's (so
    /// none of its records reach the consumer's own queue) and spawns its task, which
    /// restores the partition's state and then reads that queue itself. Records fetched
    /// meanwhile wait in librdkafka. (Pausing the partition instead was measured to delay
    /// every record by 0.2-0.5 s after each later offset commit.)
    fn assign(&self, tpl: &TopicPartitionList) {
        let consumer = self.consumer.get().and_then(Weak::upgrade);
        let mut queues: BTreeMap<i32, Vec<PartitionQueue>> = BTreeMap::new();
        for e in tpl.elements() {
            let split = consumer
                .as_ref()
                .and_then(|c| c.split_partition_queue(e.topic(), e.partition()));
            let entry = queues.entry(e.partition()).or_default();
            match split {
                Some(queue) => entry.push(PartitionQueue {
                    topic: e.topic().into(),
                    queue,
                }),
                // Its records then reach the consumer's own queue, and the main loop hands
                // them to the task.
                None => warn!(
                    topic = e.topic(),
                    partition = e.partition(),
                    "Cannot split the partition's queue; the main loop hands its records over."
                ),
            }
        }
        let partitions: Vec<i32> = queues.keys().copied().collect();
        let mut w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let _enter = self.handle.enter();
        for (p, queues) in queues {
            if let Some(task) = w.get(&p) {
                // Another input topic's share of a partition whose task runs already.
                let tx = task.tx.clone();
                let sent = tokio::task::block_in_place(|| {
                    self.handle.block_on(tx.send(Command::Read(queues)))
                });
                if sent.is_err() {
                    error!(partition = p, "Cannot hand a partition task its queue.");
                }
                let _ = self.ready_tx.send(p);
                continue;
            }
            match worker::spawn(
                p,
                self.shared.clone(),
                self.queue,
                queues,
                self.ready_tx.clone(),
                self.fatal_tx.clone(),
            ) {
                Ok(task) => {
                    w.insert(p, task);
                    self.metrics.assigned.inc();
                }
                Err(e) => {
                    error!(partition = p, error = %e, "Cannot start a partition task.")
                }
            }
        }
        self.metrics.ready.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        info!(partitions = ?partitions, "Partitions assigned; restoring state.");
    }
}

/// Waits until the tasks have ended (each ends after its last flush, or when its command
/// channel closes, which dropping its handle does); a task that takes longer than
/// [`TASK_STOP_WAIT`] is left to end on its own.
async fn stopped(tasks: Vec<(i32, Worker)>) {
    for (p, w) in tasks {
        drop(w.tx);
        if tokio::time::timeout(TASK_STOP_WAIT, w.task).await.is_err() {
            warn!(partition = p, "A stopped partition task has not ended yet.");
        }
    }
}

/// How long a rebalance or shutdown waits for a stopped task to end.
const TASK_STOP_WAIT: Duration = Duration::from_secs(30);

/// The tasks' reports, and (exactly-once) the holds that keep them waiting until the
/// transaction is committed.
struct Barrier {
    reports: Vec<FlushReport>,
    holds: Vec<oneshot::Sender<()>>,
}

/// Asks every task to flush and waits for all reports.
async fn flush_tasks(
    senders: &[(mpsc::Sender<Command>, bool)],
    hold: bool,
    defer_acks: bool,
) -> Result<Barrier, RuntimeError> {
    request_flush(senders, hold, defer_acks)
        .await
        .reports()
        .await
}

/// Flush requests sent, their reports still to come.
struct Requested {
    waits: Vec<oneshot::Receiver<Result<FlushReport, RuntimeError>>>,
    holds: Vec<oneshot::Sender<()>>,
}

/// Asks every task to flush (each does so after the records already taken); those marked
/// `last` end once their flush is done.
async fn request_flush(
    senders: &[(mpsc::Sender<Command>, bool)],
    hold: bool,
    defer_acks: bool,
) -> Requested {
    let mut waits = Vec::new();
    let mut holds = Vec::new();
    for (tx, last) in senders {
        let (ack, rx) = oneshot::channel();
        let (h, hold_rx) = if hold {
            let (a, b) = oneshot::channel();
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        if tx
            .send(Command::Flush {
                ack,
                hold: hold_rx,
                defer_acks,
                last: *last,
            })
            .await
            .is_ok()
        {
            waits.push(rx);
            holds.extend(h);
        }
    }
    Requested { waits, holds }
}

impl Requested {
    /// Waits for every report; the first failure is returned.
    async fn reports(self) -> Result<Barrier, RuntimeError> {
        let mut reports = Vec::new();
        for rx in self.waits {
            match rx.await {
                Ok(Ok(r)) => reports.push(r),
                Ok(Err(e)) => return Err(e),
                Err(_) => warn!("A partition task ended before its flush completed."),
            }
        }
        Ok(Barrier {
            reports,
            holds: self.holds,
        })
    }
}

/// Every running partition task's command sender, each marked to end after the flush
/// (`last`) or not.
fn task_senders(workers: &Workers, last: bool) -> Vec<(mpsc::Sender<Command>, bool)> {
    let w = workers.lock().unwrap_or_else(|e| e.into_inner());
    w.values().map(|x| (x.tx.clone(), last)).collect()
}

/// A flushed barrier waiting for its deliveries' acknowledgements.
type Settling = std::pin::Pin<Box<dyn Future<Output = Result<Barrier, RuntimeError>> + Send>>;

/// Waits until every delivery the tasks handed over at their flush is acknowledged.
async fn settle(mut barrier: Barrier) -> Result<Barrier, RuntimeError> {
    for r in &mut barrier.reports {
        crate::delivery::acknowledged(r.pending.drain(..)).await?;
    }
    Ok(barrier)
}

/// Commits what the flushed tasks reported: offsets (at-least-once), or offsets and outputs
/// in the open transaction, which is then committed and a new one begun (exactly-once).
/// Blocking; releases the barrier's holds when done.
fn make_durable<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    delivery: Delivery,
    producer: &FutureProducer,
    barrier: Barrier,
    metrics: &Metrics,
    mode: CommitMode,
) -> Result<(), RuntimeError> {
    use rdkafka::producer::Producer;
    let tpl = offsets_tpl(&barrier.reports);
    let kafka = |context: &str, source| RuntimeError::Kafka {
        context: context.into(),
        source,
    };
    let result = match delivery {
        Delivery::AtLeastOnce if tpl.count() == 0 => Ok(()),
        Delivery::AtLeastOnce => match consumer.commit(&tpl, mode) {
            Ok(()) => Ok(()),
            Err(e) if classify(&e) == RetryHint::Retry => {
                warn!(error = %e, "Offset commit failed; will retry at the next tick.");
                metrics.commits.with_label_values(&["error"]).inc();
                return Ok(());
            }
            Err(e) => Err(kafka("offset commit failed", e)),
        },
        Delivery::ExactlyOnce => (|| {
            if tpl.count() > 0 {
                let group = consumer.group_metadata().ok_or_else(|| {
                    RuntimeError::Config(
                        "the consumer has no group metadata for the transaction".into(),
                    )
                })?;
                producer
                    .send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)
                    .map_err(|e| kafka("adding offsets to the transaction failed", e))?;
            }
            producer
                .commit_transaction(TXN_TIMEOUT)
                .map_err(|e| kafka("transaction commit failed", e))?;
            producer
                .begin_transaction()
                .map_err(|e| kafka("cannot begin a transaction", e))
        })(),
    };
    metrics
        .commits
        .with_label_values(&[if result.is_ok() { "ok" } else { "error" }])
        .inc();
    drop(barrier.holds);
    result
}

/// Longest wait for a transactional call.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

fn offsets_tpl(reports: &[FlushReport]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for r in reports {
        for (topic, offset) in &r.offsets {
            let _ = tpl.add_partition_offset(topic, r.partition, Offset::Offset(*offset));
        }
    }
    tpl
}

/// What `vigil run` needs besides the Kafka table.
pub struct RunParts {
    /// Everything partition tasks share, minus the producer (built here).
    pub build_shared: Box<dyn FnOnce(FutureProducer, Metrics, ClientConfig) -> Shared + Send>,
    /// Metrics registry.
    pub metrics: Metrics,
}

/// Runs the consumer-group runtime until `shutdown` resolves or a fatal error occurs. On
/// shutdown every task is flushed and offsets are committed before leaving the group.
pub async fn run(
    cfg: &KafkaConfig,
    parts: RunParts,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RuntimeError> {
    if cfg.inputs.is_empty() {
        return Err(RuntimeError::Config(
            "kafka.inputs is empty: name at least one input topic".into(),
        ));
    }
    let base = client_config(cfg)?;
    let input_partitions = check_topics(&base, cfg)?;

    let producer: FutureProducer =
        producer_config(&base, cfg)
            .create()
            .map_err(|e| RuntimeError::Kafka {
                context: "cannot create the producer".into(),
                source: e,
            })?;
    // The producer learns where each output topic's partitions live before the first output,
    // not on it: the first revocation after a start waited for that lookup (about 100 ms
    // with librdkafka's backoff between metadata requests for topics it has not seen).
    tokio::task::block_in_place(|| {
        use rdkafka::producer::Producer;
        let t = &cfg.topics;
        for topic in [&t.revocations, &t.alerts, &t.dead_letters, &t.changelog] {
            if let Err(e) = producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(10))
            {
                warn!(topic = %topic, error = %e, "Cannot look up an output topic yet; its first record will.");
            }
        }
    });
    if cfg.delivery == Delivery::ExactlyOnce {
        use rdkafka::producer::Producer;
        let p = producer.clone();
        tokio::task::block_in_place(|| {
            p.init_transactions(TXN_TIMEOUT)?;
            p.begin_transaction()
        })
        .map_err(|e| RuntimeError::Kafka {
            context: "cannot start transactions".into(),
            source: e,
        })?;
    }

    let restore =
        crate::worker::changelog_reader_config(&base, &format!("{}-restore", cfg.group_id));
    let metrics = parts.metrics.clone();
    let mut shared = (parts.build_shared)(producer.clone(), metrics.clone(), restore);
    shared.inputs = input_partitions;
    let shared = Arc::new(shared);

    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
    let workers: Workers = Arc::default();
    let generation = Arc::new(AtomicU64::new(0));
    let input_topics: Vec<String> = cfg.inputs.iter().map(|i| i.topic.clone()).collect();
    let ctx = VigilContext {
        consumer: OnceLock::new(),
        workers: workers.clone(),
        delivery: cfg.delivery,
        producer: producer.clone(),
        fatal_tx,
        generation: generation.clone(),
        shared: shared.clone(),
        ready_tx,
        queue: cfg.partition_queue,
        metrics: metrics.clone(),
        handle: tokio::runtime::Handle::current(),
        input_topics: input_topics.clone(),
    };
    let strategy = if input_topics.len() > 1 {
        "range"
    } else {
        "cooperative-sticky"
    };
    let mut cc = group_consumer_config(&base, &cfg.group_id, cfg.session_timeout);
    cc.set("partition.assignment.strategy", strategy);
    // The consumer lag metric comes from librdkafka's statistics.
    set_default(&mut cc, "statistics.interval.ms", "5000");
    if let Some(id) = &cfg.group_instance_id {
        cc.set("group.instance.id", id);
    }
    let consumer: Arc<StreamConsumer<VigilContext>> = Arc::new(
        cc.create_with_context(ctx)
            .map_err(|e| RuntimeError::Kafka {
                context: "cannot create the consumer".into(),
                source: e,
            })?,
    );
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    let topics: Vec<&str> = input_topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| RuntimeError::Kafka {
            context: "cannot subscribe".into(),
            source: e,
        })?;
    info!(group = %cfg.group_id, topics = ?topics, delivery = cfg.delivery.as_str(), strategy, "Joined the consumer group.");

    let mut tick = tokio::time::interval(cfg.commit_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; there is nothing to commit yet.
    tick.tick().await;
    let mut cache: BTreeMap<i32, mpsc::Sender<Command>> = BTreeMap::new();
    let mut cache_gen = u64::MAX;
    let mut topic_names: BTreeMap<String, Arc<str>> = BTreeMap::new();
    let batch_max = worker::batching(cfg.partition_queue).0;
    let mut batches: Vec<(i32, mpsc::Sender<Command>, Vec<Incoming>)> = Vec::new();
    tokio::pin!(shutdown);

    // At-least-once: a flush whose reports and acknowledgements are still to come, then its
    // commit. The partition tasks go on processing meanwhile; the offsets it commits were
    // fixed when each task flushed.
    let mut inflight: Option<Settling> = None;
    let result = loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break Ok(()),
            Some(_) = ready_rx.recv() => {
                metrics.ready.store(metrics.restoring.get() == 0, Ordering::SeqCst);
            }
            settled = async { inflight.as_mut().expect("guarded by the precondition").await }, if inflight.is_some() => {
                inflight = None;
                let mut barrier = match settled {
                    Ok(b) => b,
                    Err(e) => break Err(e),
                };
                // A partition revoked meanwhile was committed on revoke, with later offsets.
                {
                    let w = workers.lock().unwrap_or_else(|e| e.into_inner());
                    barrier.reports.retain(|r| w.contains_key(&r.partition));
                }
                if barrier.reports.iter().any(|r| !r.offsets.is_empty())
                    && let Err(e) = tokio::task::block_in_place(|| {
                        make_durable(&*consumer, cfg.delivery, &producer, barrier, &metrics, CommitMode::Async)
                    })
                {
                    break Err(e);
                }
            }
            _ = tick.tick() => {
                if cfg.delivery == Delivery::AtLeastOnce {
                    if inflight.is_some() {
                        // The previous flush is still waiting for its reports or acknowledgements.
                        continue;
                    }
                    // The reports come while records keep flowing: each task flushes after
                    // the records already sent to it, and its report fixes the offsets.
                    let requested = request_flush(&task_senders(&workers, false), false, true).await;
                    inflight = Some(Box::pin(async move { settle(requested.reports().await?).await }));
                } else if let Err(e) = commit(&consumer, &workers, cfg.delivery, &producer, &metrics, false).await {
                    break Err(e);
                }
            }
            Some(e) = fatal_rx.recv() => break Err(e),
            msg = consumer.recv() => {
                // Whatever else the consumer already holds is taken too, up to a batch, so a
                // task is woken once per batch rather than once per record.
                let mut next = Some(msg);
                let mut failure = None;
                let mut taken = 0usize;
                let arrived = std::time::Instant::now();
                while let Some(msg) = next.take() {
                    let m = match msg {
                        Ok(m) => m,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    };
                    let g = generation.load(Ordering::SeqCst);
                    if g != cache_gen {
                        let w = workers.lock().unwrap_or_else(|e| e.into_inner());
                        cache = w.iter().map(|(p, w)| (*p, w.tx.clone())).collect();
                        cache_gen = g;
                    }
                    // A partition that is not ours (any more) is consumed by its owner.
                    // Only a partition whose queue could not be split has records here.
                    if let Some(tx) = cache.get(&m.partition()) {
                        let rec = incoming(&m, &mut topic_names, arrived);
                        match batches.iter_mut().find(|(p, t, _)| *p == rec.partition && t.same_channel(tx)) {
                            Some((_, _, recs)) => recs.push(rec),
                            None => batches.push((rec.partition, tx.clone(), vec![rec])),
                        }
                    }
                    taken += 1;
                    if taken < batch_max {
                        next = ready_now(consumer.recv()).await;
                    }
                }
                for (p, tx, records) in batches.drain(..) {
                    // A task stopped by a rebalance meanwhile committed what it processed;
                    // these records go to the partition's next owner from that offset.
                    if tx.send(Command::Records(records)).await.is_err()
                        && cache.get(&p).is_some_and(|c| c.same_channel(&tx))
                    {
                        warn!(partition = p, "A partition task has stopped; its records will be reprocessed after the next rebalance.");
                    }
                }
                if let Some(e) = failure
                    && let Err(e) = after_consumer_error(e, None).await
                {
                    break Err(e);
                }
            }
        }
    };
    info!("Stopping: flushing partition tasks and committing offsets.");
    if let Some(f) = inflight.take() {
        // Its offsets are older than the final commit's, which covers them.
        if let Err(e) = f.await {
            warn!(error = %e, "A pending commit failed at shutdown.");
        }
    }
    // After a permanently failed output nothing more is committed: the records since the last
    // commit are processed again by the next owner, the failed output with them.
    let final_commit = match &result {
        Err(RuntimeError::Delivery { .. }) => Ok(()),
        _ => commit(&consumer, &workers, cfg.delivery, &producer, &metrics, true).await,
    };
    consumer.unsubscribe();
    // The tasks hold their partitions' queues, and so the consumer: each ends after its last
    // flush, or as its command channel closes (the main loop's copies of the senders too).
    cache.clear();
    let tasks: Vec<(i32, Worker)> =
        std::mem::take(&mut *workers.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect();
    stopped(tasks).await;
    producer_flush(&producer);
    result.and(final_commit)
}

/// What an error read from the consumer (`partition`: from that partition's queue) means
/// for the loop that read it: a fatal one is returned; after a retryable one, a warning and a
/// pause before reading on.
pub(crate) async fn after_consumer_error(
    e: rdkafka::error::KafkaError,
    partition: Option<i32>,
) -> Result<(), RuntimeError> {
    if classify(&e) == RetryHint::Fatal {
        let context = match partition {
            Some(p) => format!("partition {p} consumer failed"),
            None => "consumer failed".into(),
        };
        return Err(RuntimeError::Kafka { context, source: e });
    }
    match partition {
        Some(p) => warn!(partition = p, error = %e, "Consumer error; retrying."),
        None => warn!(error = %e, "Consumer error; retrying."),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// Polls `f` once: its output if it is ready now, `None` if it would have to wait.
async fn ready_now<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// A consumed record copied out of the consumer's buffer for its partition task.
fn incoming<M: Message>(
    m: &M,
    topic_names: &mut BTreeMap<String, Arc<str>>,
    arrived: std::time::Instant,
) -> Incoming {
    let topic = match topic_names.get(m.topic()) {
        Some(t) => t.clone(),
        None => topic_names
            .entry(m.topic().to_owned())
            .or_insert_with(|| Arc::from(m.topic()))
            .clone(),
    };
    Incoming {
        topic,
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        timestamp_ms: m.timestamp().to_millis(),
        broadcast: worker::is_broadcast(m),
        arrived,
    }
}

/// Flushes every task and commits what they report; with `last` (shutdown) the tasks read
/// nothing more and end after their flush.
async fn commit(
    consumer: &StreamConsumer<VigilContext>,
    workers: &Workers,
    delivery: Delivery,
    producer: &FutureProducer,
    metrics: &Metrics,
    last: bool,
) -> Result<(), RuntimeError> {
    let barrier = flush_tasks(
        &task_senders(workers, last),
        delivery == Delivery::ExactlyOnce,
        false,
    )
    .await?;
    if delivery == Delivery::AtLeastOnce && barrier.reports.iter().all(|r| r.offsets.is_empty()) {
        return Ok(());
    }
    tokio::task::block_in_place(|| {
        make_durable(
            consumer,
            delivery,
            producer,
            barrier,
            metrics,
            CommitMode::Async,
        )
    })
}

/// The producer's transactional id: configured, else derived from the static member id,
/// else unique to this process (a restart then cannot fence its predecessor, whose open
/// transaction the broker aborts after `transaction_timeout`).
fn transactional_id(cfg: &KafkaConfig) -> String {
    if let Some(t) = &cfg.transactional_id {
        return t.clone();
    }
    match &cfg.group_instance_id {
        Some(i) => format!("{}-{i}", cfg.group_id),
        None => format!(
            "{}-{}-{}",
            cfg.group_id,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        ),
    }
}

fn producer_flush(p: &FutureProducer) {
    use rdkafka::producer::Producer;
    if let Err(e) = p.flush(Duration::from_secs(30)) {
        warn!(error = %e, "Producer flush at shutdown did not complete.");
    }
}

/// An idempotent producer's settings on top of `base` ([`crate::delivery::PRODUCER_SETTINGS`]),
/// batching for up to `linger_ms` and compressing batches with LZ4 unless `kafka.client` set
/// `linger.ms` or `compression.type`: what every producer of Vigil's (outputs, rekeyed
/// records, enforcement dead letters) starts from. Compressed, the changelog's and the
/// alerts' batches cost the broker about a third less CPU per event (measured on tansu:
/// docs/PERFORMANCE.md); every Kafka client reads LZ4.
pub fn producer_base(base: &ClientConfig, linger_ms: &str) -> ClientConfig {
    let mut pc = base.clone();
    for (k, v) in crate::delivery::PRODUCER_SETTINGS {
        pc.set(k, v);
    }
    set_default(&mut pc, "linger.ms", linger_ms);
    set_default(&mut pc, "compression.type", "lz4");
    pc
}

/// Settings of the producer of every output, changelog included: [`producer_base`] with a
/// 2 ms linger (a revocation waits at most that long for others to share its request), and
/// exactly-once's transactional settings.
pub fn producer_config(base: &ClientConfig, cfg: &KafkaConfig) -> ClientConfig {
    let mut pc = producer_base(base, "2");
    if cfg.delivery == Delivery::ExactlyOnce {
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms: an outage longer
        // than the transaction timeout fails the transaction and stops the process, and the
        // restarted instance resumes from the last committed transaction.
        let t = cfg.transaction_timeout.as_millis().to_string();
        pc.set("transactional.id", transactional_id(cfg))
            .set("transaction.timeout.ms", &t)
            .set("message.timeout.ms", &t);
    }
    pc
}

/// Consumer settings of a Vigil consumer group: manual offset storing and commits, reading
/// from the earliest offset, read_committed, cooperative-sticky assignment, no end-of-partition
/// events; by default (`kafka.client` may set them otherwise, see [`set_default`]) heartbeats
/// at a sixth of `session_timeout` and short fetch waits.
pub fn group_consumer_config(
    base: &ClientConfig,
    group_id: &str,
    session_timeout: Duration,
) -> ClientConfig {
    let mut cc = base.clone();
    cc.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set(
            "session.timeout.ms",
            session_timeout.as_millis().to_string(),
        )
        .set("isolation.level", "read_committed");
    set_default(
        &mut cc,
        "heartbeat.interval.ms",
        &(session_timeout.as_millis() / 6).max(100).to_string(),
    );
    // Latency over request economy: a broker that answers a fetch as soon as records arrive
    // (Apache Kafka) only holds an idle one this long, but one that answers only when the
    // wait is over (tansu, measured: docs/PERFORMANCE.md) adds up to this much to every record.
    set_default(&mut cc, "fetch.wait.max.ms", "10");
    // Each assigned partition's queue is split from the consumer's, so librdkafka's buffering
    // limits hold per partition, not for the whole consumer: a quarter of its 64 MiB default
    // each, and a full queue asks for more within 10 ms of being read below its limit rather
    // than after librdkafka's default second (with the second, a queue kept to 4 MiB was
    // measured to starve its task: 22-59 k records/s instead of about 200 k).
    set_default(&mut cc, "queued.max.messages.kbytes", "16384");
    set_default(&mut cc, "fetch.queue.backoff.ms", "10");
    cc
}

/// The partition count of each named topic, or [`RuntimeError::MissingTopic`] for the first
/// one the brokers do not have.
pub fn partition_counts(
    base: &ClientConfig,
    brokers: &str,
    names: &[&str],
) -> Result<Vec<usize>, RuntimeError> {
    let probe: BaseConsumer = base.create().map_err(|e| RuntimeError::Kafka {
        context: "cannot create a metadata client".into(),
        source: e,
    })?;
    let md = probe
        .fetch_metadata(None, Duration::from_secs(15))
        .map_err(|e| RuntimeError::Kafka {
            context: format!("cannot reach the brokers at {brokers}"),
            source: e,
        })?;
    names
        .iter()
        .map(|&name| {
            md.topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none())
                .map(|t| t.partitions().len())
                .ok_or_else(|| RuntimeError::MissingTopic { topic: name.into() })
        })
        .collect()
}

/// Checks that every configured topic exists and that inputs and the changelog are
/// co-partitioned; returns each input topic with its partition count.
fn check_topics(
    base: &ClientConfig,
    cfg: &KafkaConfig,
) -> Result<Vec<(String, i32)>, RuntimeError> {
    let t = &cfg.topics;
    let names: Vec<&str> = cfg
        .inputs
        .iter()
        .map(|i| i.topic.as_str())
        .chain([
            t.alerts.as_str(),
            t.revocations.as_str(),
            t.dead_letters.as_str(),
            t.changelog.as_str(),
        ])
        .collect();
    let counts = partition_counts(base, &cfg.brokers, &names)?;
    let count = |name: &str| names.iter().position(|n| *n == name).map(|i| counts[i]);
    let per_input: Vec<(String, usize)> = cfg
        .inputs
        .iter()
        .map(|i| (i.topic.clone(), count(&i.topic).unwrap_or(0)))
        .collect();
    let n = per_input[0].1;
    if per_input.iter().any(|(_, c)| *c != n) {
        return Err(RuntimeError::Config(format!(
            "input topics must have the same partition count (co-partitioned by session id): {per_input:?}"
        )));
    }
    let changelog = count(&t.changelog).unwrap_or(0);
    if changelog != n {
        return Err(RuntimeError::Config(format!(
            "changelog topic {} has {changelog} partitions but the inputs have {n}; they must match",
            t.changelog
        )));
    }
    Ok(per_input
        .into_iter()
        .map(|(t, c)| (t, i32::try_from(c).unwrap_or(i32::MAX)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSource;

    fn cfg() -> KafkaConfig {
        KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            group_id: "g".into(),
            group_instance_id: None,
            inputs: vec![],
            topics: Default::default(),
            delivery: Delivery::AtLeastOnce,
            commit_interval: Duration::from_millis(500),
            transactional_id: None,
            transaction_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
            partition_queue: 16,
            changelog_encoding: Default::default(),
            client: BTreeMap::new(),
            client_secrets: BTreeMap::new(),
        }
    }

    /// Records are handed to tasks in batches no larger than the configured queue, and the
    /// queue (in batches) never holds much more than `partition_queue` records.
    #[test]
    fn batches_respect_the_partition_queue() {
        for queue in [0usize, 1, 16, 255, 256, 257, 4096, 100_000] {
            let (batch, capacity) = worker::batching(queue);
            assert!(batch >= 1 && capacity >= 1, "queue {queue}");
            assert!(batch <= worker::MAX_BATCH, "queue {queue}");
            assert!(
                batch * capacity <= queue.max(1),
                "queue {queue}: {batch} x {capacity}"
            );
            assert!(
                batch * capacity + batch > queue,
                "queue {queue}: {batch} x {capacity} wastes room"
            );
        }
        assert_eq!(worker::batching(4096), (256, 16));
        assert_eq!(worker::batching(16), (16, 1));
    }

    /// `ready_now` takes what is ready and never waits for what is not.
    #[test]
    fn ready_now_does_not_wait() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            assert_eq!(ready_now(std::future::ready(7)).await, Some(7));
            assert_eq!(ready_now(std::future::pending::<u8>()).await, None);
            let (tx, mut rx) = mpsc::channel::<u8>(1);
            assert_eq!(ready_now(rx.recv()).await, None);
            tx.send(3).await.expect("open");
            assert_eq!(ready_now(rx.recv()).await, Some(Some(3)));
        });
    }

    /// The changelog reader ends each partition at once (a short fetch wait: the end is known
    /// from an empty fetch, which a broker otherwise holds for 500 ms) and reads only
    /// committed state, under its own group id.
    #[test]
    fn the_changelog_reader_ends_partitions_without_waiting() {
        let base = client_config(&cfg()).expect("valid");
        let r = crate::worker::changelog_reader_config(&base, "g-restore");
        assert_eq!(r.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(r.get("enable.partition.eof"), Some("true"));
        assert_eq!(r.get("isolation.level"), Some("read_committed"));
        assert_eq!(r.get("group.id"), Some("g-restore"));
        assert_eq!(r.get("bootstrap.servers"), Some("127.0.0.1:1"));
    }

    #[test]
    fn secrets_come_from_files_and_guarantees_cannot_be_overridden() {
        let dir = std::env::temp_dir().join(format!("vigil-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\n").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let mut c = cfg();
            c.client_secrets
                .insert("sasl.password".into(), SecretSource::File(file.clone()));
            let err = client_config(&c).expect_err("world-readable").to_string();
            assert!(
                err.contains("every user can read it") && !err.contains("s3cret"),
                "{err}"
            );
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let mut c = cfg();
        c.client.insert("sasl.password".into(), "inline".into());
        let err = client_config(&c).expect_err("inline secret").to_string();
        assert!(
            err.contains("move it to kafka.client_secrets") && !err.contains("inline"),
            "{err}"
        );
        let mut c = cfg();
        c.client
            .insert("security.protocol".into(), "SASL_SSL".into());
        c.client_secrets
            .insert("sasl.password".into(), SecretSource::File(file.clone()));
        let built = client_config(&c).expect("valid");
        assert_eq!(built.get("sasl.password"), Some("s3cret"));
        assert_eq!(built.get("security.protocol"), Some("SASL_SSL"));

        c.client_secrets.insert(
            "sasl.password".into(),
            SecretSource::Env("VIGIL_TEST_UNSET_VARIABLE".into()),
        );
        let err = client_config(&c).expect_err("missing env").to_string();
        assert!(
            err.contains("VIGIL_TEST_UNSET_VARIABLE") && !err.contains("s3cret"),
            "{err}"
        );

        let mut c = cfg();
        c.client.insert("enable.auto.commit".into(), "true".into());
        assert!(client_config(&c).is_err());
        // A setting with a field of its own names the field.
        let mut c = cfg();
        c.client.insert("session.timeout.ms".into(), "3000".into());
        let err = client_config(&c).expect_err("has a field").to_string();
        assert!(err.contains("set kafka.session_timeout"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Vigil's tuning defaults yield to `kafka.client` (a broker that answers fetches as soon
    /// as records arrive wants longer fetch waits, for one); every client of the deployment
    /// still gets the settings the guarantees need, and the changelog reader its own.
    #[test]
    fn tuning_defaults_yield_to_kafka_client_and_guarantees_do_not() {
        let base = client_config(&cfg()).expect("valid");
        let cc = group_consumer_config(&base, "g", Duration::from_secs(12));
        assert_eq!(cc.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(cc.get("heartbeat.interval.ms"), Some("2000"));
        assert_eq!(cc.get("enable.partition.eof"), Some("false"));
        assert_eq!(cc.get("queued.max.messages.kbytes"), Some("16384"));
        assert_eq!(cc.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(producer_config(&base, &cfg()).get("linger.ms"), Some("2"));
        assert_eq!(
            producer_config(&base, &cfg()).get("compression.type"),
            Some("lz4")
        );

        let mut c = cfg();
        for (k, v) in [
            ("fetch.wait.max.ms", "500"),
            ("heartbeat.interval.ms", "1500"),
            ("linger.ms", "20"),
            ("fetch.min.bytes", "1024"),
            ("queued.max.messages.kbytes", "65536"),
            ("compression.type", "zstd"),
        ] {
            c.client.insert(k.into(), v.into());
        }
        let base = client_config(&c).expect("tuning is allowed");
        let cc = group_consumer_config(&base, "g", Duration::from_secs(12));
        assert_eq!(cc.get("fetch.wait.max.ms"), Some("500"));
        assert_eq!(cc.get("heartbeat.interval.ms"), Some("1500"));
        assert_eq!(cc.get("fetch.min.bytes"), Some("1024"));
        assert_eq!(cc.get("queued.max.messages.kbytes"), Some("65536"));
        assert_eq!(cc.get("isolation.level"), Some("read_committed"));
        assert_eq!(cc.get("enable.auto.commit"), Some("false"));
        let pc = producer_config(&base, &c);
        assert_eq!(pc.get("linger.ms"), Some("20"));
        assert_eq!(pc.get("compression.type"), Some("zstd"));
        assert_eq!(pc.get("acks"), Some("all"));
        assert_eq!(pc.get("message.timeout.ms"), Some("0"));
        // The reader's end-of-partition wait is its own, whatever the group's.
        let r = crate::worker::changelog_reader_config(&base, "g-restore");
        assert_eq!(r.get("fetch.wait.max.ms"), Some("10"));

        let mut eos = c.clone();
        eos.delivery = Delivery::ExactlyOnce;
        let pc = producer_config(&base, &eos);
        assert_eq!(pc.get("message.timeout.ms"), Some("30000"));
        assert_eq!(pc.get("transaction.timeout.ms"), Some("30000"));

        for (k, _) in PROTECTED {
            let mut c = cfg();
            c.client.insert(k.into(), "x".into());
            let err = client_config(&c).expect_err(k).to_string();
            assert!(
                err.contains(&format!("kafka.client.{k} is set by Vigil")),
                "{err}"
            );
        }
    }
}
