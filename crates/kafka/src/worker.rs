//! One partition task: owns the engine state of one input partition (shared-nothing),
//! restores it from the changelog, reads its partition's records from the queue split for it
//! from the group consumer's and processes them in offset order, produces outputs and
//! changelog records, and reports how far it may be committed.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::consumer::stream_consumer::{MessageStream, StreamPartitionQueue};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use vigil_engine::{Engine, EngineConfig, Output, PREFETCH_GROUP, ValueEncoding};
use vigil_geo::GeoDb;
use vigil_model::adapters::{AdapterContext, InputFormat, parse_record_into};
use vigil_model::{RejectReason, Rejection, SessionEvent, SourceFormat};
use vigil_sign::SetSigner;

use crate::config::OutputTopics;
use crate::error::RuntimeError;
use crate::metrics::Metrics;
use crate::runtime::VigilContext;

/// What every partition task shares (read-only).
pub struct Shared {
    /// The output producer.
    pub producer: FutureProducer,
    /// Output topic names.
    pub topics: OutputTopics,
    /// Format per input topic.
    pub formats: BTreeMap<String, InputFormat>,
    /// Adapter settings (hash key, size limit).
    pub adapter: AdapterContext,
    /// Engine settings.
    pub engine: EngineConfig,
    /// GeoIP databases (each task gets its own cache).
    pub geo: GeoDb,
    /// SET signer, when configured.
    pub signer: Option<SetSigner>,
    /// SET issuer.
    pub issuer: String,
    /// SET audience.
    pub audience: String,
    /// Metrics.
    pub metrics: Metrics,
    /// Client settings for the changelog reader used at restore.
    pub restore_client: ClientConfig,
    /// How changelog values are written (both encodings are read).
    pub changelog_encoding: ValueEncoding,
    /// Input topics and their partition counts, for broadcasting account changes and token
    /// exposures to every partition (filled in by the runtime from the brokers' metadata).
    pub inputs: Vec<(String, i32)>,
}

/// Header marking a copy of an account-change or token-exposure record that Vigil broadcast
/// to the other partitions of its input topic; copies are not broadcast again.
pub const BROADCAST_HEADER: &str = "vigil.broadcast";

/// Whether a record is a broadcast copy ([`BROADCAST_HEADER`]).
pub fn is_broadcast<M: Message>(m: &M) -> bool {
    m.headers()
        .is_some_and(|h| rdkafka::message::Headers::iter(h).any(|x| x.key == BROADCAST_HEADER))
}

/// One input topic's records of a task's partition, split from the group consumer's queue
/// before the partition was assigned: the task reads them itself and parses each record
/// where librdkafka holds it (no copy, no hand-over between threads).
pub struct PartitionQueue {
    /// The input topic.
    pub topic: Arc<str>,
    /// Its records for the task's partition.
    pub queue: StreamPartitionQueue<VigilContext>,
}

/// A consumed record copied out of the consumer's buffer: what the consumer loop hands a
/// task when a record of its partition reaches the group consumer's own queue (only if the
/// partition's queue could not be split).
#[derive(Debug)]
pub struct Incoming {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub payload: Option<Vec<u8>>,
    /// Kafka timestamp, epoch ms.
    pub timestamp_ms: Option<i64>,
    /// Whether this is a broadcast copy ([`BROADCAST_HEADER`]).
    pub broadcast: bool,
    /// When the consumer loop took it from the consumer (for
    /// [`Metrics::internal_latency`](crate::metrics::Metrics)).
    pub arrived: std::time::Instant,
}

/// What a partition task reports at a flush: the next offset to commit per input topic.
#[derive(Default)]
pub struct FlushReport {
    /// Partition.
    pub partition: i32,
    /// (topic, next offset) pairs processed since the task started; durable once `pending`
    /// is acknowledged.
    pub offsets: Vec<(Arc<str>, i64)>,
    /// Deliveries still unacknowledged (only with `defer_acks`), with their topics.
    pub pending: Vec<(Arc<str>, rdkafka::producer::DeliveryFuture)>,
}

impl std::fmt::Debug for FlushReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushReport")
            .field("partition", &self.partition)
            .field("offsets", &self.offsets)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// A record as a partition task handles it: read from its partition's queue (its bytes still
/// in librdkafka's buffer) or handed over by the consumer loop ([`Incoming`]).
struct Record<'a> {
    topic: &'a Arc<str>,
    partition: i32,
    offset: i64,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    /// Kafka timestamp, epoch ms.
    timestamp_ms: Option<i64>,
    /// Whether this is a broadcast copy ([`BROADCAST_HEADER`]).
    broadcast: bool,
    /// When Vigil took it from the consumer (for
    /// [`Metrics::internal_latency`](crate::metrics::Metrics)).
    arrived: Instant,
}

impl<'a> Record<'a> {
    fn read(m: &'a BorrowedMessage<'_>, topic: &'a Arc<str>, arrived: Instant) -> Self {
        Record {
            topic,
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            payload: m.payload(),
            timestamp_ms: m.timestamp().to_millis(),
            broadcast: is_broadcast(m),
            arrived,
        }
    }

