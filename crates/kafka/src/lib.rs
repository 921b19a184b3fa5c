//! Vigil on Kafka: the consumer-group runtime behind `vigil run`.
//!
//! One consumer per process joins the group; each assigned input partition gets a task that
//! owns that partition's [`vigil_engine::Engine`] (shared-nothing: no state crosses tasks).
//! A task restores its state from the compacted changelog before its partition is resumed,
//! writes changed state back at every commit, and reports the offsets it has made durable:
//! outputs and changelog records are acknowledged before input offsets are committed
//! ([`Delivery::AtLeastOnce`]).
//!
//! This crate does the I/O; detection stays in `vigil-engine`. Main types: [`KafkaConfig`]
//! (the `[kafka]` table), [`Delivery`], [`runtime::run`], [`Metrics`], and
//! [`error::classify`] (retryable or fatal).

pub mod bench;
pub mod config;
pub mod delivery;
pub mod error;
pub mod metrics;
pub mod rekey;
pub mod runtime;
pub mod topics;
pub mod worker;

pub use config::KafkaConfig;
pub use delivery::Delivery;
pub use metrics::Metrics;
