//! Delivery guarantees, each with the librdkafka settings it implies.

use serde::Deserialize;

/// Producer settings of both modes; exactly-once adds `transactional.id`,
/// `transaction.timeout.ms` and a `message.timeout.ms` no longer than it (see the runtime).
pub const PRODUCER_SETTINGS: [(&str, &str); 3] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("message.timeout.ms", "0"),
];

/// How outputs relate to consumed input offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Outputs and changelog records are acknowledged by the brokers before the input offsets
    /// that produced them are committed. After a crash the uncommitted tail is processed
    /// again, so an alert or revocation can appear twice, with the same id. Producer:
    /// `enable.idempotence=true`, `acks=all`, `message.timeout.ms=0` (retry until the broker
    /// is back). Adds no latency to outputs; commits lag by up to `commit_interval`.
    #[default]
    AtLeastOnce,
    /// Outputs, changelog records and input offsets are written in one Kafka transaction per
    /// `commit_interval` (`transactional.id` per instance, `send_offsets_to_transaction`).
    /// Consumers reading outputs with `isolation.level=read_committed` see each output once.
    /// Adds up to `commit_interval` of latency for read_committed readers.
    ExactlyOnce,
}

impl Delivery {
    /// Name as in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AtLeastOnce => "at-least-once",
            Self::ExactlyOnce => "exactly-once",
        }
    }
}

/// Waits until every delivery is acknowledged; the first failure is returned with its topic.
/// With `message.timeout.ms=0` failures are permanent ones (authorization, record too large),
/// so nothing after them may be committed.
pub async fn acknowledged<S: AsRef<str>>(
    pending: impl IntoIterator<Item = (S, rdkafka::producer::DeliveryFuture)>,
) -> Result<(), crate::error::RuntimeError> {
    use crate::error::RuntimeError;
    for (topic, f) in pending {
        let source = match f.await {
            Ok(Ok(_)) => continue,
            Ok(Err((e, _))) => e,
            Err(_) => rdkafka::error::KafkaError::Canceled,
        };
        return Err(RuntimeError::Delivery {
            topic: topic.as_ref().into(),
            source,
        });
    }
    Ok(())
}
