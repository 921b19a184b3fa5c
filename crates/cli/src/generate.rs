//! `vigil gen`: writes labelled synthetic IdP traffic to a file or a Kafka topic.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, ClientContext, Statistics};
use vigil_testkit::render::Format;

/// Generator options.
pub struct GenArgs {
    /// Copies of the sample story.
    pub copies: usize,
    /// Formats, round-robin per copy.
    pub formats: Vec<Format>,
    /// Output file (`-` for stdout).
    pub out: Option<PathBuf>,
    /// Labels file (JSON: session id to label).
    pub labels: Option<PathBuf>,
    /// Brokers, to produce instead of writing a file.
    pub brokers: Option<String>,
    /// Topic to produce to.
    pub topic: String,
    /// Spacing of copies in event time, ms.
    pub spacing_ms: i64,
    /// Records per second to offer a broker (0: as fast as it takes them).
    pub rate: u32,
    /// Which attacks to inject, and how often.
    pub mix: vigil_testkit::samples::Mix,
    /// A generated population instead of the sample story.
    pub population: Option<vigil_testkit::population::PopulationSpec>,
}

/// Tells when an idempotent producer can send: it holds records back until the broker has
/// assigned it a producer id (about half a second against tansu here), and a paced run's first
/// records would otherwise carry that wait in their timestamps, as if the consumer had been
/// slow to take them.
struct Readiness(Arc<AtomicBool>);

impl ClientContext for Readiness {
    fn stats_raw(&self, raw: &[u8]) {
        // Reports after the first "Assigned" are not read: the generator's CPU is taken from
        // the machine whose consumers the bench measures.
        if self.0.load(Ordering::SeqCst) {
            return;
        }
        if serde_json::from_slice::<Statistics>(raw)
            .is_ok_and(|s| s.eos.is_some_and(|e| e.idemp_state == "Assigned"))
        {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Waits until the producer has its producer id, so pacing starts from a producer that sends.
fn wait_ready(ready: &AtomicBool) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ready.load(Ordering::SeqCst) {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the producer got no producer id from the brokers within 30 s"
        );
        // The producer's own thread serves the statistics callback.
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Parses a format name for `--format` (`mixed` means all four).
pub fn parse_formats(s: &str) -> Result<Vec<Format>, String> {
    match s {
        "mixed" => Ok(Format::ALL.to_vec()),
        other => Format::ALL
            .into_iter()
            .find(|f| f.name() == other)
            .map(|f| vec![f])
            .ok_or_else(|| {
                format!("unknown format {other:?} (native, okta, entra, ocsf or mixed)")
            }),
    }
}

/// Runs the generator.
pub fn run(args: &GenArgs) -> Result<()> {
    let (records, labels) = match &args.population {
        Some(p) => vigil_testkit::population::generate(p, &args.formats),
        None => vigil_testkit::samples::scaled_mix(
            args.copies,
            args.spacing_ms,
            &args.formats,
            &args.mix,
        ),
    };
    if let Some(p) = &args.labels {
        std::fs::write(p, serde_json::to_string_pretty(&labels)? + "\n")
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(brokers) = &args.brokers {
        let ready = Arc::new(AtomicBool::new(false));
        let producer: FutureProducer<Readiness> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            // Statistics report when the producer id is assigned; see `Readiness`.
            .set(
                "statistics.interval.ms",
                if args.rate > 0 { "10" } else { "0" },
            )
            .create_with_context(Readiness(ready.clone()))?;
        if args.rate > 0 {
            wait_ready(&ready)?;
        }
        let started = std::time::Instant::now();
        // How far the producing fell behind the requested rate: when this grows, the rate
        // offered was less than the rate asked for, and each record's timestamp (taken when
        // it is handed to the producer) is later than its turn.
        let mut behind = Duration::ZERO;
        for (i, r) in records.iter().enumerate() {
            if args.rate > 0 {
                let due = Duration::from_secs_f64(i as f64 / f64::from(args.rate));
                let elapsed = started.elapsed();
                match due.checked_sub(elapsed) {
                    Some(wait) => std::thread::sleep(wait),
                    None => behind = behind.max(elapsed - due),
                }
            }
            let mut rec = FutureRecord::to(&args.topic)
                .key(r.user_id.as_bytes())
                .payload(r.line.as_bytes());
            loop {
                match producer.send_result(rec) {
                    Ok(_) => break,
                    Err((_, back)) => {
                        rec = back;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(60))?;
        let secs = started.elapsed().as_secs_f64();
        let offered = if args.rate > 0 {
            format!(
                "; requested {}/s, at most {} ms behind it",
                args.rate,
                behind.as_millis()
            )
        } else {
            String::new()
        };
        eprintln!(
            "vigil gen: produced {} records for {} sessions to {} in {secs:.3} s ({:.0} records/s{offered})",
            records.len(),
            labels.len(),
            args.topic,
            records.len() as f64 / secs.max(1e-9),
        );
        return Ok(());
    }
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) if p.as_os_str() != "-" => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        _ => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for r in &records {
        writeln!(out, "{}", r.line)?;
    }
    out.flush()?;
    eprintln!(
        "vigil gen: wrote {} records for {} sessions",
        records.len(),
        labels.len()
    );
    Ok(())
}
