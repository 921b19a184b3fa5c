//! The raw-consume ceiling for the end-to-end bench: a bare consumer with the runtime's
//! consumer settings that reads a topic and does nothing with the payloads; and a restore's
//! own ceiling, a changelog read as a restore reads it, nothing decoded.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
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
    let consumer = reader(
        base.clone()
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("fetch.wait.max.ms", "10"),
        group,
        "raw consumer",
    )?;
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

/// Reads every partition of `topic` to its end, each with its own reader on a thread of its
/// own, as a restore reads a changelog (the restore's reader settings, one reader per
/// partition, all at once) but decoding nothing: a restore's own ceiling. Seconds run from
/// the first record of any partition to the last of all.
pub fn read_each_partition(
    base: &ClientConfig,
    topic: &str,
    group: &str,
) -> Result<RawConsume, RuntimeError> {
    let cfg = crate::worker::changelog_reader_config(base, group);
    let kafka = |context: String| move |source| RuntimeError::Kafka { context, source };
    let probe: BaseConsumer = cfg
        .create()
        .map_err(kafka("cannot create a reader".into()))?;
    let metadata = probe
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(kafka(format!("cannot read {topic}'s metadata")))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    drop(probe);
    let read = std::thread::scope(|s| {
        let readers: Vec<_> = partitions
            .iter()
            .map(|&p| {
                let cfg = &cfg;
                s.spawn(move || read_partition(cfg, topic, p))
            })
            .collect();
        readers
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let first = read.iter().filter_map(|r| r.first).min();
    let last = read.iter().filter_map(|r| r.first.map(|_| r.last)).max();
    Ok(RawConsume {
        records: read.iter().map(|r| r.records).sum(),
        bytes: read.iter().map(|r| r.bytes).sum(),
        seconds: first
            .zip(last)
            .map_or(0.0, |(f, l)| l.duration_since(f).as_secs_f64()),
    })
}

/// What one partition's reader read, and when its first and last records came.
struct PartitionRead {
    records: u64,
    bytes: u64,
    first: Option<Instant>,
    last: Instant,
}

/// Reads one partition as a restore does ([`crate::worker::read_partition`]), counting.
fn read_partition(
    cfg: &ClientConfig,
    topic: &str,
    partition: i32,
) -> Result<PartitionRead, RuntimeError> {
    let mut read = PartitionRead {
        records: 0,
        bytes: 0,
        first: None,
        last: Instant::now(),
    };
    crate::worker::read_partition(cfg, topic, partition, |m| {
        read.last = Instant::now();
        read.first.get_or_insert(read.last);
        read.records += 1;
        read.bytes += m.payload().map_or(0, |p| p.len() as u64);
    })?;
    Ok(read)
}

/// A bench consumer in `group` that commits nothing and reads committed records from the
/// earliest offset.
fn reader(cfg: &mut ClientConfig, group: &str, what: &str) -> Result<StreamConsumer, RuntimeError> {
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|source| RuntimeError::Kafka {
            context: format!("cannot create the {what}"),
            source,
        })
}

/// Header on alerts and revocations carrying the Kafka timestamp (epoch ms) of the input
/// record that caused them, so end-to-end latency can be measured downstream.
pub const SOURCE_TIMESTAMP_HEADER: &str = "vigil.source_timestamp";

/// Event-to-output latencies read back from output topics.
#[derive(Debug, Clone, Default)]
pub struct OutputLatencies {
    /// Per output record: its Kafka timestamp (when Vigil produced it) minus the source
    /// record's, ms.
    pub emitted_ms: Vec<i64>,
    /// Per output record: when this reader received it (wall clock) minus the source
    /// record's timestamp, ms. Meaningful when the reader runs while the load is offered.
    pub received_ms: Vec<i64>,
    /// Per output record: when this reader received it minus its own Kafka timestamp, ms:
    /// the output's leg alone (Vigil's producer queue, the broker, this reader's fetch).
    pub output_ms: Vec<i64>,
    /// Output records without the source-timestamp header (not counted above).
    pub without_header: u64,
    /// Per record without that header: when this reader received it minus its own Kafka
    /// timestamp, ms. Read from an input topic while its load is offered, this is the
    /// broker's share of the latency alone (produce, store, fetch), with no Vigil between.
    pub transit_ms: Vec<i64>,
}

/// Reads every partition of `topics` from the beginning (assigned, not subscribed) until
/// `idle` passes without a record (after the first one, and once the file `after` exists
/// when one is named) or `deadline` passes, collecting event-to-output latencies. Prints
/// `ready: ...` on stderr once reading.
///
/// `after` is for outputs that come in clusters: a story's revocations follow its attacks,
/// which a load offered in event-time order brings in bursts seconds apart, and a reader that
/// stopped at the first quiet `idle` read only the first burst.
pub async fn output_latency(
    base: &ClientConfig,
    topics: &[&str],
    group: &str,
    idle: Duration,
    deadline: Duration,
    after: Option<&std::path::Path>,
) -> Result<OutputLatencies, RuntimeError> {
    use rdkafka::message::Headers;
    let consumer = reader(
        base.clone().set("fetch.wait.max.ms", "5"),
        group,
        "latency reader",
    )?;
    // Every partition assigned directly from the beginning: no group join to wait for, so
    // the reader is reading before the load starts.
    let mut tpl = rdkafka::TopicPartitionList::new();
    for t in topics {
        let md = consumer
            .fetch_metadata(Some(t), Duration::from_secs(10))
            .map_err(|source| RuntimeError::Kafka {
                context: format!("cannot read the metadata of {t}"),
                source,
            })?;
        for topic in md.topics() {
            for p in topic.partitions() {
                tpl.add_partition_offset(t, p.id(), rdkafka::Offset::Beginning)
                    .map_err(|source| RuntimeError::Kafka {
                        context: "cannot assign".into(),
                        source,
                    })?;
            }
        }
    }
    consumer
        .assign(&tpl)
        .map_err(|source| RuntimeError::Kafka {
            context: "cannot assign".into(),
            source,
        })?;
    eprintln!("ready: {} partitions assigned", tpl.count());
    let mut out = OutputLatencies::default();
    let start = Instant::now();
    let mut seen_any = false;
    while start.elapsed() < deadline {
        let wait = if seen_any {
            idle
        } else {
            deadline - start.elapsed()
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(m)) => {
                seen_any = true;
                let received = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let source = m.headers().and_then(|h| {
                    h.iter()
                        .find(|x| x.key == SOURCE_TIMESTAMP_HEADER)
                        .and_then(|x| x.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse::<i64>().ok())
                });
                match (source, m.timestamp().to_millis()) {
                    (Some(src), Some(ts)) => {
                        out.emitted_ms.push(ts - src);
                        out.received_ms.push(received - src);
                        out.output_ms.push(received - ts);
                    }
                    (None, Some(ts)) => {
                        out.without_header += 1;
                        out.transit_ms.push(received - ts);
                    }
                    (_, None) => out.without_header += 1,
                }
            }
            Ok(Err(e)) => {
                return Err(RuntimeError::Kafka {
                    context: "latency reader failed".into(),
                    source: e,
                });
            }
            // Quiet for `idle`: done, unless the load is not over yet.
            Err(_) if after.is_some_and(|f| !f.exists()) => {}
            Err(_) => break,
        }
    }
    Ok(out)
}
