//! Over librdkafka's embedded mock cluster, in process.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use tokio::sync::oneshot;
use vigil_kafka::Metrics;
use vigil_kafka::worker::Shared;

use crate::support::{self, Out};

fn shared_builder(geo: vigil_geo::GeoDb, input: String) -> vigil_kafka::runtime::RunParts {
    let metrics = Metrics::new();
    // story_split sends each attack's last step after everything else.
    let mut engine = vigil_engine::EngineConfig::default();
    engine.state.out_of_order_grace = vigil_engine::HumanDuration::secs(86_400);
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
    let cfg = support::kafka_config(&brokers, &support::unique("g"), &input, &topics);
    let mut geo = vigil_geo::GeoDb::new(1000);
    geo.add("test", vigil_testkit::geoip::test_database())
        .expect("geo");
    let parts = shared_builder(geo, input.clone());
    let metrics = parts.metrics.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        vigil_kafka::runtime::run(&cfg, parts, async {
            let _ = stopped.await;
        })
        .await
    });
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

/// The sample story and poison records through the real runtime on the mock cluster: every
/// attack is revoked, every poison record is dead-lettered with its reason and source in
/// headers, and the records after the poison still flow.
#[test]
fn detection_and_dead_letters_over_the_mock_cluster() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
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

        let expected = support::must_revoke(&labels);
        let b = brokers.clone();
        let t = topics.revocations.clone();
        let revs = tokio::task::spawn_blocking(move || {
            support::read_until(&b, &t, 3, Duration::from_secs(60), |o| support::revoked_sessions(o).len() >= expected.len())
        })
        .await
        .expect("reader");
        let b = brokers.clone();
        let t = topics.dead_letters.clone();
        let dead: Vec<Out> = tokio::task::spawn_blocking(move || support::read_until(&b, &t, 3, Duration::from_secs(30), |o| o.len() >= 3))
            .await
            .expect("reader");
        let _ = stop.send(());
        run.await.expect("join").expect("runtime stopped cleanly");

        assert_eq!(support::revoked_sessions(&revs), support::must_revoke(&labels));
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
        drop(mock);
    });
}

/// The broker goes away mid-stream and comes back: the runtime retries, neither crashes nor
/// loses a revocation.
#[test]
fn broker_outage_is_survived_without_loss() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
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
        let b = brokers.clone();
        let t = topics.revocations.clone();
        let want = expected.len();
        let revs = tokio::task::spawn_blocking(move || {
            support::read_until(&b, &t, 2, Duration::from_secs(60), |o| {
                support::revoked_sessions(o).len() >= want
            })
        })
        .await
        .expect("reader");
        let _ = stop.send(());
        run.await.expect("join").expect("runtime stopped cleanly");
        assert_eq!(support::revoked_sessions(&revs), expected);
        drop(mock);
    });
}

/// `vigil rekey`'s job: records keyed at random come out keyed by user id, unchanged, and
/// records it cannot parse are forwarded with their original key.
#[test]
fn rekey_keys_records_by_user() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
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
