//! Encoding costs: SETs (unsigned and ES256-signed), OCSF alerts, changelog records; and what
//! a restore does with each changelog record read (decode it, put it into the engine).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil_engine::{
    EncodedChanges, Engine, EngineConfig, Output, StateKey, StateValue, ValueEncoding,
};
use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};
use vigil_sign::SetSigner;
use vigil_testkit::render::Format;

#[path = "support/native.rs"]
mod native;

/// The allocator `vigil` itself runs with, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn outputs(c: &mut Criterion) {
    // Real outputs: the native sample story through the engine.
    let ctx = AdapterContext::new(b"bench-key");
    let mut engine = Engine::new(&EngineConfig::default()).expect("defaults");
    engine.track_changes();
    let mut geo = vigil_geo::GeoDb::new(1000);
    geo.add("test", vigil_testkit::geoip::test_database())
        .expect("geo");
    let (text, _) = vigil_testkit::samples::render(vigil_testkit::render::Format::Native);
    let mut out = Output::default();
    for l in text.lines() {
        let mut ev = parse_record(l.as_bytes(), InputFormat::Native, &ctx).expect("valid");
        geo.enrich(&mut ev);
        engine.process(&ev, &mut out).expect("in order");
    }
    let mut changes = Vec::new();
    engine.drain_changes(&mut changes);
    let encoded: Vec<(Vec<u8>, Vec<u8>)> = changes
        .iter()
        .filter_map(|(k, v)| Some((k.encode(), v.as_ref()?.encode())))
        .collect();
    let signer = SetSigner::from_p256_scalar(&[7u8; 32], "bench").expect("key");

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(out.revocations.len() as u64));
    // What `vigil run` does (claims and findings serialised straight into bytes), beside the
    // JSON-tree and `Display` paths it replaced, so one run gives the ratio.
    g.bench_function("set_unsigned", |b| {
        b.iter(|| {
            for r in &out.revocations {
                std::hint::black_box(
                    serde_json::to_vec(&r.set_claims("https://v/", "aud", 1)).expect("serialises"),
                );
            }
        })
    });
    g.bench_function("set_unsigned_tree", |b| {
        b.iter(|| {
            for r in &out.revocations {
                std::hint::black_box(r.to_set("https://v/", "aud", 1).to_string());
            }
        })
    });
    g.bench_function("set_es256", |b| {
        b.iter(|| {
            for r in &out.revocations {
                std::hint::black_box(
                    signer
                        .sign(&r.set_claims("https://v/", "aud", 1))
                        .expect("signs"),
                );
            }
        })
    });
    g.throughput(Throughput::Elements(out.alerts.len() as u64));
    g.bench_function("alert_ocsf", |b| {
        b.iter(|| {
            for a in &out.alerts {
                std::hint::black_box(serde_json::to_vec(&a.to_ocsf("0")).expect("serialises"));
            }
        })
    });
    // As `vigil run`'s partition tasks write them: into one buffer, kept between alerts.
    let mut body = Vec::new();
    g.bench_function("alert_ocsf_into", |b| {
        b.iter(|| {
            for a in &out.alerts {
                body.clear();
                serde_json::to_writer(&mut body, &a.to_ocsf("0")).expect("serialises");
                std::hint::black_box(&body);
            }
        })
    });
    g.bench_function("alert_ocsf_display", |b| {
        b.iter(|| {
            for a in &out.alerts {
                std::hint::black_box(a.to_ocsf("0").to_string());
            }
        })
    });
    g.throughput(Throughput::Elements(changes.len() as u64));
    g.bench_function("changelog_encode", |b| {
        b.iter(|| {
            for (k, v) in &changes {
                std::hint::black_box((k.encode(), v.as_ref().map(StateValue::encode)));
            }
        })
    });
    g.throughput(Throughput::Elements(encoded.len() as u64));
    g.bench_function("changelog_decode", |b| {
        b.iter(|| {
            for (k, v) in &encoded {
                let key = StateKey::decode(k).expect("key");
                std::hint::black_box(StateValue::decode(&key, v).expect("value"));
            }
        })
    });
    g.finish();
}

/// What a partition task's flush does: drain what changed since the last flush, encoded for
/// the changelog, from the engine's tables (every session touched once since the last one).
fn flush(c: &mut Criterion) {
    const SESSIONS: usize = 10_000;
    let ctx = AdapterContext::new(b"bench-key");
    let mut engine = Engine::new(&EngineConfig::default()).expect("defaults");
    engine.track_changes();
    let mut out = Output::default();
    let mut round = 0usize;
    let mut touch = |engine: &mut Engine| {
        round += 1;
        for s in 0..SESSIONS {
            let line = native::line(s, round, &format!("e{s}-{round}"));
            let ev = parse_record(line.as_bytes(), InputFormat::Native, &ctx).expect("valid");
            engine.process(&ev, &mut out).expect("in order");
            out.clear();
        }
    };
    let mut buf = EncodedChanges::default();
    // The first flush writes the new sessions, users and tokens; later ones what changed.
    touch(&mut engine);
    engine.drain_encoded(ValueEncoding::Binary, &mut buf);
    buf.clear();
    touch(&mut engine);
    engine.drain_encoded(ValueEncoding::Binary, &mut buf);
    let per_flush = buf.len();
    let mut g = c.benchmark_group("flush");
    g.sample_size(20);
    g.throughput(Throughput::Elements(per_flush as u64));
    g.bench_function("changelog_drain_encoded", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                touch(&mut engine);
                buf.clear();
                let t = Instant::now();
                engine.drain_encoded(ValueEncoding::Binary, &mut buf);
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

/// What a partition's restore does with the records it reads: decode each and put it into a
/// new engine (`Engine::restore_encoded`, as `vigil run` does), over the changelog of the
/// sample story at 500 copies in the four formats, GeoIP-enriched: sessions, token bindings,
/// user baselines and the watermark, as one flush at the end wrote them.
fn restore(c: &mut Criterion) {
    const FORMATS: [Format; 4] = [Format::Native, Format::Okta, Format::Entra, Format::Ocsf];
    let ctx = AdapterContext::new(b"bench-key");
    let mut geo = vigil_geo::GeoDb::new(100_000);
    geo.add("test", vigil_testkit::geoip::test_database())
        .expect("geo");
    let mut cfg = EngineConfig::default();
    cfg.state.max_sessions = 10_000_000;
    let mut engine = Engine::new(&cfg).expect("config");
    engine.track_changes();
    let mut out = Output::default();
    let (records, _) = vigil_testkit::samples::scaled(500, 1000, &FORMATS);
    for r in &records {
        let Ok(mut ev) = parse_record(r.line.as_bytes(), InputFormat::Auto, &ctx) else {
            continue;
        };
        geo.enrich(&mut ev);
        let _ = engine.process(&ev, &mut out);
        out.clear();
    }
    let mut buf = EncodedChanges::default();
    engine.drain_encoded(ValueEncoding::Binary, &mut buf);
    let encoded: Vec<(&[u8], Option<&[u8]>)> = buf.iter().collect();
    let mut g = c.benchmark_group("restore");
    g.sample_size(20);
    g.throughput(Throughput::Elements(encoded.len() as u64));
    g.bench_function("changelog_records", |b| {
        // The engine is dropped outside the timing: a restore keeps what it read.
        b.iter_with_large_drop(|| {
            let mut e = Engine::new(&cfg).expect("config");
            for (k, v) in &encoded {
                e.restore_encoded(k, *v).expect("decodes");
            }
            e
        })
    });
    g.finish();
}

criterion_group!(benches, outputs, flush, restore);
criterion_main!(benches);
