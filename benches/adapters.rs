//! Parse throughput of each input adapter on the sample story (deterministic input), in
//! events/s and bytes/s.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};
use vigil_testkit::render::Format;

/// The allocator `vigil` itself runs with, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn adapters(c: &mut Criterion) {
    let ctx = AdapterContext::new(b"bench-key");
    for (format, input) in [
        (Format::Native, InputFormat::Native),
        (Format::Okta, InputFormat::Okta),
        (Format::Entra, InputFormat::Entra),
        (Format::Ocsf, InputFormat::Ocsf),
    ] {
        let (records, _) = vigil_testkit::samples::scaled(20, 60_000, &[format]);
        let lines: Vec<Vec<u8>> = records.into_iter().map(|r| r.line.into_bytes()).collect();
        let bytes: usize = lines.iter().map(Vec::len).sum();
        let mut g = c.benchmark_group(format!("parse/{}", format.name()));
        g.throughput(Throughput::Elements(lines.len() as u64));
        g.bench_function("events", |b| {
            b.iter(|| {
                for l in &lines {
                    let _ = std::hint::black_box(parse_record(l, input, &ctx));
                }
            })
        });
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function("bytes", |b| {
            b.iter(|| {
                for l in &lines {
                    let _ = std::hint::black_box(parse_record(l, input, &ctx));
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, adapters);
criterion_main!(benches);
