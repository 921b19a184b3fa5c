//! `vigil replay`: runs exported IdP logs through the engine, offline.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::{Value, json};
use tracing::{debug, warn};
use vigil_engine::{Engine, Output};
use vigil_geo::GeoDb;
use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};
use vigil_model::{Action, RejectReason, Rejection};

use crate::config::{DEV_TOKEN_HASH_KEY, VigilConfig};
use crate::input::read_capped_line;

/// Most bytes of a rejected record kept in its dead letter.
const DEAD_LETTER_KEEP: usize = 64 * 1024;

/// What `vigil replay` was asked to do.
pub struct ReplayArgs {
    /// Input format.
    pub format: InputFormat,
    /// Input files; `-` is standard input.
    pub inputs: Vec<PathBuf>,
    /// Extra GeoIP databases from the command line.
    pub geoip: Vec<PathBuf>,
    /// Alerts file, else stdout.
    pub alerts: Option<PathBuf>,
    /// Revocations file, else stdout.
    pub revocations: Option<PathBuf>,
    /// Dead-letter file, else rejected records are only counted and logged.
    pub dead_letter: Option<PathBuf>,
    /// Whether to print the summary as JSON.
    pub summary_json: bool,
}

/// Counters for the summary.
#[derive(Default)]
struct Summary {
    records: u64,
    events: u64,
    /// Records of event types Vigil does not use.
    ignored: u64,
    rejected: BTreeMap<RejectReason, u64>,
    alerts_by_action: BTreeMap<&'static str, u64>,
    revocations: u64,
}

fn sink(path: &Option<PathBuf>) -> Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    })
}

/// Runs the replay; returns the process exit code.
pub fn run(cfg: &VigilConfig, args: &ReplayArgs) -> Result<()> {
    let key = match cfg.token_hash_key()? {
        Some(k) => k,
        None => {
            warn!(
                "No token-hash key configured (input.token_hash_key_file); using the development key. Token hashes are not secret in this run."
            );
            DEV_TOKEN_HASH_KEY.to_vec()
        }
    };
    let mut ctx = AdapterContext::new(&key);
    ctx.max_record_bytes = cfg.input.max_record_bytes;
    let mut engine = Engine::new(&cfg.engine).context("invalid engine configuration")?;
    let mut geo = GeoDb::new(cfg.geoip.cache_entries);
    for db in cfg.geoip.databases.iter().chain(&args.geoip) {
        geo.open(db)?;
    }
    let signer = crate::setup::signer(cfg)?;

    let same_file = args.alerts.is_some() && args.alerts == args.revocations;
    let mut alerts_out = sink(&args.alerts)?;
    let mut revocations_out: Option<Box<dyn Write>> =
        if same_file || args.revocations.is_none() && args.alerts.is_none() {
            None
        } else {
            Some(sink(&args.revocations)?)
        };
    let mut dead_out = match &args.dead_letter {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };

    let version = env!("CARGO_PKG_VERSION");
    let started = Instant::now();
    let progress = io::stderr().is_terminal();
    let mut summary = Summary::default();
    let mut out = Output::default();
    let mut buf = Vec::with_capacity(4096);
    let inputs: Vec<PathBuf> = if args.inputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.inputs.clone()
    };

    for input in &inputs {
        let name = input.display().to_string();
        let mut reader: Box<dyn BufRead> = if input == Path::new("-") {
            Box::new(BufReader::with_capacity(1 << 16, io::stdin().lock()))
        } else {
            Box::new(BufReader::with_capacity(
                1 << 16,
                File::open(input).with_context(|| format!("cannot open {name}"))?,
            ))
        };
        let mut line_no = 0u64;
        while let Some(len) = read_capped_line(&mut reader, &mut buf, ctx.max_record_bytes)
            .with_context(|| format!("cannot read {name}"))?
        {
            line_no += 1;
            if buf.iter().all(u8::is_ascii_whitespace) && len == buf.len() {
                continue;
            }
            summary.records += 1;
            let result = if len > ctx.max_record_bytes {
                Err(Rejection::new(
                    RejectReason::TooLarge,
                    format!(
                        "record is {len} bytes, larger than the {} byte limit",
                        ctx.max_record_bytes
                    ),
                ))
            } else {
                parse_record(&buf, args.format, &ctx).and_then(|mut ev| {
                    geo.enrich(&mut ev);
                    engine.process(&ev, &mut out)
                })
            };
            match result {
                Ok(()) => summary.events += 1,
                Err(r) if r.reason.is_ignorable() => {
                    summary.ignored += 1;
                    debug!(input = %name, line = line_no, detail = %r.detail, "Event type not used; ignored.");
                }
                Err(r) => {
                    *summary.rejected.entry(r.reason).or_default() += 1;
                    warn!(input = %name, line = line_no, reason = %r.reason, detail = %r.detail, "Record rejected.");
                    if let Some(d) = dead_out.as_mut() {
                        writeln!(d, "{}", dead_letter(&r, &name, line_no, &buf, len))?;
                    }
                }
            }
            for a in out.alerts.drain(..) {
                *summary
                    .alerts_by_action
                    .entry(a.action.as_str())
                    .or_default() += 1;
                writeln!(alerts_out, "{}", a.to_ocsf(version))?;
            }
            for r in out.revocations.drain(..) {
                summary.revocations += 1;
                let iat = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let claims = r.to_set(&cfg.output.issuer, &cfg.output.audience, iat);
                let line = match &signer {
                    Some(s) => json!({ "jti": r.id, "set_jwt": s.sign(&claims)? }),
                    None => claims,
                };
                let w = revocations_out.as_mut().unwrap_or(&mut alerts_out);
                writeln!(w, "{line}")?;
            }
            if progress && summary.records % 100_000 == 0 {
                eprint!(
                    "\r{} records, {} alerts, {} revocations",
                    summary.records,
                    summary.alerts_by_action.values().sum::<u64>(),
                    summary.revocations
                );
            }
        }
    }
    alerts_out.flush()?;
    if let Some(w) = revocations_out.as_mut() {
        w.flush()?;
    }
    if let Some(d) = dead_out.as_mut() {
        d.flush()?;
    }
    if progress && summary.records >= 100_000 {
        eprintln!();
    }
    print_summary(
        &summary,
        &engine,
        &geo,
        started.elapsed().as_secs_f64(),
        args.summary_json,
    );
    Ok(())
}

