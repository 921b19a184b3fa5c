//! End-to-end tests over real Kafka protocol brokers: librdkafka's in-process mock cluster
//! (fast, always available) and tansu started by `scripts/tansu.sh` (consumer groups,
//! failover, changelog restore); `vigil enforce` pushes to receivers the tests start on
//! loopback. Each test makes its own topics and consumer group.
//!
//! The tansu tests read the broker address from `VIGIL_TEST_BOOTSTRAP`; without it they are
//! skipped, except under `CI=true`, where a missing broker is a failure.

mod enforce;
mod mock;
mod receiver;
mod support;
mod tansu;
