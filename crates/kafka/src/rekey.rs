//! `vigil rekey`: the repartition path for inputs that are not keyed by session or user.
//!
//! Vigil's partition tasks see only their own partitions, so every record of a session must
//! land in the same partition. Shippers that cannot set the key write to a raw topic;
//! `vigil rekey` reads it, finds the session (or user) id with the same adapters the runtime
//! uses, and writes the unchanged record to the input topic with that key. Records it cannot
//! parse are forwarded with their original key so the runtime dead-letters them with a reason.
//! Offsets are committed only after the forwarded batch is acknowledged (at-least-once).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tracing::info;
use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};

use crate::error::RuntimeError;

/// What to key by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBy {
    /// Session id.
    Session,
    /// User id: also keeps a user's sessions and tokens together (recommended).
    User,
}

/// What to rekey.
#[derive(Debug, Clone)]
pub struct Rekey {
    /// Consumer group of the rekey process.
    pub group: String,
    /// Raw topic to read.
    pub from: String,
    /// Input topic to write.
    pub to: String,
    /// Format of the raw records.
    pub format: InputFormat,
    /// New key.
    pub key_by: KeyBy,
}

/// Rekeys until `shutdown` resolves; returns how many records were forwarded.
pub async fn run(
    base: &ClientConfig,
    job: &Rekey,
    adapter: &AdapterContext,
    shutdown: impl Future<Output = ()>,
) -> Result<u64, RuntimeError> {
    let (group, from, to, format, key_by) = (
        job.group.as_str(),
        job.from.as_str(),
        job.to.as_str(),
        job.format,
        job.key_by,
    );
    let kafka = |context: &str| {
        let context = context.to_owned();
        move |source| RuntimeError::Kafka { context, source }
    };
    let consumer: StreamConsumer = base
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(kafka("cannot create the rekey consumer"))?;
    consumer
        .subscribe(&[from])
        .map_err(kafka("cannot subscribe"))?;
    // Throughput over latency here, unless `kafka.client` says otherwise.
    let producer: FutureProducer = crate::runtime::producer_base(base, "5")
        .create()
        .map_err(kafka("cannot create the rekey producer"))?;
    tokio::pin!(shutdown);
    let mut forwarded = 0u64;
    let mut pending = Vec::new();
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut flush = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = flush.tick() => commit(&consumer, from, to, &mut pending, &mut offsets).await?,
            msg = consumer.recv() => {
                let m = msg.map_err(kafka("rekey consumer failed"))?;
                let payload = m.payload().unwrap_or_default();
                let key: Vec<u8> = match parse_record(payload, format, adapter) {
                    Ok(ev) => match key_by {
                        KeyBy::Session => ev.session_id.into_bytes(),
                        KeyBy::User => ev.user_id.into_bytes(),
                    },
                    Err(_) => m.key().unwrap_or_default().to_vec(),
                };
                let mut rec = FutureRecord::to(to).key(&key).payload(payload);
                if let Some(h) = m.headers() {
                    rec = rec.headers(h.detach());
                }
                let f = producer.send_result(rec).map_err(|(e, _)| RuntimeError::Delivery { topic: to.into(), source: e })?;
                pending.push(f);
                offsets.insert(m.partition(), m.offset() + 1);
                forwarded += 1;
                if pending.len() >= 10_000 {
                    commit(&consumer, from, to, &mut pending, &mut offsets).await?;
                }
            }
        }
    }
    commit(&consumer, from, to, &mut pending, &mut offsets).await?;
    info!(forwarded, from, to, "Rekey stopped.");
    Ok(forwarded)
}

async fn commit(
    consumer: &StreamConsumer,
    topic: &str,
    to: &str,
    pending: &mut Vec<rdkafka::producer::DeliveryFuture>,
    offsets: &mut BTreeMap<i32, i64>,
) -> Result<(), RuntimeError> {
    crate::delivery::acknowledged(pending.drain(..).map(|f| (to, f))).await?;
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in std::mem::take(offsets) {
        let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
    }
    consumer
        .commit(&tpl, CommitMode::Async)
        .map_err(|source| RuntimeError::Kafka {
            context: "rekey commit failed".into(),
            source,
        })
}
