//! GeoIP lookups, cached and uncached, on the test database (a real GeoLite2 database is the
//! end-to-end bench script's job).

use std::net::IpAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil_geo::GeoDb;

/// The allocator `vigil` itself runs with, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn geo(c: &mut Criterion) {
    let mut db = GeoDb::new(100_000);
    db.add("test", vigil_testkit::geoip::test_database())
        .expect("geo");
    let ips: Vec<IpAddr> = vigil_testkit::places::ALL
        .iter()
        .flat_map(|p| {
            let base: IpAddr = p.ip.parse().expect("ip");
            std::iter::repeat_n(base, 100)
        })
        .collect();
    let mut g = c.benchmark_group("geoip");
    g.throughput(Throughput::Elements(ips.len() as u64));
    g.bench_function("uncached", |b| {
        b.iter(|| {
            for ip in &ips {
                std::hint::black_box(db.lookup_uncached(*ip));
            }
        })
    });
    g.bench_function("cached", |b| {
        b.iter(|| {
            for ip in &ips {
                std::hint::black_box(db.lookup(*ip).is_some());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, geo);
criterion_main!(benches);
