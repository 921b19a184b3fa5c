//! `vigil demo`: the whole system on an in-process Kafka, with nothing to set up.
//!
//! Starts librdkafka's mock cluster, creates the topics, runs the real consumer-group runtime
//! (`vigil run`'s code) on it, streams the labelled sample story (many copies, in all four
//! input formats on one topic) as IdP traffic, prints alerts and revocations as they arrive,
//! and ends with a table: attacks injected vs caught, false positives, and event-to-revocation
//! latency measured from the moment each event was produced.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use vigil_geo::GeoDb;
use vigil_kafka::config::{InputTopic, OutputTopics};
use vigil_kafka::{Delivery, KafkaConfig, Metrics};
use vigil_model::adapters::InputFormat;
use vigil_testkit::render::Format;

use crate::config::{DEV_TOKEN_HASH_KEY, VigilConfig};
use crate::setup;

/// Demo options.
pub struct DemoArgs {
    /// Copies of the sample story to stream.
    pub copies: usize,
    /// Events per second offered.
    pub rate: u32,
    /// Input partitions (one partition task each).
    pub partitions: i32,
    /// Print only the final table.
    pub quiet: bool,
}

struct Seen {
    at: Instant,
    kind: &'static str,
    session: String,
    source_id: String,
    text: String,
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> Result<()> {
    let rt = setup::runtime()?;
    rt.block_on(demo(args))
}

async fn demo(args: &DemoArgs) -> Result<()> {
    let started = Instant::now();
    let mock = MockCluster::new(1).context("cannot start the embedded Kafka mock cluster")?;
    let brokers = mock.bootstrap_servers();
    let topics = OutputTopics::default();
    let input = "vigil.events";
    for t in [input, &topics.changelog] {
        mock.create_topic(t, args.partitions, 1)?;
    }
    for t in [&topics.alerts, &topics.revocations, &topics.dead_letters] {
        mock.create_topic(t, 1, 1)?;
    }
    eprintln!(
        "vigil demo: embedded Kafka at {brokers}; {} input partitions; topics created.",
        args.partitions
    );

    let kafka = KafkaConfig {
        brokers: brokers.clone(),
        group_id: "vigil-demo".into(),
        group_instance_id: None,
        inputs: vec![InputTopic {
            topic: input.into(),
            format: InputFormat::Auto,
        }],
        topics: topics.clone(),
        delivery: Delivery::AtLeastOnce,
        commit_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(6),
        transactional_id: None,
        transaction_timeout: Duration::from_secs(10),
        partition_queue: 4096,
        changelog_encoding: Default::default(),
        client: BTreeMap::new(),
        client_secrets: BTreeMap::new(),
    };
    let mut cfg = VigilConfig {
        kafka: Some(kafka.clone()),
        ..VigilConfig::default()
    };
    cfg.geoip.cache_entries = 10_000;
    let mut geo = GeoDb::new(cfg.geoip.cache_entries);
    geo.add("embedded test GeoIP", vigil_testkit::geoip::test_database())?;
    let metrics = Metrics::new();
    let parts = setup::run_parts(&cfg, &kafka, DEV_TOKEN_HASH_KEY, geo, metrics.clone())?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let runtime = tokio::spawn(async move {
        vigil_kafka::runtime::run(&kafka, parts, async {
            let _ = stop_rx.await;
        })
        .await
    });

    // Outputs are read as they arrive, by partition assignment (no group join to wait for).
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Seen>();
    let watcher: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "vigil-demo-watcher")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for t in [&topics.alerts, &topics.revocations] {
        tpl.add_partition_offset(t, 0, Offset::Beginning)?;
    }
    watcher.assign(&tpl)?;
    let revocations_topic = topics.revocations.clone();
    let watcher_task = tokio::spawn(async move {
        loop {
            let Ok(m) = watcher.recv().await else {
                continue;
            };
            let at = Instant::now();
            let Some(v) = m
                .payload()
                .and_then(|p| serde_json::from_slice::<Value>(p).ok())
            else {
                continue;
            };
            let seen = if m.topic() == revocations_topic {
                let ev = &v["events"]["https://schemas.openid.net/secevent/caep/event-type/session-revoked"];
                Seen {
                    at,
                    kind: "revoke",
                    session: v["sub_id"]["session"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                    source_id: v["txn"].as_str().unwrap_or_default().into(),
                    text: ev["reason_admin"]["en"].as_str().unwrap_or_default().into(),
                }
            } else {
                Seen {
                    at,
                    kind: "alert",
                    session: v["actor"]["session"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                    source_id: v["finding_info"]["related_events"][0]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                    text: format!(
                        "{} [{}] {}",
                        v["finding_info"]["analytic"]["uid"]
                            .as_str()
                            .unwrap_or_default(),
                        v["unmapped"]["vigil_action"].as_str().unwrap_or_default(),
                        v["message"].as_str().unwrap_or_default()
                    ),
                }
            };
            if seen_tx.send(seen).is_err() {
                return;
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    while !metrics.ready.load(Ordering::SeqCst) {
        if Instant::now() > deadline {
            bail!("the runtime did not join the consumer group within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "vigil demo: runtime joined the group and restored state in {:.1} s; streaming traffic.",
        started.elapsed().as_secs_f64()
    );

    let (records, labels) = vigil_testkit::samples::scaled(args.copies, 60_000, &Format::ALL);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "1")
        .create()?;
    let mut produced_at: HashMap<String, Instant> = HashMap::with_capacity(records.len());
    let per_tick = (args.rate as usize / 100).max(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let send_started = Instant::now();
    for chunk in records.chunks(per_tick) {
        ticker.tick().await;
        for r in chunk {
            let rec = FutureRecord::to(input)
                .key(r.user_id.as_bytes())
                .payload(r.line.as_bytes());
            produced_at.insert(r.source_id.clone(), Instant::now());
            producer.send_result(rec).map_err(|(e, _)| e)?;
        }
    }
    producer.flush(Duration::from_secs(10))?;
    eprintln!(
        "vigil demo: produced {} events for {} sessions in {:.2} s.",
        records.len(),
        labels.len(),
        send_started.elapsed().as_secs_f64()
    );

    // Collect until the outputs have been quiet for two seconds.
    let mut seen: Vec<Seen> = Vec::new();
    let mut last = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), seen_rx.recv()).await {
            Ok(Some(s)) => {
                if !args.quiet {
                    let ms = produced_at
                        .get(&s.source_id)
                        .map(|t| s.at.duration_since(*t).as_secs_f64() * 1000.0);
                    let lat = ms.map_or("      ".into(), |m| format!("{m:5.1}ms"));
                    let tag = if s.kind == "revoke" {
                        "REVOKE"
                    } else {
                        "alert "
                    };
                    println!("{lat} {tag} {:<28} {}", s.session, s.text);
                }
                seen.push(s);
                last = Instant::now();
            }
            Ok(None) => break,
            Err(_)
                if last.elapsed() > Duration::from_secs(2)
                    && send_started.elapsed() > Duration::from_secs(2) =>
            {
                break;
            }
            Err(_) => {}
        }
    }
    let _ = stop_tx.send(());
    runtime.await.context("runtime task")??;
    watcher_task.abort();
    let _ = watcher_task.await;
    drop(producer);
    // Let the runtime's partition tasks release their producer before the cluster goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(mock);

    report(&labels, &seen, &produced_at, &metrics);
    Ok(())
}

fn report(
    labels: &BTreeMap<String, vigil_testkit::samples::Label>,
    seen: &[Seen],
    produced_at: &HashMap<String, Instant>,
    metrics: &Metrics,
) {
    let alerted: BTreeSet<&str> = seen.iter().map(|s| s.session.as_str()).collect();
    let revoked: BTreeSet<&str> = seen
        .iter()
        .filter(|s| s.kind == "revoke")
        .map(|s| s.session.as_str())
        .collect();
    let mut by_attack: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new();
    let (mut benign, mut false_pos) = (0u32, 0u32);
    for (session, l) in labels {
        if l.class == "attack" {
            let e = by_attack.entry(l.name).or_default();
            e.0 += 1;
            e.1 += u32::from(alerted.contains(session.as_str()));
            e.2 += u32::from(revoked.contains(session.as_str()));
        } else {
            benign += 1;
            false_pos += u32::from(alerted.contains(session.as_str()));
        }
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("static bounds");
    for s in seen.iter().filter(|s| s.kind == "revoke") {
        if let Some(t) = produced_at.get(&s.source_id) {
            let _ = hist.record(s.at.duration_since(*t).as_micros().max(1) as u64);
        }
    }
    println!();
    println!(
        "{:<32} {:>8} {:>8} {:>8}",
        "attack", "injected", "caught", "revoked"
    );
    for (name, (n, c, r)) in &by_attack {
        println!("{name:<32} {n:>8} {c:>8} {r:>8}");
    }
    let (n, c, r) = by_attack
        .values()
        .fold((0, 0, 0), |a, x| (a.0 + x.0, a.1 + x.1, a.2 + x.2));
    println!("{:<32} {n:>8} {c:>8} {r:>8}", "all attacks");
    println!(
        "{:<32} {benign:>8} {false_pos:>8}",
        "benign sessions / false positives"
    );
    if !hist.is_empty() {
        println!(
            "event-to-revocation latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} revocations",
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            hist.max() as f64 / 1000.0,
            hist.len()
        );
    }
    let (n, sum) = (
        metrics.latency.get_sample_count(),
        metrics.latency.get_sample_sum(),
    );
    if n > 0 {
        let inside = metrics.internal_latency.get_sample_sum();
        println!(
            "record-to-decision latency: mean {:.2} ms from each record's timestamp, of which \
             {:.2} ms inside Vigil (from librdkafka's queue to decision), over {n} records",
            sum * 1000.0 / n as f64,
            inside * 1000.0 / n as f64
        );
    }
    println!("records rejected: {}", metrics.rejected_total());
}
