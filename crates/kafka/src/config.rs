//! The `[kafka]` table of the configuration file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use vigil_engine::ValueEncoding;
use vigil_model::adapters::InputFormat;

use crate::delivery::Delivery;

/// Kafka settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port,host:port`.
    pub brokers: String,
    /// Consumer group id; every Vigil instance of one deployment uses the same.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Stable per-instance id for static membership (`group.instance.id`): a restart within
    /// the session timeout keeps its partitions without a rebalance.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// Input topics with their formats. Records must be keyed by session id.
    pub inputs: Vec<InputTopic>,
    /// Output topics.
    #[serde(default)]
    pub topics: OutputTopics,
    /// Delivery guarantee.
    #[serde(default)]
    pub delivery: Delivery,
    /// How often outputs are flushed and offsets committed (or transactions committed).
    #[serde(default = "default_commit_interval", with = "duration")]
    pub commit_interval: Duration,
    /// Transactional id of this instance's producer (exactly-once). Defaults to
    /// `<group_id>-<group_instance_id>` when static membership is set, which lets a restarted
    /// instance fence its predecessor at once.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// How long the broker waits before aborting an open transaction of a dead producer.
    #[serde(default = "default_transaction_timeout", with = "duration")]
    pub transaction_timeout: Duration,
    /// Consumer group session timeout; a dead instance's partitions move after this long.
    #[serde(default = "default_session_timeout", with = "duration")]
    pub session_timeout: Duration,
    /// How changelog values are written: `binary` (compact, fast to restore; the default) or
    /// `json` (what versions before the binary encoding read: choose it while such instances
    /// must still read the state). Both are always read.
    #[serde(default)]
    pub changelog_encoding: ValueEncoding,
    /// The most records a partition task takes from its partition's queue at once (at most
    /// 256 are taken; fewer when this is lower), and of records handed to a task by the main
    /// loop, how many may wait. What librdkafka buffers per partition is its own
    /// `queued.min.messages` and `queued.max.messages.kbytes` (see `kafka.client`).
    #[serde(default = "default_queue")]
    pub partition_queue: usize,
    /// Extra librdkafka settings passed through as-is (TLS, SASL, tuning), e.g.
    /// `"security.protocol" = "SASL_SSL"`, `"sasl.mechanisms" = "SCRAM-SHA-512"`. They take
    /// precedence over Vigil's tuning defaults (`fetch.wait.max.ms`, `linger.ms`,
    /// `heartbeat.interval.ms`, `statistics.interval.ms`, `queued.max.messages.kbytes`,
    /// `fetch.queue.backoff.ms`, `compression.type`); settings the guarantees depend on are
    /// refused.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// librdkafka settings whose values are secrets, read from the environment or a file
    /// at start-up and never logged: `"sasl.password" = { env = "VIGIL_KAFKA_PASSWORD" }`.
    #[serde(default)]
    pub client_secrets: BTreeMap<String, SecretSource>,
}

/// One input topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputTopic {
    /// Topic name.
    pub topic: String,
    /// Record format (`auto` detects per record).
    #[serde(default, deserialize_with = "format")]
    pub format: InputFormat,
}

/// Output topic names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputTopics {
    /// CAEP session-revoked SETs, keyed by session id.
    pub revocations: String,
    /// OCSF Detection Findings, keyed by session id.
    pub alerts: String,
    /// Records that could not be used, with the reason in headers.
    pub dead_letters: String,
    /// Compacted changelog of engine state, co-partitioned with the inputs.
    pub changelog: String,
}

impl Default for OutputTopics {
    fn default() -> Self {
        Self {
            revocations: "vigil.revocations".into(),
            alerts: "vigil.alerts".into(),
            dead_letters: "vigil.dead-letters".into(),
            changelog: "vigil.changelog".into(),
        }
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (trailing newline trimmed).
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret. A file must not be readable by every user.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Self::Env(v) => {
                std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))
            }
            Self::File(p) => {
                ensure_private(p)?;
                std::fs::read_to_string(p)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                    .map_err(|e| format!("{}: {e}", p.display()))
            }
        }
    }
}

/// librdkafka settings whose values are secrets: refused in `kafka.client` (a config file is
/// often shared and world-readable), accepted in `kafka.client_secrets`.
pub const SECRET_SETTINGS: [&str; 6] = [
    "sasl.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
];

/// librdkafka settings that name a private-key file, which must not be world-readable.
pub const PRIVATE_FILE_SETTINGS: [&str; 2] = ["ssl.key.location", "ssl.keystore.location"];

/// Refuses a secret-holding file that every user can read (Unix mode `o+r`), the way ssh
/// refuses such a private key.
pub fn ensure_private(path: &std::path::Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            return Err(format!(
                "{} holds a secret but every user can read it (mode {mode:o}); run `chmod o-rwx {}`",
                path.display(),
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

fn default_group() -> String {
    "vigil".into()
}
fn default_commit_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_transaction_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_queue() -> usize {
    4096
}

fn format<'de, D: serde::Deserializer<'de>>(d: D) -> Result<InputFormat, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// Serde helper for human durations in the config (`"500ms"`, `"30s"`).
pub mod duration {
    use std::time::Duration;

    use serde::Deserialize;

    /// Parses a humantime duration.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}