/// A dead-letter record: why, where from, and the (redacted, truncated) original.
fn dead_letter(r: &Rejection, input: &str, line: u64, bytes: &[u8], len: usize) -> Value {
    let kept = &bytes[..bytes.len().min(DEAD_LETTER_KEEP).min(len)];
    let mut record = json!({
        "reason": r.reason,
        "field": r.field,
        "detail": r.detail,
        "input": input,
        "line": line,
        "bytes": len,
        "truncated": kept.len() < len,
    });
    match std::str::from_utf8(kept) {
        Ok(text) => match serde_json::from_str::<Value>(text) {
            Ok(mut v) => {
                vigil_model::redact::redact(&mut v);
                record["record"] = v;
            }
            Err(_) => record["record_text"] = Value::String(text.to_owned()),
        },
        Err(_) => {
            record["record_base64"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(kept));
        }
    }
    record
}

fn print_summary(s: &Summary, engine: &Engine, geo: &GeoDb, secs: f64, as_json: bool) {
    let rate = if secs > 0.0 {
        s.records as f64 / secs
    } else {
        0.0
    };
    let rejected: u64 = s.rejected.values().sum();
    let ev = engine.evictions();
    let alerts: u64 = s.alerts_by_action.values().sum();
    if as_json {
        let v = json!({
            "records": s.records,
            "events": s.events - engine.stats.duplicates,
            "rejected": rejected,
            "ignored": s.ignored,
            "rejected_by_reason": s.rejected.iter().map(|(k, v)| (k.as_str(), *v)).collect::<BTreeMap<_, _>>(),
            "sessions": engine.stats.sessions_created,
            "live_sessions": engine.live_sessions(),
            "evictions": {"idle": ev.idle, "absolute": ev.absolute, "capacity": ev.capacity},
            "findings_by_detector": engine.stats.findings,
            "findings_below_alert": engine.stats.findings_below_alert,
            "duplicates_skipped": engine.stats.duplicates,
            "alerts": alerts,
            "alerts_by_action": s.alerts_by_action,
            "revocations": s.revocations,
            "geoip_cache": {"hits": geo.hits, "misses": geo.misses},
            "geoip_decode_errors": geo.decode_errors,
            "seconds": secs,
            "records_per_second": rate,
        });
        eprintln!("{v}");
        return;
    }
    eprintln!("vigil replay summary");
    eprintln!("  records read        {:>10}", s.records);
    eprintln!(
        "  events processed    {:>10}",
        s.events - engine.stats.duplicates
    );
    eprintln!("  records rejected    {:>10}", rejected);
    if s.ignored > 0 {
        eprintln!(
            "  records ignored     {:>10}  (event types Vigil does not use)",
            s.ignored
        );
    }
    if engine.stats.duplicates > 0 {
        eprintln!("  duplicates skipped  {:>10}", engine.stats.duplicates);
    }
    for (reason, n) in &s.rejected {
        eprintln!("    {:<18}{:>10}", reason.as_str(), n);
    }
    eprintln!(
        "  sessions seen       {:>10}",
        engine.stats.sessions_created
    );
    eprintln!(
        "  findings            {:>10}",
        engine.stats.findings.values().sum::<u64>()
    );
    for (d, n) in &engine.stats.findings {
        eprintln!("    {:<18}{:>10}", d, n);
    }
    eprintln!("  alerts              {:>10}", alerts);
    for a in [Action::Alert, Action::StepUp, Action::Revoke] {
        if let Some(n) = s.alerts_by_action.get(a.as_str()) {
            eprintln!("    {:<18}{:>10}", a.as_str(), n);
        }
    }
    eprintln!("  revocations         {:>10}", s.revocations);
    if geo.decode_errors > 0 {
        eprintln!(
            "  GeoIP undecodable   {:>10}  (records a database holds in a layout Vigil does not read; those addresses went unenriched)",
            geo.decode_errors
        );
    }
    eprintln!(
        "  elapsed             {:>9.3}s  ({:.0} records/s)",
        secs, rate
    );
}