    fn handed(r: &'a Incoming) -> Self {
        Record {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            key: r.key.as_deref(),
            payload: r.payload.as_deref(),
            timestamp_ms: r.timestamp_ms,
            broadcast: r.broadcast,
            arrived: r.arrived,
        }
    }
}

/// Commands to a partition task.
pub enum Command {
    /// Process records, in order: records of this task's partition that reached the group
    /// consumer's own queue (see [`Incoming`]).
    Records(Vec<Incoming>),
    /// Read these queues too (another input topic's share of the partition).
    Read(Vec<PartitionQueue>),
    /// Fix what becomes durable (outputs so far, the changelog of the state now, offsets
    /// processed); the partition's writer reports once the outputs are acknowledged and the
    /// changelog written. The periodic at-least-once flush (`defer_acks`, no hold) lets the
    /// task go on meanwhile; any other waits for the report. With a hold, process nothing
    /// more until the hold is released (or dropped): the exactly-once barrier, so no record
    /// lands in a transaction its offset is not part of.
    Flush {
        /// Where the report goes.
        ack: oneshot::Sender<Result<FlushReport, RuntimeError>>,
        /// Released when the transaction is committed.
        hold: Option<oneshot::Receiver<()>>,
        /// Hand the outstanding deliveries over in the report instead of waiting for them
        /// here (at-least-once: the runtime awaits them while the task goes on).
        defer_acks: bool,
        /// The partition is being revoked: read nothing more, end once the flush is done
        /// (and the hold released).
        last: bool,
    },
}

/// Records handed to a partition task in one command, at most.
pub const MAX_BATCH: usize = 256;

/// For `queue` records buffered per task: the most records taken from the consumer in one go
/// (and so the largest batch), and the task's queue length in batches. At most about `queue`
/// records wait for a task, as with one command per record.
pub fn batching(queue: usize) -> (usize, usize) {
    let batch = queue.clamp(1, MAX_BATCH);
    (batch, (queue / batch).max(1))
}

/// A running partition task's handle.
pub struct Worker {
    /// Sends commands.
    pub tx: mpsc::Sender<Command>,
    /// Ends when the task has ended (and dropped its partition queues).
    pub task: tokio::task::JoinHandle<()>,
}

struct Task {
    partition: i32,
    shared: Arc<Shared>,
    engine: Engine,
    geo: GeoDb,
    out: Output,
    pending: Vec<(Out, DeliveryFuture)>,
    next_offsets: BTreeMap<Arc<str>, i64>,
    counters: BTreeMap<Arc<str>, prometheus::IntCounter>,
    /// Flushes' durable halves, in flush order (see [`write_in_order`]).
    jobs: mpsc::Sender<Job>,
    /// Changelog buffers handed back by [`write_in_order`] for the next flush.
    spare: mpsc::Receiver<vigil_engine::EncodedChanges>,
    stats_seen: vigil_engine::EngineStats,
    evictions_seen: vigil_engine::state::EvictionCounts,
    /// GeoIP decode errors already counted in the metric.
    geo_errors_seen: u64,
    /// When the last record arrived, for [`Task::tick`].
    last_event: std::time::Instant,
    /// When the last inventory scan ended.
    last_inventory: Option<std::time::Instant>,
    /// The inventory scan under way, one step per tick.
    inventory: Option<vigil_engine::inventory::InventoryScan>,
    /// The events records are parsed into, two groups of [`PREFETCH_GROUP`] kept between
    /// batches: each record is read into a slot, its strings written over the previous
    /// record's, and processed where it lies. (An event is over 500 bytes; moving each
    /// between lists a few times per record was a share of a task's copying.)
    events: Vec<SessionEvent>,
    /// The bytes of the alert or unsigned SET being sent, written into the same buffer each
    /// time (librdkafka copies them) rather than a new one grown from 128 bytes per output.
    body: Vec<u8>,
    /// The most records taken from the partition's queues at once.
    batch_max: usize,
}

/// The largest record whose event's strings are parsed into again (see [`Task::events`]).
const SPENT_RECORD_MAX: usize = 4096;

/// The largest capacity [`Task::body`] keeps between outputs.
const BODY_KEPT_MAX: usize = 64 * 1024;

/// How long a partition task waits between the end of a scan of its session inventory and
/// the start of the next (a scan takes a step of [`vigil_engine::inventory::INVENTORY_STEP`]
/// sessions per tick until it is done: one tick below 8,192 sessions, a minute at a
/// million with the default commit interval).
const INVENTORY_EVERY: Duration = Duration::from_secs(5);

