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
//! The first jump is enough when it is unambiguous: the session was used at A within the
//! window, now appears at B more than `min_distance_km` away net of both accuracy radii, at
//! a speed above `first_jump_min_speed_kmh`, both places are precise fixes (accuracy radius at
//! most `first_jump_max_accuracy_km`), neither is a relay or flagged proxy, and none of the
//! user's earlier sessions was near B, and the session is not a phone's (a phone moving from
//! Wi-Fi to a carrier network is a hop the interleaving rule judges). The session is revoked
//! on the attacker's first event instead of on the victim's next one.
//!
//! **Thresholds and why.** Window 10 minutes and 100 km: a person does not commute 100 km and
//! back in ten minutes, and interleaving (rather than a single move) is what separates two
//! concurrent users from one traveller. Confidence 90: it is the clearest sign of a copied
//! session. For the first jump, 900 km/h (an airliner) and radii of at most 100 km: mobile
//! carrier addresses, which geolocate to hubs hundreds of kilometres from the phone, come
//! with radii of hundreds of kilometres, so a phone hop stays an interleaving question; a
//! place the user's sessions have used before (a tethered phone's hub that always geolocates
//! to the same wrong city) is not a jump.
//!
//! **Benign cases it must not flag.** Phone and laptop of the same user on Wi-Fi and mobile in
//! one city (same place within 100 km); a shared corporate NAT (same place); VPN toggling on
//! configured relay ASNs; a laptop tethered to a phone whose carrier geolocates it to a hub
//! far away with a wide radius.

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
    /// Whether the first unambiguous jump (see the module docs) is enough, without waiting
    /// for the session to come back.
    pub first_jump: bool,
    /// Slowest speed, km/h net of accuracy, that makes a first jump.
    pub first_jump_min_speed_kmh: f64,
    /// Widest accuracy radius, km, either place of a first jump may have.
    pub first_jump_max_accuracy_km: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            window: HumanDuration::secs(600),
            min_distance_km: 100.0,
            confidence: 90,
            first_jump: true,
            first_jump_min_speed_kmh: 900.0,
            first_jump_max_accuracy_km: 100,
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
        check_range(
            "detectors.concurrent_use.first_jump_min_speed_kmh",
            cfg.first_jump_min_speed_kmh,
            100.0,
            100_000.0,
            "between 100 and 100000",
        )?;
        check_range(
            "detectors.concurrent_use.first_jump_max_accuracy_km",
            cfg.first_jump_max_accuracy_km,
            1,
            1_000,
            "between 1 and 1000",
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
        match (a.coords(), b.coords()) {
            (Some(x), Some(y)) => {
                let km = crate::geo::distance_km(x, y)
                    - f64::from(a.accuracy_km)
                    - f64::from(b.accuracy_km);
                km > self.cfg.min_distance_km
            }
            _ => a.asn != 0 && b.asn != 0 && a.asn != b.asn && a.device != b.device,
        }
    }

    /// The distance, km net of accuracy, when the move from `last` to `place` is an
    /// unambiguous first jump.
    fn first_jump(&self, ctx: &Ctx<'_>, last: &Place, place: &Place) -> Option<f64> {
        let max_acc = self.cfg.first_jump_max_accuracy_km;
        if ctx.ev.time_ms - last.last_seen > self.cfg.window.ms()
            || last.accuracy_km > max_acc
            || place.accuracy_km > max_acc
            || ctx.ev.geo.is_proxy == Some(true)
            || ctx
                .session
                .and_then(|s| s.ua)
                .is_some_and(|u| matches!(u.os, crate::ua::Os::Ios | crate::ua::Os::Android))
        {
            return None;
        }
        let (km, speed) = super::travel(last, place, ctx.ev.time_ms)?;
        let at = place.coords()?;
        let familiar = ctx.user.is_some_and(|u| {
            u.has_been_near(at, self.cfg.min_distance_km + f64::from(place.accuracy_km))
        });
        (speed > self.cfg.first_jump_min_speed_kmh && !familiar).then_some(km)
    }

    /// The finding, with its detail.
    fn finding(&self, ctx: &Ctx<'_>, detail: String) -> Finding {
        ctx.finding(
            NAME,
            self.cfg.confidence,
            "Session in use from two places at once".into(),
            detail,
            vec![Anomaly {
                parameter: "concurrent_places",
                baseline: "1".into(),
                observed: "2".into(),
            }],
        )
    }

    /// Looks at one event.
    pub fn observe(&self, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
        let (Some(s), Some(place)) = (ctx.session, ctx.obs.place) else {
            return;
        };
        let Some(last) = s.last_place() else { return };
        // An event older than the last sighting (out of order, or redelivered) cannot be a
        // return: interleaving is judged in event-time order only.
        if ctx.ev.time_ms < last.last_seen || !self.distinct(ctx, &last, &place) {
            return;
        }
        let now = ctx.ev.time_ms;
        let window = self.cfg.window.ms();
        if self.cfg.first_jump
            && let Some(km) = self.first_jump(ctx, &last, &place)
        {
            let after = vigil_model::Endpoint::of(ctx.ev);
            out.push(self.finding(
                ctx,
                format!(
                    "Session {} was in use at {} {:.0} seconds ago and is now used at {}, at least {km:.0} km away, where none of the user's sessions has been.",
                    ctx.ev.session_id,
                    describe(&s.last_endpoint.to_endpoint()),
                    (now - last.last_seen) as f64 / 1_000.0,
                    describe(&after),
                ),
            ));
            return;
        }
        let returned = s.places.iter().rev().skip(1).find(|p| {
            now - p.last_seen <= window
                && p.last_seen <= last.last_seen
                && !self.distinct(ctx, p, &place)
        });
        let Some(earlier) = returned else { return };
        let after = vigil_model::Endpoint::of(ctx.ev);
        out.push(self.finding(
            ctx,
            format!(
                "Session {} was used at {} {:.0} minutes ago, then at {}, and now again at {}.",
                ctx.ev.session_id,
                describe(&after),
                (now - earlier.last_seen) as f64 / 60_000.0,
                describe(&s.last_endpoint.to_endpoint()),
                describe(&after),
            ),
        ));
    }
}
