//! Vigil's detection engine: per-session state, the detectors, and the policy that turns
//! their findings into alerts, step-up requests and revocations.
//!
//! The engine is synchronous and pure. It never reads the clock (time comes from event
//! timestamps, or from the `now` passed to [`Engine::on_tick`]), never does I/O, and depends
//! on neither tokio nor rdkafka; CI checks this with `cargo tree` and clippy's
//! `disallowed-methods`. One [`Engine`] owns one partition's state: shared-nothing, no locks.
//!
//! Main types: [`Engine`] (one partition), [`EngineConfig`] (the TOML tables), the
//! [`detectors`] (one file each), [`policy::Policy`], and [`state::BoundedTable`] (every map is
//! bounded by TTL and a hard cap).
//!
//! ```
//! use vigil_engine::{Engine, EngineConfig, Output};
//! use vigil_model::adapters::{parse_record, AdapterContext, InputFormat};
//!
//! let mut engine = Engine::new(&EngineConfig::default()).expect("defaults are valid");
//! let ctx = AdapterContext::new(b"key");
//! let mut out = Output::default();
//! for line in [
//!     r#"{"id":"1","time":"2024-05-01T12:00:00Z","kind":"session_start","session_id":"s","user_id":"u","geo":{"lat":51.5,"lon":-0.12}}"#,
//!     r#"{"id":"2","time":"2024-05-01T12:05:00Z","kind":"access","session_id":"s","user_id":"u","geo":{"lat":40.7,"lon":-74.0}}"#,
//! ] {
//!     let ev = parse_record(line.as_bytes(), InputFormat::Native, &ctx).expect("valid");
//!     engine.process(&ev, &mut out).expect("in order");
//! }
//! assert_eq!(out.revocations.len(), 1);
//! ```

pub mod changelog;
pub mod config;
pub mod detectors;
pub mod engine;
pub mod geo;
pub mod governance;
pub mod inventory;
pub mod policy;
pub mod state;
pub mod tokens;
pub mod ua;
pub mod users;
pub mod window;

pub use changelog::{EncodedChanges, StateKey, StateValue, ValueEncoding};
pub use config::{ConfigError, EngineConfig, HumanDuration};
pub use engine::{Engine, EngineStats, Output, PREFETCH_GROUP};