/// Spawns the task for `partition`, reading `queues`: restore, then `ready` is sent, then
/// records flow.
pub fn spawn(
    partition: i32,
    shared: Arc<Shared>,
    queue: usize,
    queues: Vec<PartitionQueue>,
    ready: mpsc::UnboundedSender<i32>,
    fatal: mpsc::UnboundedSender<RuntimeError>,
) -> Result<Worker, RuntimeError> {
    let mut engine =
        Engine::new(&shared.engine).map_err(|e| RuntimeError::Config(e.to_string()))?;
    engine.track_changes();
    let (tx, rx) = mpsc::channel(batching(queue).1);
    // A couple of flushes may wait for acknowledgements while the task goes on; a third
    // waits for the first (that much unacknowledged output at most).
    let (jobs, jobs_rx) = mpsc::channel(2);
    let (spare_tx, spare) = mpsc::channel(1);
    tokio::spawn(write_in_order(shared.clone(), partition, jobs_rx, spare_tx));
    let task = tokio::spawn(async move {
        let geo = shared.geo.share();
        let task = Task {
            partition,
            engine,
            geo,
            out: Output::default(),
            pending: Vec::new(),
            next_offsets: BTreeMap::new(),
            counters: BTreeMap::new(),
            jobs,
            spare,
            stats_seen: Default::default(),
            evictions_seen: Default::default(),
            geo_errors_seen: 0,
            last_event: std::time::Instant::now(),
            last_inventory: None,
            inventory: None,
            events: (0..2 * PREFETCH_GROUP)
                .map(|_| SessionEvent::empty(SourceFormat::Native))
                .collect(),
            body: Vec::new(),
            batch_max: batching(queue).0,
            shared,
        };
        task.run(rx, queues, ready, fatal).await;
    });
    Ok(Worker { tx, task })
}

