//! The raw-consume ceiling for the end-to-end bench: a bare consumer with the runtime's
//! consumer settings that reads a topic and does nothing with the payloads.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;

use crate::error::RuntimeError;

/// What a raw consume measured.
#[derive(Debug, Clone, Copy)]
pub struct RawConsume {
    /// Records read.
    pub records: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Seconds from the first record to the last.
    pub seconds: f64,
}

/// Reads `topic` in a fresh group `group` until `expect` records were read (or `timeout`
/// passes with nothing new) and reports the rate.
pub async fn raw_consume(
    base: &ClientConfig,
    topic: &str,
    group: &str,
    expect: u64,
    timeout: Duration,
) -> Result<RawConsume, RuntimeError> {
    let consumer: StreamConsumer = base
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(|source| RuntimeError::Kafka {
            context: "cannot create the raw consumer".into(),
            source,
        })?;
    consumer
        .subscribe(&[topic])
        .map_err(|source| RuntimeError::Kafka {
            context: "cannot subscribe".into(),
            source,
        })?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while records < expect {
        match tokio::time::timeout(timeout, consumer.recv()).await {
            Ok(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                records += 1;
                bytes += m.payload().map_or(0, |p| p.len() as u64);
                last = Instant::now();
            }
            Ok(Err(e)) => {
                return Err(RuntimeError::Kafka {
                    context: "raw consume failed".into(),
                    source: e,
                });
            }
            Err(_) => break,
        }
    }
    let seconds = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    Ok(RawConsume {
        records,
        bytes,
        seconds,
    })
}
