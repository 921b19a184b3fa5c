//! Engine `process` per event with many live sessions (deterministic synthetic sessions), and
//! native parse plus process together: the per-core figure issue 4's target speaks of.
//!
//! Every timed batch is new events (fresh record ids, later times): replaying one batch would
//! measure the engine's duplicate check instead of detection. Events' state is read ahead
//! (`Engine::prefetch`) a group of `PREFETCH_GROUP` at a time, while the group before is
//! processed, as `vigil run` does; `ENGINE_PREFETCH=0` measures without.
//!
//! Before the timed batches, each table size also prints its pauses: the longest and the
//! rarest-slow single events over enough events to cross an expiry pass of every table
//! (hdrhistogram of each event's time), and one inventory scan (the per-partition session
//! inventory `vigil run` publishes every few seconds), taken in the steps the runtime takes. A pause is time a partition's records
//! wait whatever the throughput: its p99 latency at scale.
//!
//! After the timed batches, three changelog flushes (each what 20,000 events changed, encoded
//! as a commit encodes it) and one account change (a user deactivated) are timed alone, and
//! then 50,000 new sessions into a table at its cap.
//!
//! `ENGINE_LIFETIMES=1` runs everything with a lifetime policy for human sessions (governance
//! `max_idle`), which the engine then enforces as it goes.
//!
//! `ENGINE_SESSIONS` chooses the live-session counts (default `100000,1000000`);
//! `ENGINE_SESSIONS=10000000` needs about 20 GB of memory and a few minutes to set up. Sessions
//! belong to at most [`native::MAX_USERS`] users.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use vigil_engine::inventory::{INVENTORY_STEP, InventoryScan};
use vigil_engine::{EncodedChanges, Engine, EngineConfig, Output, PREFETCH_GROUP, ValueEncoding};
use vigil_model::adapters::{AdapterContext, InputFormat, parse_record, parse_record_into};
use vigil_model::{SessionEvent, SourceFormat};

#[path = "support/native.rs"]
mod native;

/// The allocator `vigil` itself runs with, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 10_000;

/// A native record for session `s` at second `t`, record id `e{seq}`.
fn line(s: usize, t: usize, seq: usize) -> String {
    native::line(s, t, &format!("e{seq}"))
}

/// The next batch of lines: follow-up events spread over the live sessions, in time order.
fn batch(sessions: usize, round: usize) -> Vec<String> {
    (0..BATCH)
        .map(|i| {
            let seq = sessions + round * BATCH + i;
            line((seq * 7919) % sessions, 1 + seq / 100, seq)
        })
        .collect()
}

