//! Refresh-token reuse: a rotated refresh token redeemed again.
//!
//! **Attack.** With refresh-token rotation every redemption returns a new refresh token and
//! retires the old one. When both the legitimate client and a thief hold a copy, whichever
//! redeems second presents a retired token (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
//!
//! **Signal.** A `token_refreshed` event presenting a refresh token that was already redeemed
//! with rotation (a new refresh token was issued for it), or one that belongs to another
//! session.
//!
//! **Thresholds and why.** A retired token presented again after the grace period, or from
//! another device or IP within it, scores 95. The 30-second grace mirrors Okta's refresh
//! token rotation grace period (0 to 60 s, default 30 s), which exists because a client's
//! parallel requests race to refresh.
//!
//! **Benign cases it must not flag.** The same client retrying within the grace period from
//! the same device and IP; IdPs that do not rotate (a token redeemed without a new one issued
//! may be redeemed again).

use serde::Deserialize;
use vigil_model::{Anomaly, EventKind, Finding};

use super::Ctx;
use crate::config::{ConfigError, HumanDuration, check_range};

/// Detector name.
pub const NAME: &str = "refresh_reuse";

/// Settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Reuse within this long, from the same device and IP, is a client race.
    pub grace: HumanDuration,
    /// Confidence.
    pub confidence: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            grace: HumanDuration::secs(30),
            confidence: 95,
        }
    }
}

/// The detector.
#[derive(Debug, Clone)]
pub struct RefreshReuse {
    cfg: Config,
}

impl RefreshReuse {
    /// Validates the settings.
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        check_range(
            "detectors.refresh_reuse.confidence",
            cfg.confidence,
            0,
            100,
            "between 0 and 100",
        )?;
        if cfg.grace.0.as_secs() > 300 {
            return Err(ConfigError::OutOfRange {
                field: "detectors.refresh_reuse.grace",
                value: format!("{:?}", cfg.grace),
                expected: "at most 5m",
            });
        }
        Ok(Self { cfg: cfg.clone() })
    }

    /// Looks at one event.
    pub fn observe(&self, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
        let ev = ctx.ev;
        if ev.kind != EventKind::TokenRefreshed {
            return;
        }
        let Some(rt) = ev.refresh_token else { return };
        let Some(st) = ctx.refresh.get(&rt) else {
            return;
        };
        let (detail, baseline) = if *st.session_id != *ev.session_id {
            (
                format!(
                    "Refresh token {rt} (keyed hash) of session {} was redeemed in session {}.",
                    st.session_id, ev.session_id
                ),
                format!("session {}", st.session_id),
            )
        } else if let Some(at) = st.redeemed_at.get() {
            let same_client = ctx.obs.device.unwrap_or(0) == st.redeemed_device
                && ctx.obs.ip.unwrap_or(0) == st.redeemed_ip;
            if same_client && ev.time_ms - at <= self.cfg.grace.ms() {
                return;
            }
            (
                format!(
                    "Refresh token {rt} (keyed hash) was already rotated {:.0} s earlier and was presented again{}.",
                    (ev.time_ms - at) as f64 / 1000.0,
                    if same_client {
                        ""
                    } else {
                        " from another device or IP"
                    }
                ),
                "rotated".into(),
            )
        } else {
            return;
        };
        out.push(ctx.finding(
            NAME,
            self.cfg.confidence,
            "Rotated refresh token reused".into(),
            detail,
            vec![Anomaly {
                parameter: "refresh_token_state",
                baseline,
                observed: "redeemed again".into(),
            }],
        ));
    }
}
