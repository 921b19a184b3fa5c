//! `vigil eval`: runs labelled traffic through detection and measures it: recall per attack
//! type, false positives per benign trap, precision per detector, and detection delay from
//! the first malicious event to the revocation.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_engine::{Engine, Output};
use vigil_geo::GeoDb;
use vigil_model::adapters::{InputFormat, parse_record};

use crate::config::VigilConfig;
use crate::input::read_capped_line;

/// Attacks that must be revoked on their first malicious event (the target of the detection
/// quality issue: replays and concurrent use leave no doubt at the first use).
const REVOKE_AT_ONCE: [&str; 5] = [
    "aitm_cookie_replay",
    "infostealer_replay_cloned_ua",
    "token_replay_other_session",
    "session_used_after_logout",
    "concurrent_use",
];

/// One session's label, as `vigil gen --labels` and the sample `.labels.json` files write it.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelIn {
    /// `attack` or `benign`.
    pub class: String,
    /// Attack type or benign trap.
    pub name: String,
    /// Whether it must be revoked.
    #[serde(default)]
    pub revoke: bool,
    /// Source id of the first malicious event.
    #[serde(default)]
    pub first_malicious: Option<String>,
}

/// Options of `vigil eval`.
pub struct EvalArgs {
    /// Labels file.
    pub labels: PathBuf,
    /// Inputs.
    pub inputs: Vec<PathBuf>,
    /// Input format.
    pub format: InputFormat,
    /// Extra GeoIP databases.
    pub geoip: Vec<PathBuf>,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
}

