//! `vigil enforce` over librdkafka's mock cluster, pushing to receivers on loopback: every SET
//! reaches every receiver, in order, signed, once; outages and slow receivers lose nothing;
//! refused and undeliverable SETs land in the dead-letter topic; what was not delivered before
//! a stop is delivered after the restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use tokio::sync::oneshot;
use vigil_enforce::{EnforceConfig, EnforceMetrics};
use vigil_kafka::config::SecretSource;
use vigil_sign::{Jwks, SetSigner};

use crate::receiver::{Answer, Receiver};
use crate::support;

const ACCEPT: Answer = Answer::Status(202, "", Duration::ZERO);

fn set(jti: &str) -> Vec<u8> {
    json!({
        "jti": jti,
        "iss": "https://vigil.test/",
        "aud": "urn:test",
        "iat": 1_714_550_400,
        "events": {
            "https://schemas.openid.net/secevent/caep/event-type/session-revoked": {
                "subject": {"format": "complex", "session": {"format": "opaque", "id": format!("s-{jti}")}},
                "event_timestamp": 1_714_550_400
            }
        }
    })
    .to_string()
    .into_bytes()
}

struct Setup {
    _mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    brokers: String,
    kafka: vigil_kafka::KafkaConfig,
    signer: SetSigner,
    dir: std::path::PathBuf,
}

fn setup(name: &str) -> Setup {
    let mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let topics = vigil_kafka::config::OutputTopics::default();
    mock.create_topic(&topics.revocations, 1, 1).expect("topic");
    mock.create_topic("vigil.revocations.undelivered", 1, 1)
        .expect("topic");
    let mut kafka = support::kafka_config(&brokers, "unused", "vigil.events", &topics);
    kafka.session_timeout = Duration::from_secs(6);
    let dir = std::env::temp_dir().join(support::unique(name));
    std::fs::create_dir_all(&dir).expect("dir");
    Setup {
        _mock: mock,
        brokers,
        kafka,
        signer: SetSigner::from_p256_scalar(&[5u8; 32], "k-enforce").expect("key"),
        dir,
    }
}

/// An `[enforce]` table for `receivers` (name, url, auth file), with fast retries.
fn config(
    s: &Setup,
    receivers: &[(&str, String, Option<&str>)],
    max_attempts: u32,
) -> EnforceConfig {
    let mut list = Vec::new();
    for (name, url, auth) in receivers {
        let auth_header = auth.map(|value| {
            let path = s.dir.join(format!("{name}.auth"));
            std::fs::write(&path, format!("{value}\n")).expect("write auth");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
            }
            SecretSource::File(path)
        });
        list.push(toml_receiver(name, url, auth_header));
    }
    let mut cfg: EnforceConfig = serde_json::from_value(json!({
        "group_id": support::unique("enforce"),
        "max_attempts": max_attempts,
        "backoff_initial": "20ms",
        "backoff_max": "200ms",
        "request_timeout": "2s",
        "commit_interval": "100ms",
        "drain_timeout": "500ms",
        "queue": 8,
        "receivers": [],
    }))
    .expect("enforce config");
    cfg.receivers = list;
    cfg
}

fn toml_receiver(
    name: &str,
    url: &str,
    auth_header: Option<SecretSource>,
) -> vigil_enforce::ReceiverConfig {
    vigil_enforce::ReceiverConfig {
        name: name.into(),
        url: url.into(),
        auth_header,
    }
}

/// `vigil enforce` running in the background.
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), vigil_kafka::error::RuntimeError>>,
    metrics: vigil_kafka::Metrics,
}

fn start(s: &Setup, cfg: &EnforceConfig, signer: Option<SetSigner>) -> Running {
    let metrics = vigil_kafka::Metrics::new();
    let em = EnforceMetrics::register(metrics.registry()).expect("metrics");
    let (stop, stopped) = oneshot::channel::<()>();
    let (kafka, cfg) = (s.kafka.clone(), cfg.clone());
    let task = tokio::spawn(async move {
        vigil_enforce::run(&kafka, &cfg, signer, em, async {
            let _ = stopped.await;
        })
        .await
    });
    Running {
        stop,
        task,
        metrics,
    }
}

