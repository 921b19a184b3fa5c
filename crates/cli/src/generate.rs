//! `vigil gen`: writes labelled synthetic IdP traffic to a file or a Kafka topic.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
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
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .create()?;
        let started = std::time::Instant::now();
        for (i, r) in records.iter().enumerate() {
            if args.rate > 0 {
                let due = Duration::from_secs_f64(i as f64 / f64::from(args.rate));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
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
        eprintln!(
            "vigil gen: produced {} records for {} sessions to {}",
            records.len(),
            labels.len(),
            args.topic
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
