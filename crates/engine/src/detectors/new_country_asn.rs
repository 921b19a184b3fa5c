//! New country or ASN mid-session.
//!
//! **Attack.** An adversary-in-the-middle phishing proxy (Evilginx, Tycoon 2FA) or an
//! infostealer operator replays a stolen session cookie from their own infrastructure: a
//! hosting provider's ASN, often another country.
//!
//! **Signal.** An event whose country or ASN the session has not used before, combined with
//! who is using it: whether the device fingerprint and client software stayed the same, and
//! whether the new network is a hosting provider.
//!
//! **Thresholds and why.** A new country with a changed client scores 80; a new country with
//! the same client scores only when travel there was implausible or the network is hosting.
//! A new ASN alone never fires while the device and client stay the same (Panther's stolen
//! session rule: a changed ASN with the same device must not alert; it alerts on a new IP only
//! when user-agent similarity is below 0.95). A hosting ASN scores 75, plus 10 when the client
//! also changed.
//!
//! **Benign cases it must not flag.** Configured VPN and privacy-relay ASNs; mobile-carrier
//! and Wi-Fi churn in the same city (within `network.same_place_km`, 20 km as Okta treats a
//! location within 20 km as not new); real travel with the same device after plausible time;
//! dual-stack IPv4/IPv6 switches on the same provider.

use serde::Deserialize;
use vigil_model::{Anomaly, Finding};

use super::{Ctx, describe, travel};
use crate::config::{ConfigError, check_range};

/// Detector name.
pub const NAME: &str = "new_country_asn";

/// Settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Fastest believable travel, km/h, for judging whether a new country was reachable.
    pub plausible_speed_kmh: f64,
    /// Confidence for a new country with a changed client.
    pub new_country_confidence: u8,
    /// Confidence for a new hosting-provider ASN.
    pub hosting_confidence: u8,
    /// Confidence for a new ASN with a changed client.
    pub new_asn_confidence: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            plausible_speed_kmh: 900.0,
            new_country_confidence: 80,
            hosting_confidence: 75,
            new_asn_confidence: 55,
        }
    }
}

/// The detector.
#[derive(Debug, Clone)]
pub struct NewCountryAsn {
    cfg: Config,
}

impl NewCountryAsn {
    /// Validates the settings.
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        check_range(
            "detectors.new_country_asn.plausible_speed_kmh",
            cfg.plausible_speed_kmh,
            100.0,
            5000.0,
            "between 100 and 5000",
        )?;
        for (f, v) in [
            (
                "detectors.new_country_asn.new_country_confidence",
                cfg.new_country_confidence,
            ),
            (
                "detectors.new_country_asn.hosting_confidence",
                cfg.hosting_confidence,
            ),
            (
                "detectors.new_country_asn.new_asn_confidence",
                cfg.new_asn_confidence,
            ),
        ] {
            check_range(f, v, 0, 100, "between 0 and 100")?;
        }
        Ok(Self { cfg: cfg.clone() })
    }

    /// Looks at one event.
    pub fn observe(&self, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
        let (Some(s), Some(place)) = (ctx.session, ctx.obs.place) else {
            return;
        };
        let new_country =
            place.country != 0 && !s.countries.is_empty() && !s.countries.contains(&place.country);
        let new_asn = place.asn != 0 && !s.asns.is_empty() && !s.asns.contains(&place.asn);
        if !(new_country || new_asn) || ctx.net.is_relay(place.asn) {
            return;
        }
        let hosting = ctx.net.is_hosting(place.asn);
        let same_client = ctx.same_client() == Some(true);
        let moved = s
            .last_place()
            .and_then(|p| travel(&p, &place, ctx.ev.time_ms));
        let near = moved.is_some_and(|(km, _)| km <= ctx.net.same_place_km);
        let plausible = moved.is_none_or(|(_, speed)| speed < self.cfg.plausible_speed_kmh);

        let mut confidence = 0u8;
        if new_country && !(same_client && plausible && !hosting) {
            confidence = if same_client {
                self.cfg.new_asn_confidence
            } else {
                self.cfg.new_country_confidence
            };
        }
        if hosting {
            let c = self.cfg.hosting_confidence + if same_client { 0 } else { 10 };
            confidence = confidence.max(c);
        } else if new_asn && !same_client && !near {
            confidence = confidence.max(self.cfg.new_asn_confidence);
        }
        if confidence == 0 {
            return;
        }
        let after = vigil_model::Endpoint::of(ctx.ev);
        let before = s.last_endpoint.to_endpoint();
        let mut anomalies = Vec::new();
        if new_country {
            anomalies.push(Anomaly {
                parameter: "country",
                baseline: before.country.clone().unwrap_or_default(),
                observed: after.country.clone().unwrap_or_default(),
            });
        }
        if new_asn {
            anomalies.push(Anomaly {
                parameter: "asn",
                baseline: before.asn.map(|a| a.to_string()).unwrap_or_default(),
                observed: place.asn.to_string(),
            });
        }
        let what = match (new_country, hosting) {
            (true, true) => "new country from a hosting provider",
            (true, false) => "new country",
            (false, true) => "new hosting-provider network",
            (false, false) => "new network with a different client",
        };
        out.push(ctx.finding(
            NAME,
            confidence,
            format!("Session used from a {what}"),
            format!(
                "Session {} moved from {} to {}{}.",
                ctx.ev.session_id,
                describe(&before),
                describe(&after),
                if same_client {
                    ""
                } else {
                    " with a different device or client"
                }
            ),
            anomalies,
        ));
    }
}
