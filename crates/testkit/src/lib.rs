//! Test support for Vigil (dev only): a small world of [`places`], a GeoIP database built
//! in-process ([`geoip`]), an event renderer for every input format ([`render`]) and the
//! labelled sample story ([`samples`]) that `tests/data/samples/` is generated from, and a
//! generated [`population`] of users over working days with injected attacks.
//!
//! Regenerate the committed fixtures with `cargo run -p vigil-testkit --bin vigil-fixtures`;
//! a test fails when they drift from this code.

pub mod geoip;
pub mod places;
pub mod population;
pub mod render;
pub mod samples;
