//! Concurrent use: one session active from two distant places at once.
//!
//! **Attack.** A replayed cookie or token used by the attacker while the victim keeps
//! working: the session's events interleave between two places.
//!
//! **Signal.** The session returns to a place it was using within the window after being
//! seen somewhere distinct in between (A, then B, then A again). Distinct means more than
//! `min_distance_km` apart net of accuracy when both are located; without coordinates, a
//! different ASN together with a different device or client.
//!
//! **Thresholds and why.** Window 10 minutes and 100 km: a person does not commute 100 km and
//! back in ten minutes, and interleaving (rather than a single move) is what separates two
//! concurrent users from one traveller. Confidence 90: it is the clearest sign of a copied
//! session.
//!
//! **Benign cases it must not flag.** Phone and laptop of the same user on Wi-Fi and mobile in
//! one city (same place within 100 km); a shared corporate NAT (same place); VPN toggling on
//! configured relay ASNs.

use serde::Deserialize;
use vigil_model::{Anomaly, Finding};

use super::{Ctx, describe};
use crate::config::{ConfigError, HumanDuration, check_range};
use crate::state::Place;

/// Detector name.
pub const NAME: &str = "concurrent_use";

/// Settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Whether the detector runs.
    pub enabled: bool,
    /// How recently the first place must have been used.
    pub window: HumanDuration,
    /// Distance, km net of accuracy, beyond which two places are distinct.
    pub min_distance_km: f64,
    /// Confidence.
    pub confidence: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            window: HumanDuration::secs(600),
            min_distance_km: 100.0,
            confidence: 90,
        }
    }
}

/// The detector.
#[derive(Debug, Clone)]
pub struct ConcurrentUse {
    cfg: Config,
}

impl ConcurrentUse {
    /// Validates the settings.
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        check_range(
            "detectors.concurrent_use.min_distance_km",
            cfg.min_distance_km,
            1.0,
            20_000.0,
            "between 1 and 20000",
        )?;
        check_range(
            "detectors.concurrent_use.confidence",
            cfg.confidence,
            0,
            100,
            "between 0 and 100",
        )?;
        if cfg.window.ms() <= 0 {
            return Err(ConfigError::OutOfRange {
                field: "detectors.concurrent_use.window",
                value: format!("{:?}", cfg.window),
                expected: "longer than zero",
            });
        }
        Ok(Self { cfg: cfg.clone() })
    }

    fn distinct(&self, ctx: &Ctx<'_>, a: &Place, b: &Place) -> bool {
        if ctx.net.is_relay(a.asn) || ctx.net.is_relay(b.asn) {
            return false;
        }
        match (a.coords, b.coords) {
            (Some(x), Some(y)) => {
                let km = crate::geo::distance_km(x, y)
                    - f64::from(a.accuracy_km)
                    - f64::from(b.accuracy_km);
                km > self.cfg.min_distance_km
            }
            _ => a.asn != 0 && b.asn != 0 && a.asn != b.asn && a.device != b.device,
        }
    }

    /// Looks at one event.
    pub fn observe(&self, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
        let (Some(s), Some(place)) = (ctx.session, ctx.obs.place) else {
            return;
        };
        let Some(last) = s.last_place else { return };
        // An event older than the last sighting (out of order, or redelivered) cannot be a
        // return: interleaving is judged in event-time order only.
        if ctx.ev.time_ms < last.last_seen || !self.distinct(ctx, &last, &place) {
            return;
        }
        let now = ctx.ev.time_ms;
        let window = self.cfg.window.ms();
        let returned = s.places.iter().rev().skip(1).find(|p| {
            now - p.last_seen <= window
                && p.last_seen <= last.last_seen
                && !self.distinct(ctx, p, &place)
        });
        let Some(earlier) = returned else { return };
        let after = vigil_model::Endpoint::of(ctx.ev);
        out.push(ctx.finding(
            NAME,
            self.cfg.confidence,
            "Session in use from two places at once".into(),
            format!(
                "Session {} was used at {} {:.0} minutes ago, then at {}, and now again at {}.",
                ctx.ev.session_id,
                describe(&after),
                (now - earlier.last_seen) as f64 / 60_000.0,
                describe(&s.last_endpoint),
                describe(&after),
            ),
            vec![Anomaly {
                parameter: "concurrent_places",
                baseline: "1".into(),
                observed: "2".into(),
            }],
        ));
    }
}