/// What a partition task waited for.
enum Next<'a> {
    Command(Option<Command>),
    /// Records taken from the queues (with the index of the queue each came from), and the
    /// error one of them returned, if any.
    Records(Vec<(usize, BorrowedMessage<'a>)>, Option<KafkaError>),
}

/// Takes what the queues hold now, up to `max` records, after waiting for the first: the
/// task wakes once per batch, not once per record. Ready only with records or an error, so
/// dropping it while it waits loses nothing.
async fn take<'a>(
    streams: &mut [MessageStream<'a, VigilContext>],
    start: usize,
    max: usize,
) -> (Vec<(usize, BorrowedMessage<'a>)>, Option<KafkaError>) {
    std::future::poll_fn(|cx| {
        let mut taken = Vec::new();
        let n = streams.len();
        for i in (0..n).map(|i| (start + i) % n) {
            while taken.len() < max {
                match futures_core::Stream::poll_next(Pin::new(&mut streams[i]), cx) {
                    Poll::Ready(Some(Ok(m))) => taken.push((i, m)),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready((taken, Some(e))),
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
        }
        if taken.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready((taken, None))
        }
    })
    .await
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        queues: Vec<PartitionQueue>,
        ready: mpsc::UnboundedSender<i32>,
        fatal: mpsc::UnboundedSender<RuntimeError>,
    ) {
        self.shared.metrics.restoring.inc();
        let started = std::time::Instant::now();
        let shared = self.shared.clone();
        let partition = self.partition;
        let engine = std::mem::replace(
            &mut self.engine,
            Engine::new(&shared.engine).expect("validated before"),
        );
        let restored =
            tokio::task::spawn_blocking(move || restore(&shared, partition, engine)).await;
        self.shared.metrics.restoring.dec();
        match restored {
            Ok(Ok((mut engine, read))) => {
                // What was just read back is durable already.
                engine.discard_changes();
                self.engine = engine;
                let secs = started.elapsed().as_secs_f64();
                info!(
                    partition,
                    records = read.records,
                    seconds = secs,
                    sessions = self.engine.live_sessions(),
                    first_record_after = read.first_record.map_or(0.0, |d| d.as_secs_f64()),
                    "Partition state restored."
                );
            }
            Ok(Err(e)) => {
                warn!(partition, error = %e, "Changelog restore failed; starting with empty state.")
            }
            Err(e) => {
                warn!(partition, error = %e, "Changelog restore panicked; starting with empty state.")
            }
        }
        self.engine.track_changes();
        let _ = ready.send(self.partition);
        let mut queues = queues;
        let mut turn = 0usize;
        loop {
            let next = {
                let mut streams: Vec<_> = queues.iter().map(|q| q.queue.stream()).collect();
                turn = turn.wrapping_add(1);
                tokio::select! {
                    biased;
                    cmd = rx.recv() => Next::Command(cmd),
                    (taken, failure) = take(&mut streams, turn, self.batch_max) => Next::Records(taken, failure),
                }
            };
            let cmd = match next {
                Next::Records(taken, failure) => {
                    let arrived = Instant::now();
                    let records: Vec<Record<'_>> = taken
                        .iter()
                        .map(|(i, m)| Record::read(m, &queues[*i].topic, arrived))
                        .collect();
                    if !self.process(&records, &fatal).await {
                        return;
                    }
                    if let Some(e) = failure
                        && let Err(e) =
                            crate::runtime::after_consumer_error(e, Some(self.partition)).await
                    {
                        let _ = fatal.send(e);
                        return;
                    }
                    continue;
                }
                Next::Command(None) => break,
                Next::Command(Some(cmd)) => cmd,
            };
            match cmd {
                Command::Records(handed) => {
                    let records: Vec<Record<'_>> = handed.iter().map(Record::handed).collect();
                    if !self.process(&records, &fatal).await {
                        return;
                    }
                }
                Command::Read(more) => queues.extend(more),
                // At-least-once's periodic flush: the task goes on with its records while
                // the outputs are acknowledged and the changelog written.
                Command::Flush {
                    ack,
                    hold: None,
                    defer_acks: true,
                    last: false,
                } => {
                    if !self.flush(true, ack).await {
                        return;
                    }
                }
                // Exactly-once and revocation flushes: nothing more until it is done (and,
                // with a hold, until the transaction is committed).
                Command::Flush {
                    ack,
                    hold,
                    defer_acks,
                    last,
                } => {
                    let (done, report) = oneshot::channel();
                    let res = if self.flush(defer_acks, done).await {
                        report
                            .await
                            .unwrap_or(Err(RuntimeError::Stopped(self.partition)))
                    } else {
                        Err(RuntimeError::Stopped(self.partition))
                    };
                    let failed = res.is_err();
                    let _ = ack.send(res);
                    if failed {
                        return;
                    }
                    if let Some(h) = hold {
                        let _ = h.await;
                    }
                    if last {
                        break;
                    }
                }
            }
        }
        self.shared.metrics.publish_inventory(self.partition, None);
        debug!(partition = self.partition, "Partition task ended.");
    }

    /// Processes records in order. They are read a group ahead of the group being
    /// processed, and the state each will look up is read then: the engine waits on memory
    /// (at a million sessions most of its time), and this way the waits of a group overlap
    /// one another and the work on the group before. False when the task must stop (the
    /// error has gone to `fatal`).
    async fn process(
        &mut self,
        records: &[Record<'_>],
        fatal: &mpsc::UnboundedSender<RuntimeError>,
    ) -> bool {
        let mut records = records.iter();
        let mut events = std::mem::take(&mut self.events);
        let (mut group_events, mut ahead_events) = events.split_at_mut(PREFETCH_GROUP);
        let mut group = Vec::with_capacity(PREFETCH_GROUP);
        let mut ahead = Vec::with_capacity(PREFETCH_GROUP);
        self.read_ahead(&mut records, &mut group, group_events);
        while !group.is_empty() {
            self.read_ahead(&mut records, &mut ahead, ahead_events);
            for ((r, read), ev) in group.drain(..).zip(group_events.iter_mut()) {
                let record_len = r.payload.map_or(0, <[u8]>::len);
                if let Err(e) = self.handle(r, read.map(|()| &*ev)).await {
                    warn!(partition = self.partition, error = %e, "Partition task stopped.");
                    let _ = fatal.send(e);
                    return false;
                }
                // An outsized record's strings are not kept: an event's strings keep the
                // largest capacity they were given.
                if record_len > SPENT_RECORD_MAX {
                    *ev = SessionEvent::empty(SourceFormat::Native);
                }
            }
            std::mem::swap(&mut group, &mut ahead);
            std::mem::swap(&mut group_events, &mut ahead_events);
        }
        self.events = events;
        true
    }

    /// Reads up to [`PREFETCH_GROUP`] records into `into` (empty on entry), their events into
    /// `events` in the same order, and prefetches the state of those events.
    fn read_ahead<'r, 'b>(
        &mut self,
        records: &mut impl Iterator<Item = &'r Record<'b>>,
        into: &mut Vec<(&'r Record<'b>, Result<(), Rejection>)>,
        events: &mut [SessionEvent],
    ) {
        for (r, ev) in records.take(PREFETCH_GROUP).zip(events.iter_mut()) {
            let read = self.read(r, ev);
            into.push((r, read));
        }
        for ((_, read), ev) in into.iter().zip(events.iter()) {
            if read.is_ok() {
                self.engine.prefetch(ev);
            }
        }
    }

    /// Counts a record and reads it into `ev` (GeoIP-enriched), or gives its rejection.
    fn read(&mut self, r: &Record<'_>, ev: &mut SessionEvent) -> Result<(), Rejection> {
        let counter = self.counters.entry(r.topic.clone()).or_insert_with(|| {
            self.shared
                .metrics
                .events
                .with_label_values(&[&**r.topic, &r.partition.to_string()])
        });
        counter.inc();
        let format = self
            .shared
            .formats
            .get(&**r.topic)
            .copied()
            .unwrap_or_default();
        let Some(bytes) = r.payload else {
            return Err(Rejection::new(
                RejectReason::MissingField,
                "record has no value",
            ));
        };
        parse_record_into(bytes, format, &self.shared.adapter, ev)?;
        self.geo.enrich(ev);
        Ok(())
    }

    /// Processes one record read by [`Task::read`]: the engine, then its outputs or
    /// its dead letter.
    async fn handle(
        &mut self,
        r: &Record<'_>,
        result: Result<&SessionEvent, Rejection>,
    ) -> Result<(), RuntimeError> {
        let result = match result {
            Ok(ev) => {
                if !ev.kind.is_session_event() && !r.broadcast {
                    self.broadcast(r).await?;
                }
                self.engine.process(ev, &mut self.out)
            }
            Err(e) => Err(e),
        };
        match result {
            Err(rej) if rej.reason.is_ignorable() => {
                self.shared.metrics.ignored.inc();
                debug!(partition = r.partition, offset = r.offset, detail = %rej.detail, "Event type not used; ignored.");
            }
            Err(rej) => {
                self.shared
                    .metrics
                    .rejections
                    .with_label_values(&[rej.reason.as_str()])
                    .inc();
                debug!(partition = r.partition, offset = r.offset, reason = %rej.reason, "Event rejected.");
                self.dead_letter(r, &rej).await?;
            }
            Ok(()) => {}
        }
        // The decision's instant, also what Vigil's own share is measured to.
        self.last_event = std::time::Instant::now();
        let now = self.emit(r.timestamp_ms).await?;
        if let Some(ts) = r.timestamp_ms {
            self.shared
                .metrics
                .latency
                .observe(((now - ts).max(0) as f64) / 1000.0);
        }
        self.shared.metrics.internal_latency.observe(
            self.last_event
                .saturating_duration_since(r.arrived)
                .as_secs_f64(),
        );
        match self.next_offsets.get_mut(&**r.topic) {
            Some(next) => *next = r.offset + 1,
            None => {
                self.next_offsets.insert(r.topic.clone(), r.offset + 1);
            }
        }
        Ok(())
    }

    /// Sends what the engine produced (alerts, revocations); returns the wall-clock time in
    /// epoch ms used as the SETs' `iat`.
    async fn emit(&mut self, source_ts: Option<i64>) -> Result<i64, RuntimeError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if self.out.alerts.is_empty() && self.out.revocations.is_empty() {
            return Ok(now);
        }
        let mut outputs = std::mem::take(&mut self.out);
        let mut body = std::mem::take(&mut self.body);
        let source_ts = source_ts.map(|t| t.to_string());
        let source_header = |h: OwnedHeaders| match &source_ts {
            Some(ts) => h.insert(Header {
                key: crate::bench::SOURCE_TIMESTAMP_HEADER,
                value: Some(ts.as_str()),
            }),
            None => h,
        };
        for a in outputs.alerts.drain(..) {
            self.shared
                .metrics
                .alerts
                .with_label_values(&[a.action.as_str()])
                .inc();
            // Serialised straight into bytes: no tree, no second copy through `Display`.
            body.clear();
            serde_json::to_writer(&mut body, &a.to_ocsf(env!("CARGO_PKG_VERSION")))
                .expect("an OCSF finding serialises");
            let headers = source_ts
                .is_some()
                .then(|| source_header(OwnedHeaders::new()));
            self.send(
                Out::Alerts,
                a.subject.session_id.as_bytes(),
                Some(&body),
                headers,
                None,
            )
            .await?;
        }
        for rv in outputs.revocations.drain(..) {
            self.shared.metrics.revocations.inc();
            let claims = rv.set_claims(&self.shared.issuer, &self.shared.audience, now / 1000);
            let signed = self.shared.signer.as_ref().and_then(|s| {
                s.sign(&claims)
                    .map_err(|e| {
                        // Sent unsigned rather than lost; `vigil enforce` signs it or
                        // dead-letters it.
                        self.shared.metrics.sign_failures.inc();
                        tracing::error!(error = %e, jti = %rv.id, "SET signing failed; sending it unsigned.");
                    })
                    .ok()
            });
            let jws;
            let (payload, ctype): (&[u8], _) = match signed {
                Some(signed) => {
                    jws = signed;
                    (jws.as_bytes(), "application/secevent+jwt")
                }
                None => {
                    body.clear();
                    serde_json::to_writer(&mut body, &claims).expect("SET claims serialise");
                    (&body, "application/json")
                }
            };
            let headers = source_header(
                OwnedHeaders::new()
                    .insert(Header {
                        key: "content-type",
                        value: Some(ctype),
                    })
                    .insert(Header {
                        key: "vigil.jti",
                        value: Some(rv.id.as_str()),
                    }),
            );
            self.send(
                Out::Revocations,
                rv.subject.session_id.as_bytes(),
                Some(payload),
                Some(headers),
                None,
            )
            .await?;
        }
        self.out = outputs;
        if body.capacity() <= BODY_KEPT_MAX {
            body.clear();
            self.body = body;
        }
        Ok(now)
    }

    /// Lifetime policy for sessions that went quiet: when the partition has had no event for
    /// a while, event time is advanced by the wall-clock time since the last event (never
    /// the wall clock itself, so a backlog of old events does not look idle).
    async fn tick(&mut self) -> Result<(), RuntimeError> {
        if self.inventory.is_none()
            && self
                .last_inventory
                .is_none_or(|t| t.elapsed() >= INVENTORY_EVERY)
        {
            self.inventory = Some(Default::default());
        }
        if let Some(scan) = self.inventory.as_mut() {
            let now = self.engine.watermark().unwrap_or(0).saturating_add(
                i64::try_from(self.last_event.elapsed().as_millis()).unwrap_or(i64::MAX),
            );
            let step = vigil_engine::inventory::INVENTORY_STEP;
            if let Some(inv) = self.engine.inventory_step(scan, now, step) {
                self.inventory = None;
                self.last_inventory = Some(std::time::Instant::now());
                self.shared
                    .metrics
                    .publish_inventory(self.partition, Some(inv));
            }
        }
        let quiet = self.last_event.elapsed();
        if quiet < std::time::Duration::from_secs(1) {
            return Ok(());
        }
        let Some(wm) = self.engine.watermark() else {
            return Ok(());
        };
        let now = wm.saturating_add(i64::try_from(quiet.as_millis()).unwrap_or(i64::MAX));
        self.engine.on_tick(now, &mut self.out);
        if !self.out.alerts.is_empty() || !self.out.revocations.is_empty() {
            self.emit(None).await?;
        }
        Ok(())
    }

    /// Copies an account-change or token-exposure record to every other partition of its
    /// topic: the sessions of a user, or the session holding a token, may live on any
    /// partition when inputs are not keyed by user. The copies are acknowledged before this
    /// record's offset is committed, like every output.
    async fn broadcast(&mut self, r: &Record<'_>) -> Result<(), RuntimeError> {
        let Some(idx) = self
            .shared
            .inputs
            .iter()
            .position(|(t, _)| **t == **r.topic)
        else {
            return Ok(());
        };
        let count = self.shared.inputs[idx].1;
        let headers = OwnedHeaders::new().insert(Header {
            key: BROADCAST_HEADER,
            value: Some("1"),
        });
        let key = r.key.unwrap_or_default();
        for p in (0..count).filter(|p| *p != r.partition) {
            self.send(
                Out::Input(idx),
                key,
                r.payload,
                Some(headers.clone()),
                Some(p),
            )
            .await?;
        }
        Ok(())
    }

    async fn dead_letter(&mut self, r: &Record<'_>, rej: &Rejection) -> Result<(), RuntimeError> {
        let partition = r.partition.to_string();
        let offset = r.offset.to_string();
        let mut redacted = 0usize;
        let body: Vec<u8> = match r.payload.map(serde_json::from_slice::<serde_json::Value>) {
            Some(Ok(mut v)) => {
                redacted = vigil_model::redact::redact(&mut v);
                if redacted > 0 {
                    v.to_string().into_bytes()
                } else {
                    r.payload.unwrap_or_default().to_vec()
                }
            }
            _ => r.payload.unwrap_or_default().to_vec(),
        };
        let redacted = redacted.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "vigil.reason",
                value: Some(rej.reason.as_str()),
            })
            .insert(Header {
                key: "vigil.field",
                value: rej.field,
            })
            .insert(Header {
                key: "vigil.detail",
                value: Some(rej.detail.as_str()),
            })
            .insert(Header {
                key: "vigil.source.topic",
                value: Some(&**r.topic),
            })
            .insert(Header {
                key: "vigil.source.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "vigil.source.offset",
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: "vigil.redacted_fields",
                value: Some(redacted.as_str()),
            });
        let key = r.key.unwrap_or_default();
        self.send(Out::DeadLetters, key, Some(&body), Some(headers), None)
            .await
    }

    /// Produces one output record, acknowledged at the next flush.
    async fn send(
        &mut self,
        out: Out,
        key: &[u8],
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        partition: Option<i32>,
    ) -> Result<(), RuntimeError> {
        let f = produce(&self.shared, out, key, payload, headers, partition).await?;
        self.pending.push((out, f));
        Ok(())
    }

    /// Fixes what a flush makes durable: the outputs sent so far, the changelog of the state
    /// as it is now (encoded here, before any later record changes it) and the offsets
    /// processed. [`write_in_order`] then waits for the outputs, writes the changelog and
    /// reports to `ack`. False when the task must stop.
    async fn flush(
        &mut self,
        defer_acks: bool,
        ack: oneshot::Sender<Result<FlushReport, RuntimeError>>,
    ) -> bool {
        if let Err(e) = self.tick().await {
            let _ = ack.send(Err(e));
            return false;
        }
        let mut changes = self.spare.try_recv().unwrap_or_default();
        self.engine
            .drain_encoded(self.shared.changelog_encoding, &mut changes);
        self.publish_stats();
        let job = Job {
            outputs: std::mem::take(&mut self.pending),
            changes,
            offsets: self
                .next_offsets
                .iter()
                .map(|(t, o)| (t.clone(), *o))
                .collect(),
            defer_acks,
            ack,
        };
        // Closed only after a failed delivery stopped the writer: nothing more may follow.
        self.jobs.send(job).await.is_ok()
    }

    fn publish_stats(&mut self) {
        let m = &self.shared.metrics;
        let s = &self.engine.stats;
        for (d, n) in &s.findings {
            let seen = self.stats_seen.findings.get(d).copied().unwrap_or(0);
            m.findings.with_label_values(&[d]).inc_by(n - seen);
        }
        // Late events need nothing here: they are rejections, counted where dead-lettered.
        m.duplicates
            .inc_by(s.duplicates - self.stats_seen.duplicates);
        self.stats_seen = s.clone();
        let ev = self.engine.evictions();
        m.evictions
            .with_label_values(&["idle"])
            .inc_by(ev.idle - self.evictions_seen.idle);
        m.evictions
            .with_label_values(&["absolute"])
            .inc_by(ev.absolute - self.evictions_seen.absolute);
        m.evictions
            .with_label_values(&["capacity"])
            .inc_by(ev.capacity - self.evictions_seen.capacity);
        self.evictions_seen = ev;
        let geo_errors = self.geo.decode_errors - self.geo_errors_seen;
        if geo_errors > 0 {
            if self.geo_errors_seen == 0 {
                warn!(partition = self.partition, databases = ?self.geo.databases(), "GeoIP records found but not decodable: those addresses go unenriched (metric vigil_geoip_decode_errors_total). Is the database a MaxMind City/ASN or ip-location-db layout?");
            }
            m.geoip_decode_errors.inc_by(geo_errors);
            self.geo_errors_seen = self.geo.decode_errors;
        }
        m.live_sessions
            .with_label_values(&[&self.partition.to_string()])
            .set(self.engine.live_sessions() as i64);
    }
}

