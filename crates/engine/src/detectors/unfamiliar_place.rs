//! A session starting somewhere this user's sessions have never been.
//!
//! **Attack.** A stolen cookie or token whose first use by the attacker is a session of its
//! own (a token replayed into a new session, a session started from a phishing proxy's
//! infrastructure): nothing within the session is unusual yet, but nothing about it fits the
//! user either.
//!
//! **Signal.** The first located event of a session comes from a country and a network the
//! user's sessions have not used, with a device the user has not used, once the user's
//! baseline (`crate::users`) has learned for `learning_period` and at least `min_sessions`
//! sessions.
//!
//! **Thresholds and why.** Alone this is a weak signal (people buy phones and travel), so it
//! scores below the revoke threshold: a new country, network and device 45 (alert), 60 from a
//! hosting provider's network (step-up); a new network in a familiar country with a new
//! device 25, below the alert threshold (a phone at home on a network the laptop never used).
//! Its value is in the session risk: with any in-session finding in the policy's evidence
//! window the noisy-OR crosses the revoke threshold sooner. Seven days and three sessions of
//! learning keep a new employee's first week from looking foreign.
//!
//! **Benign cases it must not flag.** A user's usual places and devices; any user still
//! learning; a known device in a new place (travel with one's own laptop); configured relay
//! and VPN networks.

use serde::Deserialize;
use vigil_model::{Anomaly, Finding};

use super::Ctx;
use crate::config::{ConfigError, HumanDuration, check_range};

/// Detector name.
pub const NAME: &str = "unfamiliar_place";

/// Settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Whether the detector runs.
    pub enabled: bool,
    /// How long a user's baseline learns before it is trusted.
    pub learning_period: HumanDuration,
    /// Sessions a user's baseline needs before it is trusted.
    pub min_sessions: u32,
    /// Confidence for a new country, network and device.
    pub new_country_confidence: u8,
    /// Confidence when the new network is a hosting provider's.
    pub hosting_confidence: u8,
    /// Confidence for a new network and device in a familiar country.
    pub new_network_confidence: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            learning_period: HumanDuration::secs(7 * 86_400),
            min_sessions: 3,
            new_country_confidence: 45,
            hosting_confidence: 60,
            new_network_confidence: 25,
        }
    }
}

/// The detector.
#[derive(Debug, Clone)]
pub struct UnfamiliarPlace {
    cfg: Config,
}

impl UnfamiliarPlace {
    /// Validates the settings.
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        for (f, v) in [
            (
                "detectors.unfamiliar_place.new_country_confidence",
                cfg.new_country_confidence,
            ),
            (
                "detectors.unfamiliar_place.hosting_confidence",
                cfg.hosting_confidence,
            ),
            (
                "detectors.unfamiliar_place.new_network_confidence",
                cfg.new_network_confidence,
            ),
        ] {
            check_range(f, v, 1, 100, "between 1 and 100")?;
        }
        Ok(Self { cfg: cfg.clone() })
    }

    /// Looks at one event and appends any findings.
    pub fn observe(&self, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
        // Only the session's first located event: later ones are the in-session detectors'.
        if ctx.session.is_some_and(|s| s.last_place().is_some()) {
            return;
        }
        let (Some(user), Some(place)) = (ctx.user, ctx.obs.place) else {
            return;
        };
        let ev = ctx.ev;
        if !user.mature(
            ev.time_ms,
            self.cfg.learning_period.ms(),
            self.cfg.min_sessions,
        ) {
            return;
        }
        if place.asn != 0 && ctx.net.is_relay(place.asn) {
            return;
        }
        let known_device = ctx.obs.device.is_some_and(|d| user.devices.contains(&d));
        let new_country = place.country != 0 && !user.countries.contains(&place.country);
        let new_network = place.asn != 0 && !user.asns.contains(&place.asn);
        if known_device || !new_network {
            return;
        }
        let hosting = ctx.net.is_hosting(place.asn);
        let confidence = if hosting {
            self.cfg.hosting_confidence
        } else if new_country {
            self.cfg.new_country_confidence
        } else {
            self.cfg.new_network_confidence
        };
        let whereabouts = super::describe(&vigil_model::Endpoint::of(ev));
        let mut anomalies = vec![Anomaly {
            parameter: "asn",
            baseline: format!("{} networks this user's sessions used", user.asns.len()),
            observed: format!("AS{}", place.asn),
        }];
        if new_country {
            anomalies.push(Anomaly {
                parameter: "country",
                baseline: format!(
                    "{} countries this user's sessions used",
                    user.countries.len()
                ),
                observed: ev.geo.country.clone().unwrap_or_default(),
            });
        }
        out.push(ctx.finding(
            NAME,
            confidence,
            if new_country {
                "Session started in a country new for this user".into()
            } else {
                "Session started on a network new for this user".into()
            },
            format!(
                "Session {} of user {} began at {whereabouts}, where none of the user's {} earlier sessions were, on a device the user has not used{}.",
                ev.session_id,
                ev.user_id,
                user.sessions,
                if hosting { " (a hosting provider's network)" } else { "" }
            ),
            anomalies,
        ));
    }
}