fn engine(c: &mut Criterion) {
    let ctx = AdapterContext::new(b"bench-key");
    // `ENGINE_PREFETCH=0` measures without the read-ahead `vigil run` does (each group's state
    // read while the group before it is processed).
    let prefetch = std::env::var("ENGINE_PREFETCH").map_or(true, |v| v != "0");
    // `ENGINE_LIFETIMES=1` gives human sessions a lifetime policy (12 hours' idle, which no
    // session here reaches): what the engine pays to watch for it.
    let lifetimes = std::env::var("ENGINE_LIFETIMES").is_ok_and(|v| v == "1");
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    let counts: Vec<usize> = std::env::var("ENGINE_SESSIONS")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("ENGINE_SESSIONS: comma-separated counts")
        })
        .collect();
    for sessions in counts {
        let mut cfg = EngineConfig::default();
        if lifetimes {
            cfg.governance.human.max_idle = Some(vigil_engine::HumanDuration::secs(12 * 3600));
        }
        cfg.state.max_sessions = sessions * 2;
        cfg.state.max_tokens = sessions * 2;
        cfg.state.max_users = sessions.min(native::MAX_USERS) * 2;
        let mut engine = Engine::new(&cfg).expect("valid config");
        let mut out = Output::default();
        for s in 0..sessions {
            let ev =
                parse_record(line(s, 0, s).as_bytes(), InputFormat::Native, &ctx).expect("valid");
            engine.process(&ev, &mut out).expect("in order");
            out.clear();
        }
        let mut round = 0usize;
        pauses(&mut engine, &mut out, &ctx, sessions, &mut round);
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(BenchmarkId::new("process", sessions), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let events: Vec<_> = batch(sessions, round)
                        .iter()
                        .map(|l| {
                            parse_record(l.as_bytes(), InputFormat::Native, &ctx).expect("valid")
                        })
                        .collect();
                    let t = Instant::now();
                    // As `vigil run` does: each group's state read while the group before it
                    // is processed.
                    let groups: Vec<&[_]> = events.chunks(PREFETCH_GROUP).collect();
                    for (i, group) in groups.iter().enumerate() {
                        if let Some(next) = groups.get(i + 1).filter(|_| prefetch) {
                            for ev in next.iter() {
                                engine.prefetch(ev);
                            }
                        }
                        for ev in group.iter() {
                            let _ = engine.process(ev, &mut out);
                            out.clear();
                        }
                    }
                    total += t.elapsed();
                }
                total
            })
        });
        let mut spent = Vec::with_capacity(2 * PREFETCH_GROUP);
        g.bench_function(
            BenchmarkId::new("parse_native_and_process", sessions),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        let lines = batch(sessions, round);
                        let t = Instant::now();
                        // As `vigil run` does: records read a group ahead of the group
                        // processed, and the group's state read as it is read; each record
                        // parsed into the strings of an event already processed.
                        let mut lines = lines.iter();
                        let mut group = Vec::with_capacity(PREFETCH_GROUP);
                        let mut ahead = Vec::with_capacity(PREFETCH_GROUP);
                        let mut read_ahead =
                            |engine: &Engine, into: &mut Vec<_>, spent: &mut Vec<_>| {
                                for l in lines.by_ref().take(PREFETCH_GROUP) {
                                    let mut ev = spent.pop().unwrap_or_else(|| {
                                        SessionEvent::empty(SourceFormat::Native)
                                    });
                                    parse_record_into(
                                        l.as_bytes(),
                                        InputFormat::Native,
                                        &ctx,
                                        &mut ev,
                                    )
                                    .expect("valid");
                                    into.push(ev);
                                }
                                for ev in into.iter().filter(|_| prefetch) {
                                    engine.prefetch(ev);
                                }
                            };
                        read_ahead(&engine, &mut group, &mut spent);
                        while !group.is_empty() {
                            read_ahead(&engine, &mut ahead, &mut spent);
                            for ev in group.drain(..) {
                                let _ = engine.process(&ev, &mut out);
                                out.clear();
                                spent.push(ev);
                            }
                            std::mem::swap(&mut group, &mut ahead);
                        }
                        total += t.elapsed();
                    }
                    total
                })
            },
        );
        flush(&mut engine, &mut out, &ctx, sessions, &mut round);
        lifecycle(&mut engine, &mut out, &ctx, sessions);
        drop(engine);
        full_table(&ctx, sessions);
    }
    g.finish();
}

