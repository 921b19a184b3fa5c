//! Parse throughput of each input adapter on the sample story (deterministic input), in
//! events/s and bytes/s, and in events/s parsed into a reused event (`events_into`, as
//! `vigil run`'s partition tasks parse).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil_model::adapters::{AdapterContext, InputFormat, parse_record, parse_record_into};
use vigil_model::{SessionEvent, SourceFormat};
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
        group(c, &format!("parse/{}", format.name()), &lines, input, &ctx);
    }
}

/// One group: `lines` parsed as `input`, in events/s and in bytes/s.
fn group<L: AsRef<[u8]>>(
    c: &mut Criterion,
    name: &str,
    lines: &[L],
    input: InputFormat,
    ctx: &AdapterContext,
) {
    let bytes: usize = lines.iter().map(|l| l.as_ref().len()).sum();
    let mut g = c.benchmark_group(name);
    for (function, throughput) in [
        ("events", Throughput::Elements(lines.len() as u64)),
        ("bytes", Throughput::Bytes(bytes as u64)),
    ] {
        g.throughput(throughput);
        g.bench_function(function, |b| {
            b.iter(|| {
                for l in lines {
                    let _ = std::hint::black_box(parse_record(l.as_ref(), input, ctx));
                }
            })
        });
    }
    // As a partition task parses: each record into an event already used, whose strings
    // the native fast path writes over.
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("events_into", |b| {
        let mut ev = SessionEvent::empty(SourceFormat::Native);
        b.iter(|| {
            for l in lines {
                let _ = std::hint::black_box(parse_record_into(l.as_ref(), input, ctx, &mut ev));
                std::hint::black_box(&ev);
            }
        })
    });
    g.finish();
}

/// Parse throughput on the vendor fixtures (`tests/data/vendor`): records shaped as Okta's
/// System Log API and Entra's sign-in export return them, with the members the generated
/// records leave out (request chains, device details, policies), read over and over.
fn vendor(c: &mut Criterion) {
    let ctx = AdapterContext::new(b"bench-key");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/vendor");
    for (name, file, input) in [
        ("okta", "okta-system-log.jsonl", InputFormat::Okta),
        ("entra", "entra-signin.jsonl", InputFormat::Entra),
    ] {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).expect("vendor fixture");
        let lines: Vec<&str> = text.lines().collect();
        group(c, &format!("parse_vendor/{name}"), &lines, input, &ctx);
    }
}

criterion_group!(benches, adapters, vendor);
criterion_main!(benches);
