//! Over librdkafka's embedded mock cluster, in process.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use tokio::sync::oneshot;
use vigil_kafka::Metrics;
use vigil_kafka::worker::Shared;

use crate::support::{self, Out};

/// A runtime of two worker threads, as each of these tests runs on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The engine settings of these tests: story_split sends each attack's last step after
/// everything else, so late events are accepted.
fn engine_config() -> vigil_engine::EngineConfig {
    let mut engine = vigil_engine::EngineConfig::default();
    engine.state.out_of_order_grace = vigil_engine::HumanDuration::secs(86_400);
    engine
}

fn shared_builder(
    geo: vigil_geo::GeoDb,
    input: String,
    engine: vigil_engine::EngineConfig,
) -> vigil_kafka::runtime::RunParts {
    let metrics = Metrics::new();
    vigil_kafka::runtime::RunParts {
        build_shared: Box::new(move |producer, metrics, restore_client| Shared {
            producer,
            topics: Default::default(),
            formats: [(input, Default::default())].into_iter().collect(),
            adapter: vigil_model::adapters::AdapterContext::new(b"mock-test-key"),
            engine,
            geo,
            signer: None,
            issuer: "https://vigil.test/".into(),
            audience: "urn:test".into(),
            metrics,
            restore_client,
            changelog_encoding: Default::default(),
            inputs: Vec::new(),
        }),
        metrics,
    }
}

/// A runtime on a fresh mock cluster.
struct Running {
    mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    brokers: String,
    input: String,
    topics: vigil_kafka::config::OutputTopics,
    metrics: Metrics,
    stop: oneshot::Sender<()>,
    run: tokio::task::JoinHandle<Result<(), vigil_kafka::error::RuntimeError>>,
}

/// Starts a mock cluster with the runtime's topics (`partitions` each) and the runtime on it.
fn start(partitions: i32) -> Running {
    start_with(partitions, engine_config())
}

/// [`start`] with these engine settings.
fn start_with(partitions: i32, engine: vigil_engine::EngineConfig) -> Running {
    let (mock, brokers, input, topics) = mock_cluster(partitions);
    let (metrics, stop, run) = instance(&brokers, &support::unique("g"), &input, &topics, engine);
    Running {
        mock,
        brokers,
        input,
        topics,
        metrics,
        stop,
        run,
    }
}

/// A fresh mock cluster with the runtime's topics, `partitions` each: (cluster, bootstrap
/// servers, input topic, output topics).
fn mock_cluster(
    partitions: i32,
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
    String,
    vigil_kafka::config::OutputTopics,
) {
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let input = "vigil.events".to_owned();
    let topics = vigil_kafka::config::OutputTopics::default();
    for t in [
        &input,
        &topics.changelog,
        &topics.alerts,
        &topics.revocations,
        &topics.dead_letters,
    ] {
        mock.create_topic(t, partitions, 1).expect("topic");
    }
    (mock, brokers, input, topics)
}

/// The runtime as one instance of `group`, until `stop` is sent or it fails.
fn instance(
    brokers: &str,
    group: &str,
    input: &str,
    topics: &vigil_kafka::config::OutputTopics,
    engine: vigil_engine::EngineConfig,
) -> (
    Metrics,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), vigil_kafka::error::RuntimeError>>,
) {
    let cfg = support::kafka_config(brokers, group, input, topics);
    let mut geo = vigil_geo::GeoDb::new(1000);
    geo.add("test", vigil_testkit::geoip::test_database())
        .expect("geo");
    let parts = shared_builder(geo, input.to_owned(), engine);
    let metrics = parts.metrics.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        vigil_kafka::runtime::run(&cfg, parts, async {
            let _ = stopped.await;
        })
        .await
    });
    (metrics, stop, run)
}

/// Reads the revocations `topic` (`partitions` of it) until `sessions` distinct sessions are
/// revoked, or a minute passes.
async fn revocations(brokers: &str, topic: &str, partitions: i32, sessions: usize) -> Vec<Out> {
    let (b, t) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        support::read_until(&b, &t, partitions, Duration::from_secs(60), |o| {
            support::revoked_sessions(o).len() >= sessions
        })
    })
    .await
    .expect("reader")
}