/// New sessions into a table at its cap (`state.max_sessions`), each making room for itself:
/// what an instance pays while it holds more sessions than it is sized for.
fn full_table(ctx: &AdapterContext, sessions: usize) {
    let mut cfg = EngineConfig::default();
    cfg.state.max_sessions = sessions;
    cfg.state.max_tokens = sessions * 4;
    cfg.state.max_users = native::MAX_USERS * 2;
    let mut engine = Engine::new(&cfg).expect("valid config");
    let mut out = Output::default();
    for s in 0..sessions {
        let ev = parse_record(line(s, 0, s).as_bytes(), InputFormat::Native, ctx).expect("valid");
        engine.process(&ev, &mut out).expect("in order");
        out.clear();
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let extra = 50_000;
    for s in sessions..sessions + extra {
        let ev = parse_record(line(s, 1, s).as_bytes(), InputFormat::Native, ctx).expect("valid");
        let t = Instant::now();
        let _ = engine.process(&ev, &mut out);
        hist.saturating_record(t.elapsed().as_nanos() as u64);
        out.clear();
    }
    eprintln!(
        "engine/full_table/{sessions}: {extra} new sessions into a full table: mean {:.2} us, p99.99 {:.1} us, max {:.1} ms, {} live after",
        hist.mean() / 1e3,
        hist.value_at_quantile(0.9999) as f64 / 1e3,
        hist.max() as f64 / 1e6,
        engine.live_sessions()
    );
}

/// Times the changelog flush a partition task makes at each commit: the state `FLUSH_EVENTS`
/// events changed (each a different session here, with its token binding and its user's
/// baseline), encoded for the changelog. The task processes no record meanwhile, so at scale
/// this is a pause every commit interval. Three flushes, each after events of its own.
fn flush(
    engine: &mut Engine,
    out: &mut Output,
    ctx: &AdapterContext,
    sessions: usize,
    round: &mut usize,
) {
    const FLUSH_EVENTS: usize = 2 * BATCH;
    engine.track_changes();
    let mut encoded = EncodedChanges::default();
    engine.drain_encoded(ValueEncoding::Binary, &mut encoded);
    let mut spent = Vec::new();
    for _ in 0..3 {
        for _ in 0..FLUSH_EVENTS / BATCH {
            *round += 1;
            for l in batch(sessions, *round) {
                let ev = parse_record(l.as_bytes(), InputFormat::Native, ctx).expect("valid");
                let _ = engine.process(&ev, out);
                out.clear();
            }
        }
        encoded.clear();
        let t = Instant::now();
        engine.drain_encoded(ValueEncoding::Binary, &mut encoded);
        spent.push((t.elapsed(), encoded.len()));
    }
    let per_record: Vec<String> = spent
        .iter()
        .map(|(t, n)| format!("{:.2}", t.as_secs_f64() * 1e6 / *n as f64))
        .collect();
    eprintln!(
        "engine/flush/{sessions}: {} records after {FLUSH_EVENTS} events, three flushes: {} ms; per record {} us",
        spent[0].1,
        spent
            .iter()
            .map(|(t, _)| format!("{:.1}", t.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(" / "),
        per_record.join(" / ")
    );
}

/// Times one account change (a deactivation, which revokes every live session of the user):
/// the record is broadcast to every partition, so each pays this.
fn lifecycle(engine: &mut Engine, out: &mut Output, ctx: &AdapterContext, sessions: usize) {
    let wm = engine.watermark().unwrap_or(0);
    let line = format!(
        r#"{{"id":"lc-{sessions}","time":{wm},"kind":"user_lifecycle","user_id":"user-1","lifecycle":"deactivated"}}"#
    );
    let ev = parse_record(line.as_bytes(), InputFormat::Native, ctx).expect("valid");
    let t = Instant::now();
    let _ = engine.process(&ev, out);
    eprintln!(
        "engine/lifecycle/{sessions}: one account change: {:.2} ms, {} sessions revoked",
        t.elapsed().as_secs_f64() * 1e3,
        out.revocations.len()
    );
    out.clear();
}

/// Times each event one by one over enough batches for the engine to look at every table
/// entry for expiry at least once (it allows itself 8 entries per event), and one inventory
/// scan in the runtime's steps; prints both.
fn pauses(
    engine: &mut Engine,
    out: &mut Output,
    ctx: &AdapterContext,
    sessions: usize,
    round: &mut usize,
) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    // Sessions, their tokens and their users: the entries a pass looks at.
    let entries = 2 * sessions + sessions.min(native::MAX_USERS);
    let batches = (entries / 8).div_ceil(BATCH) + 2;
    for _ in 0..batches {
        *round += 1;
        let events: Vec<_> = batch(sessions, *round)
            .iter()
            .map(|l| parse_record(l.as_bytes(), InputFormat::Native, ctx).expect("valid"))
            .collect();
        for (i, ev) in events.iter().enumerate() {
            if let Some(next) = events.get(i + 1) {
                engine.prefetch(next);
            }
            let t = Instant::now();
            let _ = engine.process(ev, out);
            hist.saturating_record(t.elapsed().as_nanos() as u64);
            out.clear();
        }
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    eprintln!(
        "engine/pauses/{sessions}: {} events one by one: mean {:.2} us, p50 {:.1} us, p99 {:.1} us, p99.99 {:.1} us, max {:.1} ms",
        hist.len(),
        hist.mean() / 1e3,
        us(0.5),
        us(0.99),
        us(0.9999),
        hist.max() as f64 / 1e6
    );
    // The inventory `vigil run` publishes, in the steps it takes it in (one per tick).
    let wm = engine.watermark().unwrap_or(0);
    let mut scan = InventoryScan::default();
    let (mut steps, mut longest, t) = (0, Duration::ZERO, Instant::now());
    let inv = loop {
        let s = Instant::now();
        let done = engine.inventory_step(&mut scan, wm, INVENTORY_STEP);
        longest = longest.max(s.elapsed());
        steps += 1;
        if let Some(inv) = done {
            break inv;
        }
    };
    eprintln!(
        "engine/inventory/{sessions}: {} sessions in {steps} steps of {INVENTORY_STEP}: {:.1} ms in all, longest step {:.1} ms",
        inv.sessions,
        t.elapsed().as_secs_f64() * 1e3,
        longest.as_secs_f64() * 1e3
    );
}

criterion_group!(benches, engine);
criterion_main!(benches);