/// What happened to one session.
#[derive(Debug, Default)]
struct Seen {
    /// Source ids of its events, in order, with their times.
    events: Vec<(String, i64)>,
    /// Detectors that alerted, with the source id of the alerting event.
    alerts: Vec<(&'static str, String)>,
    /// Source id and time of the revoking event.
    revoked_at: Option<(String, i64)>,
}

/// Per attack type.
#[derive(Debug, Default, Serialize)]
struct AttackRow {
    sessions: u64,
    detected: u64,
    must_revoke: u64,
    revoked: u64,
    recall: f64,
    revoked_on_first_malicious: u64,
    delay_events_max: Option<u64>,
    delay_seconds_p50: Option<f64>,
    delay_seconds_max: Option<f64>,
}

/// Per benign trap.
#[derive(Debug, Default, Serialize)]
struct TrapRow {
    sessions: u64,
    alerted: u64,
    revoked: u64,
    false_positive_rate: f64,
}

/// Per detector.
#[derive(Debug, Default, Serialize)]
struct DetectorRow {
    alerts_on_attacks: u64,
    alerts_on_benign: u64,
    alerts_unlabelled: u64,
    attack_sessions: u64,
    precision: Option<f64>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Runs the evaluation; prints the table and writes the JSON report when asked. Returns
/// whether every target was met.
pub fn run(cfg: &VigilConfig, args: &EvalArgs) -> Result<bool> {
    let labels: BTreeMap<String, LabelIn> = serde_json::from_str(
        &std::fs::read_to_string(&args.labels)
            .with_context(|| format!("cannot read {}", args.labels.display()))?,
    )
    .with_context(|| {
        format!(
            "{} is not a labels file (session id -> label)",
            args.labels.display()
        )
    })?;
    let key = cfg
        .token_hash_key()?
        .unwrap_or_else(|| crate::config::DEV_TOKEN_HASH_KEY.to_vec());
    let ctx = crate::setup::adapter(cfg, &key);
    let mut engine = Engine::new(&cfg.engine).context("invalid engine configuration")?;
    let mut geo = GeoDb::new(cfg.geoip.cache_entries);
    for db in cfg.geoip.databases.iter().chain(&args.geoip) {
        geo.open(db)?;
    }
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut out = Output::default();
    let mut buf = Vec::with_capacity(4096);
    let (mut records, mut rejected, mut ignored) = (0u64, 0u64, 0u64);
    for input in &args.inputs {
        let name = input.display().to_string();
        let mut reader: Box<dyn BufRead> = if input == Path::new("-") {
            Box::new(BufReader::new(io::stdin().lock()))
        } else {
            Box::new(BufReader::new(
                File::open(input).with_context(|| format!("cannot open {name}"))?,
            ))
        };
        while let Some(len) = read_capped_line(&mut reader, &mut buf, ctx.max_record_bytes)
            .with_context(|| format!("cannot read {name}"))?
        {
            if buf.iter().all(u8::is_ascii_whitespace) && len == buf.len() {
                continue;
            }
            records += 1;
            let ev = match parse_record(&buf, args.format, &ctx) {
                Ok(mut ev) => {
                    geo.enrich(&mut ev);
                    ev
                }
                Err(r) => {
                    if r.reason.is_ignorable() {
                        ignored += 1;
                    } else {
                        rejected += 1;
                    }
                    continue;
                }
            };
            if engine.process(&ev, &mut out).is_err() {
                rejected += 1;
            }
            if !ev.session_id.is_empty() {
                seen.entry(ev.session_id.clone())
                    .or_default()
                    .events
                    .push((ev.source_id.clone(), ev.time_ms));
            }
            for a in out.alerts.drain(..) {
                seen.entry(a.subject.session_id.clone())
                    .or_default()
                    .alerts
                    .push((a.finding.detector, a.source_id.clone()));
            }
            for r in out.revocations.drain(..) {
                let s = seen.entry(r.subject.session_id.clone()).or_default();
                s.revoked_at
                    .get_or_insert((r.source_id.clone(), r.event_time_ms));
            }
        }
    }
    if geo.decode_errors > 0 {
        tracing::warn!(
            records = geo.decode_errors,
            "GeoIP records found but not decodable (a database layout Vigil does not read); those addresses went unenriched."
        );
    }

    let mut attacks: BTreeMap<String, AttackRow> = BTreeMap::new();
    let mut traps: BTreeMap<String, TrapRow> = BTreeMap::new();
    let mut detectors: BTreeMap<&'static str, DetectorRow> = BTreeMap::new();
    let mut delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let empty = Seen::default();
    for (sid, label) in &labels {
        let s = seen.get(sid).unwrap_or(&empty);
        let alerted = !s.alerts.is_empty();
        if label.class == "attack" {
            let row = attacks.entry(label.name.clone()).or_default();
            row.sessions += 1;
            row.detected += u64::from(alerted);
            row.must_revoke += u64::from(label.revoke);
            row.revoked += u64::from(label.revoke && s.revoked_at.is_some());
            if let (Some(first), Some((rid, rt))) = (&label.first_malicious, &s.revoked_at) {
                let pos = |id: &str| s.events.iter().position(|(e, _)| e == id);
                if let (Some(a), Some(b)) = (pos(first), pos(rid)) {
                    let events = b.saturating_sub(a) as u64;
                    row.delay_events_max = Some(row.delay_events_max.unwrap_or(0).max(events));
                    row.revoked_on_first_malicious += u64::from(events == 0);
                    let secs = ((rt - s.events[a].1).max(0)) as f64 / 1000.0;
                    delays.entry(label.name.clone()).or_default().push(secs);
                }
            }
        } else {
            let row = traps.entry(label.name.clone()).or_default();
            row.sessions += 1;
            row.alerted += u64::from(alerted);
            row.revoked += u64::from(s.revoked_at.is_some());
        }
        let mut fired: Vec<&'static str> = s.alerts.iter().map(|(d, _)| *d).collect();
        fired.sort_unstable();
        for d in &s.alerts {
            let row = detectors.entry(d.0).or_default();
            if label.class == "attack" {
                row.alerts_on_attacks += 1;
            } else {
                row.alerts_on_benign += 1;
            }
        }
        fired.dedup();
        if label.class == "attack" {
            for d in fired {
                detectors.entry(d).or_default().attack_sessions += 1;
            }
        }
    }
    let mut unlabelled_alerted = 0u64;
    for (sid, s) in &seen {
        if !labels.contains_key(sid) && !s.alerts.is_empty() {
            unlabelled_alerted += 1;
            for d in &s.alerts {
                detectors.entry(d.0).or_default().alerts_unlabelled += 1;
            }
        }
    }
    for (name, row) in attacks.iter_mut() {
        row.recall = ratio(row.detected, row.sessions);
        if let Some(d) = delays.get_mut(name) {
            d.sort_by(f64::total_cmp);
            row.delay_seconds_p50 = d.get(d.len() / 2).copied();
            row.delay_seconds_max = d.last().copied();
        }
    }
    for row in traps.values_mut() {
        row.false_positive_rate = ratio(row.alerted, row.sessions).min(1.0);
        if row.sessions == 0 {
            row.false_positive_rate = 0.0;
        }
    }
    for row in detectors.values_mut() {
        let all = row.alerts_on_attacks + row.alerts_on_benign;
        row.precision = (all > 0).then(|| ratio(row.alerts_on_attacks, all));
    }
    let attack_sessions: u64 = attacks.values().map(|r| r.sessions).sum();
    let detected: u64 = attacks.values().map(|r| r.detected).sum();
    let benign_sessions: u64 = traps.values().map(|r| r.sessions).sum();
    let fp_sessions: u64 = traps.values().map(|r| r.alerted).sum();
    let fp_rate = if benign_sessions == 0 {
        0.0
    } else {
        fp_sessions as f64 / benign_sessions as f64
    };

    // Targets.
    let mut targets = Vec::new();
    let worst_recall = attacks
        .iter()
        .map(|(n, r)| (r.recall, n.as_str()))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    targets.push((
        "recall >= 0.99 for every attack type".to_owned(),
        worst_recall.is_none_or(|(r, _)| r >= 0.99),
        worst_recall.map_or("no attacks".into(), |(r, n)| format!("lowest {r:.3} ({n})")),
    ));
    targets.push((
        "false-positive sessions <= 0.1%".to_owned(),
        fp_rate <= 0.001,
        format!(
            "{fp_sessions} of {benign_sessions} ({:.3}%)",
            fp_rate * 100.0
        ),
    ));
    let noisy: Vec<&str> = traps
        .iter()
        .filter(|(_, r)| r.alerted > 0)
        .map(|(n, _)| n.as_str())
        .collect();
    targets.push((
        "no alert on any benign trap".to_owned(),
        noisy.is_empty(),
        if noisy.is_empty() {
            "none alerted".into()
        } else {
            format!("alerted: {}", noisy.join(", "))
        },
    ));
    let late: Vec<String> = REVOKE_AT_ONCE
        .iter()
        .filter_map(|n| attacks.get(*n).map(|r| (n, r)))
        .filter(|(_, r)| r.revoked_on_first_malicious < r.must_revoke)
        .map(|(n, r)| format!("{n} {}/{}", r.revoked_on_first_malicious, r.must_revoke))
        .collect();
    targets.push((
        "revocation on the first malicious event for replay and concurrent use".to_owned(),
        late.is_empty(),
        if late.is_empty() {
            "all".into()
        } else {
            format!("not all: {}", late.join(", "))
        },
    ));
    let all_met = targets.iter().all(|t| t.1);

    let stdout = io::stdout();
    let mut o = io::BufWriter::new(stdout.lock());
    writeln!(
        o,
        "vigil eval: {records} records ({rejected} rejected, {ignored} of unused event types), {} labelled sessions ({attack_sessions} attacks, {benign_sessions} benign)\n",
        labels.len()
    )?;
    writeln!(
        o,
        "{:<30} {:>8} {:>8} {:>7} {:>9} {:>10} {:>11} {:>10}",
        "attack",
        "sessions",
        "detected",
        "recall",
        "revoked",
        "at first",
        "delay p50 s",
        "delay max"
    )?;
    for (n, r) in &attacks {
        writeln!(
            o,
            "{:<30} {:>8} {:>8} {:>7.3} {:>4}/{:<4} {:>10} {:>11} {:>10}",
            n,
            r.sessions,
            r.detected,
            r.recall,
            r.revoked,
            r.must_revoke,
            r.revoked_on_first_malicious,
            r.delay_seconds_p50
                .map_or("-".into(), |d| format!("{d:.1}")),
            r.delay_events_max.map_or("-".into(), |e| format!("{e} ev")),
        )?;
    }
    writeln!(
        o,
        "\n{:<30} {:>8} {:>8} {:>9}",
        "benign trap", "sessions", "alerted", "FP rate"
    )?;
    for (n, r) in &traps {
        writeln!(
            o,
            "{:<30} {:>8} {:>8} {:>9.4}",
            n, r.sessions, r.alerted, r.false_positive_rate
        )?;
    }
    writeln!(
        o,
        "\n{:<20} {:>14} {:>14} {:>10} {:>16}",
        "detector", "alerts/attack", "alerts/benign", "precision", "attack sessions"
    )?;
    for (n, r) in &detectors {
        writeln!(
            o,
            "{:<20} {:>14} {:>14} {:>10} {:>16}",
            n,
            r.alerts_on_attacks,
            r.alerts_on_benign,
            r.precision.map_or("-".into(), |p| format!("{p:.3}")),
            r.attack_sessions
        )?;
    }
    writeln!(
        o,
        "\noverall: recall {:.4} ({detected}/{attack_sessions}), false-positive sessions {fp_sessions}/{benign_sessions}, alerted unlabelled sessions {unlabelled_alerted}",
        ratio(detected, attack_sessions)
    )?;
    for (t, ok, detail) in &targets {
        writeln!(
            o,
            "target {}: {t} ({detail})",
            if *ok { "met   " } else { "MISSED" }
        )?;
    }
    o.flush()?;

    if let Some(p) = &args.json {
        let report = json!({
            "records": records,
            "rejected": rejected,
            "ignored": ignored,
            "attack_sessions": attack_sessions,
            "benign_sessions": benign_sessions,
            "recall": ratio(detected, attack_sessions),
            "false_positive_sessions": fp_sessions,
            "false_positive_rate": fp_rate,
            "unlabelled_alerted_sessions": unlabelled_alerted,
            "attacks": attacks,
            "benign_traps": traps,
            "detectors": detectors,
            "targets": targets.iter().map(|(t, ok, d)| json!({"target": t, "met": ok, "detail": d})).collect::<Vec<_>>(),
        });
        std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(all_met)
}