/// The sample story and poison records through the real runtime on the mock cluster: every
/// attack is revoked, every poison record is dead-lettered with its reason and source in
/// headers, and the records after the poison still flow.
#[test]
fn detection_and_dead_letters_over_the_mock_cluster() {
    let rt = runtime();
    rt.block_on(async {
        let Running { mock, brokers, input, topics, metrics, stop, run } = start(3);

        let (mut records, labels) = support::story(3);
        let poison: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"u-poison".to_vec(), b"{not json".to_vec()),
            (b"u-poison".to_vec(), b"\xff\xfe\xfd".to_vec()),
            (b"u-poison".to_vec(), br#"{"id":"p","time":"2999-01-01T00:00:00Z","kind":"access","session_id":"s","user_id":"u","token":"SECRET-RAW-TOKEN"}"#.to_vec()),
        ];
        // Poison first, so everything after it must still flow.
        records.splice(0..0, poison.clone());
        support::produce(&brokers, &input, &records).await;

        let revs = revocations(&brokers, &topics.revocations, 3, support::must_revoke(&labels).len()).await;
        let b = brokers.clone();
        let t = topics.dead_letters.clone();
        let dead: Vec<Out> = tokio::task::spawn_blocking(move || support::read_until(&b, &t, 3, Duration::from_secs(30), |o| o.len() >= 3))
            .await
            .expect("reader");
        let _ = stop.send(());
        run.await.expect("join").expect("runtime stopped cleanly");

        assert_eq!(support::revoked_sessions(&revs), support::must_revoke(&labels));
        // Each revocation names when its source record was written, for latency downstream.
        for r in &revs {
            let src: i64 = r.headers[vigil_kafka::bench::SOURCE_TIMESTAMP_HEADER].parse().expect("epoch ms");
            let out = r.timestamp_ms.expect("timestamp");
            assert!(src > 1_700_000_000_000 && src <= out && out - src < 60_000, "source {src}, output {out}");
        }
        let reasons: Vec<&str> = dead.iter().map(|d| d.headers["vigil.reason"].as_str()).collect();
        assert_eq!(reasons, ["malformed_json", "invalid_utf8", "absurd_timestamp"]);
        for d in &dead {
            assert_eq!(d.headers["vigil.source.topic"], input);
            assert!(d.headers.contains_key("vigil.source.offset"));
            assert!(!d.headers["vigil.detail"].is_empty());
        }
        assert_eq!(dead[1].raw, poison[1].1, "the original bytes are kept");
        assert!(!String::from_utf8_lossy(&dead[2].raw).contains("SECRET-RAW-TOKEN"), "secret fields are redacted");
        assert_eq!(metrics.rejected_total(), 3);
        // Every record read is timed from its arrival in the consumer loop to its decision,
        // a share of the time since it was produced.
        let read: u64 = (0..3).map(|p| metrics.events.with_label_values(&[&input, &p.to_string()]).get()).sum();
        assert!(read > 0);
        assert_eq!(metrics.internal_latency.get_sample_count(), read);
        assert_eq!(metrics.latency.get_sample_count(), read);
        assert!(
            metrics.internal_latency.get_sample_sum() < metrics.latency.get_sample_sum(),
            "inside {} s of {} s since produced",
            metrics.internal_latency.get_sample_sum(),
            metrics.latency.get_sample_sum()
        );
        drop(mock);
    });
}

/// The broker goes away mid-stream and comes back: the runtime retries, neither crashes nor
/// loses a revocation.
#[test]
fn broker_outage_is_survived_without_loss() {
    let rt = runtime();
    rt.block_on(async {
        let Running {
            mock,
            brokers,
            input,
            topics,
            metrics,
            stop,
            run,
        } = start(2);
        while !metrics.ready.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (first, second, labels) = support::story_split(4);
        support::produce(&brokers, &input, &first).await;
        mock.broker_down(1).expect("broker down");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!run.is_finished(), "the runtime gave up during the outage");
        mock.broker_up(1).expect("broker up");
        support::produce(&brokers, &input, &second).await;

        let expected = support::must_revoke(&labels);
        let revs = revocations(&brokers, &topics.revocations, 2, expected.len()).await;
        let _ = stop.send(());
        run.await.expect("join").expect("runtime stopped cleanly");
        assert_eq!(support::revoked_sessions(&revs), expected);
        drop(mock);
    });
}

