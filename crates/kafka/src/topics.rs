//! Creating Vigil's topics with the settings they need: inputs and outputs with time
//! retention, the changelog compacted and co-partitioned with the inputs. Settings are always
//! given explicitly (some Kafka-compatible brokers report only what was set at creation).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;
use crate::error::RuntimeError;

/// What to create.
#[derive(Debug, Clone)]
pub struct TopicPlan {
    /// Partitions of inputs and the changelog (and outputs).
    pub partitions: i32,
    /// Replication factor.
    pub replication: i32,
    /// Retention of inputs, alerts and dead letters.
    pub retention: Duration,
    /// Retention of revocations (enforcement may be replayed from it).
    pub revocation_retention: Duration,
    /// Further topics kept as long as revocations, e.g. the enforcement dead-letter topic.
    pub extra: Vec<String>,
}

impl Default for TopicPlan {
    fn default() -> Self {
        Self {
            partitions: 12,
            replication: 3,
            retention: Duration::from_secs(7 * 86_400),
            revocation_retention: Duration::from_secs(30 * 86_400),
            extra: Vec::new(),
        }
    }
}

/// Creates every topic `cfg` names; existing topics are left as they are. Returns the names
/// created.
pub async fn create(
    base: &ClientConfig,
    cfg: &KafkaConfig,
    plan: &TopicPlan,
) -> Result<Vec<String>, RuntimeError> {
    let admin: AdminClient<DefaultClientContext> =
        base.create().map_err(|e| RuntimeError::Kafka {
            context: "cannot create an admin client".into(),
            source: e,
        })?;
    let ms = |d: Duration| d.as_millis().to_string();
    let (retention, revocations) = (ms(plan.retention), ms(plan.revocation_retention));
    let repl = || TopicReplication::Fixed(plan.replication);
    let mut specs: Vec<NewTopic<'_>> = Vec::new();
    for i in &cfg.inputs {
        specs.push(
            NewTopic::new(&i.topic, plan.partitions, repl())
                .set("cleanup.policy", "delete")
                .set("retention.ms", &retention),
        );
    }
    let t = &cfg.topics;
    for (name, keep) in [
        (&t.alerts, &retention),
        (&t.dead_letters, &retention),
        (&t.revocations, &revocations),
    ] {
        specs.push(
            NewTopic::new(name, plan.partitions, repl())
                .set("cleanup.policy", "delete")
                .set("retention.ms", keep),
        );
    }
    for name in &plan.extra {
        specs.push(
            NewTopic::new(name, plan.partitions, repl())
                .set("cleanup.policy", "delete")
                .set("retention.ms", &revocations),
        );
    }
    specs.push(
        NewTopic::new(&t.changelog, plan.partitions, repl())
            .set("cleanup.policy", "compact")
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1"),
    );
    let results = admin
        .create_topics(
            &specs,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|e| RuntimeError::Kafka {
            context: "topic creation failed".into(),
            source: e,
        })?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(RuntimeError::Config(format!(
                    "cannot create topic {name}: {code}"
                )));
            }
        }
    }
    Ok(created)
}
