//! Kafka errors classified by what to do about them.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What the runtime should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// Transient (broker down, leader moving, timeout): back off and retry.
    Retry,
    /// Will not fix itself (authentication, authorization, missing topic, bad config): stop
    /// with a clear message and a non-zero exit.
    Fatal,
}

/// Errors of the Kafka runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A Kafka client call failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The client error.
        source: KafkaError,
    },
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// A topic the configuration names does not exist.
    #[error("topic {topic} does not exist; create it (see README, Deployment) or fix the config")]
    MissingTopic {
        /// The topic.
        topic: String,
    },
    /// An output could not be delivered and will not be retried.
    #[error("output to {topic} failed permanently: {source}")]
    Delivery {
        /// The topic.
        topic: String,
        /// The client error.
        source: KafkaError,
    },
    /// A partition's task stopped after a failure reported when it happened.
    #[error("partition {0} stopped after an earlier failure")]
    Stopped(i32),
}

/// Classifies a client error.
pub fn classify(e: &KafkaError) -> RetryHint {
    let code = match e {
        KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) => return RetryHint::Fatal,
        other => other.rdkafka_error_code(),
    };
    match code {
        Some(
            RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch,
        ) => RetryHint::Fatal,
        _ => RetryHint::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let auth = KafkaError::MessageConsumption(RDKafkaErrorCode::SaslAuthenticationFailed);
        assert_eq!(classify(&auth), RetryHint::Fatal);
        let down = KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(classify(&down), RetryHint::Retry);
        let missing = KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert_eq!(classify(&missing), RetryHint::Fatal);
    }
}