/// An output the broker refuses for good (here: the first produce requests fail with a
/// permanent authorization error) stops the runtime with that error, and nothing after it is
/// committed or written to the changelog: the next instance of the group processes those
/// records again and sends every revocation.
#[test]
fn a_failed_output_is_sent_again_by_the_next_instance() {
    let rt = runtime();
    rt.block_on(async {
        let (mock, brokers, input, topics) = mock_cluster(1);
        let (records, labels) = support::story(2);
        support::produce(&brokers, &input, &records).await;
        let group = support::unique("g");

        // Every produce request fails until the first instance has given up.
        mock.request_errors(
            rdkafka::types::RDKafkaApiKey::Produce,
            &[rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 1000],
        );
        let (_, _stop, run) = instance(&brokers, &group, &input, &topics, engine_config());
        let ended = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the first instance stops on the failed output")
            .expect("join");
        assert!(
            matches!(
                ended,
                Err(vigil_kafka::error::RuntimeError::Delivery { .. })
            ),
            "stopped with {ended:?}"
        );
        mock.clear_request_errors(rdkafka::types::RDKafkaApiKey::Produce);

        let (_, stop, run) = instance(&brokers, &group, &input, &topics, engine_config());
        let expected = support::must_revoke(&labels);
        let revs = revocations(&brokers, &topics.revocations, 1, expected.len()).await;
        let _ = stop.send(());
        run.await
            .expect("join")
            .expect("the second instance stopped cleanly");
        assert_eq!(support::revoked_sessions(&revs), expected);
        drop(mock);
    });
}

/// `vigil rekey`'s job: records keyed at random come out keyed by user id, unchanged, and
/// records it cannot parse are forwarded with their original key.
#[test]
fn rekey_keys_records_by_user() {
    let rt = runtime();
    rt.block_on(async {
        let mock = MockCluster::new(1).expect("mock cluster");
        let brokers = mock.bootstrap_servers();
        for t in ["raw", "keyed"] {
            mock.create_topic(t, 3, 1).expect("topic");
        }
        let (records, _) = support::story(1);
        let mut raw: Vec<(Vec<u8>, Vec<u8>)> = records
            .iter()
            .enumerate()
            .map(|(i, (_, v))| (format!("random-{i}").into_bytes(), v.clone()))
            .collect();
        raw.push((b"orig-key".to_vec(), b"{broken".to_vec()));
        support::produce(&brokers, "raw", &raw).await;
        let job = vigil_kafka::rekey::Rekey {
            group: support::unique("rekey"),
            from: "raw".into(),
            to: "keyed".into(),
            format: Default::default(),
            key_by: vigil_kafka::rekey::KeyBy::User,
        };
        let mut base = rdkafka::ClientConfig::new();
        base.set("bootstrap.servers", &brokers);
        let adapter = vigil_model::adapters::AdapterContext::new(b"k");
        let (stop, stopped) = oneshot::channel::<()>();
        let b2 = base.clone();
        let task = tokio::spawn(async move {
            vigil_kafka::rekey::run(&b2, &job, &adapter, async {
                let _ = stopped.await;
            })
            .await
        });
        let want = raw.len();
        let b = brokers.clone();
        let out = tokio::task::spawn_blocking(move || {
            support::read_until(&b, "keyed", 3, Duration::from_secs(60), |o| o.len() >= want)
        })
        .await
        .expect("reader");
        let _ = stop.send(());
        let forwarded = task.await.expect("join").expect("rekey ran");
        assert_eq!(forwarded as usize, raw.len());
        assert_eq!(out.len(), raw.len());
        let ctx = vigil_model::adapters::AdapterContext::new(b"k");
        let mut broken = 0;
        for o in &out {
            match vigil_model::adapters::parse_record(&o.raw, Default::default(), &ctx) {
                Ok(ev) => assert_eq!(o.key, ev.user_id.as_bytes(), "record keyed by its user"),
                Err(_) => {
                    broken += 1;
                    assert_eq!(o.key, b"orig-key");
                }
            }
        }
        assert_eq!(broken, 1);
        drop(mock);
    });
}