/// Produces one record (no payload: a tombstone), waiting while the producer queue is full.
async fn produce(
    shared: &Shared,
    out: Out,
    key: &[u8],
    payload: Option<&[u8]>,
    headers: Option<OwnedHeaders>,
    partition: Option<i32>,
) -> Result<DeliveryFuture, RuntimeError> {
    let topic = out.topic(shared);
    loop {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(key);
        if let Some(p) = payload {
            rec = rec.payload(p);
        }
        if let Some(h) = headers.clone() {
            rec = rec.headers(h);
        }
        if let Some(p) = partition {
            rec = rec.partition(p);
        }
        match shared.producer.send_result(rec) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => {
                return Err(RuntimeError::Delivery {
                    topic: topic.into(),
                    source: e,
                });
            }
        }
    }
}

/// What one flush makes durable, fixed when the task flushed.
struct Job {
    /// Outputs sent before the flush.
    outputs: Vec<(Out, DeliveryFuture)>,
    /// The changelog of the state at the flush.
    changes: vigil_engine::EncodedChanges,
    /// Next offsets per input topic at the flush.
    offsets: Vec<(Arc<str>, i64)>,
    /// Hand the changelog's deliveries over in the report instead of waiting for them.
    defer_acks: bool,
    /// Where the report goes.
    ack: oneshot::Sender<Result<FlushReport, RuntimeError>>,
}

