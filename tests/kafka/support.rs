//! Helpers shared by the Kafka tests.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

/// The tansu broker for this run, or `None` (skip) outside CI.
pub fn tansu_bootstrap(test: &str) -> Option<String> {
    match std::env::var("VIGIL_TEST_BOOTSTRAP") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "{test}: VIGIL_TEST_BOOTSTRAP is not set under CI=true; start tansu with scripts/tansu.sh"
            )
        }
        _ => {
            eprintln!(
                "{test}: skipped (set VIGIL_TEST_BOOTSTRAP, e.g. via scripts/test.sh, to run it)"
            );
            None
        }
    }
}

/// A name no other test or run uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Produces `(key, value)` records and waits for their acknowledgement.
pub async fn produce(brokers: &str, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("message.max.bytes", "4000000")
        .create()
        .expect("producer");
    let mut pending = Vec::with_capacity(records.len());
    for (k, v) in records {
        let f = p
            .send_result(FutureRecord::to(topic).key(k).payload(v))
            .map_err(|(e, _)| e)
            .expect("enqueue");
        pending.push(f);
    }
    for f in pending {
        f.await
            .expect("delivery future")
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
    p.flush(Duration::from_secs(10)).expect("flush");
}

/// Produces `(partition, key, value)` records to explicit partitions and waits for their
/// acknowledgement.
pub async fn produce_to(brokers: &str, topic: &str, records: &[(i32, String, String)]) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    for (partition, key, value) in records {
        p.send(
            FutureRecord::to(topic)
                .partition(*partition)
                .key(key)
                .payload(value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produced");
    }
}

/// One output record.
#[derive(Debug, Clone)]
pub struct Out {
    /// Key.
    pub key: Vec<u8>,
    /// Parsed value (`Null` for a tombstone or non-JSON value).
    pub value: Value,
    /// Raw value.
    pub raw: Vec<u8>,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// Kafka timestamp, epoch ms.
    pub timestamp_ms: Option<i64>,
}

/// Reads every partition of `topic` from the beginning, as a read_committed consumer, until
/// `done` is satisfied by what was read, or `timeout` passes; returns what was read.
pub fn read_until(
    brokers: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
    done: impl Fn(&[Out]) -> bool,
) -> Vec<Out> {
    read_until_isolated(brokers, topic, partitions, "read_committed", timeout, done)
}

/// [`read_until`] with a chosen `isolation.level`.
pub fn read_until_isolated(
    brokers: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
    timeout: Duration,
    done: impl Fn(&[Out]) -> bool,
) -> Vec<Out> {
    use rdkafka::message::Headers;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !done(&out) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let raw = m.payload().unwrap_or_default().to_vec();
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for x in h.iter() {
                    headers.insert(
                        x.key.to_owned(),
                        String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(Out {
                key: m.key().unwrap_or_default().to_vec(),
                value: serde_json::from_slice(&raw).unwrap_or(Value::Null),
                raw,
                headers,
                timestamp_ms: m.timestamp().to_millis(),
            });
        }
    }
    out
}

/// Sessions named by revocation records.
pub fn revoked_sessions(outs: &[Out]) -> BTreeSet<String> {
    outs.iter()
        .filter_map(|o| {
            o.value["sub_id"]["session"]["id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// A `vigil run` child process with its metrics address.
pub struct Instance {
    /// The process.
    pub child: Child,
    /// Its metrics port.
    pub port: u16,
}

impl Instance {
    /// Starts `vigil run` with `config` (TOML text) in `dir`.
    pub fn start(dir: &std::path::Path, name: &str, config: &str) -> Self {
        Self::start_command(dir, name, "run", config, "info")
    }

    /// Starts `vigil <command>` with `config` (TOML text) in `dir`, logging at `log` to
    /// `dir/<name>.log`.
    pub fn start_command(
        dir: &std::path::Path,
        name: &str,
        command: &str,
        config: &str,
        log: &str,
    ) -> Self {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).expect("write config");
        let port = free_port();
        let log_file = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                command,
                "--config",
                path.to_str().expect("utf-8"),
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--log",
                log,
            ])
            .env("VIGIL_TEST_HASH_KEY", "0123456789abcdef0123456789abcdef")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("vigil starts");
        Self { child, port }
    }

    /// GETs a path from the metrics server.
    pub fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .get("/readyz")
                .is_some_and(|b| b.starts_with("HTTP/1.1 200"))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The sum of a counter over all its series.
    pub fn counter(&self, name: &str) -> u64 {
        let body = self.get("/metrics").unwrap_or_default();
        body.lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l.as_bytes().get(name.len()) == Some(&b'{')
                        || l.as_bytes().get(name.len()) == Some(&b' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// SIGKILL: no flush, no commit, no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `vigil run` configuration for tests.
pub fn run_config(
    brokers: &str,
    group: &str,
    input: &str,
    topics: &vigil_kafka::config::OutputTopics,
) -> String {
    format!(
        r#"[input]
token_hash_key_env = "VIGIL_TEST_HASH_KEY"

[geoip]
databases = ["{geo}"]

[engine.state]
out_of_order_grace = "24h"

[kafka]
brokers = "{brokers}"
group_id = "{group}"
inputs = [{{ topic = "{input}", format = "auto" }}]
session_timeout = "6s"
commit_interval = "200ms"

[kafka.topics]
revocations = "{r}"
alerts = "{a}"
dead_letters = "{d}"
changelog = "{c}"
"#,
        geo = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/data/geoip-test.mmdb"
        ),
        r = topics.revocations,
        a = topics.alerts,
        d = topics.dead_letters,
        c = topics.changelog,
    )
}

/// Fresh topic names for one test.
pub fn topics(prefix: &str) -> (String, vigil_kafka::config::OutputTopics) {
    let p = unique(prefix);
    (
        format!("{p}.events"),
        vigil_kafka::config::OutputTopics {
            revocations: format!("{p}.revocations"),
            alerts: format!("{p}.alerts"),
            dead_letters: format!("{p}.dead-letters"),
            changelog: format!("{p}.changelog"),
        },
    )
}

/// A `[kafka]` config value for library calls.
pub fn kafka_config(
    brokers: &str,
    group: &str,
    input: &str,
    topics: &vigil_kafka::config::OutputTopics,
) -> vigil_kafka::KafkaConfig {
    vigil_kafka::KafkaConfig {
        brokers: brokers.into(),
        group_id: group.into(),
        group_instance_id: None,
        inputs: vec![vigil_kafka::config::InputTopic {
            topic: input.into(),
            format: Default::default(),
        }],
        topics: topics.clone(),
        delivery: vigil_kafka::Delivery::AtLeastOnce,
        commit_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(6),
        transactional_id: None,
        transaction_timeout: Duration::from_secs(10),
        partition_queue: 1024,
        changelog_encoding: Default::default(),
        client: BTreeMap::new(),
        client_secrets: BTreeMap::new(),
    }
}

/// Creates the test's topics.
pub async fn create_topics(
    brokers: &str,
    input: &str,
    topics: &vigil_kafka::config::OutputTopics,
    partitions: i32,
) {
    let cfg = kafka_config(brokers, "unused", input, topics);
    let base = vigil_kafka::runtime::client_config(&cfg).expect("client config");
    let plan = vigil_kafka::topics::TopicPlan {
        partitions,
        replication: 1,
        ..Default::default()
    };
    vigil_kafka::topics::create(&base, &cfg, &plan)
        .await
        .expect("topics created");
}

/// Keyed records (key, value).
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;
/// Session labels.
pub type Labels = BTreeMap<String, vigil_testkit::samples::Label>;

/// The sample story, `copies` times, as keyed records, with its labels.
pub fn story(copies: usize) -> (Records, Labels) {
    let (records, labels) =
        vigil_testkit::samples::scaled(copies, 60_000, &vigil_testkit::render::Format::ALL);
    (
        records
            .into_iter()
            .map(|r| (r.user_id.into_bytes(), r.line.into_bytes()))
            .collect(),
        labels,
    )
}

/// The story split so that every attack spans the split: the first part holds everything but
/// the last record of each attack session (its malicious step), the second part those records.
/// Tests that use it need an out-of-order grace that covers the story (`run_config` sets 24 h).
pub fn story_split(copies: usize) -> (Records, Records, Labels) {
    let (records, labels) =
        vigil_testkit::samples::scaled(copies, 60_000, &vigil_testkit::render::Format::ALL);
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        if labels
            .get(&r.session_id)
            .is_some_and(|l| l.class == "attack")
        {
            last.insert(&r.session_id, i);
        }
    }
    let finals: BTreeSet<usize> = last.values().copied().collect();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (i, r) in records.iter().enumerate() {
        let kv = (r.user_id.clone().into_bytes(), r.line.clone().into_bytes());
        if finals.contains(&i) {
            second.push(kv)
        } else {
            first.push(kv)
        }
    }
    (first, second, labels)
}

/// Sessions the labels say must be revoked.
pub fn must_revoke(labels: &BTreeMap<String, vigil_testkit::samples::Label>) -> BTreeSet<String> {
    labels
        .iter()
        .filter(|(_, l)| l.revoke)
        .map(|(s, _)| s.clone())
        .collect()
}