async fn stop(r: Running) -> vigil_kafka::Metrics {
    let _ = r.stop.send(());
    r.task
        .await
        .expect("enforce task")
        .expect("enforce stops cleanly");
    r.metrics
}

async fn wait(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn jtis(bodies: &[String], jwks: &serde_json::Value) -> Vec<String> {
    bodies
        .iter()
        .map(|b| {
            let claims = vigil_sign::verify(b, jwks).expect("every pushed SET verifies");
            claims["jti"].as_str().expect("jti").to_owned()
        })
        .collect()
}

fn committed(brokers: &str, group: &str, topic: &str) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(5))
        .expect("committed offsets");
    match got.elements()[0].offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

fn counter(m: &vigil_kafka::Metrics, series: &str) -> u64 {
    m.render()
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_set_reaches_every_receiver_in_order_signed_and_once() {
    let s = setup("enforce-order");
    let fast = Receiver::start(|_, _| ACCEPT);
    // Down (hangs up) for 4 requests, then 503 with Retry-After 0 for 3, then slow but fine.
    let flaky = Receiver::start(|n, _| match n {
        0..4 => Answer::HangUp,
        4..7 => Answer::Status(503, "{\"err\":\"busy\"}", Duration::ZERO),
        _ => Answer::Status(202, "", Duration::from_millis(30)),
    });
    let cfg = config(
        &s,
        &[
            ("fast", fast.url(), Some("Bearer fast-token")),
            ("flaky", flaky.url(), None),
        ],
        20,
    );
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = (0..30)
        .map(|i| (format!("s{i}").into_bytes(), set(&format!("j{i:02}"))))
        .collect();
    // Redelivered upstream (at-least-once): the same jti again.
    records.push((b"s5".to_vec(), set("j05")));
    // Not a SET at all.
    records.push((b"junk".to_vec(), b"not a set".to_vec()));
    support::produce(&s.brokers, &s.kafka.topics.revocations, &records).await;

    let run = start(&s, &cfg, Some(s.signer.clone()));
    wait("30 SETs at both receivers", Duration::from_secs(60), || {
        fast.accepted().len() >= 30 && flaky.accepted().len() >= 30
    })
    .await;
    let group = cfg.group_id.clone();
    let (brokers, topic) = (s.brokers.clone(), s.kafka.topics.revocations.clone());
    wait("the offset commit", Duration::from_secs(20), || {
        committed(&brokers, &group, &topic) == Some(32)
    })
    .await;
    let metrics = stop(run).await;

    let jwks = Jwks::new(&s.signer, &[]).to_json();
    let expected: Vec<String> = (0..30).map(|i| format!("j{i:02}")).collect();
    assert_eq!(
        jtis(&fast.accepted(), &jwks),
        expected,
        "fast receiver: in order, once"
    );
    assert_eq!(
        jtis(&flaky.accepted(), &jwks),
        expected,
        "flaky receiver: in order, once"
    );
    for r in fast.requests() {
        assert_eq!(r.auth.as_deref(), Some("Bearer fast-token"));
        assert_eq!(r.content_type.as_deref(), Some("application/secevent+jwt"));
    }
    assert!(flaky.requests().iter().all(|r| r.auth.is_none()));
    assert_eq!(
        flaky.requests().len(),
        37,
        "4 hang-ups + 3 busy + 30 accepted"
    );

    let dead = support::read_until(
        &s.brokers,
        "vigil.revocations.undelivered",
        1,
        Duration::from_secs(5),
        |o| !o.is_empty(),
    );
    assert_eq!(dead.len(), 1, "only the junk record is dead-lettered");
    assert_eq!(dead[0].raw, b"not a set");
    assert!(
        dead[0].headers["vigil.reason"].contains("neither a JSON SET nor a compact JWS"),
        "{:?}",
        dead[0].headers
    );
    assert_eq!(dead[0].headers["vigil.source.offset"], "31");
    assert_eq!(
        counter(
            &metrics,
            "vigil_enforce_deliveries_total{receiver=\"fast\",result=\"duplicate\"}"
        ),
        1
    );
    assert_eq!(
        counter(
            &metrics,
            "vigil_enforce_deliveries_total{receiver=\"flaky\",result=\"delivered\"}"
        ),
        30
    );
    assert_eq!(
        counter(
            &metrics,
            "vigil_enforce_attempts_total{outcome=\"retry\",receiver=\"flaky\"}"
        ),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_undeliverable_sets_go_to_the_dead_letter_topic() {
    let s = setup("enforce-dlq");
    // Refuses j1 as RFC 8935 describes; accepts the rest.
    let picky = Receiver::start(|_, body| {
        let claims = body
            .split('.')
            .nth(1)
            .map(|p| {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        if String::from_utf8_lossy(&claims).contains("\"j1\"") {
            Answer::Status(
                400,
                "{\"err\":\"invalid_key\",\"description\":\"unknown kid\"}",
                Duration::ZERO,
            )
        } else {
            ACCEPT
        }
    });
    let down = Receiver::start(|_, _| Answer::Status(503, "", Duration::ZERO));
    let cfg = config(
        &s,
        &[("picky", picky.url(), None), ("down", down.url(), None)],
        3,
    );
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..3)
        .map(|i| (format!("s{i}").into_bytes(), set(&format!("j{i}"))))
        .collect();
    support::produce(&s.brokers, &s.kafka.topics.revocations, &records).await;
    let run = start(&s, &cfg, Some(s.signer.clone()));
    let dead = support::read_until(
        &s.brokers,
        "vigil.revocations.undelivered",
        1,
        Duration::from_secs(60),
        |o| o.len() >= 4,
    );
    let group = cfg.group_id.clone();
    let (brokers, topic) = (s.brokers.clone(), s.kafka.topics.revocations.clone());
    wait("the offset commit", Duration::from_secs(20), || {
        committed(&brokers, &group, &topic) == Some(3)
    })
    .await;
    stop(run).await;

    let jwks = Jwks::new(&s.signer, &[]).to_json();
    assert_eq!(jtis(&picky.accepted(), &jwks), ["j0", "j2"]);
    assert_eq!(down.requests().len(), 9, "3 SETs x 3 attempts");
    let mut by_receiver: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &dead {
        let jti = vigil_sign::verify(std::str::from_utf8(&d.raw).expect("utf-8"), &jwks)
            .expect("dead letters keep the signed SET")["jti"]
            .as_str()
            .expect("jti")
            .to_owned();
        by_receiver
            .entry(d.headers["vigil.receiver"].clone())
            .or_default()
            .push(jti);
        if d.headers["vigil.receiver"] == "picky" {
            assert_eq!(d.headers["vigil.http_status"], "400");
            assert_eq!(d.headers["vigil.attempts"], "1");
            assert!(d.headers["vigil.reason"].contains("invalid_key: unknown kid"));
        } else {
            assert_eq!(d.headers["vigil.attempts"], "3");
            assert!(d.headers["vigil.reason"].contains("gave up after 3 attempts"));
        }
    }
    assert_eq!(by_receiver["picky"], ["j1"]);
    assert_eq!(by_receiver["down"], ["j0", "j1", "j2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_not_delivered_before_a_stop_are_delivered_after_the_restart() {
    let s = setup("enforce-restart");
    let receiver = Receiver::start(|_, _| Answer::HangUp);
    let cfg = config(&s, &[("r", receiver.url(), None)], 1_000);
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..5)
        .map(|i| (format!("s{i}").into_bytes(), set(&format!("j{i}"))))
        .collect();
    support::produce(&s.brokers, &s.kafka.topics.revocations, &records).await;
    // Unsigned SETs on the topic, signed by enforce.
    let run = start(&s, &cfg, Some(s.signer.clone()));
    wait("push attempts", Duration::from_secs(30), || {
        receiver.requests().len() >= 3
    })
    .await;
    // Stops with the receiver still down: nothing delivered, nothing committed.
    stop(run).await;
    assert!(receiver.accepted().is_empty());
    assert_eq!(
        committed(&s.brokers, &cfg.group_id, &s.kafka.topics.revocations),
        None
    );

    receiver.rescript(|_, _| ACCEPT);
    let run = start(&s, &cfg, Some(s.signer.clone()));
    wait(
        "every SET after the restart",
        Duration::from_secs(60),
        || receiver.accepted().len() >= 5,
    )
    .await;
    stop(run).await;
    let jwks = Jwks::new(&s.signer, &[]).to_json();
    assert_eq!(
        jtis(&receiver.accepted(), &jwks),
        ["j0", "j1", "j2", "j3", "j4"]
    );
    assert_eq!(
        committed(&s.brokers, &cfg.group_id, &s.kafka.topics.revocations),
        Some(5)
    );
}

/// The `vigil enforce` binary end to end: it signs with the configured key, serves the JWKS
/// that verifies what it pushed, sends the receiver's auth header, and never writes that
/// secret to its log, even at debug level with failing pushes to report.
#[test]
fn the_binary_pushes_serves_its_jwks_and_never_logs_the_secret() {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};

    const SECRET: &str = "Bearer SECRET-TOKEN-3f9a";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = setup("enforce-binary");
    let key = p256::ecdsa::SigningKey::from_bytes(&[3u8; 32].into()).expect("scalar");
    let key_path = s.dir.join("set.pem");
    std::fs::write(
        &key_path,
        key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes(),
    )
    .expect("write key");
    let auth_path = s.dir.join("gw.auth");
    std::fs::write(&auth_path, format!("{SECRET}\n")).expect("write auth");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [&key_path, &auth_path] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }
    let receiver = Receiver::start(|n, _| {
        if n < 2 {
            Answer::Status(503, "", Duration::ZERO)
        } else {
            ACCEPT
        }
    });
    let config = format!(
        r#"
[output]
issuer = "https://vigil.test/"
signing_key_file = {key:?}
signing_key_id = "k-bin"

[kafka]
brokers = "{brokers}"
inputs = [{{ topic = "vigil.events" }}]
session_timeout = "6s"

[enforce]
group_id = "{group}"
backoff_initial = "20ms"
backoff_max = "100ms"
commit_interval = "100ms"

[[enforce.receivers]]
name = "gw"
url = "{url}"
auth_header = {{ file = {auth:?} }}
"#,
        key = key_path,
        brokers = s.brokers,
        group = support::unique("enforce-bin"),
        url = receiver.url(),
        auth = auth_path,
    );
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..3)
        .map(|i| (format!("s{i}").into_bytes(), set(&format!("b{i}"))))
        .collect();
    rt.block_on(support::produce(
        &s.brokers,
        &s.kafka.topics.revocations,
        &records,
    ));
    let mut inst = support::Instance::start_command(&s.dir, "enforce", "enforce", &config, "debug");
    assert!(
        inst.wait_ready(Duration::from_secs(30)),
        "not ready; see {}",
        s.dir.display()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.accepted().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "SETs not delivered; see {}",
            s.dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let response = inst.get("/.well-known/jwks.json").expect("jwks");
    let (head, body) = response.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let jwks: serde_json::Value = serde_json::from_str(body).expect("jwks json");
    assert_eq!(jwks["keys"][0]["kid"], "k-bin");
    assert_eq!(jtis(&receiver.accepted(), &jwks), ["b0", "b1", "b2"]);
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| r.auth.as_deref() == Some(SECRET))
    );
    // The receiver records a request before its response reaches the service, which counts
    // the delivery after that: wait for the count rather than race it.
    while inst.counter("vigil_enforce_deliveries_total") < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(inst.counter("vigil_enforce_deliveries_total"), 3);
    let metrics = inst.get("/metrics").expect("metrics");
    assert!(metrics.contains("vigil_enforce_attempts_total"));
    assert!(!metrics.contains("SECRET-TOKEN"));
    assert_eq!(inst.terminate(), Some(0), "SIGTERM stops cleanly");

    let log = std::fs::read_to_string(s.dir.join("enforce.log")).expect("log");
    assert!(
        log.contains("SET push failed; retrying"),
        "debug log: {log}"
    );
    assert!(
        !log.contains("SECRET-TOKEN"),
        "the auth header leaked into the log"
    );
}