/// A partition's flushes made durable one after another, beside its task: each waits until
/// its outputs are acknowledged, then writes its changelog (a restored session skips the
/// records it remembers processing, so state durable ahead of a revocation that never
/// arrived would keep that revocation from ever being sent), then reports. In flush order, so
/// a key's later value always follows its earlier one. After a failed delivery nothing more
/// is written, and the failure goes to the runtime, which commits nothing past it.
async fn write_in_order(
    shared: Arc<Shared>,
    partition: i32,
    mut jobs: mpsc::Receiver<Job>,
    spare: mpsc::Sender<vigil_engine::EncodedChanges>,
) {
    while let Some(mut job) = jobs.recv().await {
        let res = write(&shared, partition, &mut job).await;
        let failed = res.is_err();
        if let Err(e) = &res {
            warn!(partition, error = %e, "Partition output failed; nothing after it is committed.");
        }
        let _ = job.ack.send(res);
        if failed {
            return;
        }
        job.changes.clear();
        let _ = spare.try_send(job.changes);
    }
}

async fn write(
    shared: &Shared,
    partition: i32,
    job: &mut Job,
) -> Result<FlushReport, RuntimeError> {
    crate::delivery::acknowledged(job.outputs.drain(..).map(|(out, f)| (out.topic(shared), f)))
        .await?;
    let mut pending = Vec::with_capacity(job.changes.len());
    for (key, value) in job.changes.iter() {
        let f = produce(shared, Out::Changelog, key, value, None, Some(partition)).await?;
        pending.push(f);
    }
    let topic = Out::Changelog.topic(shared);
    let pending = if job.defer_acks {
        // One copy of the name for the flush's records, not one each.
        let shared_topic: Arc<str> = topic.into();
        pending
            .into_iter()
            .map(|f| (shared_topic.clone(), f))
            .collect()
    } else {
        crate::delivery::acknowledged(pending.into_iter().map(|f| (topic, f))).await?;
        Vec::new()
    };
    Ok(FlushReport {
        partition,
        offsets: std::mem::take(&mut job.offsets),
        pending,
    })
}

