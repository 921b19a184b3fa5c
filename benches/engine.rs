//! Engine `process` per event with many live sessions (deterministic synthetic sessions), and
//! native parse plus process together: the per-core figure issue 4's target speaks of.
//!
//! Every timed batch is new events (fresh record ids, later times): replaying one batch would
//! measure the engine's duplicate check instead of detection. Each event's state is read
//! ahead (`Engine::prefetch`) while the one before it is processed, as `vigil run` does;
//! `ENGINE_PREFETCH=0` measures without.
//!
//! `ENGINE_SESSIONS` chooses the live-session counts (default `100000,1000000`);
//! `ENGINE_SESSIONS=10000000` needs about 20 GB of memory and a few minutes to set up. Sessions
//! belong to at most [`native::MAX_USERS`] users.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vigil_engine::{Engine, EngineConfig, Output};
use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};

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
    // `ENGINE_PREFETCH=0` measures without the read-ahead `vigil run` does (each event's state
    // read while the event before it is processed).
    let prefetch = std::env::var("ENGINE_PREFETCH").map_or(true, |v| v != "0");
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
                    for (i, ev) in events.iter().enumerate() {
                        if let Some(next) = events.get(i + 1).filter(|_| prefetch) {
                            std::hint::black_box(engine.prefetch(next));
                        }
                        let _ = engine.process(ev, &mut out);
                        out.clear();
                    }
                    total += t.elapsed();
                }
                total
            })
        });
        g.bench_function(
            BenchmarkId::new("parse_native_and_process", sessions),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        let lines = batch(sessions, round);
                        let parse = |l: &String| {
                            parse_record(l.as_bytes(), InputFormat::Native, &ctx).expect("valid")
                        };
                        let t = Instant::now();
                        // As `vigil run` does: each record read one ahead of the one processed.
                        let mut lines = lines.iter();
                        let mut next = lines.next().map(parse);
                        while let Some(ev) = next.take() {
                            next = lines.next().map(parse);
                            if let Some(n) = next.as_ref().filter(|_| prefetch) {
                                std::hint::black_box(engine.prefetch(n));
                            }
                            let _ = engine.process(&ev, &mut out);
                            out.clear();
                        }
                        total += t.elapsed();
                    }
                    total
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