/// Governance through the runtime, with inputs keyed by session so one user's sessions live
/// on several partitions: an account deactivation read on one partition revokes the user's
/// sessions on every partition (it is broadcast to them), a token exposure reaches the
/// partition holding the token (critical alert and revocation), and an agent session that
/// goes quiet is revoked by the idle policy with no further event.
#[test]
fn account_changes_and_exposures_reach_every_partition() {
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let rt = runtime();
    rt.block_on(async {
        let mut engine = engine_config();
        engine.governance = toml::from_str(
            r#"
            [identity]
            agent_clients = ["mcp-*"]
            [agent]
            max_idle = "3s"
            "#,
        )
        .expect("governance config");
        let Running { mock, brokers, input, topics, metrics, stop, run } = start_with(4, engine);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let rec = |id: &str, dt: i64, body: &str| {
            format!(r#"{{"id":"{id}","time":{},"tenant":"acme","ip":"91.64.1.1",{body}}}"#, now + dt)
        };
        let mut records: Vec<(i32, String, String)> = Vec::new();
        for i in 0..6 {
            let s = format!("s-alice-{i}");
            records.push((i % 4, s.clone(), rec(&format!("a{i}"), 0, &format!(r#""kind":"session_start","session_id":"{s}","user_id":"alice""#))));
        }
        records.push((0, "s-bob".into(), rec("b1", 0, r#""kind":"session_start","session_id":"s-bob","user_id":"bob""#)));
        records.push((3, "s-carol".into(), rec("c1", 0, r#""kind":"token_issued","session_id":"s-carol","user_id":"carol","token_id":"tok-carol""#)));
        records.push((1, "s-agent".into(), rec("g1", 0, r#""kind":"session_start","session_id":"s-agent","user_id":"dora","client_id":"mcp-assistant""#)));
        records.push((2, "alice".into(), rec("l1", 100, r#""kind":"user_lifecycle","user_id":"alice","lifecycle":"deactivated""#)));
        records.push((0, "tok".into(), rec("x1", 100, r#""kind":"token_exposed","token_id":"tok-carol","found_in":"SEC-42""#)));
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("producer");
        for (p, key, value) in &records {
            producer
                .send(FutureRecord::to(&input).partition(*p).key(key).payload(value), Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .expect("produced");
        }

        let mut want: std::collections::BTreeSet<String> = (0..6).map(|i| format!("s-alice-{i}")).collect();
        want.insert("s-carol".into());
        want.insert("s-agent".into());
        let revs = revocations(&brokers, &topics.revocations, 4, want.len()).await;
        let b = brokers.clone();
        let t = topics.alerts.clone();
        let alerts = tokio::task::spawn_blocking(move || support::read_until(&b, &t, 4, Duration::from_secs(10), |o| !o.is_empty()))
            .await
            .expect("reader");
        // Settle, so a late wrong revocation (bob) would be seen.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = brokers.clone();
        let t = topics.revocations.clone();
        let all = tokio::task::spawn_blocking(move || support::read_until(&b, &t, 4, Duration::from_secs(2), |_| false))
            .await
            .expect("reader");
        let b = brokers.clone();
        let i = input.clone();
        let inputs = tokio::task::spawn_blocking(move || support::read_until(&b, &i, 4, Duration::from_secs(3), |_| false))
            .await
            .expect("reader");
        // The instance's /sessions summary, published by the partition tasks every 5 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let inventory = loop {
            let v: serde_json::Value = serde_json::from_str(&metrics.inventory_json()).expect("json");
            if v["inventory"]["revoked"] == 8 || std::time::Instant::now() > deadline {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let _ = stop.send(());
        run.await.expect("join").expect("runtime stopped cleanly");

        assert_eq!(support::revoked_sessions(&revs), want);
        assert_eq!(support::revoked_sessions(&all), want, "bob keeps his session");
        assert_eq!(inventory["partitions"], serde_json::json!([0, 1, 2, 3]));
        assert_eq!(inventory["inventory"]["revoked"], 8, "{inventory}");
        assert_eq!(inventory["inventory"]["live"], 1, "{inventory}");
        assert_eq!(inventory["inventory"]["by_type"]["human"]["live"], 1, "{inventory}");

        // `vigil sessions` reads the same from the changelog, with the runtime gone.
        let dir = std::env::temp_dir().join(support::unique("sessions"));
        std::fs::create_dir_all(&dir).expect("dir");
        let cfg_path = dir.join("vigil.toml");
        std::fs::write(
            &cfg_path,
            format!(
                "[engine.governance.identity]\nagent_clients = [\"mcp-*\"]\n[kafka]\nbrokers = \"{brokers}\"\ninputs = [{{ topic = \"{input}\" }}]\n"
            ),
        )
        .expect("config");
        let listed = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["sessions", "--config", cfg_path.to_str().expect("utf-8"), "--ndjson", "--all"])
            .output()
            .expect("vigil sessions");
        assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
        let views: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("ndjson"))
            .collect();
        assert_eq!(views.len(), 9, "{views:?}");
        let status = |sid: &str| {
            views
                .iter()
                .find(|v| v["session_id"] == sid)
                .map(|v| (v["status"].as_str().unwrap_or_default().to_owned(), v["identity_type"].as_str().unwrap_or_default().to_owned()))
        };
        assert_eq!(status("s-bob"), Some(("live".into(), "human".into())));
        assert_eq!(status("s-alice-3"), Some(("revoked".into(), "human".into())));
        assert_eq!(status("s-agent"), Some(("revoked".into(), "agent".into())));
        let summary = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["sessions", "--config", cfg_path.to_str().expect("utf-8")])
            .output()
            .expect("vigil sessions");
        let text = String::from_utf8_lossy(&summary.stdout);
        assert!(text.contains("live 1 ") && text.contains("revoked by Vigil 8"), "{text}");
        let reason = |o: &Out| {
            o.value["events"]["https://schemas.openid.net/secevent/caep/event-type/session-revoked"]["reason_admin"]["en"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        for o in &all {
            let sid = o.value["sub_id"]["session"]["id"].as_str().unwrap_or_default();
            let why = reason(o);
            let rule = if sid.starts_with("s-alice") {
                "lifecycle.deactivated"
            } else if sid == "s-carol" {
                "(token_exposed)"
            } else {
                "policy.agent.max_idle"
            };
            assert!(why.contains(rule), "{sid}: {why}");
        }
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].value["finding_info"]["title"], "Live session token exposed");
        assert_eq!(alerts[0].value["severity"], "Critical");
        let copies = inputs
            .iter()
            .filter(|o| o.headers.contains_key(vigil_kafka::worker::BROADCAST_HEADER))
            .count();
        assert_eq!(copies, 6, "each of the two records is copied to the 3 other partitions");
        assert_eq!(metrics.rejected_total(), 0);
        drop(mock);
    });
}

/// `vigil gen --rate` to a broker: it waits for its producer to be ready (an idempotent
/// producer holds records until it has a producer id), then sends the same records, in the
/// same order, as it writes to a file.
#[test]
fn paced_generator_sends_what_it_writes() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let topic = "gen.events";
    mock.create_topic(topic, 1, 1).expect("topic");
    let story = ["gen", "--copies", "2", "--spacing-ms", "1000"];
    let gen_with = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(story)
            .args(extra)
            .output()
            .expect("vigil gen");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let lines: Vec<String> = String::from_utf8_lossy(&gen_with(&[]))
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(lines.len() > 100, "the story has records: {}", lines.len());
    gen_with(&["--brokers", &brokers, "--topic", topic, "--rate", "20000"]);
    let read = support::read_until(&brokers, topic, 1, Duration::from_secs(30), |o| {
        o.len() >= lines.len()
    });
    let got: Vec<String> = read
        .iter()
        .map(|o| String::from_utf8_lossy(&o.raw).into_owned())
        .collect();
    assert_eq!(got, lines);
}

/// A changelog partition read back (`read_changelog`: what a restore and `vigil sessions` do)
/// over the mock cluster: every version of a key in order, so the last one is what remains,
/// a tombstone removes its key, a record that does not decode is skipped and not counted, and
/// an empty partition ends at once with nothing read.
#[test]
fn a_changelog_partition_reads_back_into_an_engine() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use vigil_engine::{EncodedChanges, Engine, EngineConfig, Output, ValueEncoding};
    use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};

    let rt = runtime();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    mock.create_topic("cl", 2, 1).expect("topic");

    // The state of two sessions, drained twice as two flushes would write it: s1 twice.
    let ctx = AdapterContext::new(b"k");
    let mut a = Engine::new(&EngineConfig::default()).expect("defaults");
    a.track_changes();
    let mut out = Output::default();
    let line = |id: &str, s: &str, t: &str| {
        format!(
            r#"{{"id":"{id}","time":"2024-05-01T09:{t}:00Z","kind":"access","session_id":"{s}","user_id":"u-{s}","ip":"81.2.69.160","token_id":"t-{s}"}}"#
        )
    };
    let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let flush = |a: &mut Engine, records: &mut Vec<_>| {
        let mut buf = EncodedChanges::default();
        a.drain_encoded(ValueEncoding::Binary, &mut buf);
        records.extend(buf.iter().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))));
    };
    let batches = [
        vec![line("1", "s1", "00")],
        vec![line("2", "s1", "05"), line("3", "s2", "06")],
    ];
    for batch in batches {
        for l in batch {
            let ev = parse_record(l.as_bytes(), InputFormat::Native, &ctx).expect("valid");
            a.process(&ev, &mut out).expect("in order");
        }
        flush(&mut a, &mut records);
    }
    let versions_of_s1 = records.iter().filter(|(k, _)| k == b"s:s1").count();
    assert_eq!(versions_of_s1, 2, "s1 is written by both flushes");
    // s2 removed, then a record no decoder takes.
    records.push((b"s:s2".to_vec(), None));
    records.push((b"s:s3".to_vec(), Some(b"not a state".to_vec())));

    rt.block_on(async {
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("producer");
        for (k, v) in &records {
            let mut r = FutureRecord::<[u8], [u8]>::to("cl")
                .partition(0)
                .key(&k[..]);
            if let Some(v) = v {
                r = r.payload(&v[..]);
            }
            p.send(r, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .expect("produced");
        }
    });

    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", &brokers);
    let reader = vigil_kafka::worker::changelog_reader_config(&base, &support::unique("cl"));
    let mut seen = 0;
    let fresh = || Engine::new(&EngineConfig::default()).expect("defaults");
    let (b, read) = vigil_kafka::worker::read_changelog(&reader, "cl", 0, fresh(), || seen += 1)
        .expect("reads");
    assert_eq!(seen, records.len(), "every record is handed to on_record");
    assert_eq!(
        read.records as usize,
        records.len() - 1,
        "all but the bad one applied"
    );
    assert!(read.first_record.is_some());
    assert_eq!(b.session("s1"), a.session("s1"), "the newest version of s1");
    assert!(
        a.session("s2").is_some() && b.session("s2").is_none(),
        "s2's tombstone"
    );
    assert!(b.session("s3").is_none());

    let (empty, read) = vigil_kafka::worker::read_changelog(&reader, "cl", 1, fresh(), || {})
        .expect("reads an empty partition");
    assert_eq!(read, vigil_kafka::worker::ChangelogRead::default());
    assert_eq!(empty.live_sessions(), 0);
    drop(mock);
}

/// The restore's own ceiling in `benches/e2e.sh` (`vigil bench-consume --each-partition`)
/// reads every record of every partition, an empty partition included, once.
#[test]
fn each_partition_read_counts_every_record_once() {
    let rt = runtime();
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    mock.create_topic("each", 3, 1).expect("topic");
    // Partitions 0 and 1 hold records, partition 2 none.
    let records: Vec<(i32, String, String)> = (0..50)
        .map(|i| (i % 2, format!("k{i}"), "v".repeat(i as usize)))
        .collect();
    rt.block_on(support::produce_to(&brokers, "each", &records));
    let mut base = rdkafka::ClientConfig::new();
    base.set("bootstrap.servers", &brokers);
    let read = vigil_kafka::bench::read_each_partition(&base, "each", &support::unique("each"))
        .expect("reads");
    assert_eq!(read.records, 50);
    assert_eq!(read.bytes, (0..50u64).sum::<u64>());
    drop(mock);
}