/// Which output topic a record goes to; pending deliveries keep this instead of the name.
#[derive(Debug, Clone, Copy)]
enum Out {
    Alerts,
    Revocations,
    DeadLetters,
    Changelog,
    /// An input topic, by its index in [`Shared::inputs`] (broadcast copies).
    Input(usize),
}

impl Out {
    fn topic(self, shared: &Shared) -> &str {
        let t = &shared.topics;
        match self {
            Self::Alerts => &t.alerts,
            Self::Revocations => &t.revocations,
            Self::DeadLetters => &t.dead_letters,
            Self::Changelog => &t.changelog,
            Self::Input(i) => shared.inputs.get(i).map_or("", |(name, _)| name.as_str()),
        }
    }
}

/// Client context of the changelog reader: reaching the end of the partition is how a
/// restore finishes, not an error worth an operator's attention.
struct RestoreContext;

impl rdkafka::client::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka reports the end of a partition here too, as a client-level error.
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            debug!(%reason, "Changelog reader reached the end of a partition.");
        } else {
            warn!(error = %error, %reason, "Changelog reader error.");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for RestoreContext {}

/// Reads the partition's changelog from the beginning into `engine`.
fn restore(
    shared: &Shared,
    partition: i32,
    engine: Engine,
) -> Result<(Engine, ChangelogRead), RuntimeError> {
    read_changelog(
        &shared.restore_client,
        &shared.topics.changelog,
        partition,
        engine,
        || shared.metrics.restored_records.inc(),
    )
}

/// The settings of a changelog reader on top of the deployment's client settings (`base`:
/// brokers, TLS, SASL): its own group id (never committed), partition EOF reported, committed
/// records only, and a short fetch wait. The end of a partition is known from a fetch that
/// comes back empty, and a broker holds an empty fetch for `fetch.wait.max.ms` (500 ms by
/// default): every restore, and so every failover, waited that long per partition.
pub fn changelog_reader_config(base: &ClientConfig, group_id: &str) -> ClientConfig {
    let mut reader = base.clone();
    reader
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10");
    reader
}

/// What reading a changelog partition did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChangelogRead {
    /// Records applied (a record that does not decode is skipped with a warning).
    pub records: u64,
    /// From the start of the read to its first record: the reader created, the partition's
    /// offsets asked for, the first fetch answered. `None` when the partition was empty.
    pub first_record: Option<Duration>,
}

