//! Heap bytes per live session: the engine's own state, measured by counting the allocator's
//! live bytes before and after the engine takes in the sample story at scale (every format,
//! GeoIP-enriched as `vigil run` enriches it). Prints one line per scale and a last `SUMMARY`
//! line; nothing is asserted.
//!
//! This is the engine's share only (session, token, refresh-token and user tables, the
//! changelog's dirty set); `benches/e2e.sh` reports the whole process's RSS growth, Kafka
//! client buffers included. Bytes are what was asked of the allocator: its own size classes
//! and page overhead come on top.
//!
//! Then the same for a generated population (a tenant's traffic: `POPULATION` users, 3,000 by
//! default, over `DAYS` working days, 5).
//!
//! Run: `cargo bench -p vigil --bench memory` (`COPIES=5000` for a larger scale).

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

use vigil_engine::{Engine, EngineConfig, Output};
use vigil_geo::GeoDb;
use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};
use vigil_testkit::population::PopulationSpec;
use vigil_testkit::render::Format;
use vigil_testkit::samples::GenRecord;

/// The system allocator, counting the bytes it holds for the program. (Bytes asked for do
/// not depend on the allocator; `vigil` itself runs with mimalloc.)
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes the program holds now, as the allocator was asked for them. `stats_alloc` already
/// counts what a reallocation grows or shrinks by in `bytes_allocated` or `bytes_deallocated`;
/// its `bytes_reallocated` repeats that sum and is not added again (it was, before the
/// eleventh round, which counted every growth of a list twice: see docs/PERFORMANCE.md).
fn live_heap() -> isize {
    let s = ALLOCATOR.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

const FORMATS: [Format; 4] = [Format::Native, Format::Okta, Format::Entra, Format::Ocsf];

/// The engine after `records`: (live sessions, live tokens, live users, heap bytes per live
/// session).
fn measure(records: Vec<GenRecord>, geo: &mut GeoDb) -> (usize, usize, usize, f64) {
    let ctx = AdapterContext::new(b"bench-key");
    // Parse and enrich first, so the GeoIP cache and the events are not counted.
    let events: Vec<_> = records
        .iter()
        .filter_map(|r| {
            let format = InputFormat::Auto;
            let mut ev = parse_record(r.line.as_bytes(), format, &ctx).ok()?;
            geo.enrich(&mut ev);
            Some(ev)
        })
        .collect();
    drop(records);
    let mut cfg = EngineConfig::default();
    cfg.state.max_sessions = 10_000_000;
    cfg.state.max_tokens = 10_000_000;
    let mut out = Output::default();
    let heap_before = live_heap();
    let mut engine = Engine::new(&cfg).expect("valid config");
    // As under `vigil run`: changes are tracked for the changelog and drained at each flush.
    engine.track_changes();
    let mut changes = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let _ = engine.process(ev, &mut out);
        out.clear();
        if i % 5_000 == 4_999 {
            engine.drain_changes(&mut changes);
            changes.clear();
        }
    }
    engine.drain_changes(&mut changes);
    drop(changes);
    let heap = live_heap() - heap_before;
    let sessions = engine.live_sessions().max(1);
    let per = heap as f64 / sessions as f64;
    (
        engine.live_sessions(),
        engine.live_tokens(),
        engine.live_users(),
        per,
    )
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let copies = env_usize("COPIES", 2_000);
    let mut geo = GeoDb::new(100_000);
    geo.add("test", vigil_testkit::geoip::test_database())
        .expect("the generated test database opens");
    let mut last = None;
    for c in [copies / 10, copies] {
        let c = c.max(1);
        let (records, _) = vigil_testkit::samples::scaled(c, 1000, &FORMATS);
        let (sessions, tokens, users, per) = measure(records, &mut geo);
        println!(
            "memory/story x{c}: {sessions} live sessions, {tokens} live tokens, {users} users, {per:.0} heap bytes per live session"
        );
        last = Some((sessions, per));
    }
    // A tenant's traffic (`vigil gen --population`): many events per session, several
    // sessions per user over the days, few findings. What is held at the end is the sessions
    // still live then and the baselines of every user seen, which the engine keeps for
    // `user_ttl` whether or not a session of theirs is live: bytes per live session count
    // them too.
    let spec = PopulationSpec {
        users: env_usize("POPULATION", 3_000),
        days: env_usize("DAYS", 5),
        attack_rate: 0.02,
        seed: 1,
    };
    let (records, _) = vigil_testkit::population::generate(&spec, &FORMATS);
    let (sessions, tokens, users, per) = measure(records, &mut geo);
    println!(
        "memory/population {} users x {} days: {sessions} live sessions, {tokens} live tokens, {users} users, {per:.0} heap bytes per live session",
        spec.users, spec.days
    );
    if let Some((sessions, per)) = last {
        println!("SUMMARY live_sessions={sessions} heap_bytes_per_session={per:.0} target=256");
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
