//! Impossible travel within one session.
//!
//! **Attack.** A stolen session cookie or token replayed from far away while, or shortly
//! after, its owner used it at home.
//!
//! **Signal.** Two located sightings of the same session whose great-circle distance, less
//! both accuracy radii, needs a speed no traveller reaches.
//!
//! **Thresholds and why.** Speed above 900 km/h over more than 500 km (Elastic's impossible
//! travel rule uses >= 800 km/h and >= 500 km; 900 km/h is an airliner's cruise, so anything
//! faster is not travel). Subtracting the accuracy radius keeps coarse GeoIP from inventing
//! distance. Confidence 85, 95 beyond 5,000 km/h.
//!
//! **Benign cases it must not flag.** A flight (London to New York after 8 hours is about
//! 700 km/h); VPN or relay egress (configured relay ASNs or a source `is_proxy` flag lower the
//! confidence to 25, below the alert threshold: counted, and added to the session's risk); GeoIP jitter within the
//! accuracy radius.

use serde::Deserialize;
use vigil_model::{Anomaly, Finding};

use super::{Ctx, describe, travel};
use crate::config::{ConfigError, check_range};

/// Detector name.
pub const NAME: &str = "impossible_travel";

/// Settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Fastest believable travel, km/h.
    pub max_speed_kmh: f64,
    /// Shortest distance, km (net of accuracy), that can count as travel.
    pub min_distance_km: f64,
    /// Confidence when the speed is impossible.
    pub confidence: u8,
    /// Confidence when either end is a VPN/relay or flagged as a proxy.
    pub relay_confidence: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            max_speed_kmh: 900.0,
            min_distance_km: 500.0,
            confidence: 85,
            relay_confidence: 25,
        }
    }
}

/// The detector.
#[derive(Debug, Clone)]
pub struct ImpossibleTravel {
    cfg: Config,
}

impl ImpossibleTravel {
    /// Validates the settings.
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        check_range(
            "detectors.impossible_travel.max_speed_kmh",
            cfg.max_speed_kmh,
            100.0,
            10_000.0,
            "between 100 and 10000",
        )?;
        check_range(
            "detectors.impossible_travel.min_distance_km",
            cfg.min_distance_km,
            0.0,
            20_000.0,
            "between 0 and 20000",
        )?;
        check_range(
            "detectors.impossible_travel.confidence",
            cfg.confidence,
            0,
            100,
            "between 0 and 100",
        )?;
        check_range(
            "detectors.impossible_travel.relay_confidence",
            cfg.relay_confidence,
            0,
            100,
            "between 0 and 100",
        )?;
        Ok(Self { cfg: cfg.clone() })
    }

    /// Looks at one event.
    pub fn observe(&self, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
        let (Some(s), Some(place)) = (ctx.session, ctx.obs.place) else {
            return;
        };
        let Some(prev) = s.last_place() else { return };
        let Some((km, speed)) = travel(&prev, &place, ctx.ev.time_ms) else {
            return;
        };
        if km < self.cfg.min_distance_km || speed < self.cfg.max_speed_kmh {
            return;
        }
        let relay = ctx.net.is_relay(prev.asn)
            || ctx.net.is_relay(place.asn)
            || ctx.ev.geo.is_proxy == Some(true);
        let confidence = if relay {
            self.cfg.relay_confidence
        } else if speed > 5000.0 {
            self.cfg.confidence.saturating_add(10)
        } else {
            self.cfg.confidence
        };
        let minutes = (ctx.ev.time_ms - prev.last_seen).unsigned_abs() as f64 / 60_000.0;
        let speed_text = if speed.is_finite() {
            format!("{speed:.0} km/h")
        } else {
            "instantly".into()
        };
        let after = vigil_model::Endpoint::of(ctx.ev);
        out.push(ctx.finding(
            NAME,
            confidence,
            "Session moved faster than any traveller".into(),
            format!(
                "Session {} was at {} and {:.0} minutes later at {}: {km:.0} km, {speed_text}{}.",
                ctx.ev.session_id,
                describe(&s.last_endpoint.to_endpoint()),
                minutes,
                describe(&after),
                if relay {
                    " (a VPN or relay is involved)"
                } else {
                    ""
                }
            ),
            vec![
                Anomaly {
                    parameter: "speed_kmh",
                    baseline: format!("<= {:.0}", self.cfg.max_speed_kmh),
                    observed: if speed.is_finite() {
                        format!("{speed:.0}")
                    } else {
                        "inf".into()
                    },
                },
                Anomaly {
                    parameter: "distance_km",
                    baseline: "0".into(),
                    observed: format!("{km:.0}"),
                },
            ],
        ));
    }
}