/// Reads one changelog partition from the beginning to its end into `engine`; returns the
/// engine and what the read did. `client` is a [`changelog_reader_config`]; `on_record` is
/// called for every record read.
pub fn read_changelog(
    client: &ClientConfig,
    topic: &str,
    partition: i32,
    mut engine: Engine,
    mut on_record: impl FnMut(),
) -> Result<(Engine, ChangelogRead), RuntimeError> {
    let mut records = 0;
    let first_record = read_partition(client, topic, partition, |m| {
        if let Some(k) = m.key() {
            match engine.restore_encoded(k, m.payload()) {
                Ok(()) => records += 1,
                Err(e) => {
                    warn!(partition, offset = m.offset(), error = %e, "Changelog record skipped.")
                }
            }
        }
        on_record();
    })?;
    Ok((
        engine,
        ChangelogRead {
            records,
            first_record,
        },
    ))
}

/// Reads one partition from its beginning to its end, as a restore reads its changelog, and
/// hands `each` every record; returns how long after the start the first record came
/// (`None` when the partition was empty). `client` is a [`changelog_reader_config`]. What a
/// restore does with the records is [`read_changelog`]'s; the end-to-end bench reads with
/// this alone for the restore's own ceiling.
pub fn read_partition(
    client: &ClientConfig,
    topic: &str,
    partition: i32,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<Option<Duration>, RuntimeError> {
    let started = std::time::Instant::now();
    let consumer: BaseConsumer<RestoreContext> = client
        .create_with_context(RestoreContext)
        .map_err(|e| RuntimeError::Kafka {
            context: "cannot create the changelog reader".into(),
            source: e,
        })?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .map_err(|e| RuntimeError::Kafka {
            context: format!("cannot read {topic} watermarks"),
            source: e,
        })?;
    if high <= low {
        close_in_background(consumer);
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(|e| RuntimeError::Kafka {
            context: "bad changelog partition".into(),
            source: e,
        })?;
    consumer.assign(&tpl).map_err(|e| RuntimeError::Kafka {
        context: format!("cannot assign {topic}/{partition}"),
        source: e,
    })?;
    let mut first_record = None;
    let mut read = 0u64;
    let mut idle = 0;
    loop {
        match consumer.poll(Duration::from_millis(250)) {
            Some(Ok(m)) => {
                idle = 0;
                first_record.get_or_insert_with(|| started.elapsed());
                read += 1;
                each(&m);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => {
                warn!(partition, error = %e, "Changelog read error; retrying.");
                idle += 1;
            }
            // Partition EOF is reported when enabled; waiting out a few empty polls covers
            // brokers that report the end late (high watermarks are not trusted for this).
            None => idle += 1,
        }
        if idle >= 8 {
            warn!(
                partition,
                read, high, "Changelog restore stopped waiting for more records."
            );
            break;
        }
    }
    close_in_background(consumer);
    Ok(first_record)
}

/// Closes a changelog reader on a thread of its own. Closing a librdkafka consumer waits
/// for its broker threads to wind down, about 100 ms here, which every restore (and so every
/// partition's time to ready after a rebalance or a crash) would otherwise include.
fn close_in_background<C: Send + 'static>(consumer: C) {
    // Should no thread start, the closure is dropped and the consumer closed here, as before.
    let _ = std::thread::Builder::new()
        .name("changelog-close".into())
        .spawn(move || drop(consumer));
}
